"""Proof tests of the spiking VGG / VGG-F: parameter layout and hand-derived OTTT gradients.

The small network (8, 'M', 16, 16), 4 classes, 8×8×3 input, batch 2, T = 4 is re-implemented here
in plain jnp (its own sWS, conv, pool, LIF with its own surrogate). The online (OTTT) gradient of
each step is derived by hand from that reference: per-layer output cotangents ``g_u`` are pushed
back layer by layer, and each parameter gradient is the VJP of the *plain* layer at its input
trace (or at the image for the first conv). These are compared with ``jax.grad`` through the
model (which uses the custom-VJP spike/trace ops) and with ``ottt_grad``.
"""

import dataclasses
import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ottt_jax import LIF, bptt_grad, forward, instantaneous_loss, ottt_grad
from ottt_jax.mode import BPTT, OTTT, Mode
from ottt_jax.models import (
    VGG11_CFG,
    SpikingVGG,
    SpikingVGGF,
    VGGFeedback,
    VGGState,
    make_step,
    vgg11,
    vgg11f,
)
from ottt_jax.surrogate import Sigmoid


def rkey(seed):
    """A PRNG key of the 'rbg' implementation: threefry kernels take ~2 s each to compile here."""
    return jax.random.key(seed, impl="rbg")


CFG = (8, "M", 16, 16)
K, B, HW, T = 4, 2, 8, 4
LAM, VTH, ALPHA, SC, BETA = 0.5, 1.0, 4.0, 2.74, 0.05


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def conv_names(feedback):
    return (
        ("conv1", "features_3", "features_6")
        if feedback
        else ("features_0", "features_4", "features_7")
    )


def small(**kw):
    return SpikingVGG(cfg=CFG, num_classes=K, **kw)


def image(key=1):
    return jax.random.normal(rkey(key), (B, HW, HW, 3)) * 1.5


LABELS = jnp.array([1, 3])


def loss_fn(out, y):
    return instantaneous_loss(out, y, beta=BETA, num_steps=T)


def make_params(model, key=0, fb_scale=1.0):
    """Init, then perturb so that every layer fires and every parameter matters (cached)."""
    return _make_params(model.feedback, key, fb_scale)


@functools.lru_cache
def _make_params(feedback, key, fb_scale):
    model = small(feedback=feedback)
    st = model.init_state(B, (HW, HW, 3), train=False)

    @jax.jit
    def build():
        p = model.init(rkey(key), st, jnp.zeros((B, HW, HW, 3)))["params"]
        ks = iter(jax.random.split(rkey(100 + key), 32))
        out = {}
        for n, leaf in p.items():
            leaf = dict(leaf)
            if n == "classifier_0":
                leaf["kernel"] = 0.3 * jax.random.normal(next(ks), leaf["kernel"].shape)
                leaf["bias"] = 0.1 * jax.random.normal(next(ks), leaf["bias"].shape)
            elif n == "fb_conv":
                fan_in = np.prod(leaf["kernel"].shape[:3])
                w = jax.random.normal(next(ks), leaf["kernel"].shape) / np.sqrt(fan_in)
                leaf["kernel"] = fb_scale * w
                leaf["bias"] = fb_scale * 0.1 * jax.random.normal(next(ks), leaf["bias"].shape)
            else:
                leaf["gain"] = 1 + 0.2 * jax.random.normal(next(ks), leaf["gain"].shape)
                leaf["bias"] = 0.4 + 0.2 * jax.random.normal(next(ks), leaf["bias"].shape)
            out[n] = leaf
        return out

    return build()


# --- the independent reference network ---------------------------------------------------------


@jax.custom_jvp
def ref_spike(x):
    return (x >= 0).astype(x.dtype)


def ref_surrogate(x):
    sg = 1.0 / (1.0 + jnp.exp(-ALPHA * x))
    return ALPHA * sg * (1.0 - sg)


@ref_spike.defjvp
def _ref_spike_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return ref_spike(x), ref_surrogate(x) * dx


def ref_sws(k, g):
    fan_in = k.shape[0] * k.shape[1] * k.shape[2]
    mean = k.sum((0, 1, 2)) / fan_in
    var = ((k - mean) ** 2).sum((0, 1, 2)) / (fan_in - 1)
    return g * (k - mean) / jnp.sqrt(var * fan_in + 1e-4)


