"""SLTT and SLTT-K (Meng et al., ICCV 2023) as rules, proven against hand derivations.

SLTT detaches the membrane entering each step (as OTTT does) and takes each synaptic layer's weight
gradient at its instantaneous input: ``∇W = Σ_t Σ_l δ_l[t] s_{l−1}[t]ᵀ``. SLTT-K backpropagates at
K of the T steps only, drawn from an explicit key.
"""

import dataclasses
import functools
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ottt_jax import config as config_lib
from ottt_jax import layers, rules
from ottt_jax.losses import instantaneous_loss
from ottt_jax.mode import BPTT, OTTT, SLTT, Mode
from ottt_jax.models import make_step
from ottt_jax.models import registry as model_registry
from ottt_jax.neuron import LIF, LIFState
from ottt_jax.online import Step, bptt_grad, sample_time_steps, sltt_k_grad, step_loss
from ottt_jax.surrogate import Sigmoid
from ottt_jax.trace import update_trace
from ottt_jax.training.build import build_rule

T, B, HW, CI, CO, K = 3, 2, 5, 2, 3, 4
LAM, VTH, BETA, ALPHA, OUT_SCALE = 0.5, 1.0, 0.05, 4.0, 2.0
SIG = Sigmoid(ALPHA)
LOSS = functools.partial(instantaneous_loss, beta=BETA, num_steps=T)
XS = (jax.random.uniform(jax.random.PRNGKey(7), (T, B, HW, HW, CI)) < 0.5).astype(jnp.float32)
Y = jnp.array([1, 3])


@dataclasses.dataclass(frozen=True)
class ZeroTraceLIF:
    """A LIF neuron (membrane leak λ) whose declared trace decay is 0: its trace is ``s[t]``."""

    lif: LIF
    decay: float = 0.0

    @property
    def mode(self) -> Mode:
        return self.lif.mode

    def with_mode(self, mode: Mode) -> "ZeroTraceLIF":
        return ZeroTraceLIF(self.lif.with_mode(mode))

    def init_state(self, shape, dtype=jnp.float32) -> LIFState:
        return self.lif.init_state(shape, dtype)

    def __call__(self, state: LIFState, x):
        s, st = self.lif(state, x)
        trace = None if st.trace is None else update_trace(st.trace, s, self.decay)
        return s, st._replace(trace=trace)


class ConvDenseSNN(nn.Module):
    """Input spikes → conv → neuron → dense → neuron (spiking readout ``2·s``), one step a call.

    Both synaptic layers are fed by spikes, so both take the mode's weight-gradient rule.
    """

    neuron: Any
    mode: Mode = SLTT

    @nn.compact
    def __call__(self, state, x, *, return_stats=False):
        n = self.neuron.with_mode(self.mode)
        a_in = None if state["a_in"] is None else update_trace(state["a_in"], x, n.decay)
        h1 = layers.Conv(CO, weight_standardization=False, mode=self.mode)(x, a_in)
        s1, n1 = n(state["n1"], h1)
        flat = lambda z: None if z is None else z.reshape(z.shape[0], -1)
        s2, n2 = n(state["n2"], layers.Linear(K, mode=self.mode)(flat(s1), flat(n1.trace)))
        return OUT_SCALE * s2, {"a_in": a_in, "n1": n1, "n2": n2}

    def init_state(self, batch=B):
        n = self.neuron.with_mode(self.mode)
        a_in = jnp.zeros((batch, HW, HW, CI)) if self.mode.keeps_trace else None
        return {
            "a_in": a_in,
            "n1": n.init_state((batch, HW, HW, CO)),
            "n2": n.init_state((batch, K)),
        }


def _net(mode=SLTT, neuron=None):
    """Return ``(step, params, state0)`` of :class:`ConvDenseSNN` with parameters that fire."""
    model = ConvDenseSNN(neuron or LIF(decay=LAM, v_th=VTH, surrogate=SIG), mode)
    ks = jax.random.split(jax.random.PRNGKey(0), 2)
    params = {
        "Conv_0": {
            "kernel": jax.random.normal(ks[0], (3, 3, CI, CO)) * 0.6,
            "bias": jnp.full((CO,), 0.3),
        },
        "Linear_0": {
            "kernel": jax.random.normal(ks[1], (HW * HW * CO, K)) * 0.4,
            "bias": jnp.array([0.4, 0.9, 0.5, 0.8]),
        },
    }
    want = jax.eval_shape(lambda: model.init(ks[0], model.init_state(), XS[0])["params"])
    chex.assert_trees_all_equal_shapes_and_dtypes(params, want)
    return make_step(model), params, model.init_state()


