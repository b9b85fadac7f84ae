"""Composing the rules with a user's own Flax code: no silent wrong gradient (issue 15).

Each case found by a user trying the side door is here, either refused with an error naming the
layer/parameter path, or computing the named rule against a hand-written one in float64.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import enable_x64

from ottt_jax import layers, rules
from ottt_jax.diagnose import check_rule
from ottt_jax.losses import instantaneous_loss
from ottt_jax.mode import BPTT, OTTT, SLTT, Mode
from ottt_jax.models import make_step
from ottt_jax.neuron import LIF
from ottt_jax.online import Step, ottt_grad

B, HW, K, T = 2, 6, 3, 3
Y = jnp.array([0, 2])
LOSS = functools.partial(instantaneous_loss, beta=0.1, num_steps=T)
RULES = ("ottt_a", "ottt_o", "bptt", "sltt", "sltt_k")


def _pool(z):
    return layers.SPIKE_SCALE * z.mean((1, 2))


class PackageNet(nn.Module):
    """conv (on the image) → LIF → conv (spikes) → LIF → pool → readout; ottt_jax layers."""

    mode: Mode | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, state, x):
        lif, dt = LIF(), self.dtype
        c1 = layers.Conv(4, weight_standardization=False, dtype=dt, name="c1")
        s1, n1 = lif(state["n1"], c1(x))
        c2 = layers.Conv(5, weight_standardization=False, dtype=dt, name="c2")
        s2, n2 = lif(state["n2"], c2(s1, n1.trace))
        tr = None if n2.trace is None else _pool(n2.trace)
        return layers.Linear(K, dtype=dt, name="fc")(_pool(s2), tr), {"n1": n1, "n2": n2}


class FlaxNet(nn.Module):
    """The same network with plain nn.Conv / nn.Dense through layers.traced."""

    mode: Mode | None = None

    @nn.compact
    def __call__(self, state, x):
        lif = LIF()
        s1, n1 = lif(state["n1"], layers.traced(nn.Conv(4, (3, 3)), name="c1")(x))
        s2, n2 = lif(state["n2"], layers.traced(nn.Conv(5, (3, 3)), name="c2")(s1, n1.trace))
        tr = None if n2.trace is None else _pool(n2.trace)
        return layers.traced(nn.Dense(K), name="fc")(_pool(s2), tr), {"n1": n1, "n2": n2}


class PlainNet(nn.Module):
    """The pitfall: plain nn.Dense fed by spikes (no trace rule whatever the mode)."""

    mode: Mode | None = None

    @nn.compact
    def __call__(self, state, x):
        s1, n1 = LIF()(state["n1"], layers.Conv(4, weight_standardization=False, name="c1")(x))
        s2, n2 = LIF()(state["n2"], nn.Conv(5, (3, 3), name="c2")(s1))
        return nn.Dense(K, name="fc")(_pool(s2)), {"n1": n1, "n2": n2}


def _state(batch=B):
    lif = LIF()
    return {"n1": lif.init_state((batch, HW, HW, 4)), "n2": lif.init_state((batch, HW, HW, 5))}


def _x():
    return jax.random.uniform(jax.random.PRNGKey(1), (B, HW, HW, 2)) * 3.0


def _params(model):
    p = model.init(jax.random.PRNGKey(0), _state(), _x())["params"]
    # kernels large enough that every layer spikes
    return jax.tree.map(lambda v: v * 3.0 if v.ndim > 1 else v + 0.1, p)


def _grads(name, model, params):
    rule = rules.get_rule(name)
    step = make_step(model)
    if rule.per_step_update:
        opt = optax.sgd(1.0)
        res = rule.apply(step, LOSS, opt, params, opt.init(params), _state(), _x(), Y, num_steps=T)
        return jax.tree.map(lambda a, b: a - b, params, res.params)  # Σ of the T updates
    key = jax.random.PRNGKey(4)
    return rule.grad(step, LOSS, params, _state(), _x(), Y, num_steps=T, key=key).grads


@pytest.mark.parametrize("name", RULES)
def test_traced_plain_flax_layers_give_the_package_layers_gradient_under_every_rule(name):
    """Catches: layers.traced not applying the trace rule (OTTT) or applying it under SLTT/BPTT,
    a wrong bias/kernel path, or parameters stored under other names."""
    params = _params(PackageNet())
    assert jax.tree.structure(params) == jax.tree.structure(_params(FlaxNet()))
    want = _grads(name, PackageNet(), params)
    got = _grads(name, FlaxNet(), params)
    for path, w in jax.tree_util.tree_leaves_with_path(want):
        g = got
        for k in path:
            g = g[k.key]
        assert float(jnp.max(jnp.abs(w))) > 0, path
        rel = float(jnp.max(jnp.abs(g - w)) / jnp.max(jnp.abs(w)))
        assert rel <= 1e-6, (path, rel)


def _mlp_step(p, st, x):
    """Hidden dense on a static input → LIF → traced nn.Dense readout (the user's model)."""
    s, n = LIF()(st, x @ p["w1"] + p["b1"])
    out = layers.traced(nn.Dense(K)).apply({"params": p["fc"]}, s, n.trace)
    return out, n


def test_traced_dense_under_ottt_a_is_the_hand_written_trace_rule_in_float64():
    """Catches: a plain nn.Dense readout taking ∇W at the spikes (the SLTT gradient, 0.34 off)."""
    with enable_x64():
        k1, k2 = jax.random.split(jax.random.PRNGKey(3))
        d, h = 4, 6
        x = jax.random.uniform(k1, (B, d), jnp.float64) * 2.0
        p = {
            "w1": jax.random.normal(k2, (d, h), jnp.float64),
            "b1": jnp.full((h,), 0.3),
            "fc": {"kernel": jax.random.normal(k1, (h, K), jnp.float64), "bias": jnp.zeros(K)},
        }
        st = LIF().init_state((B, h), jnp.float64)
        got = rules.get_rule("ottt_a").grad(_mlp_step, LOSS, p, st, x, Y, num_steps=T).grads
        # hand-written OTTT (Eq. 5): u ← λu + xW1 + b; s = H(u − 1); â ← λâ + s;
        # ∇W_fc = Σ_t âᵀ g_o[t];  ∇W1 = Σ_t xᵀ (g_o[t] W_fcᵀ · σ'(u − 1)) (membrane detached)
        lam, sig = 0.5, lambda z: jax.nn.sigmoid(4 * z)
        u, a = np.zeros((B, h)), np.zeros((B, h))
        w1, wf = np.asarray(p["w1"]), np.asarray(p["fc"]["kernel"])
        gw1, gwf = np.zeros_like(w1), np.zeros_like(wf)
        for _ in range(T):
            u = lam * u + np.asarray(x) @ w1 + 0.3
            s = (u >= 1.0).astype(np.float64)
            a = lam * a + s
            go = np.asarray(jax.grad(lambda o: LOSS(o, Y))(jnp.asarray(s @ wf)))
            gwf += a.T @ go
            ds = np.asarray(4 * sig(u - 1.0) * (1 - sig(u - 1.0)))
            gw1 += np.asarray(x).T @ ((go @ wf.T) * ds)
            u = u - s
        np.testing.assert_allclose(got["fc"]["kernel"], gwf, rtol=1e-10)
        np.testing.assert_allclose(got["w1"], gw1, rtol=1e-10)


def test_check_rule_reports_plain_flax_layers_and_the_wrapper_per_kernel():
    """Catches: check_rule unable to tell the trace rule from the instantaneous one or from BPTT."""
    x = _x()
    plain = check_rule(make_step(PlainNet()), _params(PlainNet()), _state(), x, mode=OTTT)
    assert plain == {
        "c1/kernel": "instantaneous",
        "c2/kernel": "instantaneous",
        "fc/kernel": "instantaneous",
    }
    fixed = check_rule(make_step(FlaxNet()), _params(FlaxNet()), _state(), x, mode=OTTT)
    assert fixed == {"c1/kernel": "instantaneous", "c2/kernel": "trace", "fc/kernel": "trace"}
    bptt = check_rule(make_step(FlaxNet()), _params(FlaxNet()), _state(), x, mode=BPTT)
    assert bptt["c1/kernel"] == bptt["c2/kernel"] == "through time"
    sltt = check_rule(make_step(FlaxNet()), _params(FlaxNet()), _state(), x, mode=SLTT)
    assert set(sltt.values()) == {"instantaneous"}


def test_check_rule_strict_names_a_layer_given_no_trace_under_ottt():
    """The 'forgot to pass the trace' case reads instantaneous; a temporal path under OTTT is
    refused by strict=True with the parameter path."""

    def leaky(p, st, x):  # a hand-made recurrence whose membrane keeps its gradient
        v = 0.5 * st + x @ p["w"]
        return v @ p["r"], v

    p = {"w": jnp.ones((3, 4)) * 0.2, "r": jnp.ones((4, 2))}
    x = jnp.ones((2, 3))
    rep = check_rule(leaky, p, jnp.zeros((2, 4)), x)
    assert rep == {"w": "through time", "r": "instantaneous"}
    with pytest.raises(ValueError, match=r"mode=.*forbids: w \(through time\)"):
        check_rule(leaky, p, jnp.zeros((2, 4)), x, strict=True)


# ----- one source for the mode -----


class ExplicitNet(nn.Module):
    """The README model: layers and neuron take mode=self.mode explicitly."""

    mode: Mode = OTTT

    @nn.compact
    def __call__(self, state, x):
        lif = LIF(mode=self.mode)
        s1, n1 = lif(state["n1"], layers.Conv(4, weight_standardization=False, name="c1")(x))
        c2 = layers.Conv(5, weight_standardization=False, mode=self.mode, name="c2")
        s2, n2 = lif(state["n2"], c2(s1, n1.trace))
        out = layers.Linear(K, mode=self.mode, name="fc")(_pool(s2), _pool(n2.trace))
        return out, {"n1": n1, "n2": n2}


@pytest.mark.parametrize(("rule", "model_mode"), [("ottt_a", BPTT), ("bptt", OTTT)])
def test_a_bare_step_of_a_model_of_another_mode_is_refused_with_the_layer_path(rule, model_mode):
    """Catches: a BPTT model under ottt_a (silently SLTT) and an OTTT model under bptt (silently
    OTTT_A) through the README's lambda step, which carries no mode."""
    model = ExplicitNet(mode=model_mode)
    params = _params(model)
    step = lambda p, st, x: model.apply({"params": p}, st, x)
    with pytest.raises(ValueError, match=r"layer ExplicitNet/c1: its model's mode is .* rule '"):
        rules.get_rule(rule).grad(step, LOSS, params, _state(), _x(), Y, num_steps=T)


def test_a_layer_whose_own_mode_disagrees_with_its_model_is_refused():
    class Mixed(nn.Module):
        mode: Mode = BPTT

        @nn.compact
        def __call__(self, state, x):
            s, n = LIF()(state["n1"], layers.Conv(4, mode=OTTT, name="c1")(x))
            return s.mean((1, 2))[:, :K], {"n1": n, "n2": state["n2"]}

    model = Mixed()
    params = model.init(jax.random.PRNGKey(0), _state(), _x())["params"]
    with pytest.raises(ValueError, match=r"layer Mixed/c1: its mode is .*synapse='trace'"):
        rules.get_rule("bptt").grad(make_step(model), LOSS, params, _state(), _x(), Y, num_steps=T)


def test_an_explicit_neuron_mode_that_disagrees_with_the_rule_is_refused():
    lif = LIF(mode=OTTT)
    step = Step(lambda p, st, x: lif(st, x * p), None)
    with pytest.raises(ValueError, match=r"LIF\(decay=0.5, v_th=1.0\): its mode is"):
        rules.get_rule("bptt").grad(
            step,
            lambda o, y: o.sum(),
            1.0,
            lif.init_state((2, 3)),
            jnp.ones((2, 3)),
            Y,
            num_steps=2,
        )


def _unrolled_bptt(params, x, n_steps):
    """Hand-written BPTT of PackageNet in float64: the plain unrolled loop, no stop_gradient
    but on the reset, as the paper's BPTT baseline."""

    def conv(v, w, b):
        y = jax.lax.conv_general_dilated(
            v, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + b

    def spike(u):  # Heaviside forward, sigmoid(4·) surrogate backward
        sg = jax.nn.sigmoid(4 * (u - 1.0))
        return sg + jax.lax.stop_gradient((u >= 1.0).astype(u.dtype) - sg)

    total = 0.0
    v1, v2 = jnp.zeros((B, HW, HW, 4)), jnp.zeros((B, HW, HW, 5))
    for _ in range(n_steps):
        v1 = 0.5 * v1 + conv(x, params["c1"]["kernel"], params["c1"]["bias"])
        s1 = spike(v1)
        v1 = v1 - jax.lax.stop_gradient(s1)
        v2 = 0.5 * v2 + conv(s1, params["c2"]["kernel"], params["c2"]["bias"])
        s2 = spike(v2)
        v2 = v2 - jax.lax.stop_gradient(s2)
        out = _pool(s2) @ params["fc"]["kernel"] + params["fc"]["bias"]
        total = total + LOSS(out, Y)
    return total


def test_layers_and_neurons_without_a_mode_train_as_bptt_under_bptt_in_float64():
    """Catches: mode-less layers/LIF defaulting to OTTT under bptt (1–4% off the BPTT gradient)."""
    with enable_x64():
        params = jax.tree.map(lambda v: v.astype(jnp.float64), _params(PackageNet()))
        x = _x().astype(jnp.float64)
        st = jax.tree.map(lambda v: v.astype(jnp.float64), _state())
        model = PackageNet(dtype=jnp.float64)
        got = rules.get_rule("bptt").grad(make_step(model), LOSS, params, st, x, Y, num_steps=T)
        want = jax.grad(_unrolled_bptt)(params, x, T)
        # 1e-6: instantaneous_loss evaluates the loss in float32 (the bug is 1e-2 off)
        for g, w in zip(jax.tree.leaves(got.grads), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6 * float(jnp.max(jnp.abs(w))))


def test_make_step_works_for_a_model_without_return_stats():
    """Catches: make_step passing return_stats to a model that does not take it (TypeError)."""
    model = ExplicitNet(mode=OTTT)
    step = make_step(model)
    assert step.mode == OTTT and step.hoist is None
    out, _ = step(_params(model), _state(), _x())
    assert out.shape == (B, K)
    with pytest.raises(ValueError, match="takes no return_stats"):
        make_step(model, return_stats=True)


# ----- input guards -----


def test_a_sequence_with_as_many_steps_as_examples_needs_a_declared_time_axis():
    """Catches: a batch-major sequence with B == T silently read as time-major."""
    rule = rules.get_rule("ottt_a")
    seq_bt = jax.random.uniform(jax.random.PRNGKey(2), (B, B, HW, HW, 2)) * 3.0  # [B, T=B, ...]
    step, params = make_step(PackageNet()), _params(PackageNet())
    loss = functools.partial(instantaneous_loss, num_steps=B)
    with pytest.raises(ValueError, match=r"B == T = 2.*time_axis=0 .*time_axis=1"):
        rule.grad(step, loss, params, _state(), seq_bt, Y)
    major = rule.grad(step, loss, params, _state(), seq_bt, Y, time_axis=1)
    want = rule.grad(step, loss, params, _state(), jnp.swapaxes(seq_bt, 0, 1), Y, time_axis=0)
    for g, w in zip(jax.tree.leaves(major.grads), jax.tree.leaves(want.grads), strict=True):
        np.testing.assert_array_equal(g, w)


def test_numpy_and_jax_integer_num_steps_are_accepted():
    rule, step, params = rules.get_rule("ottt_a"), make_step(PackageNet()), _params(PackageNet())
    want = rule.grad(step, LOSS, params, _state(), _x(), Y, num_steps=T).loss
    for t in (np.int64(T), np.int32(T), jnp.asarray(T)):
        got = rule.grad(step, LOSS, params, _state(), _x(), Y, num_steps=t).loss
        assert float(got) == float(want)


def test_debug_checks_refuse_nan_inputs_and_bad_labels_also_under_jit():
    """Catches: NaN inputs giving a finite loss and NaN parameters, and labels >= K training."""
    rule, step, params = rules.get_rule("ottt_a"), make_step(PackageNet()), _params(PackageNet())
    bad = _x().at[0, 0, 0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="inputs contain NaN or Inf"):
        rule.grad(step, LOSS, params, _state(), bad, Y, num_steps=T, debug_checks=True)
    f = jax.jit(
        lambda x, y: (
            rule.grad(step, LOSS, params, _state(), x, y, num_steps=T, debug_checks=True).loss
        )
    )
    with pytest.raises(Exception, match="inputs contain NaN or Inf"):
        jax.block_until_ready(f(bad, Y))
    with pytest.raises(Exception, match=r"labels must lie in \[0, num_classes\) = \[0, 3\)"):
        jax.block_until_ready(f(_x(), jnp.array([0, 3])))
    assert np.isfinite(float(f(_x(), Y)))
    # without debug checks a bad label still cannot train silently: the loss is NaN
    g = jax.jit(lambda y: rule.grad(step, LOSS, params, _state(), _x(), y, num_steps=T).loss)
    assert np.isnan(float(g(jnp.array([-1, 0]))))


def test_ottt_grad_on_a_step_traces_in_the_steps_mode():
    """online.* given a Step make its mode active: a mode-less layer follows it."""
    params = _params(PackageNet())
    a = ottt_grad(
        Step(make_step(PackageNet()).fn, SLTT), LOSS, params, _state(), _x(), Y, num_steps=T
    )
    b = rules.get_rule("sltt").grad(
        make_step(PackageNet()), LOSS, params, _state(), _x(), Y, num_steps=T
    )
    for g, w in zip(jax.tree.leaves(a.grads), jax.tree.leaves(b.grads), strict=True):
        np.testing.assert_array_equal(g, w)