def ref_conv(x, w):
    return lax.conv_general_dilated(
        x, w, (1, 1), ((1, 1), (1, 1)), None, None, ("NHWC", "HWIO", "NHWC")
    )


def ref_pool(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean((2, 4))


def ref_up(x):
    return jnp.repeat(jnp.repeat(x, 2, 1), 2, 2)


def ref_step(p, st, x, *, feedback, online=True):
    """One step of the small network from the model's VGGState; returns (logits, state, cache)."""
    n1, n2, n3 = conv_names(feedback)
    lifs = ("lif01", "lif02", "lif03")
    masks = st.neuron_mask or {}
    ws = [ref_sws(p[n]["kernel"], p[n]["gain"]) for n in (n1, n2, n3)]
    bs = [p[n]["bias"] for n in (n1, n2, n3)]
    u = ref_conv(x, ws[0]) + bs[0]
    gate = fb_up = None
    if feedback:
        gate = (st.step > 0).astype(jnp.float32)
        fb_s, fb_up = ref_up(st.feedback.spikes), ref_up(st.feedback.trace)
        u = u + gate * (ref_conv(fb_s, p["fb_conv"]["kernel"]) + p["fb_conv"]["bias"])
    # S[i]: layer i's scaled spikes (before any pool); A[i]: the trace fed to the next layer
    cache = {"vpre": [], "m": [], "S": [], "A": [], "W": ws, "gate": gate, "fb_up": fb_up}
    new_neurons = {}
    s_in = a_in = None
    for i, name in enumerate(lifs):
        if i > 0:
            u = ref_conv(s_in, ws[i]) + bs[i]
        v_prev = st.neurons[name].v
        v = LAM * (lax.stop_gradient(v_prev) if online else v_prev) + u
        s = ref_spike(v - VTH)
        v_next = v - VTH * lax.stop_gradient(s)
        a = lax.stop_gradient(LAM * st.neurons[name].trace + s)
        new_neurons[name] = type(st.neurons[name])(v=v_next, trace=a)
        m = masks.get(name, jnp.ones_like(s))
        s_in, a_in = SC * m * s, SC * m * a
        cache["vpre"].append(v)
        cache["m"].append(m)
        cache["S"].append(s_in)
        if i == 0:  # the 'M' after the first conv: spikes and trace alike
            s_in, a_in = ref_pool(s_in), ref_pool(a_in)
        cache["A"].append(a_in)
    fcm = 1.0 if st.fc_mask is None else st.fc_mask
    z, za = s_in.mean((1, 2)) * fcm, a_in.mean((1, 2)) * fcm
    logits = z @ p["classifier_0"]["kernel"] + p["classifier_0"]["bias"]
    cache.update(z=z, za=za, fcm=fcm)
    new = st._replace(neurons=new_neurons)
    if feedback:
        new = new._replace(feedback=VGGFeedback(s_in, a_in), step=st.step + 1)
    return logits, new, cache


def hand_logit_grad(logits, y):
    """∂L_t/∂logits of the instantaneous loss, by hand."""
    b, k = logits.shape
    onehot = jax.nn.one_hot(y, k)
    e = jnp.exp(logits - logits.max(-1, keepdims=True))
    prob = e / e.sum(-1, keepdims=True)
    return ((1 - BETA) * (prob - onehot) / b + BETA * 2 * (logits - onehot) / (b * k)) / T


def vjp_params(k, g, x, cot):
    """VJP of the plain layer (k, g) ↦ conv(x, sws(k, g)) at the output cotangent."""
    _, f = jax.vjp(lambda k_, g_: ref_conv(x, ref_sws(k_, g_)), k, g)
    return f(cot)


def vjp_input(w, x, cot):
    _, f = jax.vjp(lambda x_: ref_conv(x_, w), x)
    return f(cot)[0]


def hand_grads(p, st, x, y, *, feedback):
    """Hand-derived OTTT gradient of one step's loss (plus the step's forward)."""
    n1, n2, n3 = conv_names(feedback)
    logits, new, c = ref_step(p, st, x, feedback=feedback)
    gl = hand_logit_grad(logits, y)
    wc = p["classifier_0"]["kernel"]
    grads = {"classifier_0": {"kernel": c["za"].T @ gl, "bias": gl.sum(0)}}  # trace rule
    gz = (gl @ wc.T) * c["fcm"]
    h3, w3 = c["S"][2].shape[1:3]
    g_s3 = jnp.broadcast_to(gz[:, None, None, :] / (h3 * w3), c["S"][2].shape)
    gu = [None, None, None]
    gu[2] = SC * c["m"][2] * g_s3 * ref_surrogate(c["vpre"][2] - VTH)
    g_s2 = vjp_input(c["W"][2], c["S"][1], gu[2])  # into the layer-2 spikes
    gu[1] = SC * c["m"][1] * g_s2 * ref_surrogate(c["vpre"][1] - VTH)
    g_p1 = vjp_input(c["W"][1], ref_pool(c["S"][0]), gu[1])
    _, pool_vjp = jax.vjp(ref_pool, c["S"][0])
    g_s1 = pool_vjp(g_p1)[0]
    gu[0] = SC * c["m"][0] * g_s1 * ref_surrogate(c["vpre"][0] - VTH)
    # (a) middle convs: VJP of conv(sws(k, g), scaled pooled trace); (b) first conv: at the image
    inputs = [x, c["A"][0], c["A"][1]]
    for n, inp, g in zip((n1, n2, n3), inputs, gu):
        dk, dg = vjp_params(p[n]["kernel"], p[n]["gain"], inp, g)
        grads[n] = {"kernel": dk, "gain": dg, "bias": g.sum((0, 1, 2))}  # (c) bias: Σ g_u
    if feedback:
        _, f = jax.vjp(lambda k_: ref_conv(c["fb_up"], k_), p["fb_conv"]["kernel"])
        grads["fb_conv"] = {
            "kernel": c["gate"] * f(gu[0])[0],
            "bias": c["gate"] * gu[0].sum((0, 1, 2)),
        }
    aux = {"gu": gu, "A": c["A"], "S": c["S"], "x": x}
    return logits, new, grads, aux


# Jitted runners, cached per (hashable) model so equal models compile once per test session.


@functools.lru_cache
def model_step_grad(model):
    def f(p, st, x, y):
        out, st2 = model.apply({"params": p}, st, x)
        return loss_fn(out, y), (out, st2)

    return jax.jit(jax.grad(f, has_aux=True))


@functools.lru_cache
def run_forward(model, num_steps=T, stats=False):
    step = make_step(model, return_stats=stats)
    return jax.jit(lambda p, s, x: forward(step, p, s, x, num_steps=num_steps))


@functools.lru_cache
def run_ottt(model, num_steps=T):
    step = make_step(model)
    return jax.jit(lambda p, s, x, y: ottt_grad(step, loss_fn, p, s, x, y, num_steps=num_steps))


@functools.lru_cache
def run_bptt(model, num_steps=T):
    step = make_step(model)
    return jax.jit(lambda p, s, x, y: bptt_grad(step, loss_fn, p, s, x, y, num_steps=num_steps))


# ---------------------------------------------------------------------------------------------
# 1. Parameter counts and names
# ---------------------------------------------------------------------------------------------


def _official_to_flax(name, shape):
    """The mechanical naming rule: drop '.op', join numeric segments, weight->kernel."""
    segs = [s for s in name.split(".") if s != "op"]
    leaf = {"weight": "kernel", "bias": "bias", "gain": "gain"}[segs[-1]]
    path = []
    for s in segs[:-1]:
        if s.isdigit():
            path[-1] = f"{path[-1]}_{s}"
        else:
            path.append(s)
    if leaf == "kernel":
        shape = (*shape[2:], shape[1], shape[0]) if len(shape) == 4 else (shape[1], shape[0])
    elif leaf == "gain":
        shape = (shape[0],)
    return (*path, leaf), tuple(shape)


def _abstract_params(model, input_shape):
    st = model.init_state(1, input_shape, train=False)
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    return jax.eval_shape(lambda s, x_: model.init(rkey(0), s, x_), st, x)["params"]


OFFICIAL = [
    (
        "online_spiking_vgg11_ws(num_classes=10, c_in=3, fc_hw=1)",
        lambda: vgg11(10),
        (32, 32, 3),
        9_228_362,
    ),
    (
        "online_spiking_vgg11_ws(num_classes=100, c_in=3, fc_hw=1)",
        lambda: vgg11(100),
        (32, 32, 3),
        9_274_532,
    ),
    (
        "online_spiking_vgg11f_ws(num_classes=100, c_in=3, fc_hw=1)",
        lambda: vgg11f(100),
        (32, 32, 3),
        9_569_508,
    ),
    (
        "online_spiking_vgg11_ws(num_classes=10, c_in=2, fc_hw=1) [CIFAR10-DVS]",
        lambda: vgg11(10, neuron_dropout=0.1),
        (48, 48, 2),
        9_227_786,
    ),
]


@pytest.mark.parametrize(
    "key,build,input_shape,count", OFFICIAL, ids=["c10", "c100", "vggf", "dvs"]
)
def test_param_count_and_official_names(key, build, input_shape, count, official_reference):
    params = _abstract_params(build(), input_shape)
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params)) == count
    if official_reference is None:
        pytest.skip("shared/reference/official_param_names.json not found (the count was checked)")
    ref = official_reference[key]
    assert ref["total_params"] == count
    flat = {
        tuple(k.key for k in path): tuple(v.shape)
        for path, v in jax.tree_util.tree_flatten_with_path(params)[0]
    }
    want = dict(_official_to_flax(n, s) for n, s in ref["state_dict"])
    assert flat == want


