"""The LIF neuron: charge, fire, subtractive detached reset, trace, online vs BPTT gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ottt_jax.mode import BPTT, OTTT
from ottt_jax.neuron import LIF, LIFState, decay_from_tau
from ottt_jax.surrogate import Rectangular, Sigmoid

XS = np.array([[0.6, 0.9, 1.2, -0.4, 2.5, 0.3, 0.0, 1.0]], np.float32).T  # [T, 1]


def _run(neuron, xs):
    def body(st, x):
        s, st = neuron(st, x)
        return st, (s, st.v, st.trace)

    _, out = jax.lax.scan(body, neuron.init_state(xs.shape[1:]), jnp.asarray(xs))
    return out


def _hand(xs, lam, vth):
    v = trace = 0.0
    spikes, vs, traces = [], [], []
    for x in xs[:, 0]:
        v = lam * v + x
        s = float(v - vth >= 0)
        v = v - vth * s
        trace = lam * trace + s
        spikes.append(s), vs.append(v), traces.append(trace)
    return np.array(spikes), np.array(vs), np.array(traces)


@pytest.mark.parametrize("lam, vth", [(0.5, 1.0), (1.0, 1.0), (0.8, 0.7)])
def test_dynamics_match_hand_recursion(lam, vth):
    s, v, a = _run(LIF(decay=lam, v_th=vth), XS)
    hs, hv, ha = _hand(XS, lam, vth)
    np.testing.assert_allclose(s[:, 0], hs)
    np.testing.assert_allclose(v[:, 0], hv, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a[:, 0], ha, rtol=1e-6)
    # trace invariant: â[t] = Σ_{k≤t} λ^{t−k} s[k]
    t = np.arange(len(hs))
    closed = np.array([(lam ** (ti - t[: ti + 1]) * hs[: ti + 1]).sum() for ti in t])
    np.testing.assert_allclose(a[:, 0], closed, rtol=1e-6)


def test_fires_exactly_at_threshold_and_defaults_are_the_papers():
    n = LIF()
    assert (n.decay, n.v_th, n.surrogate, n.mode, n.detach_reset) == (
        0.5,
        1.0,
        Sigmoid(4.0),
        None,  # inherit the rule's mode (OTTT outside a rule)
        True,
    )
    s, st = n(n.init_state((1,)), jnp.array([1.0]))
    assert float(s[0]) == 1.0 and float(st.v[0]) == 0.0 and float(st.trace[0]) == 1.0
    assert LIF.from_tau(2.0).decay == 0.5 and decay_from_tau(4.0) == 0.75


def _grad_wrt_first_input(neuron):
    """d s[2] / d x[0] through two neuron steps."""

    def f(x0):
        st = neuron.init_state((1,))
        _, st = neuron(st, x0)
        _, st = neuron(st, jnp.array([0.2]))
        s, _ = neuron(st, jnp.array([0.45]))
        return s.sum()

    return float(jax.grad(f)(jnp.array([0.7]))[0])


def test_online_detaches_time_and_bptt_keeps_it():
    rect = Rectangular(1.0)
    assert _grad_wrt_first_input(LIF(surrogate=rect, mode=OTTT)) == 0.0
    # BPTT: v2 = 0.45 + 0.5·(0.2 + 0.5·x0) with no spikes → d s/d x0 = f'(v2 − 1)·0.25
    g = _grad_wrt_first_input(LIF(surrogate=rect, mode=BPTT))
    v2 = 0.45 + 0.5 * (0.2 + 0.5 * 0.7)
    assert g == pytest.approx(float(rect.derivative(jnp.array(v2 - 1.0))) * 0.25)


def test_reset_gradient_is_configurable():
    def grad(detach):
        n = LIF(surrogate=Rectangular(4.0), mode=BPTT, detach_reset=detach)

        def f(x0):
            _, st = n(n.init_state((1,)), x0)  # fires (x0 ≥ 1)
            s1, _ = n(st, jnp.array([0.9]))
            return s1.sum()

        return float(jax.grad(f)(jnp.array([1.2]))[0])

    # v1 = 0.5·(x0 − s0) + 0.9; with the reset path, dv1/dx0 = 0.5·(1 − f'(x0−1)) = 0.5·(1 − 1/4)
    d = Rectangular(4.0).derivative(jnp.array(0.5 * (1.2 - 1) + 0.9 - 1))
    assert grad(True) == pytest.approx(float(d) * 0.5)
    assert grad(False) == pytest.approx(float(d) * 0.5 * 0.75)


def test_trace_carries_no_gradient_and_state_is_a_pytree():
    n = LIF()
    st = n.init_state((2, 3))
    chex.assert_trees_all_equal_shapes(st, LIFState(jnp.zeros((2, 3)), jnp.zeros((2, 3))))
    g = jax.grad(lambda x: n(st, x)[1].trace.sum())(jnp.full((2, 3), 1.5))
    np.testing.assert_array_equal(g, 0.0)


def test_bfloat16_state_and_input():
    n = LIF()
    s, st = n(n.init_state((4,), jnp.bfloat16), jnp.ones(4, jnp.bfloat16) * 1.5)
    assert s.dtype == st.v.dtype == st.trace.dtype == jnp.bfloat16


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"decay": 0.0}, r"decay \(lambda\) must be a number in \(0, 1\]"),
        ({"decay": 1.5}, r"decay \(lambda\) must be a number in \(0, 1\]"),
        ({"v_th": 0.0}, "v_th must be a finite number > 0"),
        ({"v_th": float("inf")}, "v_th must be a finite number > 0"),
        ({"surrogate": "step"}, "unknown surrogate 'step'"),
    ],
)
def test_invalid_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LIF(**kwargs)


def test_invalid_tau_and_input_shape():
    with pytest.raises(ValueError, match="tau must be a finite number >= 1"):
        LIF.from_tau(0.5)
    n = LIF()
    with pytest.raises(ValueError, match=r"LIF input x has shape \(3,\) but the state expects"):
        n(n.init_state((2,)), jnp.ones(3))


def test_mode_is_validated_and_its_properties_follow_the_fields():
    from ottt_jax.mode import SLTT, Mode

    assert (OTTT, SLTT, BPTT) == (
        Mode("detached", "trace"),
        Mode("detached", "instantaneous"),
        Mode("kept", "autodiff"),
    )
    assert [m.detach_membrane for m in (OTTT, SLTT, BPTT)] == [True, True, False]
    assert [m.keeps_trace for m in (OTTT, SLTT, BPTT)] == [True, False, True]
    assert [m.trace_rule for m in (OTTT, SLTT, BPTT)] == [True, False, False]
    with pytest.raises(ValueError, match=r"Mode\.temporal must be one of"):
        Mode("online", "trace")
    with pytest.raises(ValueError, match=r"Mode\.synapse must be one of .*'autodiff'"):
        Mode("kept", "bptt")
    with pytest.raises(ValueError, match="LIF mode must be"):
        LIF(mode=True)
    # a mode without a trace: the state carries none; with_mode keeps λ, V_th and the surrogate
    n = LIF(decay=0.25, v_th=0.5).with_mode(SLTT)
    assert (n.decay, n.v_th, n.mode) == (0.25, 0.5, SLTT)
    st = n.init_state((2,))
    assert st.trace is None
    s, st = n(st, jnp.array([0.6, 0.1]))
    assert st.trace is None and s.tolist() == [1.0, 0.0]

    def spikes_at_step_1(x0):  # the detached membrane: no gradient back to step 0's input
        _, st1 = n(n.init_state((2,)), x0)
        return n(st1, jnp.full((2,), 0.4))[0].sum()

    np.testing.assert_array_equal(jax.grad(spikes_at_step_1)(jnp.array([0.3, 0.2])), 0.0)
