"""Tests of ottt_jax.metrics and of the VGG's per-layer statistics, against direct counts.

The tiny network (8, 'M', 16, 16), 4 classes, 8×8×3 input, batch 2, T = 4. Spike maps are read
off the neuron state independently of the model's statistics: with λ = 0.5 the trace
``â[t] = λ·â[t−1] + s[t]`` is exact in float32, so ``s[t] = â[t] − λ·â[t−1]``. Fan-outs are
counted directly by looping over every neuron and every output unit of the next layer.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ottt_jax.metrics import accuracy, firing_rates, sops, total_firing_rate
from ottt_jax.models import SpikingVGG, vgg11

CFG = (8, "M", 16, 16)
K, B, HW, T = 4, 2, 8, 4
NAMES = ("lif01", "lif02", "lif03")


def rkey(seed):
    """A PRNG key of the 'rbg' implementation: threefry kernels take ~2 s each to compile here."""
    return jax.random.key(seed, impl="rbg")


def test_accuracy():
    logits = jnp.array([[0.1, 2.0, 0.0], [3.0, 0.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.5, 0.2]])
    labels = jnp.array([1, 0, 1, 2])
    assert float(accuracy(logits, labels)) == 0.5
    per_step = jnp.stack([logits, -logits, logits])  # [T, B, K], summed over T
    assert float(accuracy(per_step, labels)) == 0.5
    with pytest.raises(ValueError, match="labels"):
        accuracy(logits, labels[:3])
    with pytest.raises(ValueError, match="integer"):
        accuracy(logits, labels.astype(jnp.float32))


def test_firing_rate_and_sop_formulas():
    counts = {"a": jnp.array([[2.0, 4.0], [6.0, 0.0]]), "b": jnp.array([1.0, 3.0])}  # [T,B], [B]
    sizes = {"a": (10, 3.0), "b": (4, 0.5)}
    r = firing_rates(counts, sizes, num_steps=2)
    assert float(r["a"]) == pytest.approx(12 / (2 * 10 * 2))
    assert float(r["b"]) == pytest.approx(4 / (2 * 4 * 2))
    assert float(firing_rates(counts, {"a": 10, "b": 4}, 2)["a"]) == float(r["a"])
    tot = total_firing_rate(r, sizes)
    assert float(tot) == pytest.approx((float(r["a"]) * 10 + float(r["b"]) * 4) / 14)
    assert float(sops(counts, sizes)) == pytest.approx(12 / 2 * 3.0 + 4 / 2 * 0.5)
    per = sops(counts, sizes, per_layer=True)
    assert float(per["a"]) == pytest.approx(18.0) and float(per["b"]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="num_steps"):
        firing_rates(counts, sizes, num_steps=0)
    with pytest.raises(ValueError, match="'b'"):
        firing_rates(counts, {"a": 10}, 2)
    with pytest.raises(ValueError, match="fan_out"):
        sops(counts, {"a": (10, 3.0), "b": 4})
    with pytest.raises(ValueError, match="non-empty"):
        sops({}, sizes)


# ---------------------------------------------------------------------------------------------
# Direct counts on the tiny model
# ---------------------------------------------------------------------------------------------


def _cover(p, n):
    """Direct count: output positions of a 3×3 pad-1 conv on an n-long axis whose window holds p."""
    return sum(1 for r in range(n) if abs(r - p) <= 1)


def direct_fanout_maps(model, input_shape):
    """{layer: [H, W] per-neuron synaptic operations per spike}, by looping over all units."""
    h0, w0, _ = input_shape
    grids = {"lif01": (8, 8), "lif02": (4, 4), "lif03": (4, 4)}
    maps = {}
    for name, (h, w) in grids.items():
        m = np.zeros((h, w))
        for i in range(h):
            for j in range(w):
                if name == "lif01":  # 2×2 pool, then the 3×3 conv of 16 channels on 4×4
                    m[i, j] = 16 * sum(
                        1
                        for r in range(4)
                        for c in range(4)
                        if abs(r - i // 2) <= 1 and abs(c - j // 2) <= 1
                    )
                elif name == "lif02":  # directly into the 3×3 conv of 16 channels on 4×4
                    m[i, j] = 16 * sum(
                        1 for r in range(4) for c in range(4) if abs(r - i) <= 1 and abs(c - j) <= 1
                    )
                else:  # GAP then K classifier synapses (+ VGG-F: ×2 upsample, 3×3 conv to 8 ch)
                    m[i, j] = K
                    if model.feedback:
                        for di in range(2):
                            for dj in range(2):
                                m[i, j] += 8 * _cover(2 * i + di, h0) * _cover(2 * j + dj, w0)
        maps[name] = m
    return maps


@functools.lru_cache
def _run(feedback):
    """Run T steps; return (params, per-step stats, per-step direct spike maps)."""
    model = SpikingVGG(cfg=CFG, num_classes=K, feedback=feedback)
    st = model.init_state(B, (HW, HW, 3))
    x = jax.random.normal(rkey(1), (B, HW, HW, 3)) * 1.5

    @jax.jit
    def run(x):
        p = model.init(rkey(0), st, x)["params"]
        ks = iter(jax.random.split(rkey(2), 8))
        for n in ("features_0", "conv1", "features_4", "features_3", "features_7", "features_6"):
            if n in p:
                p[n] = dict(p[n], bias=0.4 + 0.2 * jax.random.normal(next(ks), p[n]["bias"].shape))

        def body(s, _):
            (_, stats), s2 = model.apply({"params": p}, s, x, return_stats=True)
            spikes = {k: s2.neurons[k].trace - 0.5 * s.neurons[k].trace for k in NAMES}
            return s2, (stats, spikes)

        return jax.lax.scan(body, st, None, length=T)[1]

    stats, spikes = run(x)
    return model, stats, spikes


@pytest.mark.parametrize("feedback", [False, True], ids=["vgg", "vggf"])
def test_stats_rates_and_sops_against_direct_counts(feedback):
    model, stats, spikes = _run(feedback)
    sizes = model.layer_sizes((HW, HW, 3))
    maps = direct_fanout_maps(model, (HW, HW, 3))
    assert list(sizes) == list(NAMES) == list(stats)
    for name, (c, hw) in zip(NAMES, ((8, 8), (16, 4), (16, 4))):
        s = np.asarray(spikes[name])  # [T, B, H, W, C], exactly 0/1
        assert set(np.unique(s)) <= {0.0, 1.0}
        assert s.shape == (T, B, hw, hw, c)
        # per-step, per-sample counts = direct counts of the spike maps
        np.testing.assert_array_equal(np.asarray(stats[name]), s.sum((2, 3, 4)))
        n, fan = sizes[name]
        assert n == hw * hw * c
        # mean exact fan-out: total synapses leaving the layer / neurons
        total_syn = maps[name].sum() * c
        assert fan * n == pytest.approx(total_syn, rel=1e-12)
        assert s.mean() > 0.05  # the test exercises real spikes
    # interior neurons reach 9·C_out synapses; borders fewer
    assert maps["lif02"][1, 1] == 9 * 16 and maps["lif02"][0, 0] == 4 * 16
    assert maps["lif01"][2, 3] == 9 * 16 and maps["lif01"][0, 1] == 4 * 16
    if feedback:  # interior F pixel: 4 copies × 9 taps × 8 channels, plus K
        assert maps["lif03"][1, 2] == K + 4 * 9 * 8

    rates = firing_rates(stats, sizes, num_steps=T)
    for name in NAMES:
        s = np.asarray(spikes[name])
        assert float(rates[name]) == pytest.approx(s.sum() / (B * s[0, 0].size * T), rel=1e-6)
    tot = sum(np.asarray(spikes[k]).sum() for k in NAMES)
    assert float(total_firing_rate(rates, sizes)) == pytest.approx(
        tot / (B * T * sum(sizes[k][0] for k in NAMES)), rel=1e-6
    )

    # SOPs: Σ_l spikes_l × mean fan-out_l, per sample
    got = float(sops(stats, sizes))
    want = sum(np.asarray(stats[k]).sum() / B * sizes[k][1] for k in NAMES)
    assert got == pytest.approx(want, rel=1e-6)
    # against the exact per-neuron count Σ_n s_n·fanout_n: off only by border non-uniformity
    exact, bound = 0.0, 0.0
    for name in NAMES:
        s = np.asarray(spikes[name]).sum(-1)  # [T, B, H, W] summed over channels
        exact += (s * maps[name]).sum() / B
        bound += s.sum() / B * (maps[name].max() - maps[name].min())
    assert abs(got - exact) <= bound
    assert abs(got - exact) / exact < 0.15
    # and exact when every neuron fires at every step
    full = {k: jnp.full((T, B), float(sizes[k][0])) for k in NAMES}
    c_of = {"lif01": 8, "lif02": 16, "lif03": 16}
    exact_full = T * sum(maps[k].sum() * c_of[k] for k in NAMES)
    assert float(sops(full, sizes)) == pytest.approx(exact_full, rel=1e-6)
    assert all(float(r) == 1.0 for r in firing_rates(full, sizes, T).values())


def test_vgg11_layer_sizes_closed_form():
    sizes = vgg11(10).layer_sizes((32, 32, 3))
    assert list(sizes) == [f"lif0{i}" for i in range(1, 9)]
    n1, f1 = sizes["lif01"]
    assert n1 == 32 * 32 * 64
    # into conv 128 on 32×32: Σ coverage per axis = 3·32 − 2
    assert f1 == pytest.approx(128 * (3 * 32 - 2) ** 2 / (32 * 32))
    # lif02 (32×32×128) → pool → conv 256 on 16×16: each pooled row covered by 2 neuron rows
    assert sizes["lif02"][1] == pytest.approx(256 * (2 * (3 * 16 - 2)) ** 2 / (32 * 32))
    assert sizes["lif08"] == (4 * 4 * 512, 10.0)  # 32 → 16 → 8 → 4
    f = vgg11(10, neuron_dropout=0.1).layer_sizes((48, 48, 2))
    assert f["lif08"] == (6 * 6 * 512, 10.0) and f["lif01"][0] == 48 * 48 * 64


# ---------------------------------------------------------------------------------------------
# NF-ResNet: the same contract (neuron_names, stats, layer_sizes), against direct counts
# ---------------------------------------------------------------------------------------------

NF_HW, NF_T = 16, 3


def _nf_direct_synapses(n, k, stride, c_out):
    """Synapses leaving an n×n map into a k×k conv (stride, (k−1)/2 zero padding, c_out
    channels), by visiting every output position and every tap."""
    pad = (k - 1) // 2
    n_out = (n + 2 * pad - k) // stride + 1
    count = np.zeros((n, n))
    for r in range(n_out):
        for c in range(n_out):
            for dr in range(k):
                for dc in range(k):
                    i, j = r * stride - pad + dr, c * stride - pad + dc
                    if 0 <= i < n and 0 <= j < n:
                        count[i, j] += c_out
    return count.sum()


@functools.lru_cache
def _run_nfresnet(block):
    from ottt_jax.models import NFResNet

    model = NFResNet(stage_sizes=(1, 1), block=block, base_planes=4, num_classes=K)
    st = model.init_state(B, (NF_HW, NF_HW, 3), train=False)
    x = jax.random.normal(rkey(1), (B, NF_HW, NF_HW, 3)) * 3.0
    names = model.neuron_names

    @jax.jit
    def run(x):
        p = model.init(rkey(0), st, x)["params"]

        def body(s, _):
            (_, stats), s2 = model.apply({"params": p}, s, x, return_stats=True)
            spikes = {n: s2.neurons[n].trace - 0.5 * s.neurons[n].trace for n in names}
            return s2, (stats, spikes)

        return jax.lax.scan(body, st, None, length=NF_T)[1]

    stats, spikes = run(x)
    return model, stats, spikes


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_nfresnet_stats_rates_and_sops_against_direct_counts(block):
    model, stats, spikes = _run_nfresnet(block)
    sizes = model.layer_sizes((NF_HW, NF_HW, 3))
    assert list(sizes) == list(model.neuron_names) == list(stats)
    # stem: 16 → conv s2 → 8 → pool s2 → 4; layer2 halves it. (k, stride, C_out) each layer feeds
    if block == "basic":  # planes 4 → 8, out = planes
        reads = {
            "layer1_0/sn1": (4, 4, [(3, 1, 4)]),
            "layer1_0/sn2": (4, 4, [(3, 1, 4)]),
            "layer2_0/sn1": (4, 4, [(3, 2, 8), (1, 2, 8)]),  # conv1 and the downsample
            "layer2_0/sn2": (2, 8, [(3, 1, 8)]),
        }
    else:  # planes 4 → 8, out = 4·planes; both first blocks have a downsample
        reads = {
            "layer1_0/sn1": (4, 4, [(1, 1, 4), (1, 1, 16)]),
            "layer1_0/sn2": (4, 4, [(3, 1, 4)]),
            "layer1_0/sn3": (4, 4, [(1, 1, 16)]),
            "layer2_0/sn1": (4, 16, [(1, 1, 8), (1, 2, 32)]),
            "layer2_0/sn2": (4, 8, [(3, 2, 8)]),
            "layer2_0/sn3": (2, 8, [(1, 1, 32)]),
        }
    assert list(reads) == list(sizes)
    for name, (hw, c, convs) in reads.items():
        s = np.asarray(spikes[name])  # [T, B, H, W, C], exactly 0/1
        assert set(np.unique(s)) <= {0.0, 1.0} and s.shape == (NF_T, B, hw, hw, c)
        np.testing.assert_array_equal(np.asarray(stats[name]), s.sum((2, 3, 4)))
        n, fan = sizes[name]
        assert n == hw * hw * c
        total = sum(_nf_direct_synapses(hw, k, st, co) for k, st, co in convs) * c
        assert fan * n == pytest.approx(total, rel=1e-12), name
    if block == "basic":  # by hand: 3×3 s2 on 4 rows covers (1, 2, 1, 1), 1×1 s2 (1, 0, 1, 0)
        assert sizes["layer2_0/sn1"][1] == (8 * 5 * 5 + 8 * 2 * 2) / 16
    assert np.mean([np.asarray(v).mean() for v in spikes.values()]) > 0.05  # real spikes
    rates = firing_rates(stats, sizes, num_steps=NF_T)
    for name in sizes:
        s = np.asarray(spikes[name])
        assert float(rates[name]) == pytest.approx(s.sum() / (B * s[0, 0].size * NF_T), rel=1e-6)
    want_sops = sum(np.asarray(spikes[k]).sum() / B * sizes[k][1] for k in sizes)
    assert float(sops(stats, sizes)) == pytest.approx(want_sops, rel=1e-5)