def test_constructors_and_bptt_same_tree():
    m = vgg11f(100)
    assert m.feedback and m.cfg == VGG11_CFG and m.num_classes == 100
    assert SpikingVGGF(num_classes=100).feedback
    assert SpikingVGGF(num_classes=100) == m
    assert vgg11().num_classes == 10 and not vgg11().feedback
    a = _abstract_params(vgg11(10), (32, 32, 3))
    b = _abstract_params(vgg11(10, mode=BPTT), (32, 32, 3))
    chex.assert_trees_all_equal_shapes_and_dtypes(a, b)
    # 6. small model: the BPTT build has the same parameter tree
    chex.assert_trees_all_equal_shapes_and_dtypes(
        _abstract_params(small(), (HW, HW, 3)), _abstract_params(small(mode=BPTT), (HW, HW, 3))
    )
    # custom lists: classifier sized from the last conv, in-channels from the input
    p = _abstract_params(SpikingVGG(cfg=[8, "M", 16, 16], num_classes=4), (8, 8, 5))
    assert p["classifier_0"]["kernel"].shape == (16, 4)
    assert p["features_0"]["kernel"].shape == (3, 3, 5, 8)
    assert set(p) == {"features_0", "features_4", "features_7", "classifier_0"}


# ---------------------------------------------------------------------------------------------
# A user-defined neuron (the Neuron protocol, its own state type) inside the built-in VGG
# ---------------------------------------------------------------------------------------------