def _patches(x):
    """``[B, H, W, 9·C]`` zero-padded 3×3 patches in (kh, kw, c) order (an HWIO kernel's rows)."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = [xp[:, i : i + HW, j : j + HW, :] for i in range(3) for j in range(3)]
    return np.stack(cols, axis=3).reshape(x.shape[0], HW, HW, -1)


def _np_loss(out, y, num_steps, beta=BETA):
    """``(L[t], ∂L[t]/∂out)`` of :func:`instantaneous_loss` in float64 numpy."""
    onehot = np.eye(out.shape[-1])[np.asarray(y)]
    z = out - out.max(-1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    ce = -np.log(prob[np.arange(len(out)), y]).mean()
    loss = ((1 - beta) * ce + beta * ((out - onehot) ** 2).mean()) / num_steps
    grad = (1 - beta) * (prob - onehot) / len(out) + beta * 2 * (out - onehot) / out.size
    return loss, grad / num_steps


def _dsig(z):
    """The sigmoid surrogate's derivative ``α·σ(αz)(1 − σ(αz))``."""
    sig = 1 / (1 + np.exp(-ALPHA * z))
    return ALPHA * sig * (1 - sig)


def _hand_sltt(params, xs, y):
    """SLTT in float64 numpy: per step, spatial backprop only; ``∇W += δ_l[t] s_{l−1}[t]ᵀ``.

    Returns ``(loss, grads, outputs [T, B, K], spikes [(s1, s2) per step])``.
    """
    wc = np.asarray(params["Conv_0"]["kernel"], np.float64).reshape(-1, CO)
    bc = np.asarray(params["Conv_0"]["bias"], np.float64)
    wd = np.asarray(params["Linear_0"]["kernel"], np.float64)
    bd = np.asarray(params["Linear_0"]["bias"], np.float64)
    xs = np.asarray(xs, np.float64)
    v1, v2 = np.zeros((B, HW, HW, CO)), np.zeros((B, K))
    g = {"wc": 0.0, "bc": 0.0, "wd": 0.0, "bd": 0.0}
    loss, outs, spikes = 0.0, [], []
    for t in range(T):
        pat = _patches(xs[t])
        u1 = LAM * v1 + pat @ wc + bc  # Eq. (1) with the incoming membrane a constant
        s1 = (u1 >= VTH).astype(float)
        v1 = u1 - VTH * s1
        f1 = s1.reshape(B, -1)
        u2 = LAM * v2 + f1 @ wd + bd
        s2 = (u2 >= VTH).astype(float)
        v2 = u2 - VTH * s2
        out = OUT_SCALE * s2
        outs.append(out)
        spikes.append((s1, s2))
        loss_t, g_out = _np_loss(out, y, T)
        loss += loss_t
        d2 = OUT_SCALE * g_out * _dsig(u2 - VTH)  # δ_2[t] = ∂L[t]/∂u_2[t]
        d1 = (d2 @ wd.T).reshape(u1.shape) * _dsig(u1 - VTH)  # δ_1[t], spatial path only
        g["wd"] = g["wd"] + f1.T @ d2  # at the instantaneous input s_1[t]
        g["bd"] = g["bd"] + d2.sum(0)
        g["wc"] = g["wc"] + pat.reshape(-1, pat.shape[-1]).T @ d1.reshape(-1, CO)  # at x[t]
        g["bc"] = g["bc"] + d1.sum((0, 1, 2))
    grads = {
        "Conv_0": {"kernel": g["wc"].reshape(3, 3, CI, CO), "bias": g["bc"]},
        "Linear_0": {"kernel": g["wd"], "bias": g["bd"]},
    }
    return loss, grads, np.stack(outs), spikes


def _close(got, want, rtol=1e-4, atol=1e-6):
    for path, g in jax.tree_util.tree_leaves_with_path(got):
        w = functools.reduce(lambda d, k: d[k.key], path, want)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


