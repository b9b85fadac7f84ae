"""Spiking NF-ResNet: structure against the official names, β/α, init identities, the trace rule.

Every forward/gradient test uses a TINY config (stages (1, 1), 8 base planes, 16×16×3 input,
batch 2, T = 2); full-size models are only traced with ``jax.eval_shape``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ottt_jax.layers import SPIKE_SCALE, standardize_weight
from ottt_jax.losses import instantaneous_loss
from ottt_jax.mode import BPTT, OTTT
from ottt_jax.models.nfresnet import NFResNet, NFResNetState, nfresnet18, nfresnet34, nfresnet50
from ottt_jax.neuron import LIF
from ottt_jax.online import forward, ottt_grad

B, HW, T, K = 2, 16, 2, 5
IN_SHAPE = (HW, HW, 3)
TINY = dict(stage_sizes=(1, 1), base_planes=8, num_classes=K)
# x·3 makes every LIF population of the tiny net fire at both steps (checked in a test below).
X = 3.0 * jax.random.normal(jax.random.PRNGKey(1), (B, *IN_SHAPE))
LABELS = jnp.array([1, 3])

# sha256 of the sorted [name, shape] list of online_spiking_nfresnet34(num_classes=1000) in
# official_param_names.json; the readable comparison runs too when that file is found.
NFRESNET34_DIGEST = "539fe89e67dc287c5b47dc754ce9a00d29f49e991c7bc63ca2acaed3731768bf"
NFRESNET34_KEY = "online_spiking_nfresnet34(num_classes=1000)"


def _flax_to_torch_entry(path, shape):
    """Independent re-statement of the naming/layout convention (not the importer's code)."""
    *mods, leaf = path
    segs = []
    for m in mods:
        head, _, idx = m.rpartition("_")
        segs.extend([head, idx] if idx.isdigit() and head else [m])
    wrapped = leaf != "skipinit_gain" and tuple(mods) not in {("conv1",), ("fc",)}
    name = ".".join([*segs, *(["op"] if wrapped else []), {"kernel": "weight"}.get(leaf, leaf)])
    if leaf == "kernel" and len(shape) == 4:
        shape = (shape[3], shape[2], shape[0], shape[1])
    elif leaf == "kernel":
        shape = shape[::-1]
    elif leaf == "gain":
        shape = (shape[0], 1, 1, 1)
    return name, list(shape)


def _param_shapes(model, in_shape=(224, 224, 3)):
    def init(key):
        st = model.init_state(1, in_shape, train=False)
        return model.init(key, st, jnp.zeros((1, *in_shape)))

    return jax.eval_shape(init, jax.random.PRNGKey(0))["params"]


def _count(tree):
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


@functools.cache
def _tiny():
    model = NFResNet(**TINY)
    state = model.init_state(B, IN_SHAPE, train=False)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), state, X)["params"]
    return model, params


def _perturbed(params, seed=7):
    """Give every parameter a non-trivial value: non-zero skip gains and fc, gains ≠ 1."""
    keys = iter(jax.random.split(jax.random.PRNGKey(seed), 64))

    def f(path, v):
        name = path[-1].key
        r = jax.random.normal(next(keys), v.shape)
        if name == "skipinit_gain":
            return jnp.float32(1.0 if path[0].key == "layer1_0" else 0.8)
        if name == "gain":
            return 1.0 + 0.1 * r
        if name == "bias":
            return 0.05 * r
        if path[0].key == "fc":
            return 0.3 * r
        return v

    return jax.tree_util.tree_map_with_path(f, params)


def _apply_captured(model, params, state, x, **kw):
    """Run one step, recording (args, kwargs, output) of every submodule call by path."""
    rec = {}

    def icpt(next_fun, args, kwargs, ctx):
        out = next_fun(*args, **kwargs)
        if ctx.method_name == "__call__":
            rec["/".join(ctx.module.path)] = (args, kwargs, out)
        return out

    with nn.intercept_methods(icpt):
        res = model.apply({"params": params}, state, x, **kw)
    return res, rec


def _step(model):
    return lambda p, s, x: model.apply({"params": p}, s, x)


# ------------------------------------------------------------------------------------------------
# Structure and constants
# ------------------------------------------------------------------------------------------------


