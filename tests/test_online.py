"""The online-gradient transform, proven against hand derivations and the paper's equivalences."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ottt_jax import layers
from ottt_jax.losses import instantaneous_loss
from ottt_jax.mode import BPTT, OTTT
from ottt_jax.models import make_step
from ottt_jax.neuron import LIF
from ottt_jax.online import (
    Step,
    bptt_grad,
    forward,
    ottt_grad,
    ottt_update,
    three_factor_grad,
)
from ottt_jax.rules import get_rule
from ottt_jax.surrogate import Sigmoid
from ottt_jax.trace import dense_spike_trace, spike_trace, update_trace

T, B, D, H1, H2, K = 4, 3, 6, 7, 5, 4
LAM, VTH, BETA = 0.5, 1.0, 0.05
SIG = Sigmoid(4.0)


def _params(seed=0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 6)
    return {
        "w1": jax.random.normal(ks[0], (D, H1)) * 0.9,
        "b1": jax.random.normal(ks[1], (H1,)) * 0.3 + 0.4,
        "w2": jax.random.normal(ks[2], (H1, H2)) * 0.8,
        "b2": jax.random.normal(ks[3], (H2,)) * 0.3 + 0.3,
        "w3": jax.random.normal(ks[4], (H2, K)),
        "b3": jax.random.normal(ks[5], (K,)) * 0.1,
    }


X = jax.random.uniform(jax.random.PRNGKey(7), (B, D)) * 1.5
Y = jnp.array([0, 2, 3])
LOSS = functools.partial(instantaneous_loss, beta=BETA, num_steps=T)


def _dense_net(online=True):
    """A 3-layer dense SNN step: real input → LIF → LIF → linear readout (traces in the state)."""
    lif = LIF(decay=LAM, v_th=VTH, surrogate=SIG, mode=OTTT if online else BPTT)

    def step(p, st, x):
        s1, n1 = lif(st["n1"], x @ p["w1"] + p["b1"])  # first layer: ordinary gradient
        h2 = dense_spike_trace(p["w2"], s1, n1.trace) if online else s1 @ p["w2"]
        s2, n2 = lif(st["n2"], h2 + p["b2"])
        out = dense_spike_trace(p["w3"], s2, n2.trace) if online else s2 @ p["w3"]
        return out + p["b3"], {"n1": n1, "n2": n2}

    def init():
        return {"n1": lif.init_state((B, H1)), "n2": lif.init_state((B, H2))}

    return step, init


def _hand_ottt(p, x, y, num_steps):
    """Eq. (4)–(5) in float64 numpy: spatial backprop per step, ∇W = Σ_t g_u[t] â[t]ᵀ."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    x = np.asarray(x, np.float64)
    sig = lambda z: 1 / (1 + np.exp(-4 * z))
    dsig = lambda z: 4 * sig(z) * (1 - sig(z))
    onehot = np.eye(K)[np.asarray(y)]
    v1, a1, v2, a2 = np.zeros((B, H1)), np.zeros((B, H1)), np.zeros((B, H2)), np.zeros((B, H2))
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    loss, outs = 0.0, []
    for _ in range(num_steps):
        u1 = LAM * v1 + x @ p["w1"] + p["b1"]
        s1 = (u1 >= VTH).astype(float)
        v1, a1 = u1 - VTH * s1, LAM * a1 + s1
        u2 = LAM * v2 + s1 @ p["w2"] + p["b2"]
        s2 = (u2 >= VTH).astype(float)
        v2, a2 = u2 - VTH * s2, LAM * a2 + s2
        out = s2 @ p["w3"] + p["b3"]
        outs.append(out)
        z = out - out.max(-1, keepdims=True)
        prob = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        ce = -np.log(prob[np.arange(B), y]).mean()
        loss += ((1 - BETA) * ce + BETA * ((out - onehot) ** 2).mean()) / num_steps
        g_out = ((1 - BETA) * (prob - onehot) / B + BETA * 2 * (out - onehot) / (B * K)) / num_steps
        g_u2 = (g_out @ p["w3"].T) * dsig(u2 - VTH)
        g_u1 = (g_u2 @ p["w2"].T) * dsig(u1 - VTH)
        for name, val in [
            ("w3", a2.T @ g_out), ("b3", g_out.sum(0)),
            ("w2", a1.T @ g_u2), ("b2", g_u2.sum(0)),
            ("w1", x.T @ g_u1), ("b1", g_u1.sum(0)),
        ]:  # fmt: skip
            grads[name] += val
    return loss, grads, np.stack(outs)


