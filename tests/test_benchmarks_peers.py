"""The peer benchmark's pure parts: the CPU's fp32 peak, the run order, medians and ratios, the
learning check, and the FLOP count read from XLA's cost analysis. torch is not needed."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds benchmarks/

from benchmarks import peers, train_iteration

ZEN4 = """Architecture:            x86_64
Vendor ID:               AuthenticAMD
Model name:              AMD EPYC 9R14 96-Core Processor
CPU family:              25
Core(s) per socket:      2
Socket(s):               1
CPU max MHz:             3500.0000
BogoMIPS:                5200.00
Flags:                   fpu sse sse2 avx fma avx2 avx512f avx512bw avx512_bf16
"""

XEON_VM = """Vendor ID:                               GenuineIntel
Model name:                              Intel(R) Xeon(R) Processor
CPU family:                              6
Core(s) per socket:                      2
Socket(s):                               1
BogoMIPS:                                4200.00
Flags:                                   fpu sse avx fma avx2 avx512f avx512_bf16 amx_bf16
"""


def test_fp32_peak_zen4_is_the_issue_number():
    # 2 Zen 4 cores: 2 x 3.5 GHz x (2 x 256-bit FMA pipes = 32 FLOPs/cycle) = 224 GFLOP/s.
    p = peers.fp32_peak(peers.parse_lscpu(ZEN4))
    assert (p["cores"], p["ghz"], p["flops_per_cycle"]) == (2, 3.5, 32)
    assert p["gflops"] == pytest.approx(224.0)
    assert "2 cores x 3.50 GHz (lscpu 'CPU max MHz') x 32 FLOPs/cycle" in p["derivation"]


def test_fp32_peak_intel_avx512_vm_clock_from_cpuinfo():
    info = peers.parse_lscpu(XEON_VM)
    p = peers.fp32_peak(info, "processor : 0\ncpu MHz\t\t: 2400.000\n")
    assert (p["cores"], p["ghz"], p["flops_per_cycle"]) == (2, 2.4, 64)
    assert p["gflops"] == pytest.approx(307.2)
    assert "/proc/cpuinfo 'cpu MHz'" in p["derivation"]
    # Without /proc/cpuinfo the clock falls back to BogoMIPS / 2.
    assert peers.fp32_peak(info)["ghz"] == pytest.approx(2.1)
    assert "BogoMIPS" in peers.fp32_peak(info)["derivation"]


def test_flops_per_cycle_by_isa():
    assert peers.fp32_flops_per_cycle("GenuineIntel", 6, {"avx2", "fma"})[0] == 32
    assert peers.fp32_flops_per_cycle("AuthenticAMD", 26, {"avx512f", "fma"})[0] == 64  # Zen 5
    assert peers.fp32_flops_per_cycle("GenuineIntel", 6, {"sse2"})[0] == 16


def test_clock_missing_is_a_clear_error():
    with pytest.raises(ValueError, match="no clock"):
        peers.cpu_ghz(peers.parse_lscpu("Vendor ID: GenuineIntel\n"))


def test_schedule_alternates_sides_each_round():
    order = peers.schedule(3, ["ottt_a", "bptt"], ("sj", "ours"))
    assert order == [
        (0, "ottt_a", "sj"),
        (0, "ottt_a", "ours"),
        (0, "bptt", "sj"),
        (0, "bptt", "ours"),
        (1, "ottt_a", "ours"),
        (1, "ottt_a", "sj"),
        (1, "bptt", "ours"),
        (1, "bptt", "sj"),
        (2, "ottt_a", "sj"),
        (2, "ottt_a", "ours"),
        (2, "bptt", "sj"),
        (2, "bptt", "ours"),
    ]
    with pytest.raises(ValueError, match="rounds"):
        peers.schedule(0, ["ottt_a"], ("sj", "ours"))


def test_summarize_medians_of_process_medians_and_ratio():
    runs = [
        {"method": "ottt_a", "variant": "sj", "times": [5.0, 7.0]},  # process median 6
        {"method": "ottt_a", "variant": "ours", "times": [3.0]},
        {"method": "ottt_a", "variant": "sj", "times": [4.0, 4.0]},
        {"method": "ottt_a", "variant": "ours", "times": [2.0, 2.2]},  # 2.1
        {"method": "ottt_a", "variant": "sj", "times": [9.0]},
        {"method": "ottt_a", "variant": "ours", "times": [4.0]},
    ]
    s = peers.summarize(runs, ("sj", "ours"))["ottt_a"]
    assert s["sj"] == 6.0 and s["ours"] == 3.0 and s["rounds"] == 3
    assert s["ratio"] == 2.0  # reference / ours: > 1 when ours is faster
    with pytest.raises(ValueError, match="no runs of ours"):
        peers.summarize(runs[:1], ("sj", "ours"))


def test_learning_check():
    ok = {"losses": [2.19, 2.15, 2.08], "update_norm": 0.3}
    assert peers.learning_check(ok) is None
    assert "did not decrease" in peers.learning_check({**ok, "losses": [2.19, 2.2, 2.19]})
    assert "non-finite" in peers.learning_check({**ok, "losses": [2.19, float("nan")]})
    assert "did not move" in peers.learning_check({**ok, "update_norm": 0.0})


def test_synthetic_batch_is_seeded_and_framework_neutral():
    x, y = train_iteration.synthetic_batch(4, (8, 8, 3), 10, seed=3)
    x2, y2 = train_iteration.synthetic_batch(4, (8, 8, 3), 10, seed=3)
    assert x.dtype == np.float32 and x.shape == (4, 8, 8, 3)
    assert -1.0 <= x.min() and x.max() < 1.0
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, train_iteration.synthetic_batch(4, (8, 8, 3), 10, seed=4)[0])
    assert y.min() >= 0 and y.max() < 10


def test_cost_analysis_counts_a_loop_body_once():
    # iteration_flops multiplies by T because XLA counts a while body once: check that premise.
    w = jnp.ones((64, 64))

    def f(x, t):
        return jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=t)[0]

    fl = {
        t: train_iteration.cost_flops(jax.jit(f, static_argnums=1).lower(w, t).compile())
        for t in (1, 2, 5)
    }
    body = 2 * 64**3
    assert fl[1] == pytest.approx(body, rel=0.05)
    assert fl[5] == pytest.approx(fl[2], rel=1e-6)
    assert train_iteration.iteration_flops(fl[5], 5) == pytest.approx(5 * body, rel=0.05)
    assert train_iteration.iteration_flops(fl[1], 1) == fl[1]


def test_parse_args_quick_and_bad_method(capsys):
    a = peers.parse_args(["--quick"])
    assert (a.batch, a.steps, a.size, a.rounds) == (2, 2, 16, 1)
    assert a.methods == ["ottt_a", "ottt_o", "bptt"]
    with pytest.raises(SystemExit):
        peers.parse_args(["--methods", "ottt_a,sltt_z"])
    assert "--methods: unknown rule 'sltt_z'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        peers.parse_args(["--size", "4"])
    assert "--size must be >= 8" in capsys.readouterr().err


def test_xla_flags_ab_takes_a_value_that_starts_with_dashes():
    flag = "--xla_cpu_experimental_ynn_fusion_type=eltwise"
    assert peers.parse_args(["--xla-flags-ab", flag, "--quick"]).xla_flags_ab == flag
    assert peers.parse_args([f"--xla-flags-ab={flag}"]).xla_flags_ab == flag
    assert peers.parse_args([]).xla_flags_ab is None


def test_render_table_and_achieved_rate():
    runs = [
        {"side": "spikingjelly", "variant": "spikingjelly", "method": "ottt_a", "times": [6.0]},
        {
            "side": "ottt_jax",
            "variant": "ottt_jax",
            "method": "ottt_a",
            "times": [4.0],
            "flops": 4e11,
            "xla_flags": "",
        },
    ]
    for r in runs:
        r["version"] = r["side"]
    summary = peers.summarize(runs, peers.SIDES)
    args = peers.parse_args(["--methods", "ottt_a"])
    md = peers.render(summary, peers.SIDES, args, {"gflops": 200.0, "derivation": "d"}, runs)
    assert "| OTTT_A | 6.000 | 4.000 | 1.50× | 1 |" in md  # SpikingJelly / ours
    assert "| OTTT_A | 400.0 | 100 | 50% |" in md  # 400 GFLOP in 4 s against a 200 GFLOP/s peak
    assert "fp32 peak: d." in md and "ottt_jax: `(none)`" in md
