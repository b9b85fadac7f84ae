"""Pure helpers of the benchmark sections 3–6: statistics, verdict rules and independent SOP counts.

No training runs here; the counting helpers are checked against hand counts and against the
model's own ``layer_sizes`` (static numpy, nothing compiled).
"""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds benchmarks/

from benchmarks import accuracy, batch_one, firing, time_steps
from benchmarks.common import Section

from ottt_jax.models import VGG11_CFG, SpikingVGG


def test_mean_std_uses_sample_std():
    m, s = accuracy.mean_std([0.98, 0.99, 1.0])
    assert m == pytest.approx(0.99, abs=1e-15)
    assert s == pytest.approx(0.01, abs=1e-15)  # ddof = 1
    m1, s1 = accuracy.mean_std([0.5])
    assert m1 == 0.5 and math.isnan(s1)
    with pytest.raises(ValueError, match="values"):
        accuracy.mean_std([])


def test_fmt_pct():
    assert accuracy.fmt_pct(0.9963, 0.0013) == "99.63 ± 0.13"
    assert accuracy.fmt_pct(0.9963, float("nan")) == "99.63"


def test_matches_tolerance_is_bptt_std_or_one_image():
    one = 1 / 360
    assert accuracy.matches([0.99 - one], [0.99])  # within one test image
    assert not accuracy.matches([0.99 - 2 * one], [0.99])
    # BPTT's seed std (0.01) is larger than one image, so it sets the tolerance.
    assert accuracy.matches([0.98], [0.98, 0.99, 1.0])
    assert not accuracy.matches([0.979], [0.98, 0.99, 1.0])
    assert accuracy.matches([1.0], [0.9])  # beating BPTT holds


def test_trend_summary():
    acc = {1: 0.90, 2: 0.95, 4: 0.97, 6: 0.98, 8: 0.99, 16: 0.97}
    s = time_steps.trend(acc, 6)
    assert s["at_train"] == 0.98
    assert s["min_fewer"] == 0.90
    assert s["mean_more"] == pytest.approx(0.98)
    assert s["max_more"] == 0.99
    assert s["gain_1_to_train"] == pytest.approx(0.08)
    assert math.isnan(time_steps.trend({6: 0.9, 2: 0.8}, 6)["mean_more"])
    with pytest.raises(ValueError, match="training T=6"):
        time_steps.trend({1: 0.5}, 6)


def test_batch_one_updates_and_overrides():
    assert batch_one.updates("ottt_o", 1437, 4) == 5748  # one update per time step
    assert batch_one.updates("ottt_a", 1437, 4) == 1437
    assert batch_one.overrides(1, 0.02)[:2] == ("data.batch_size=1", "optim.lr=0.02")
    with pytest.raises(ValueError, match="batch"):
        batch_one.overrides(0, 0.1)


def test_conv_layout():
    assert firing.conv_layout((32, "M", 64)) == [(32, 1), (64, 0)]
    assert firing.conv_layout(VGG11_CFG) == [
        (64, 0),
        (128, 1),
        (256, 0),
        (256, 1),
        (512, 0),
        (512, 1),
        (512, 0),
        (512, 0),
    ]
    with pytest.raises(ValueError, match="start with a conv"):
        firing.conv_layout(("M", 8))
    with pytest.raises(ValueError, match="positive ints"):
        firing.conv_layout((8, "X"))


def _one_spike(h, w, c, i, j):
    x = np.zeros((1, h, w, c))
    x[0, i, j, 0] = 1
    return x