def test_nfresnet34_names_shapes_and_count_match_official(official_reference):
    params = _param_shapes(nfresnet34(num_classes=1000))
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    ours = sorted(_flax_to_torch_entry([k.key for k in p], tuple(v.shape)) for p, v in flat)
    assert _count(params) == 21_797_688
    digest = hashlib.sha256(json.dumps(ours).encode()).hexdigest()
    ref = official_reference
    if ref is not None:
        want = sorted((n, list(s)) for n, s in ref[NFRESNET34_KEY]["state_dict"])
        assert ours == want
        assert ref[NFRESNET34_KEY]["total_params"] == 21_797_688
    assert digest == NFRESNET34_DIGEST


def test_resnet18_and_50_structure():
    # torchvision's resnet18/50 counts (11,689,512 / 25,557,032): each BN (2·C params) becomes
    # the conv's gain + bias (2·C), plus one scalar skipinit_gain per block (8 / 16 blocks).
    p18 = _param_shapes(nfresnet18())
    p50 = _param_shapes(nfresnet50())
    assert _count(p18) == 11_689_512 + 8
    assert _count(p50) == 25_557_032 + 16
    assert p50["fc"]["kernel"].shape == (2048, 1000)
    l10 = jax.tree.map(lambda s: s.shape, p50["layer1_0"])
    assert l10["downsample"]["kernel"] == (1, 1, 64, 256)  # width change ⇒ downsample
    assert l10["conv1"]["kernel"] == (1, 1, 64, 64)
    assert l10["conv2"]["kernel"] == (3, 3, 64, 64)
    assert l10["conv3"]["kernel"] == (1, 1, 64, 256)
    assert p50["layer2_0"]["conv2"]["kernel"].shape == (3, 3, 128, 128)
    assert "downsample" not in p50["layer1_1"]
    assert "downsample" not in p18["layer1_0"] and "downsample" in p18["layer2_0"]


def _hand_betas(stage_sizes, downsample_first, alpha):
    """The recursion written out: var starts at 1, +α² per block, 1+α² after a downsample."""
    var, out = 1.0, []
    for s, n in enumerate(stage_sizes):
        for i in range(n):
            ds = i == 0 and downsample_first[s]
            out.append((f"layer{s + 1}_{i}", math.sqrt(var), alpha, ds))
            var = 1 + alpha**2 if ds else var + alpha**2
    return out


def test_block_constants_resnet34_hand_computed():
    consts = nfresnet34().block_constants()
    a2 = 0.04
    variances = [1, 1 + a2, 1 + 2 * a2]  # layer1 (no downsample)
    variances += [1 + 3 * a2, 1 + a2, 1 + 2 * a2, 1 + 3 * a2]  # layer2
    variances += [1 + 4 * a2, 1 + a2, 1 + 2 * a2, 1 + 3 * a2, 1 + 4 * a2, 1 + 5 * a2]  # layer3
    variances += [1 + 6 * a2, 1 + a2, 1 + 2 * a2]  # layer4
    assert [c[0] for c in consts] == [
        f"layer{s}_{i}" for s, n in zip(range(1, 5), (3, 4, 6, 3)) for i in range(n)
    ]
    np.testing.assert_allclose([c[1] for c in consts], np.sqrt(variances), rtol=1e-12)
    assert all(c[2] == 0.2 for c in consts)
    assert [c[3] for c in consts] == [c[0].endswith("_0") and c[0] != "layer1_0" for c in consts]


def test_block_constants_bottleneck_and_alpha():
    consts = nfresnet50(alpha=0.5).block_constants()
    want = _hand_betas((3, 4, 6, 3), (True, True, True, True), 0.5)
    assert [c[0] for c in consts] == [w[0] for w in want]
    np.testing.assert_allclose([c[1] for c in consts], [w[1] for w in want], rtol=1e-12)
    assert [c[2:] for c in consts] == [w[2:] for w in want]
    tiny = NFResNet(**TINY).block_constants()
    assert tiny == [("layer1_0", 1.0, 0.2, False), ("layer2_0", math.sqrt(1.04), 0.2, True)]