def test_ottt_a_equals_hand_derivation_of_eq_4_5():
    p = _params()
    step, init = _dense_net()
    res = jax.jit(lambda p: ottt_grad(step, LOSS, p, init(), X, Y, num_steps=T))(p)
    loss, grads, outs = _hand_ottt(p, X, Y, T)
    assert 0 < float(jnp.abs(res.outputs).sum())
    np.testing.assert_allclose(res.outputs, outs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res.loss, loss, rtol=1e-5)
    chex.assert_trees_all_equal_structs(res.grads, p)
    for k in p:
        assert np.abs(grads[k]).max() > 0, k
        np.testing.assert_allclose(res.grads[k], grads[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_three_factor_form_equals_autodiff():
    """Eq. (7): ∇W2 = Σ_b â1 · f'(u2) · δ2, with δ2 = ∂L/∂s2, for one step from a warm state."""
    p = _params(1)
    step, init = _dense_net()
    st = jax.tree.map(lambda a: a + 0.3, init())  # a non-trivial state (membranes and traces)
    g = jax.grad(lambda p: LOSS(step(p, st, X)[0], Y))(p)
    # the pieces of Eq. (7), computed explicitly
    s1, n1 = LIF(decay=LAM, surrogate=SIG)(st["n1"], X @ p["w1"] + p["b1"])
    u2 = LAM * st["n2"].v + s1 @ p["w2"] + p["b2"]
    s2 = (u2 >= VTH).astype(jnp.float32)
    out = s2 @ p["w3"] + p["b3"]
    delta = jax.grad(lambda o: LOSS(o, Y))(out) @ p["w3"].T
    got = three_factor_grad(n1.trace, SIG.derivative(u2 - VTH), delta)
    np.testing.assert_allclose(got, g["w2"], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"expects pre_trace \[B, in\]"):
        three_factor_grad(n1.trace[0], delta, delta)


def test_single_spiking_readout_layer_equals_bptt_with_detached_reset():
    """Sec. 4.1: for the last layer, OTTT's gradient is exactly BPTT's (reset detached)."""
    s_in = (jax.random.uniform(jax.random.PRNGKey(3), (6, B, D)) < 0.4).astype(jnp.float32)
    w = jax.random.normal(jax.random.PRNGKey(4), (D, K)) * 1.2
    loss_fn = functools.partial(instantaneous_loss, beta=0.3, num_steps=6)

    def make(online):
        lif = LIF(decay=LAM, surrogate=SIG, mode=OTTT if online else BPTT)

        def step(w, st, s_t):
            a_in = update_trace(st["a_in"], s_t, LAM)
            h = dense_spike_trace(w, s_t, a_in) if online else s_t @ w
            s, n = lif(st["n"], h + 0.2)
            return 3.0 * s, {"a_in": a_in, "n": n}

        return step, {"a_in": jnp.zeros((B, D)), "n": lif.init_state((B, K))}

    step_o, st0 = make(True)
    step_b, _ = make(False)
    g_ottt = ottt_grad(step_o, loss_fn, w, st0, s_in, Y).grads
    g_bptt = bptt_grad(step_b, loss_fn, w, st0, s_in, Y).grads
    assert float(jnp.abs(g_bptt).max()) > 1e-4
    np.testing.assert_allclose(g_ottt, g_bptt, rtol=1e-5, atol=1e-7)
    # ... whereas for a hidden layer the two differ (OTTT drops temporal terms)
    step, init = _dense_net(online=True)
    step_b2, _ = _dense_net(online=False)
    p = _params()
    ga = ottt_grad(step, LOSS, p, init(), X, Y, num_steps=T).grads
    gb = bptt_grad(step_b2, LOSS, p, init(), X, Y, num_steps=T).grads
    np.testing.assert_allclose(ga["b3"], gb["b3"], rtol=1e-5)  # readout bias: same either way
    assert not np.allclose(ga["w1"], gb["w1"], rtol=1e-3)


def test_ottt_a_is_bptt_through_an_online_step():
    """With no gradient crossing time, Σ_t ∇L[t] equals ∇Σ_t L[t] through the scan."""
    step, init = _dense_net()
    p = _params(2)
    ga = ottt_grad(step, LOSS, p, init(), X, Y, num_steps=T)
    gb = bptt_grad(step, LOSS, p, init(), X, Y, num_steps=T)
    chex.assert_trees_all_close(ga.grads, gb.grads, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ga.loss, gb.loss, rtol=1e-6)


def test_ottt_o_equals_python_loop_of_updates():
    step, init = _dense_net()
    p0 = _params(3)
    opt = optax.sgd(0.5, momentum=0.9)
    res = jax.jit(lambda p, o: ottt_update(step, LOSS, opt, p, o, init(), X, Y, num_steps=T))(
        p0, opt.init(p0)
    )

    def step_loss(p, st):
        out, st = step(p, st, X)
        return LOSS(out, Y), st

    p, o, st, total = p0, opt.init(p0), init(), 0.0
    for _ in range(T):  # T separate grad + apply_updates calls
        (loss, st), g = jax.value_and_grad(step_loss, has_aux=True)(p, st)
        updates, o = opt.update(g, o, p)
        p, total = optax.apply_updates(p, updates), total + loss
    chex.assert_trees_all_close(res.params, p, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(res.opt_state, o, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.loss, total, rtol=1e-5)
    assert not np.allclose(res.params["w1"], p0["w1"])


def test_grad_reduce_hook_is_applied_each_step():
    step, init = _dense_net()
    p0 = _params(3)
    opt = optax.sgd(1.0)
    zero = ottt_update(
        step, LOSS, opt, p0, opt.init(p0), init(), X, Y, num_steps=T,
        grad_reduce=lambda g: jax.tree.map(jnp.zeros_like, g),
    )  # fmt: skip
    chex.assert_trees_all_equal(zero.params, p0)
    # halving every step's gradient under lr 1 is lr 1/2 at every one of the T updates
    half = ottt_update(
        step, LOSS, opt, p0, opt.init(p0), init(), X, Y, num_steps=T,
        grad_reduce=lambda g: jax.tree.map(lambda x: 0.5 * x, g),
    )  # fmt: skip
    slow = optax.sgd(0.5)
    ref = ottt_update(step, LOSS, slow, p0, slow.init(p0), init(), X, Y, num_steps=T)
    chex.assert_trees_all_close(half.params, ref.params, rtol=1e-6, atol=1e-7)


def test_static_input_equals_repeated_sequence_and_forward_matches():
    step, init = _dense_net()
    p = _params(4)
    a = ottt_grad(step, LOSS, p, init(), X, Y, num_steps=T)
    b = ottt_grad(step, LOSS, p, init(), jnp.broadcast_to(X, (T, *X.shape)), Y)
    chex.assert_trees_all_close(a.grads, b.grads, rtol=1e-6)
    outs, _ = forward(step, p, init(), X, num_steps=T)
    np.testing.assert_allclose(outs, a.outputs, rtol=1e-6)
    chex.assert_shape(a.outputs, (T, B, K))


def test_recurrent_connection_with_previous_spikes_in_the_state():
    """A recurrent layer: u[t] = λu + W_in x + W_rec s[t−1]; ∇W_rec = Σ_t â[t−1]ᵀ g_u[t]."""
    lif = LIF(decay=LAM, surrogate=SIG)
    ks = jax.random.split(jax.random.PRNGKey(5), 3)
    p = {
        "w_in": jax.random.normal(ks[0], (D, H1)),
        "w_rec": jax.random.normal(ks[1], (H1, H1)) * 0.5,
        "w_out": jax.random.normal(ks[2], (H1, K)),
    }

    def step(p, st, x):
        rec = spike_trace(lambda w, s: s @ w, p["w_rec"], st["s"], st["n"].trace)
        u = LAM * st["n"].v + x @ p["w_in"] + rec
        s, n = lif(st["n"], x @ p["w_in"] + rec)
        out = dense_spike_trace(p["w_out"], s, n.trace)
        return (out, (u, st["n"].trace)), {"n": n, "s": s}

    st0 = {"n": lif.init_state((B, H1)), "s": jnp.zeros((B, H1))}
    loss_fn = lambda out, y: LOSS(out[0], y)
    res = ottt_grad(step, loss_fn, p, st0, X, Y, num_steps=T)
    logits, (u, a_prev) = res.outputs
    want = 0.0
    for t in range(T):
        delta = jax.grad(lambda o: LOSS(o, Y))(logits[t]) @ p["w_out"].T
        want = want + three_factor_grad(a_prev[t], SIG.derivative(u[t] - VTH), delta)
    assert float(jnp.abs(want).max()) > 0
    np.testing.assert_allclose(res.grads["w_rec"], want, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# A user's own Flax model (this is the README example) and the memory proof.
# ---------------------------------------------------------------------------------------------


class TinyConvSNN(nn.Module):
    """conv → LIF → (trace rule) conv → LIF → pool → (trace rule) linear, one step per call.

    The README model, with no mode: its layers and neurons take the rule's at trace time.
    """

    @nn.compact
    def __call__(self, state, x):
        lif = LIF()
        s1, n1 = lif(state["n1"], layers.Conv(8)(x))
        s2, n2 = lif(state["n2"], layers.Conv(16)(s1, n1.trace))
        pool = lambda z: layers.SPIKE_SCALE * z.mean((1, 2))
        out = layers.Linear(10)(pool(s2), pool(n2.trace))
        return out, {"n1": n1, "n2": n2}

    def init_state(self, batch, hw=16):
        return {
            "n1": LIF().init_state((batch, hw, hw, 8)),
            "n2": LIF().init_state((batch, hw, hw, 16)),
        }


def _tiny_setup(batch=8, mode=OTTT):
    model = TinyConvSNN()
    y = jnp.arange(batch) % 2  # two classes told apart by the brightness of one channel
    x = jax.random.uniform(jax.random.PRNGKey(0), (batch, 16, 16, 3))
    x = x.at[..., 0].add(1.5 * y[:, None, None])
    params = model.init(jax.random.PRNGKey(1), model.init_state(batch), x)["params"]
    step = Step(make_step(model).fn, mode)  # the README's make_step, in the mode asked for
    return model, step, params, x, y


def test_user_flax_model_trains_with_ottt_a():
    rule = get_rule("ottt_a")
    model, _, params, x, y = _tiny_setup(mode=rule.mode)
    step = make_step(model)  # as in the README: no mode, the rule's at trace time
    opt = optax.sgd(0.5, momentum=0.9)
    loss_fn = functools.partial(instantaneous_loss, beta=0.05, num_steps=4)

    @jax.jit
    def train_step(params, opt_state):
        st = model.init_state(8)
        res = rule.apply(step, loss_fn, opt, params, opt_state, st, x, y, num_steps=4)
        return res.params, res.opt_state, res.loss

    opt_state = opt.init(params)
    losses = []
    for _ in range(15):
        params, opt_state, loss = train_step(params, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses
    assert train_step._cache_size() == 1  # the second and later calls did not recompile


def _temp_bytes(method, t):
    model, step, params, x, y = _tiny_setup(mode=BPTT if method == "bptt" else OTTT)
    loss_fn = functools.partial(instantaneous_loss, beta=0.05, num_steps=t)
    fn = bptt_grad if method == "bptt" else ottt_grad
    f = lambda p: fn(step, loss_fn, p, model.init_state(8), x, y, num_steps=t).grads
    return jax.jit(f).lower(params).compile().memory_analysis().temp_size_in_bytes


def test_memory_constant_in_t_for_ottt_and_linear_for_bptt():
    ts = (2, 4, 8, 16)
    ottt = [_temp_bytes("ottt_a", t) for t in ts]
    bptt = [_temp_bytes("bptt", t) for t in ts]
    assert max(ottt) <= 1.05 * min(ottt), ottt
    steps = np.diff(bptt) / np.diff(ts)  # bytes per extra time step
    assert steps.min() > 0 and steps.max() <= 1.1 * steps.min(), bptt
    assert bptt[-1] > 3 * ottt[-1], (bptt, ottt)


def test_vmap_gives_per_example_gradients():
    step, init = _dense_net()
    p = _params(5)
    loss1 = functools.partial(instantaneous_loss, beta=BETA, num_steps=T)

    def one(x, y):
        lif = LIF(decay=LAM, surrogate=SIG)
        st = {"n1": lif.init_state((1, H1)), "n2": lif.init_state((1, H2))}
        return ottt_grad(step, loss1, p, st, x[None], y[None], num_steps=T).grads

    per_example = jax.vmap(one)(X, Y)
    full = ottt_grad(step, LOSS, p, init(), X, Y, num_steps=T).grads
    chex.assert_trees_all_close(jax.tree.map(lambda g: g.mean(0), per_example), full, rtol=1e-5)


@pytest.mark.parametrize(
    "inputs, num_steps, targets, match",
    [
        (jnp.ones((B, T, D)), None, Y, r"targets batch size \[3\] does not match .*time-major"),
        (jnp.ones((B, D)), 0, Y, "num_steps must be a positive int"),
        (jnp.ones((B, D)), 2.0, Y, "num_steps must be a positive int"),
        ({"a": jnp.ones((T, B, D)), "b": jnp.ones((T + 1, B, D))}, None, Y, "disagree on the time"),
        (jnp.ones((B,)), None, Y, r"must be time-major \[T, B, \.\.\.\]"),
        (jnp.ones((0, B, D)), None, Y, "empty time axis"),
        ("abc", None, Y, "must be numeric arrays"),
    ],
)
def test_bad_inputs_raise_clear_errors(inputs, num_steps, targets, match):
    step, init = _dense_net()
    with pytest.raises(ValueError, match=match):
        ottt_grad(step, LOSS, _params(), init(), inputs, targets, num_steps=num_steps)