class UserState(NamedTuple):
    u: jax.Array
    trace: jax.Array


@dataclasses.dataclass(frozen=True)
class UserLIF:
    """The LIF math written from scratch: autodiff through the surrogate, no custom VJP."""

    decay: float
    mode: Mode = BPTT

    def with_mode(self, mode):
        return dataclasses.replace(self, mode=mode)

    def init_state(self, shape, dtype=jnp.float32):
        return UserState(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))

    def __call__(self, state, x):
        u_prev = lax.stop_gradient(state.u) if self.mode.detach_membrane else state.u
        u = self.decay * u_prev + x
        s = Sigmoid(ALPHA)(u - VTH)
        trace = lax.stop_gradient(self.decay * state.trace + s)
        return s, UserState(u - lax.stop_gradient(s) * VTH, trace)


def test_user_neuron_in_vgg_under_ottt_a_matches_lif_with_its_declared_decay():
    params = make_params(small())
    x = image()
    grads = {}
    for name, neuron in (
        ("user", UserLIF(decay=0.25)),
        ("lif", LIF(decay=0.25)),
        ("lif_default_decay", LIF()),
    ):
        model = small(neuron=neuron, mode=OTTT)
        res = run_ottt(model)(params, model.init_state(B, (HW, HW, 3)), x, LABELS)
        grads[name] = res.grads
        if name == "user":
            assert isinstance(res.state.neurons["lif01"], UserState)
            assert res.state.neurons["lif01"].trace.shape == (B, HW, HW, 8)
    chex.assert_trees_all_close(grads["user"], grads["lif"], rtol=2e-5, atol=1e-6)
    assert float(jnp.abs(grads["lif"]["features_4"]["kernel"]).max()) > 1e-3
    # the decay it declares is the one its trace (and so the trace rule) uses
    assert not np.allclose(
        grads["user"]["features_4"]["kernel"], grads["lif_default_decay"]["features_4"]["kernel"]
    )