# ---------------------------------------------------------------------------------------------
# SLTT
# ---------------------------------------------------------------------------------------------


def test_rules_are_registered_with_the_sltt_mode():
    for name in ("sltt", "sltt_k"):
        rule = rules.get_rule(name)
        assert rule.mode == SLTT and not rule.mode.keeps_trace
        assert rule.updates_per_batch(6) == 1
    step, params, st = _net(OTTT)
    with pytest.raises(ValueError, match=r"rule 'sltt' needs a model built with mode=.*instant"):
        rules.get_rule("sltt").grad(step, LOSS, params, st, XS, Y)


def test_sltt_equals_float64_hand_derivation():
    step, params, st = _net()
    assert st["n1"].trace is None and st["a_in"] is None  # SLTT carries no trace
    res = jax.jit(lambda p: rules.get_rule("sltt").grad(step, LOSS, p, st, XS, Y))(params)
    loss, grads, outs, spikes = _hand_sltt(params, XS, Y)
    for layer in range(2):  # the neurons fire, and not all of them
        rates = [s[layer].mean() for s in spikes]
        assert 0.1 < min(rates) and max(rates) < 0.9, (layer, rates)
    np.testing.assert_allclose(res.outputs, outs, atol=1e-6)
    np.testing.assert_allclose(res.loss, loss, rtol=1e-5)
    chex.assert_trees_all_equal_structs(res.grads, params)
    for leaf in jax.tree.leaves(grads):
        assert np.abs(leaf).max() > 1e-3
    _close(res.grads, grads)
    assert res.state["n2"].trace is None


def test_sltt_equals_ottt_a_when_every_trace_is_the_current_spikes():
    """OTTT_A takes ∇W at â[t] = λ_trace·â[t−1] + s[t] and SLTT at s[t]: equal iff â[t] = s[t].

    That holds exactly for a trace decay of 0 (the membrane still leaks with λ = 0.5, so the net
    has real dynamics over T = 3) and for T = 1 (â[0] = s[0]); with λ = 0.5 over T = 3 the two
    rules differ.
    """
    sltt, ottt = rules.get_rule("sltt"), rules.get_rule("ottt_a")
    zero = ZeroTraceLIF(LIF(decay=LAM, v_th=VTH, surrogate=SIG))
    lif = LIF(decay=LAM, v_th=VTH, surrogate=SIG)

    def grads_of(rule, neuron, xs):
        step, params, st = _net(rule.mode, neuron)
        loss = functools.partial(instantaneous_loss, beta=BETA, num_steps=len(xs))
        return jax.jit(lambda p: rule.grad(step, loss, p, st, xs, Y).grads)(params)

    grads = {
        (type(neuron).__name__, len(xs)): [grads_of(r, neuron, xs) for r in (sltt, ottt)]
        for neuron, xs in [(zero, XS), (lif, XS[:1]), (lif, XS)]
    }
    for key in [("ZeroTraceLIF", T), ("LIF", 1)]:
        a, b = grads[key]
        assert float(jnp.abs(a["Linear_0"]["kernel"]).max()) > 1e-3, key
        chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-7, custom_message=str(key))
    a, b = grads["LIF", T]
    for layer in ("Conv_0", "Linear_0"):
        assert not np.allclose(a[layer]["kernel"], b[layer]["kernel"], rtol=1e-2), layer


