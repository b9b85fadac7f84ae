"""NIR export/import: VGG and RSNN round trips with identical spikes; a foreign graph by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ottt_jax import models, online
from ottt_jax.models.rsnn import SpikingRSNN
from ottt_jax.models.vgg import SpikingVGG
from ottt_jax.neuron import LIF

nir = pytest.importorskip(
    "nir", reason="NIR tests need the nir package: pip install 'ottt_jax[nir]'"
)
onir = pytest.importorskip("ottt_jax.nir")

T, B = 6, 2


def _run(model, params, x, shape, decay=0.5):
    """Return (logits [T, B, K], {lif: spike maps [T, B, ...]}) over time-major x.

    The spikes are read off the traces, s[t] = â[t] − λ·â[t−1] (exact for a dyadic λ).
    """

    def body(st, x_t):
        out, st = model.apply({"params": params}, st, x_t)
        return st, (out, {n: st.neurons[n].trace for n in model.neuron_names})

    _, (outs, traces) = jax.lax.scan(body, model.init_state(B, shape), x)
    spikes = {}
    for name, tr in traces.items():
        tr = np.asarray(tr)
        prev = np.concatenate([np.zeros_like(tr[:1]), tr[:-1]])
        spikes[name] = tr - decay * prev
        assert set(np.unique(spikes[name])) <= {0.0, 1.0}
    return np.asarray(outs), spikes


def _params(model, shape, key=0):
    st = model.init_state(B, shape)
    return model.init(jax.random.key(key), st, jnp.zeros((B, *shape)))["params"]


def test_vgg_round_trip_gives_identical_spikes_and_logits():
    shape = (8, 8, 2)
    model = SpikingVGG(cfg=(4, "M", 6), num_classes=3)
    params = _params(model, shape)
    params = jax.tree.map(lambda p: p * 1.0, params)
    params["classifier_0"]["kernel"] = params["classifier_0"]["kernel"] * 100  # visible logits
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 2, (T, B, *shape)), jnp.float32)
    with pytest.warns(UserWarning, match="reset by subtraction"):
        graph = onir.to_nir(model, params, shape)
    kinds = [type(graph.nodes[n]).__name__ for n in graph.nodes]
    assert kinds == ["Input", "Conv2d", "LIF", "Scale", "AvgPool2d", "Conv2d", "LIF", "Scale",
                     "AvgPool2d", "Flatten", "Affine", "Output"]  # fmt: skip
    lif = graph.nodes["lif01"]
    np.testing.assert_allclose(lif.tau, 1e-4 / 0.5)  # τ = dt/(1−λ)
    np.testing.assert_allclose(lif.r, 2.0)  # R = 1/(1−λ)
    assert lif.tau.shape == (4, 8, 8) and lif.metadata == {"ottt_jax": {"reset": "subtract"}}
    back, bparams = onir.from_nir(graph)
    assert back.neuron_names == ("lif01", "lif02")
    out0, s0 = _run(model, params, x, shape)
    out1, s1 = _run(back, bparams, x, shape)
    for name in ("lif01", "lif02"):
        np.testing.assert_array_equal(s1[name], s0[name])
    assert s0["lif01"].sum() > 0 and s0["lif02"].sum() > 0
    np.testing.assert_allclose(out1, out0, rtol=1e-5, atol=1e-5)
    # and the imported model trains by our rules (OTTT_A): finite, non-zero gradients
    res = online.ottt_grad(models.make_step(back), lambda o, y: jnp.sum(o * y), bparams,
                           back.init_state(B, shape), x, jnp.ones((B, 3)))  # fmt: skip
    assert float(jnp.abs(res.grads["features_0"]["kernel"]).sum()) > 0


def test_rsnn_round_trip_keeps_the_recurrence():
    shape = (1, 1, 5)
    model = SpikingRSNN(num_classes=3, hidden=(6,), neuron=LIF(decay=0.75))
    params = _params(model, shape)
    params["rec1"]["kernel"] = params["rec1"]["kernel"] * 2
    x = jnp.asarray(np.random.default_rng(1).uniform(0, 2, (T, B, *shape)), jnp.float32)
    with pytest.warns(UserWarning):
        graph = onir.to_nir(model, params, shape)
    assert ("lif01", "lif01_rec") in graph.edges and ("lif01_rec", "lif01") in graph.edges
    np.testing.assert_allclose(graph.nodes["lif01"].tau, 1e-4 / 0.25)  # τ = dt/(1−λ)
    np.testing.assert_allclose(graph.nodes["lif01"].r, 4.0)  # R = 1/(1−λ)
    back, bparams = onir.from_nir(graph)
    assert back.ops[1].decay == pytest.approx(0.75)
    out0, s0 = _run(model, params, x, shape, 0.75)
    out1, s1 = _run(back, bparams, x, shape, 0.75)
    np.testing.assert_array_equal(s1["lif01"], s0["lif01"])
    np.testing.assert_allclose(out1, out0, rtol=1e-5, atol=1e-5)
    assert 0 < s0["lif01"].sum() < T * B * 6


def test_reset_to_zero_exports_without_warning_and_round_trips():
    shape = (1, 1, 5)
    model = SpikingRSNN(num_classes=2, hidden=(4,), recurrent=False, neuron=onir.ResetToZeroLIF())
    params = _params(model, shape)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = onir.to_nir(model, params, shape)
    assert graph.nodes["lif01"].metadata == {}
    back, bparams = onir.from_nir(graph)
    assert back.ops[1].reset == "zero"
    x = jnp.asarray(np.random.default_rng(2).uniform(0, 2, (T, B, *shape)), jnp.float32)
    np.testing.assert_array_equal(_run(back, bparams, x, shape)[1]["lif01"],
                                  _run(model, params, x, shape)[1]["lif01"])  # fmt: skip


def test_foreign_snntorch_style_graph_runs_with_the_spikes_its_conventions_imply():
    """A graph as snnTorch writes a Leaky(beta) layer: dt = 1e-4, τ = dt/(1−β), R = τ/dt,
    v_leak = 0, v_reset = 0 (NIR's reset to zero); plus a layer with R ≠ τ/dt and a leak."""
    dt, beta1, beta2 = 1e-4, 0.9, 0.8
    rng = np.random.default_rng(3)
    w1, b1 = rng.normal(0, 0.6, (4, 3)), rng.normal(0.2, 0.1, 4)
    w2, b2 = rng.normal(0.3, 0.5, (2, 4)), np.zeros(2)
    tau1, tau2 = dt / (1 - beta1), dt / (1 - beta2)
    r2, leak2 = 3.0, 0.5  # input gain dt·R/τ = 1.5, leak term (dt/τ)·v_leak = 0.1
    graph = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([3])}),
            "fc1": nir.Affine(weight=w1, bias=b1),
            "lif1": nir.LIF(tau=np.full(4, tau1), r=np.full(4, tau1 / dt),
                            v_leak=np.zeros(4), v_threshold=np.ones(4)),
            "fc2": nir.Affine(weight=w2, bias=b2),
            "lif2": nir.LIF(tau=np.full(2, tau2), r=np.full(2, r2), v_leak=np.full(2, leak2),
                            v_threshold=np.full(2, 0.7)),
            "out": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "out")],
    )  # fmt: skip
    x = rng.uniform(0, 1.5, (12, 1, 3))
    # The conventions by hand: v ← (1 − dt/τ)v + (dt/τ)(v_leak + R·I); z = [v > thr]; v ← 0.
    v1, v2, want1, want2 = np.zeros(4), np.zeros(2), [], []
    for t in range(12):
        v1 = beta1 * v1 + (dt / tau1) * (tau1 / dt) * (w1 @ x[t, 0] + b1)
        z1 = (v1 > 1.0).astype(float)
        v1 = np.where(z1 > 0, 0.0, v1)
        v2 = beta2 * v2 + (dt / tau2) * (leak2 + r2 * (w2 @ z1 + b2))
        z2 = (v2 > 0.7).astype(float)
        v2 = np.where(z2 > 0, 0.0, v2)
        want1.append(z1), want2.append(z2)
    model, params = onir.from_nir(graph, dt=dt)
    assert [type(op).__name__ for op in model.ops] == ["DenseOp", "LIFOp", "DenseOp", "LIFOp"]
    assert model.ops[1].reset == "zero" and model.ops[1].decay == pytest.approx(beta1)
    st = model.init_state(1, (3,))
    got1, got2 = [], []
    for t in range(12):
        out, st = model.apply({"params": params}, st, jnp.asarray(x[t], jnp.float32))
        got1.append(np.asarray(st.neurons["lif1"].v) == 0)
        got2.append(np.asarray(out)[0])
    np.testing.assert_array_equal(np.array(got2), np.array(want2))
    assert 0 < np.sum(want1) < 12 * 4 and 0 < np.sum(want2) < 12 * 2