def test_init_values():
    _, params = _tiny()
    for name in ("layer1_0", "layer2_0"):
        assert params[name]["skipinit_gain"].shape == ()
        assert params[name]["skipinit_gain"] == 0.0
    np.testing.assert_array_equal(params["fc"]["kernel"], 0.0)
    np.testing.assert_array_equal(params["fc"]["bias"], 0.0)
    np.testing.assert_array_equal(params["conv1"]["gain"], 1.0)
    np.testing.assert_array_equal(params["layer2_0"]["downsample"]["bias"], 0.0)
    chex.assert_shape(params["conv1"]["kernel"], (7, 7, 3, 8))
    chex.assert_shape(params["layer2_0"]["downsample"]["kernel"], (1, 1, 8, 16))
    chex.assert_shape(params["fc"]["kernel"], (16, K))


# ------------------------------------------------------------------------------------------------
# Forward
# ------------------------------------------------------------------------------------------------


def test_init_blocks_are_identity_and_stats_count_spikes():
    model, params = _tiny()
    state = model.init_state(B, IN_SHAPE, train=False)
    ((logits, stats), new_state), rec = _apply_captured(model, params, state, X, return_stats=True)
    np.testing.assert_array_equal(logits, 0.0)  # zero fc at init
    # layer1_0: no downsample, zero skip gain ⇒ output is exactly the stream.
    (_, _, x1), _, (out1, _, _) = rec["layer1_0"]
    np.testing.assert_array_equal(out1, x1)
    # layer2_0: output is exactly the downsample conv of h = LIF1(x / β)·2.74.
    (_, _, x2), _, (out2, _, _) = rec["layer2_0"]
    (h2,), kw, ds_out = rec["layer2_0/downsample"]
    np.testing.assert_array_equal(out2, ds_out)
    chex.assert_shape(out2, (B, 2, 2, 16))
    spikes = (x2 / math.sqrt(1.04) >= 1.0).astype(jnp.float32)  # t = 0, zero membrane
    np.testing.assert_array_equal(h2, spikes * SPIKE_SCALE)
    np.testing.assert_array_equal(kw["trace"], spikes * SPIKE_SCALE)  # â[0] = s[0]
    # stats: spikes per sample, network order
    assert list(stats) == ["layer1_0/sn1", "layer1_0/sn2", "layer2_0/sn1", "layer2_0/sn2"]
    np.testing.assert_array_equal(stats["layer2_0/sn1"], spikes.sum((1, 2, 3)))
    np.testing.assert_array_equal(stats["layer1_0/sn1"], (x1 >= 1.0).sum((1, 2, 3)))
    assert all(v.dtype == jnp.float32 and v.shape == (B,) for v in stats.values())
    # stem: 16 → conv s2 → 8 → pool s2 → 4
    chex.assert_shape(x1, (B, 4, 4, 8))
    chex.assert_trees_all_equal_shapes(new_state, state)


def test_tiny_bottleneck_forward():
    model = NFResNet(stage_sizes=(1, 1), block="bottleneck", base_planes=4, num_classes=K)
    state = model.init_state(B, IN_SHAPE, train=False)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), state, X)["params"]
    chex.assert_shape(params["layer1_0"]["downsample"]["kernel"], (1, 1, 4, 16))
    chex.assert_shape(params["layer2_0"]["conv2"]["kernel"], (3, 3, 8, 8))
    chex.assert_shape(params["layer2_0"]["conv3"]["kernel"], (1, 1, 8, 32))
    ((logits, stats), new_state), rec = _apply_captured(model, params, state, X, return_stats=True)
    assert list(stats) == [f"layer{s}_0/sn{i}" for s in (1, 2) for i in (1, 2, 3)]
    for name in ("layer1_0", "layer2_0"):  # zero skip gain: the downsample shortcut, exactly
        np.testing.assert_array_equal(rec[name][2][0], rec[f"{name}/downsample"][2])
    chex.assert_shape(new_state.neurons["layer2_0/sn3"].v, (B, 2, 2, 8))  # stride on conv2
    chex.assert_shape(new_state.neurons["layer2_0/sn2"].v, (B, 4, 4, 8))
    chex.assert_shape(logits, (B, K))