def test_spiking_readout_sltt_is_bptt_with_the_membrane_temporal_path_cut():
    """One spiking layer on given input spikes: ``u[t] = λ v[t−1] + W s_in[t] + b``, ``s[t] =
    H(u[t] − V_th)``, ``v[t] = u[t] − V_th·sg(s[t])``, output ``c·s[t]``, loss ``Σ_t L[t]``.

    Write ``g[t] = ∂L[t]/∂u[t] = c·∂L[t]/∂out[t] · f'(u[t] − V_th)`` (the local term). BPTT's total
    ``∂L/∂u[t] = g[t] + λ ∂L/∂u[t+1]`` (``∂v[t]/∂u[t] = 1`` with the reset detached), so

        ∇W_BPTT = Σ_t (Σ_{t'≥t} λ^{t'−t} g[t']) s_in[t]ᵀ = Σ_t g[t] â_in[t]ᵀ,
        â_in[t] = Σ_{τ≤t} λ^{t−τ} s_in[τ].

    Cutting the temporal path (``∂u[t+1]/∂v[t] := 0``) leaves ``∂L/∂u[t] = g[t]`` and
    ``∇W = Σ_t g[t] s_in[t]ᵀ``, which is SLTT's rule: SLTT equals BPTT with the membrane's
    temporal path cut, and differs from full BPTT by exactly ``λ Σ_t g[t] â_in[t−1]ᵀ``.
    """
    nt, d = 6, 5
    s_in = (jax.random.uniform(jax.random.PRNGKey(3), (nt, B, d)) < 0.4).astype(jnp.float32)
    w = jax.random.normal(jax.random.PRNGKey(4), (d, K)) * 1.2
    loss_fn = functools.partial(instantaneous_loss, beta=0.3, num_steps=nt)
    c = 3.0

    def make(mode, cut=False):
        lif = LIF(decay=LAM, v_th=VTH, surrogate=SIG, mode=mode)

        def step(w, st, s_t):
            if cut:  # BPTT through the scan, with the membrane's temporal edge removed by hand
                st = st._replace(v=jax.lax.stop_gradient(st.v))
            s, n = lif(st, s_t @ w + 0.2)
            return c * s, n

        return Step(step, mode), lif.init_state((B, K))

    step_s, st_s = make(SLTT)
    res = rules.get_rule("sltt").grad(step_s, loss_fn, w, st_s, s_in, Y)
    step_cut, st_b = make(BPTT, cut=True)
    g_cut = bptt_grad(step_cut, loss_fn, w, st_b, s_in, Y).grads
    step_b, _ = make(BPTT)
    g_bptt = rules.get_rule("bptt").grad(step_b, loss_fn, w, st_b, s_in, Y).grads
    np.testing.assert_allclose(res.grads, g_cut, rtol=1e-5, atol=1e-7)
    # the temporal term, from the forward pass in float64: u[t], g[t], â_in[t−1]
    v, a_prev, temporal = np.zeros((B, K)), np.zeros((B, d)), np.zeros((d, K))
    for t in range(nt):
        u = LAM * v + np.asarray(s_in[t], np.float64) @ np.asarray(w, np.float64) + 0.2
        s = (u >= VTH).astype(float)
        np.testing.assert_allclose(res.outputs[t], c * s)
        g = c * _np_loss(c * s, Y, nt, beta=0.3)[1] * _dsig(u - VTH)
        temporal += LAM * a_prev.T @ g
        v, a_prev = u - VTH * s, LAM * a_prev + np.asarray(s_in[t], np.float64)
    assert np.abs(temporal).max() > 1e-3
    np.testing.assert_allclose(g_bptt - res.grads, temporal, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# SLTT-K
# ---------------------------------------------------------------------------------------------


def _sltt_k(k):
    return rules.get_rule("sltt_k").with_options(k=k)


def test_sltt_k_at_k_equal_t_is_sltt():
    step, params, st = _net()
    full = rules.get_rule("sltt").grad(step, LOSS, params, st, XS, Y)
    res = _sltt_k(T).grad(step, LOSS, params, st, XS, Y, key=jax.random.PRNGKey(5))
    chex.assert_trees_all_close(res.grads, full.grads, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(res.loss, full.loss, rtol=1e-6)
    np.testing.assert_array_equal(res.outputs, full.outputs)


def test_sltt_k_gradient_is_the_sum_over_exactly_the_sampled_steps():
    """A Python loop over the T steps, adding ∇L[t] only at the steps the same draw samples."""
    step, params, st0 = _net()
    vg = jax.jit(jax.value_and_grad(step_loss(step, LOSS, Y), has_aux=True))
    per_step, st = [], st0
    for t in range(T):
        (loss, (_, st)), g = vg(params, st, XS[t])
        per_step.append((loss, g))
    total_loss = sum(float(loss) for loss, _ in per_step)
    fn = jax.jit(lambda p, key, k: sltt_k_grad(step, LOSS, p, st0, XS, Y, key=key, k=k),
                 static_argnums=2)  # fmt: skip
    seen = set()
    for k, seed in [(1, 0), (1, 1), (2, 2)]:
        key = jax.random.PRNGKey(seed)
        mask = np.asarray(sample_time_steps(key, T, k))
        assert mask.sum() == k
        seen.add(tuple(mask))
        want = jax.tree.map(lambda *gs: sum(gs), *[g for (_, g), m in zip(per_step, mask) if m])
        res = fn(params, key, k)
        chex.assert_trees_all_close(res.grads, want, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(res.loss, total_loss, rtol=1e-5)  # the loss of all T steps
        full = sum(g["Conv_0"]["kernel"] for _, g in per_step)
        assert not np.allclose(res.grads["Conv_0"]["kernel"], full, rtol=1e-2)  # k < T: fewer
    assert len(seen) == 3  # three different draws were checked


def test_sampled_steps_are_uniform_without_replacement_and_reproducible():
    """The authors' draw, ``torch.randperm(T)[:K]`` per iteration: all K-subsets equally likely."""
    nt, k, n = 6, 2, 600
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    masks = np.asarray(jax.vmap(lambda key: sample_time_steps(key, nt, k))(keys))
    assert masks.shape == (n, nt) and masks.dtype == np.bool_
    assert (masks.sum(1) == k).all()  # K distinct steps, never a repeat
    np.testing.assert_allclose(masks.mean(0), k / nt, atol=0.06)  # each step: P = K/T
    _, counts = np.unique(masks, axis=0, return_counts=True)
    assert len(counts) == 15  # all C(6, 2) subsets occur, evenly
    np.testing.assert_allclose(counts / n, 1 / 15, atol=0.035)
    np.testing.assert_array_equal(sample_time_steps(keys[3], nt, k), masks[3])  # reproducible


def test_sltt_k_really_skips_the_backward_of_unsampled_steps():
    """Count, at run time, how often a parameter's forward and backward ran inside the scan."""
    calls = {"fwd": 0, "bwd": 0}

    def bump(name):
        return lambda _: calls.__setitem__(name, calls[name] + 1)

    @jax.custom_vjp
    def probe(x):
        jax.debug.callback(bump("fwd"), x)
        return x

    def probe_fwd(x):
        return probe(x), None

    def probe_bwd(_, g):
        jax.debug.callback(bump("bwd"), g)
        return (g,)

    probe.defvjp(probe_fwd, probe_bwd)
    step, params, st = _net()

    def counted(p, st, x):
        bias = probe(p["Linear_0"]["bias"])
        return step({**p, "Linear_0": {**p["Linear_0"], "bias": bias}}, st, x)

    def grads(p, key, k):
        return _sltt_k(k).grad(counted, LOSS, p, st, XS, Y, key=key).grads

    fn = jax.jit(grads, static_argnums=2)
    for k, seed in [(1, 0), (1, 1), (2, 0)]:
        calls.update(fwd=0, bwd=0)
        jax.block_until_ready(fn(params, jax.random.PRNGKey(seed), k))
        jax.effects_barrier()
        assert calls == {"fwd": T, "bwd": k}, (k, calls)


@pytest.mark.parametrize(
    "k, match",
    [
        (0, r"k must be an int in \[1, T\] = \[1, 3\], got 0"),
        (4, r"k must be an int in \[1, T\] = \[1, 3\], got 4"),
        (True, "k must be an int"),
        (1.0, "k must be an int"),
    ],
)
def test_sltt_k_refuses_a_bad_k(k, match):
    step, params, st = _net()
    with pytest.raises(ValueError, match=match):
        rules.get_rule("sltt_k").with_options(k=k).grad(
            step, LOSS, params, st, XS, Y, key=jax.random.PRNGKey(0)
        )


def test_sltt_k_needs_a_key():
    step, params, st = _net()
    with pytest.raises(ValueError, match=r"sltt_k.*PRNG key"):
        rules.get_rule("sltt_k").grad(step, LOSS, params, st, XS, Y)


# ---------------------------------------------------------------------------------------------
# Memory: the compiled program of one batch (static input, T steps).
# ---------------------------------------------------------------------------------------------


def _temp_bytes(rule, t):
    step, params, st = _net(rule.mode)
    loss_fn = functools.partial(instantaneous_loss, beta=BETA, num_steps=t)
    key = jax.random.PRNGKey(2)
    f = lambda p: rule.grad(step, loss_fn, p, st, XS[0], Y, num_steps=t, key=key).grads
    return jax.jit(f).lower(params).compile().memory_analysis().temp_size_in_bytes


def test_memory_is_flat_in_t_for_sltt_and_sltt_k_and_below_ottt_a():
    ts = (2, 8)
    got = {n: [_temp_bytes(rules.get_rule(n), t) for t in ts] for n in ("sltt", "sltt_k", "bptt")}
    ottt = _temp_bytes(rules.get_rule("ottt_a"), ts[-1])
    assert got["bptt"][1] > 1.5 * got["bptt"][0], got  # the measure sees what grows with T
    assert got["sltt"][0] == got["sltt"][1] and got["sltt_k"][0] == got["sltt_k"][1], got
    assert got["sltt"][1] < 0.9 * ottt, (got, ottt)  # no trace: below OTTT_A


# ---------------------------------------------------------------------------------------------
# The built-in models, the config key rule.k and the trainer's rule.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["vgg", "vggf"])
def test_builtin_vgg_models_run_sltt_with_no_trace_in_their_state(arch):
    model = model_registry.build_model(
        arch, num_classes=3, neuron=LIF(), mode=SLTT, dtype=jnp.float32,
        options={"vgg_cfg": (4, "M", 8)},
    )  # fmt: skip
    st = model.init_state(2, (8, 8, 1), train=False)
    assert all(n.trace is None for n in st.neurons.values())
    x, y = 2 * jax.random.uniform(jax.random.PRNGKey(1), (2, 8, 8, 1)), jnp.array([0, 2])
    params = model.init(jax.random.PRNGKey(0), st, x)["params"]
    loss = functools.partial(instantaneous_loss, num_steps=2)
    res = rules.get_rule("sltt").grad(make_step(model), loss, params, st, x, y, num_steps=2)
    chex.assert_trees_all_equal_structs(res.state, st)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(res.grads)) > 0


def test_config_key_rule_k_is_checked_against_t_and_reaches_the_rule():
    cfg = config_lib.get_config("digits", ["method=sltt_k", "rule.k=3", "num_steps=4"])
    assert build_rule(cfg).options.k == 3 and build_rule(cfg).name == "sltt_k"
    assert config_lib.from_dict(config_lib.to_dict(cfg)) == cfg
    old = config_lib.to_dict(config_lib.get_config("digits", ["method=sltt_k"]))
    del old["rule"]  # a config saved before rule.* existed still loads
    assert config_lib.from_dict(old).rule.k == 2
    old = config_lib.to_dict(config_lib.get_config("digits"))
    old["rule"] = {"k": 2}  # one saved by 0.1 (rule.k for every method) still loads
    assert config_lib.from_dict(old) == config_lib.get_config("digits")
    with pytest.raises(ValueError, match=r"rule\.k must be an int in \[1, T\] = \[1, 4\], got 5"):
        config_lib.get_config("digits", ["method=sltt_k", "rule.k=5", "num_steps=4"])
    with pytest.raises(ValueError, match=r"rule\.k is not an option of method 'sltt'"):
        config_lib.get_config("digits", ["method=sltt", "rule.k=1"])
    assert build_rule(config_lib.get_config("digits", ["method=sltt"])).mode == SLTT


@pytest.mark.slow
def test_sltt_k_trains_the_same_on_four_devices_and_resumes_exactly(tmp_path):
    """The trainer's per-iteration rule key: 4 devices = 1 device; a resumed run = a full one."""
    from ottt_jax import training

    overrides = ["method=sltt_k", "max_train_steps=4", "checkpoint_every_steps=2"]
    cfg = config_lib.get_config("digits", [*overrides, "progress=false"])
    one = training.train(cfg, workdir=str(tmp_path / "one"), devices=jax.devices()[:1])
    four = training.train(cfg, workdir=str(tmp_path / "four"))
    chex.assert_trees_all_close(
        jax.device_get(one["params"]), jax.device_get(four["params"]), rtol=1e-5, atol=1e-6
    )
    stop2 = config_lib.apply_overrides(cfg, ["max_train_steps=2"])
    training.train(stop2, workdir=str(tmp_path / "r"), devices=jax.devices()[:1])
    resumed = training.train(cfg, workdir=str(tmp_path / "r"), devices=jax.devices()[:1])
    chex.assert_trees_all_equal(jax.device_get(resumed["params"]), jax.device_get(one["params"]))