def test_unsupported_graphs_fail_clearly():
    graph = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([2])}),
            "lif": nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2),
                           v_threshold=np.ones(2), v_reset=np.full(2, -0.5)),
            "out": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("in", "lif"), ("lif", "out")],
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"v_reset = -0\.5 is not representable"):
        onir.from_nir(graph)


def test_foreign_conv_graph_follows_nir_layouts():
    """NIR's Conv2d weight (C_out, C_in, kH, kW) as cross-correlation, Flatten in (C, H, W)
    order, Affine (out, in): a conv net written by hand, its output computed by hand."""
    rng = np.random.default_rng(4)
    wc, bc = rng.normal(0.5, 0.6, (2, 1, 2, 2)).astype(np.float32), np.array([0.1, -0.2])
    wc[..., 0, 1], wc[..., 1, 0] = 0.0, 1.2  # asymmetric: a transposed kernel gives other currents
    wa, ba = rng.normal(0, 1, (3, 2 * 3 * 3)), np.zeros(3)
    dt, tau = 1e-4, 1e-4 / (1 - 0.5)
    graph = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([1, 4, 4])}),
            "conv": nir.Conv2d(input_shape=(4, 4), weight=wc, stride=1, padding=0, dilation=1,
                               groups=1, bias=bc),
            "lif": nir.LIF(tau=np.full((2, 3, 3), tau), r=np.full((2, 3, 3), tau / dt),
                           v_leak=np.zeros((2, 3, 3)), v_threshold=np.ones((2, 3, 3))),
            "flat": nir.Flatten(input_type={"input": np.array([2, 3, 3])}, start_dim=0),
            "fc": nir.Affine(weight=wa, bias=ba),
            "out": nir.Output(output_type={"output": np.array([3])}),
        },
        edges=[("in", "conv"), ("conv", "lif"), ("lif", "flat"), ("flat", "fc"), ("fc", "out")],
        type_check=False,
    )  # fmt: skip
    x = rng.uniform(0, 1.5, (5, 1, 4, 4))  # [T, C=1, H, W]
    v, want = np.zeros((2, 3, 3)), []
    for t in range(5):
        cur = np.zeros((2, 3, 3))
        for o in range(2):
            for i in range(3):
                for j in range(3):
                    cur[o, i, j] = np.sum(wc[o] * x[t, :, i : i + 2, j : j + 2]) + bc[o]
        v = 0.5 * v + cur
        z = (v > 1.0).astype(float)
        v = np.where(z > 0, 0.0, v)
        want.append(wa @ z.reshape(-1) + ba)
    model, params = onir.from_nir(graph, dt=dt)
    st = model.init_state(1, (4, 4, 1))
    got = []
    for t in range(5):
        frame = jnp.asarray(x[t].transpose(1, 2, 0)[None], jnp.float32)  # NHWC
        out, st = model.apply({"params": params}, st, frame)
        got.append(np.asarray(out)[0])
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=1e-5)
    assert 0 < np.abs(np.array(want)).sum()