def _reference_logits(params, x, steps, kind="basic"):
    """The paper's NF-ResNet forward written out directly (hand β), for the tiny nets."""

    def conv(inp, p, stride, pad):
        w = standardize_weight(p["kernel"], p["gain"])
        dn = ("NHWC", "HWIO", "NHWC")
        y = lax.conv_general_dilated(
            inp, w, (stride, stride), [(pad, pad)] * 2, dimension_numbers=dn
        )
        return y + p["bias"]

    def pool(inp):
        s = lax.reduce_window(
            inp, 0.0, lax.add, (1, 3, 3, 1), (1, 2, 2, 1), [(0, 0), (1, 1), (1, 1), (0, 0)]
        )
        return s / 9.0

    mem, outs = {}, []

    def lif(key, u_in):
        u = 0.5 * mem.get(key, 0.0) + u_in
        s = (u >= 1.0).astype(jnp.float32)
        mem[key] = u - s
        return s * 2.74

    for _ in range(steps):
        h = pool(conv(x, params["conv1"], 2, 3))
        # (name, β, downsample, stride); the bottleneck's layer1_0 widens 4 → 16: a downsample
        blocks = (("layer1_0", 1.0, kind != "basic", 1), ("layer2_0", math.sqrt(1.04), True, 2))
        for name, beta, ds, stride in blocks:
            p = params[name]
            a = lif((name, 1), h / beta)
            shortcut = conv(a, p["downsample"], stride, 0) if ds else h
            if kind == "basic":
                y = conv(lif((name, 2), conv(a, p["conv1"], stride, 1)), p["conv2"], 1, 1)
            else:
                b = lif((name, 2), conv(a, p["conv1"], 1, 0))
                c = lif((name, 3), conv(b, p["conv2"], stride, 1))
                y = conv(c, p["conv3"], 1, 0)
            h = y * p["skipinit_gain"] * 0.2 + shortcut
        outs.append(h.mean((1, 2)) @ params["fc"]["kernel"] + params["fc"]["bias"])
    return jnp.stack(outs)


def test_forward_matches_hand_written_reference_and_bptt_mode():
    model, params = _tiny()
    params = _perturbed(params)
    state = model.init_state(B, IN_SHAPE, train=False)
    outs, _ = forward(_step(model), params, state, X, num_steps=3)
    assert bool(jnp.all(jnp.isfinite(outs)))
    np.testing.assert_allclose(outs, _reference_logits(params, X, 3), rtol=1e-5, atol=1e-5)
    # the BPTT baseline has the same forward values
    bptt = NFResNet(**TINY, mode=BPTT)
    outs_bptt, _ = forward(_step(bptt), params, state, X, num_steps=3)
    np.testing.assert_allclose(outs_bptt, outs, rtol=1e-6, atol=1e-6)


BOTTLENECK = dict(stage_sizes=(1, 1), block="bottleneck", base_planes=4, num_classes=K)


@functools.cache
def _tiny_bottleneck():
    model = NFResNet(**BOTTLENECK)
    state = model.init_state(B, IN_SHAPE, train=False)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), state, X)["params"]
    return model, _perturbed(params)


def test_bottleneck_forward_matches_hand_written_reference():
    model, params = _tiny_bottleneck()
    assert float(params["layer2_0"]["skipinit_gain"]) != 0.0  # the residual branch counts
    state = model.init_state(B, IN_SHAPE, train=False)
    outs, _ = forward(_step(model), params, state, X, num_steps=3)
    want = _reference_logits(params, X, 3, kind="bottleneck")
    assert float(jnp.abs(want).max()) > 0.1
    np.testing.assert_allclose(outs, want, rtol=1e-5, atol=1e-5)


def test_eval_with_more_steps_than_training():
    model, params = _tiny()
    params = _perturbed(params)
    state = model.init_state(B, IN_SHAPE, train=False)
    out2, _ = forward(_step(model), params, state, X, num_steps=2)
    out5, st5 = forward(_step(model), params, state, X, num_steps=5)
    chex.assert_shape(out5, (5, B, K))
    np.testing.assert_allclose(out5[:2], out2, rtol=1e-6, atol=1e-6)  # causal: same prefix
    assert bool(jnp.all(jnp.isfinite(out5)))
    chex.assert_trees_all_equal_shapes(st5, state)


# ------------------------------------------------------------------------------------------------
# Gradients
# ------------------------------------------------------------------------------------------------