def test_synapse_events_hand_counts():
    # 3x3 pad-1 conv into 5 channels: a corner pixel is read by 4 output windows, an edge pixel
    # by 6, an interior one by 9.
    assert firing.synapse_events(_one_spike(4, 4, 2, 0, 0), 0, 5, 10)[0] == 4 * 5
    assert firing.synapse_events(_one_spike(4, 4, 2, 0, 2), 0, 5, 10)[0] == 6 * 5
    assert firing.synapse_events(_one_spike(4, 4, 2, 1, 2), 0, 5, 10)[0] == 9 * 5
    # One 2x2 pool first: pixel (7, 7) of 8x8 lands on the corner (3, 3) of the 4x4 map.
    assert firing.synapse_events(_one_spike(8, 8, 1, 7, 7), 1, 5, 10)[0] == 4 * 5
    # A floor pool crops the last row of a 5x5 map: that spike reaches nothing.
    assert firing.synapse_events(_one_spike(5, 5, 1, 4, 1), 1, 5, 10)[0] == 0
    # Global average pool + classifier: K synapses per spike; spikes in a batch stay separate.
    x = np.zeros((2, 3, 3, 4))
    x[0, 0, 0, 1] = x[0, 2, 1, 3] = x[1, 1, 1, 0] = 1
    np.testing.assert_array_equal(firing.synapse_events(x, 0, None, 10), [20.0, 10.0])
    with pytest.raises(ValueError, match="B, H, W, C"):
        firing.synapse_events(np.zeros((3, 3, 4)), 0, 5, 10)


@pytest.mark.parametrize(
    "cfg, shape, k",
    [
        ((32, "M", 64), (8, 8, 1), 10),
        (VGG11_CFG, (32, 32, 3), 10),
        ((4, "M", 6, "M"), (10, 14, 2), 3),
    ],
)
def test_independent_fan_out_equals_layer_sizes(cfg, shape, k):
    model = SpikingVGG(cfg=cfg, num_classes=k)
    sizes = model.layer_sizes(shape)
    h, w = shape[:2]
    maps = {}
    for n, (width, pools) in zip(sorted(sizes), firing.conv_layout(cfg)):
        maps[n] = np.zeros((1, 1, h, w, width))
        for _ in range(pools):
            h, w = h // 2, w // 2
    ind = firing.independent_counts(cfg, k, maps)
    for n, (neurons, fan) in sizes.items():
        assert ind[n]["neurons"] == neurons
        assert ind[n]["fan_out"] == pytest.approx(fan, rel=1e-12)
        assert ind[n]["spikes"] == 0 and ind[n]["sops_exact"] == 0


def test_independent_counts_uniform_firing_equals_mean_fan_out():
    cfg = (4, "M", 6)
    ones = {"lif01": np.ones((2, 3, 8, 8, 4)), "lif02": np.ones((2, 3, 4, 4, 6))}
    ind = firing.independent_counts(cfg, 10, ones)
    for v in ind.values():  # every neuron fires every step: exact count = spikes x mean fan-out
        assert v["sops_exact"] == pytest.approx(v["sops_mean_fan"], rel=1e-12)
    assert ind["lif01"]["spikes"] == 2 * 8 * 8 * 4
    assert ind["lif02"]["fan_out"] == 10


def test_spikes_from_traces_round_trip():
    rng = np.random.default_rng(0)
    s = (rng.random((5, 2, 3)) < 0.4).astype(np.float32)
    tr, prev = np.zeros_like(s), np.zeros_like(s[0])
    for t in range(5):
        prev = 0.5 * prev + s[t]
        tr[t] = prev
    np.testing.assert_array_equal(firing.spikes_from_traces(tr, 0.5), s)
    with pytest.raises(ValueError, match="0/1"):
        firing.spikes_from_traces(tr, 0.25)


def test_consistency_flags_disagreement():
    m = {
        "stats": {"lif01": np.array([[2.0]])},
        "maps": {"lif01": np.ones((1, 1, 1, 2, 1))},
        "sizes": {"lif01": (2, 3.0)},
        "indep": {"lif01": {"neurons": 2, "fan_out": 3.0, "sops_mean_fan": 6.0, "sops_exact": 6.0}},
        "sops": 6.0,
    }
    c = firing.consistency(m)
    assert c == {
        "stats_vs_maps": 0.0,
        "neurons": 0.0,
        "fan_rel": 0.0,
        "sops_rel": 0.0,
        "exact_rel": 0.0,
    }
    assert firing.consistent(c)
    m["sops"] = 7.0
    assert not firing.consistent(firing.consistency(m))


def test_render_has_heading_and_claims():
    sec = Section("9. X", "body", claims=[("claim", "holds", "1 vs 2")], seconds=3.0)
    text = accuracy.render(sec)
    assert text.startswith("## 9. X\n\nbody\n\n| paper claim | verdict | evidence |")
    assert "| claim | holds | 1 vs 2 |" in text