# ---------------------------------------------------------------------------------------------
# 2./3./4. Hand-derived per-step gradients, OTTT_A, VGG-F, dropout
# ---------------------------------------------------------------------------------------------

VARIANTS = {
    "plain": dict(kw={}, key=None),
    "dropout": dict(kw={"neuron_dropout": 0.3, "fc_dropout": 0.3}, key=5),
    "feedback": dict(kw={"feedback": True}, key=None),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_hand_derived_online_gradients(variant):
    kw, mkey = VARIANTS[variant]["kw"], VARIANTS[variant]["key"]
    fb = kw.get("feedback", False)
    model = small(**kw)
    params = make_params(model)
    x, y = image(), LABELS
    key = None if mkey is None else rkey(mkey)
    st0 = model.init_state(B, (HW, HW, 3), key=key)
    grad_model = model_step_grad(model)
    hand = jax.jit(lambda p, s, x_: hand_grads(p, s, x_, y, feedback=fb))

    st = st0
    total = None
    outs = []
    for t in range(T):
        g_model, (out_m, st_m) = grad_model(params, st, x, y)
        out_r, st_r, g_hand, aux = hand(params, st, x)
        np.testing.assert_allclose(out_m, out_r, rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_close(st_m, st_r, rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_close(g_model, g_hand, rtol=2e-4, atol=1e-6)
        # every layer fires and gets a gradient
        for n in g_hand:
            assert float(jnp.abs(g_hand[n]["bias"]).max()) > 0 or (fb and t == 0 and n == "fb_conv")
        n2 = conv_names(fb)[1]
        if t >= 1:
            # (d) the trace used is the *scaled, pooled* trace: the spike value, or the unscaled
            # trace, would give another kernel gradient
            for alt in (ref_pool(aux["S"][0]), aux["A"][0] / SC):
                dk_alt, _ = vjp_params(params[n2]["kernel"], params[n2]["gain"], alt, aux["gu"][1])
                assert not np.allclose(dk_alt, g_model[n2]["kernel"], rtol=1e-2, atol=1e-6)
        if fb:
            if t == 0:  # no feedback at the first step: exactly zero gradient
                chex.assert_trees_all_equal(
                    g_model["fb_conv"], jax.tree.map(jnp.zeros_like, g_model["fb_conv"])
                )
            else:  # fb bias sees the same cotangent as conv1's bias
                np.testing.assert_allclose(
                    g_model["fb_conv"]["bias"], g_model["conv1"]["bias"], rtol=1e-6
                )
                assert float(jnp.abs(g_model["fb_conv"]["kernel"]).max()) > 0
        if st.neuron_mask is not None:
            chex.assert_trees_all_equal(st_m.neuron_mask, st0.neuron_mask)
            chex.assert_trees_all_equal(st_m.fc_mask, st0.fc_mask)
        total = g_hand if total is None else jax.tree.map(jnp.add, total, g_hand)
        outs.append(out_m)
        st = st_m

    # OTTT_A = the sum of the hand-derived per-step gradients
    res = run_ottt(model)(params, st0, x, y)
    chex.assert_trees_all_close(res.grads, total, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(res.outputs, jnp.stack(outs), rtol=1e-5, atol=1e-6)


def test_classifier_gradient_vs_bptt_and_single_step_equivalence():
    """(e) What holds for the last layer: the classifier sees the same cotangent g_t in OTTT and
    BPTT, so the bias gradients are equal; its kernel gradient is Σ_t z̄_t ⊗ g_t at the *trace*
    in OTTT (the authors' WrapedSNNOp classifier) and Σ_t z_t ⊗ g_t at the spikes in BPTT. For
    T = 1 (trace = spikes, no history) OTTT and BPTT agree on every parameter."""
    model, model_bptt = small(), small(mode=BPTT)
    params = make_params(model)
    x, y = image(), LABELS
    st0 = model.init_state(B, (HW, HW, 3))
    ottt = run_ottt(model)(params, st0, x, y)
    bptt = run_bptt(model_bptt)(params, st0, x, y)
    np.testing.assert_allclose(ottt.outputs, bptt.outputs, rtol=1e-6)  # same forward
    np.testing.assert_allclose(ottt.loss, bptt.loss, rtol=1e-6)

    @jax.jit
    def classifier_grads(p):
        st, dk_spk, dk_tr = st0, 0.0, 0.0
        for _ in range(T):
            logits, st, c = ref_step(p, st, x, feedback=False)
            gl = hand_logit_grad(logits, y)
            dk_spk, dk_tr = dk_spk + c["z"].T @ gl, dk_tr + c["za"].T @ gl
        return dk_spk, dk_tr

    dk_spk, dk_tr = classifier_grads(params)
    np.testing.assert_allclose(bptt.grads["classifier_0"]["kernel"], dk_spk, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(ottt.grads["classifier_0"]["kernel"], dk_tr, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(
        ottt.grads["classifier_0"]["bias"], bptt.grads["classifier_0"]["bias"], rtol=1e-5
    )
    assert not np.allclose(dk_spk, dk_tr, rtol=1e-2)

    # 6. BPTT equals jax.grad through the unrolled reference network (membrane kept)
    def ref_total(p):
        s, tot = st0, 0.0
        for _ in range(T):
            out, s, _ = ref_step(p, s, x, feedback=False, online=False)
            tot = tot + loss_fn(out, y)
        return tot

    ref_bptt = jax.jit(jax.grad(ref_total))(params)
    chex.assert_trees_all_close(bptt.grads, ref_bptt, rtol=2e-4, atol=1e-6)

    # T = 1: OTTT_A == BPTT for every parameter (the first step's online gradient)
    g1, _ = model_step_grad(model)(params, st0, x, y)
    g2 = run_bptt(model_bptt, 1)(params, st0, x, y).grads
    chex.assert_trees_all_close(g1, g2, rtol=1e-5, atol=1e-7)


def _to_plain(p_fb):
    """Map VGG-F params of the small net onto the plain VGG (fb_conv dropped)."""
    return {
        "features_0": p_fb["conv1"],
        "features_4": p_fb["features_3"],
        "features_7": p_fb["features_6"],
        "classifier_0": p_fb["classifier_0"],
    }


def test_vggf_zero_init_is_inert_and_feedback_is_live():
    mf, mp = small(feedback=True), small()
    st_f, st_p = mf.init_state(B, (HW, HW, 3)), mp.init_state(B, (HW, HW, 3))
    x, y = image(), LABELS
    p0 = mf.init(rkey(0), st_f, x)["params"]
    # zero init: fb kernel and bias exactly 0 (authors: weight 0, bias 0)
    assert not np.any(p0["fb_conv"]["kernel"]) and not np.any(p0["fb_conv"]["bias"])
    params = make_params(mf, fb_scale=0.0)  # perturbed elsewhere, feedback zero
    out_f, sf = run_forward(mf)(params, st_f, x)
    out_p, _ = run_forward(mp)(_to_plain(params), st_p, x)
    np.testing.assert_array_equal(out_f, out_p)  # exactly inert
    assert int(sf.step) == T
    assert float(jnp.abs(sf.feedback.trace).max()) > 0
    # gradients at zero init: fb kernel gets a gradient from t >= 1 only (checked per step in the
    # hand-derived test); summed, it is non-zero, and fb bias grad == Σ_{t>=1} conv1 bias grads
    g = model_step_grad(mf)
    st, bias_sum, fb_bias = st_f, 0.0, 0.0
    for t in range(T):
        gt, (_, st) = g(params, st, x, y)
        if t == 0:
            assert not np.any(gt["fb_conv"]["kernel"]) and not np.any(gt["fb_conv"]["bias"])
        else:
            bias_sum = bias_sum + gt["conv1"]["bias"]
        fb_bias = fb_bias + gt["fb_conv"]["bias"]
    np.testing.assert_allclose(fb_bias, bias_sum, rtol=1e-6)
    res = run_ottt(mf)(params, st_f, x, y)
    assert float(jnp.abs(res.grads["fb_conv"]["kernel"]).max()) > 0
    # non-zero feedback: same first step, different later steps
    live = make_params(mf, fb_scale=1.0)
    out_l, _ = run_forward(mf)(live, st_f, x)
    out_lp, _ = run_forward(mp)(_to_plain(live), st_p, x)
    np.testing.assert_array_equal(out_l[0], out_lp[0])
    assert not np.allclose(out_l[1:], out_lp[1:], rtol=1e-3)


# ---------------------------------------------------------------------------------------------
# 4. Dropout masks
# ---------------------------------------------------------------------------------------------


def test_dropout_masks():
    m = small(neuron_dropout=0.5, fc_dropout=0.25)
    s1 = m.init_state(B, (HW, HW, 3), key=rkey(1))
    s1b = m.init_state(B, (HW, HW, 3), key=rkey(1))
    s2 = m.init_state(B, (HW, HW, 3), key=rkey(2))
    chex.assert_trees_all_equal(s1, s1b)
    assert set(s1.neuron_mask) == {"lif01", "lif02", "lif03"}
    chex.assert_shape(s1.neuron_mask["lif01"], (B, HW, HW, 8))
    chex.assert_shape(s1.neuron_mask["lif03"], (B, 4, 4, 16))
    chex.assert_shape(s1.fc_mask, (B, 16))
    assert isinstance(s1, VGGState) and s1.feedback is None and s1.step is None  # no feedback: None
    for a, b in zip(jax.tree.leaves(s1.neuron_mask), jax.tree.leaves(s2.neuron_mask)):
        assert set(np.unique(np.asarray(a))) <= {0.0, 2.0}
        assert 0.3 < float(jnp.mean(a > 0)) < 0.7
        assert not np.array_equal(a, b)  # different keys, different masks
    layer_masks = jax.tree.leaves(s1.neuron_mask)
    assert not np.array_equal(layer_masks[1], layer_masks[2])  # per layer, not shared
    assert set(np.unique(np.asarray(s1.fc_mask))) <= {0.0, np.float32(1 / 0.75)}
    assert not np.array_equal(s1.fc_mask, s2.fc_mask)
    with pytest.raises(ValueError, match="key"):
        m.init_state(B, (HW, HW, 3))
    # no drop with train=False (no key needed): equals the model without dropout
    s_eval = m.init_state(B, (HW, HW, 3), train=False)
    assert s_eval.neuron_mask is None and s_eval.fc_mask is None
    assert len(jax.tree.leaves(s_eval)) == 2 * len(m.neuron_names)  # only v and trace per LIF
    plain = small()
    params = make_params(plain)
    x = image()
    o_eval, _ = run_forward(m)(params, s_eval, x)
    o_plain, _ = run_forward(plain)(params, plain.init_state(B, (HW, HW, 3)), x)
    np.testing.assert_array_equal(o_eval, o_plain)
    # masks are held fixed over the sequence and actually drop: dropped neurons never emit
    (o_tr, stats), s_end = run_forward(m, T, True)(params, s1, x)
    chex.assert_trees_all_equal(s_end.neuron_mask, s1.neuron_mask)
    assert not np.allclose(o_tr, o_eval)
    for k in stats:
        assert np.all(stats[k] <= jnp.sum(s1.neuron_mask[k] > 0, axis=(1, 2, 3)))
    # p = 0 needs no key
    small(neuron_dropout=0.0).init_state(B, (HW, HW, 3))


# ---------------------------------------------------------------------------------------------
# 5. T_eval != T_train; stats through the step function
# ---------------------------------------------------------------------------------------------


def test_eval_with_other_num_steps_and_stats():
    model = small()
    params = make_params(model)
    x = image()
    st = model.init_state(B, (HW, HW, 3), train=False)
    o2, _ = run_forward(model, 2)(params, st, x)
    (o6, stats), _ = run_forward(model, 6, True)(params, st, x)
    chex.assert_shape(o2, (2, B, K))
    chex.assert_shape(o6, (6, B, K))
    np.testing.assert_allclose(o6[:2], o2, rtol=1e-6)  # causal: same first two steps
    assert list(stats) == ["lif01", "lif02", "lif03"]
    for k, n in zip(stats, (512, 256, 256)):
        chex.assert_shape(stats[k], (6, B))
        assert stats[k].dtype == jnp.float32
        assert np.all((stats[k] >= 0) & (stats[k] <= n))
    # time-major sequence input (e.g. DVS frames) works too
    seq = jnp.stack([x * (t + 1) / 6 for t in range(6)])
    o_seq, _ = run_forward(model, None)(params, st, seq)
    chex.assert_shape(o_seq, (6, B, K))
    # a non-default neuron is honoured (IF neuron: decay 1 changes the dynamics)
    o_if, _ = run_forward(small(neuron=LIF(decay=1.0)), 2)(params, st, x)
    assert not np.allclose(o_if, o2)


# ---------------------------------------------------------------------------------------------
# 7. Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [(), ("M", 8), (0, "M"), (8, "X"), (8, 2.5), (True, 8), (8, "S", 16), "64M", (8, -1), None],
)
def test_bad_cfg(cfg):
    with pytest.raises(ValueError, match="cfg"):
        SpikingVGG(cfg=cfg, num_classes=4)


def test_bad_fields_and_inputs():
    with pytest.raises(ValueError, match="num_classes"):
        SpikingVGG(cfg=CFG, num_classes=0)
    with pytest.raises(ValueError, match="neuron_dropout"):
        small(neuron_dropout=1.0)
    with pytest.raises(ValueError, match="fc_dropout"):
        small(fc_dropout=-0.1)
    with pytest.raises(ValueError, match="neuron"):
        small(neuron="lif")
    model = small()
    with pytest.raises(ValueError, match="input_shape"):
        model.init_state(B, (HW, HW))
    with pytest.raises(ValueError, match="too small"):
        SpikingVGG(cfg=(8, "M", 8, "M"), num_classes=2).init_state(B, (3, 3, 3))
    with pytest.raises(ValueError, match="divisible"):
        small(feedback=True).init_state(B, (7, 8, 3))
    with pytest.raises(ValueError, match="batch_size"):
        model.init_state(0, (HW, HW, 3))
    st = model.init_state(B, (HW, HW, 3))
    params = make_params(model)
    apply = lambda s, x: model.apply({"params": params}, s, x)
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        apply(st, jnp.zeros((B, HW, HW)))
    with pytest.raises(ValueError, match="channels"):
        apply(st, jnp.zeros((B, HW, HW, 2)))
    with pytest.raises(ValueError, match="state was built"):
        apply(st, jnp.zeros((B, 16, 16, 3)))
    with pytest.raises(ValueError, match="floating"):
        apply(st, jnp.zeros((B, HW, HW, 3), jnp.int32))
    x = jnp.zeros((B, HW, HW, 3))
    with pytest.raises(ValueError, match="VGGState returned by init_state, got dict"):
        apply({"lif": st.neurons}, x)
    with pytest.raises(ValueError, match=r"state\.neurons has layers \['lif01', 'lif02'\]"):
        apply(st._replace(neurons={k: st.neurons[k] for k in ("lif01", "lif02")}), x)
    with pytest.raises(ValueError, match=r"state\.neurons has layers list"):
        apply(st._replace(neurons=list(st.neurons.values())), x)
    partial = {"lif01": jnp.ones((B, HW, HW, 8))}
    with pytest.raises(ValueError, match=r"state\.neuron_mask has layers \['lif01'\]"):
        apply(st._replace(neuron_mask=partial), x)
    st_fb = small(feedback=True).init_state(B, (HW, HW, 3))
    with pytest.raises(ValueError, match="feedback=False"):
        apply(st_fb, x)
    with pytest.raises(ValueError, match=r"state\.feedback/state\.step are None"):
        small(feedback=True).apply({"params": params}, st, x)
    with pytest.raises(ValueError, match="Module"):
        make_step(lambda s, x: x)