def test_ottt_grad_every_leaf_finite_and_nonzero():
    # At init the skip gains and fc are zero, which zeroes most gradients exactly (no path from
    # the residual branches / stream to the logits). Give them non-zero values first.
    model, params = _tiny()
    params = _perturbed(params)
    state = model.init_state(B, IN_SHAPE)
    loss_fn = functools.partial(instantaneous_loss, beta=0.05, num_steps=T)
    res = ottt_grad(_step(model), loss_fn, params, state, X, LABELS, num_steps=T)
    assert bool(jnp.isfinite(res.loss))
    chex.assert_trees_all_equal_shapes(res.grads, params)
    for path, g in jax.tree_util.tree_flatten_with_path(res.grads)[0]:
        name = jax.tree_util.keystr(path)
        assert bool(jnp.all(jnp.isfinite(g))), name
        assert bool(jnp.any(g != 0)), f"zero gradient for {name}"


def test_downsample_kernel_gradient_is_taken_at_the_trace():
    model, params = _tiny()
    params = _perturbed(params)
    state0 = model.init_state(B, IN_SHAPE)
    _, state1 = model.apply({"params": params}, state0, X)  # t = 0
    x1 = X + 0.5 * jax.random.normal(jax.random.PRNGKey(3), X.shape)  # a different frame at t = 1

    def loss(p, probe):
        rec = {}

        def icpt(next_fun, args, kwargs, ctx):
            out = next_fun(*args, **kwargs)
            if ctx.method_name == "__call__" and ctx.module.path == ("layer2_0", "downsample"):
                rec["spikes"], rec["trace"] = args[0], kwargs["trace"]
                out = out + probe  # d loss / d probe = the cotangent g of the downsample output
            return out

        with nn.intercept_methods(icpt):
            logits, st = model.apply({"params": p}, state1, x1)
        return instantaneous_loss(logits, LABELS, beta=0.05, num_steps=T), (rec, st)

    probe = jnp.zeros((B, 2, 2, 16))
    (gp, g), (rec, st) = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(params, probe)
    s, a = rec["spikes"], rec["trace"]
    # â[1] = (λ·s[0] + s[1])·2.74, the LIF1 trace after Scale
    np.testing.assert_allclose(a, st.neurons["layer2_0/sn1"].trace * SPIKE_SCALE, rtol=1e-6)
    assert bool(jnp.any(a != s))  # the test discriminates trace from spikes
    ds = params["layer2_0"]["downsample"]

    def conv_ws(inp):
        def f(k, gain):
            w = standardize_weight(k, gain)
            dn = ("NHWC", "HWIO", "NHWC")
            return lax.conv_general_dilated(inp, w, (2, 2), "VALID", dimension_numbers=dn)

        return jax.vjp(f, ds["kernel"], ds["gain"])[1](g)

    dk_trace, dgain_trace = conv_ws(a)
    dk_spikes, _ = conv_ws(s)
    got = gp["layer2_0"]["downsample"]
    np.testing.assert_allclose(got["kernel"], dk_trace, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["gain"], dgain_trace, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["bias"], g.sum((0, 1, 2)), rtol=1e-5, atol=1e-7)
    assert not np.allclose(got["kernel"], dk_spikes, rtol=1e-3, atol=1e-6)


def _conv_grads_at_probes(model, params):
    """One OTTT step at t = 1: each conv's param gradient, input spikes, trace and cotangent."""
    state0 = model.init_state(B, IN_SHAPE)
    _, state1 = model.apply({"params": params}, state0, X)  # t = 0
    x1 = X + 0.5 * jax.random.normal(jax.random.PRNGKey(3), X.shape)  # a different frame at t = 1
    names = [
        f"{blk}/{c}"
        for blk in ("layer1_0", "layer2_0")
        for c in ("conv1", "conv2", "conv3", "downsample")
        if c in params[blk]
    ]
    shapes = jax.eval_shape(lambda: _apply_captured(model, params, state1, x1)[1])
    probes0 = {n: jnp.zeros(shapes[n][2].shape) for n in names}
    geometry = {}  # static (stride, padding) per conv, recorded while tracing

    def loss(p, probes):
        rec = {}

        def icpt(next_fun, args, kwargs, ctx):
            out = next_fun(*args, **kwargs)
            name = "/".join(ctx.module.path)
            if ctx.method_name == "__call__" and name in probes:
                rec[name] = (args[0], kwargs["trace"])
                geometry[name] = (ctx.module.strides, ctx.module.padding)
                out = out + probes[name]  # d loss / d probe = the cotangent g of the output
            return out

        with nn.intercept_methods(icpt):
            logits, _ = model.apply({"params": p}, state1, x1)
        return instantaneous_loss(logits, LABELS, beta=0.05, num_steps=T), rec

    (gp, gs), rec = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(params, probes0)
    return gp, gs, {n: (*v, *geometry[n]) for n, v in rec.items()}