def test_vgg11_exports_with_the_layer_shapes_of_nir():
    model = models.build_model("vgg", num_classes=10)  # VGG-11
    shapes = jax.eval_shape(lambda: _params(model, (8, 8, 3)))  # no compile: random values
    rng = np.random.default_rng(5)
    params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)
    with pytest.warns(UserWarning):
        graph = onir.to_nir(model, params, (8, 8, 3))
    convs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Conv2d)]
    assert len(convs) == 8 and len([v for v in graph.nodes.values() if isinstance(v, nir.LIF)]) == 8
    assert graph.nodes[convs[0]].weight.shape == (64, 3, 3, 3)
    assert graph.nodes[convs[-1]].weight.shape == (512, 512, 3, 3)
    assert graph.nodes["lif08"].tau.shape == (512, 1, 1) and graph.nodes["lif01"].tau.shape == (
        64,
        8,
        8,
    )
    assert graph.nodes["classifier_0"].weight.shape == (10, 512)
    back, bparams = onir.from_nir(graph)
    assert back.layer_shapes((8, 8, 3))["lif08"] == (1, 1, 512)
    np.testing.assert_array_equal(
        bparams["features_0"]["kernel"],
        np.asarray(graph.nodes["features_0"].weight).transpose(2, 3, 1, 0) * 1.0,
    )