@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
def test_every_conv_weight_gradient_is_taken_at_the_trace(kind):
    model, params = (_tiny()[0], _perturbed(_tiny()[1])) if kind == "basic" else _tiny_bottleneck()
    gp, gs, rec = _conv_grads_at_probes(model, params)
    # every conv fed by spikes: conv1, conv2 (, conv3) of both blocks and their downsamples
    assert len(rec) == {"basic": 5, "bottleneck": 8}[kind], sorted(rec)
    for name, (s, a, stride, pad) in rec.items():
        blk, conv = name.split("/")
        p, g, got = params[blk][conv], gs[name], gp[blk][conv]
        assert bool(jnp.any(a != s)), name  # the test discriminates trace from spikes
        assert float(jnp.abs(g).max()) > 0, name

        def sws_conv_vjp(inp, p=p, g=g, stride=stride, pad=pad):
            def f(k, gain):
                w = standardize_weight(k, gain)
                dn = ("NHWC", "HWIO", "NHWC")
                pads = [(pad, pad)] * 2
                return lax.conv_general_dilated(inp, w, (stride,) * 2, pads, dimension_numbers=dn)

            return jax.vjp(f, p["kernel"], p["gain"])[1](g)

        dk_trace, dgain_trace = sws_conv_vjp(a)
        dk_spikes, _ = sws_conv_vjp(s)
        np.testing.assert_allclose(got["kernel"], dk_trace, rtol=1e-4, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(got["gain"], dgain_trace, rtol=1e-4, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(got["bias"], g.sum((0, 1, 2)), rtol=1e-5, atol=1e-7)
        assert not np.allclose(got["kernel"], dk_spikes, rtol=1e-3, atol=1e-6), name


# ------------------------------------------------------------------------------------------------
# Stochastic depth and fc dropout
# ------------------------------------------------------------------------------------------------


def test_stochastic_depth_masks_per_sequence():
    model = NFResNet(**TINY, stochastic_depth=0.5, fc_dropout=0.25)
    key = jax.random.PRNGKey(11)
    small = (4, 4, 3)
    st = model.init_state(4000, small, key=key)
    st_again = model.init_state(4000, small, key=key)
    chex.assert_trees_all_equal(st, st_again)  # explicit keys: reproducible
    assert isinstance(st, NFResNetState)
    k1, k2 = st.keep["layer1_0"], st.keep["layer2_0"]
    chex.assert_shape([k1, k2], (4000,))
    assert set(np.unique(k1)) <= {0.0, 1.0} and not np.array_equal(k1, k2)
    assert abs(float(k1.mean()) - 0.5) < 0.04 and abs(float(k2.mean()) - 0.5) < 0.04
    m = st.fc_mask
    chex.assert_shape(m, (4000, 16))
    assert set(np.unique(m).tolist()) == {0.0, float(np.float32(1.0 / 0.75))}
    assert abs(float((m > 0).mean()) - 0.75) < 0.01
    # linear schedule: block i of N has rate p·(i+1)/N
    lin = NFResNet(**TINY, stochastic_depth=0.5, stochastic_depth_schedule="linear")
    assert [b.drop_rate for b in lin.block_specs()] == [0.25, 0.5]
    st_lin = lin.init_state(4000, small, key=key)
    assert abs(float(st_lin.keep["layer1_0"].mean()) - 0.75) < 0.04
    # evaluation: no drop, no key needed
    ev = model.init_state(3, small, train=False)
    for leaf in (ev.keep["layer1_0"], ev.keep["layer2_0"], ev.fc_mask):
        np.testing.assert_array_equal(leaf, 1.0)
    with pytest.raises(ValueError, match="key is required"):
        model.init_state(3, small)


def test_stochastic_depth_dropped_block_is_identity_and_mask_is_held():
    model = NFResNet(**TINY, stochastic_depth=0.5)  # same parameters as the plain tiny net
    params = _perturbed(_tiny()[1])
    state = model.init_state(B, IN_SHAPE, key=jax.random.PRNGKey(0))
    # sample 0 drops block layer1_0, sample 1 drops layer2_0
    state = state._replace(
        keep={"layer1_0": jnp.array([0.0, 1.0]), "layer2_0": jnp.array([1.0, 0.0])}
    )
    (_, new_state), rec = _apply_captured(model, params, state, X)
    (_, _, x1), _, (out1, _, _) = rec["layer1_0"]
    np.testing.assert_array_equal(out1[0], x1[0])
    assert not np.allclose(out1[1], x1[1])
    _, _, (out2, _, _) = rec["layer2_0"]
    ds_out = rec["layer2_0/downsample"][2]
    np.testing.assert_array_equal(out2[1], ds_out[1])
    assert not np.allclose(out2[0], ds_out[0])
    # the masks are carried unchanged to every later step
    outs, final = forward(_step(model), params, state, X, num_steps=3)
    for name in ("layer1_0", "layer2_0"):
        np.testing.assert_array_equal(new_state.keep[name], state.keep[name])
        np.testing.assert_array_equal(final.keep[name], state.keep[name])
    np.testing.assert_array_equal(final.fc_mask, state.fc_mask)
    assert bool(jnp.all(jnp.isfinite(outs)))


def test_fc_dropout_mask_scales_the_pooled_features():
    model = NFResNet(**TINY, fc_dropout=0.5)
    params = _perturbed(_tiny()[1])
    state = model.init_state(B, IN_SHAPE, train=False)
    mask = jnp.tile(jnp.array([0.0, 2.0]), (B, 8))
    (logits, _), rec = _apply_captured(model, params, state._replace(fc_mask=mask), X)
    (feat,), _, _ = rec["fc"]
    (_, _, _), _, (stream, _, _) = rec["layer2_0"]
    np.testing.assert_allclose(feat, stream.mean((1, 2)) * mask, rtol=1e-6)
    np.testing.assert_allclose(
        logits, feat @ params["fc"]["kernel"] + params["fc"]["bias"], rtol=1e-5
    )


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(block="wide"), "block"),
        (dict(stage_sizes=()), "stage_sizes"),
        (dict(stage_sizes=(2, 0)), "stage_sizes"),
        (dict(stochastic_depth=1.0), "stochastic_depth"),
        (dict(fc_dropout=-0.1), "fc_dropout"),
        (dict(stochastic_depth_schedule="cosine"), "stochastic_depth_schedule"),
        (dict(num_classes=0), "num_classes"),
        (dict(base_planes=0), "base_planes"),
    ],
)
def test_bad_fields_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        NFResNet(**{**TINY, **kw})


def test_bad_inputs_raise():
    model, params = _tiny()
    with pytest.raises(ValueError, match="input_shape"):
        model.init_state(B, (16, 16))
    with pytest.raises(ValueError, match="batch_size"):
        model.init_state(0, IN_SHAPE)
    state = model.init_state(B, IN_SHAPE)
    with pytest.raises(
        ValueError, match="NFResNetState returned by this model's init_state, got dict"
    ):
        model.apply({"params": params}, {"fc_mask": state.fc_mask}, X)
    with pytest.raises(
        ValueError, match=r"state\.neurons must have the keys .*got \['layer1_0/sn1'\]"
    ):
        model.apply({"params": params}, state._replace(neurons={"layer1_0/sn1": 0}), X)
    with pytest.raises(ValueError, match=r"state\.keep must have the keys .*got list"):
        model.apply({"params": params}, state._replace(keep=[1.0, 1.0]), X)
    with pytest.raises(ValueError, match="NHWC"):
        model.apply({"params": params}, state, X[0])
    with pytest.raises(ValueError, match="shape"):  # frame size differs from the state's
        model.apply({"params": params}, state, jnp.zeros((B, 32, 32, 3)))


def test_neuron_mode_is_overridden():
    model = NFResNet(**TINY, neuron=LIF(mode=OTTT), mode=BPTT)
    params = _tiny()[1]
    seen = {}

    def icpt(next_fun, args, kwargs, ctx):
        if ctx.method_name == "__call__" and ctx.module.path == ("layer2_0",):
            seen["neuron"] = ctx.module.neuron.mode
        if ctx.method_name == "__call__" and ctx.module.path == ("layer2_0", "downsample"):
            seen["conv"] = ctx.module.mode
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(icpt):
        model.apply({"params": params}, model.init_state(B, IN_SHAPE), X)
    assert seen == {"neuron": BPTT, "conv": BPTT}  # BPTT: LIF keeps gradients, no trace rule
