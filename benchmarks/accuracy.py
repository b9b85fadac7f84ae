"""Section 3 of BENCHMARKS.md: OTTT_A, OTTT_O, BPTT, SLTT and SLTT-K accuracy on digits (Table 1).

Every method trains the ``digits`` preset (a ``[32, 'M', 64]`` spiking conv net, T = 4, batch 32,
SGD 0.1 with momentum 0.9, cosine schedule, 30 epochs) with only ``method`` changed, for seeds
0, 1 and 2, on one device. The table gives the final test accuracy (mean ± std over seeds), the
best evaluation during training, and the wall time of each run.

Run ``python -m benchmarks.accuracy [--quick]`` to print the section.

:func:`run_digits` is also used by the firing-rate section, which reuses these trained models when
both sections run in one process.
"""

from __future__ import annotations

import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import Section, Timer, figure_path, md_table, rel
from ottt_jax.xla_flags import set_default_cpu_flags

TITLE = "3. Accuracy on digits (Table 1 analog)"
METHODS = ("ottt_a", "ottt_o", "bptt")
LABELS = {"ottt_a": "OTTT_A", "ottt_o": "OTTT_O", "bptt": "BPTT"}
#: Rows beyond the paper: SLTT and SLTT-K (Meng et al., ICCV 2023), SLTT-K with the config's
#: default ``rule.k = 2`` of the preset's T = 4.
SLTT_METHODS = ("sltt", "sltt_k")
SLTT_LABELS = {"sltt": "SLTT", "sltt_k": "SLTT-K (K=2)"}
SEEDS = (0, 1, 2)
#: Epochs of the quick mode (the full mode keeps the preset's 30).
QUICK_EPOCHS = 10
#: The project's targets for the digits preset.
TARGET_ACCURACY = 0.99
TARGET_SECONDS = 60.0
#: OTTT_O's extra, clearly labelled row if it misses the target with the preset lr.
TUNED_OTTT_O_LR = 0.05
#: One test image of the 360 is this many percentage points.
ONE_IMAGE_PP = 100.0 / 360

_CACHE: dict[tuple, dict[str, Any]] = {}


def digits_config(
    method: str, seed: int, *, epochs: int | None = None, overrides: Sequence[str] = ()
) -> Any:
    """Return the ``digits`` preset with ``method``, ``seed``, ``epochs`` and extra overrides."""
    from ottt_jax import config

    ov = [f"method={method}", f"seed={seed}", "progress=false", *overrides]
    if epochs is not None:
        ov.append(f"optim.epochs={epochs}")
    return config.get_config("digits", ov)


def run_digits(
    method: str,
    seed: int,
    *,
    epochs: int | None = None,
    overrides: Sequence[str] = (),
    keep_workdir: bool = False,
) -> dict[str, Any]:
    """Train the digits preset once on one device and return what the sections report.

    Results are memoized per process (by method, seed, epochs and overrides), so sections that
    need the same trained model share one run. The workdir lives in a fresh temporary folder and
    is deleted afterwards unless ``keep_workdir``.

    Args:
      method: 'ottt_a', 'ottt_o' or 'bptt'.
      seed: the run's seed.
      epochs: number of epochs (None keeps the preset's 30).
      overrides: further ``key=value`` overrides of the preset.
      keep_workdir: keep the checkpoints (the caller deletes ``result['workdir']``).

    Returns:
      ``{'cfg', 'method', 'seed', 'test_accuracy', 'best_test_accuracy', 'seconds' (trainer),
      'wall' (time around train(), s), 'steps', 'params', 'workdir'}``.
    """
    import jax

    key = (method, seed, epochs, tuple(overrides))
    if key in _CACHE and not keep_workdir:
        return _CACHE[key]
    from ottt_jax import training

    cfg = digits_config(method, seed, epochs=epochs, overrides=overrides)
    workdir = tempfile.mkdtemp(prefix="ottt_bench_")
    t0 = time.perf_counter()
    r = training.train(cfg, workdir=workdir, devices=jax.devices()[:1])
    wall = time.perf_counter() - t0
    out = {
        "cfg": cfg,
        "method": method,
        "seed": seed,
        "test_accuracy": float(r["test_accuracy"]),
        "best_test_accuracy": float(r["best_test_accuracy"]),
        "seconds": float(r["seconds"]),
        "wall": wall,
        "steps": int(r["steps"]),
        "params": r["params"],
        "workdir": workdir if keep_workdir else None,
    }
    if not keep_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
        _CACHE[key] = out
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Return the mean and the sample standard deviation (ddof = 1; NaN for one value)."""
    if not values:
        raise ValueError("values must not be empty")
    m = statistics.fmean(values)
    return m, (statistics.stdev(values) if len(values) > 1 else float("nan"))


def fmt_pct(mean: float, std: float) -> str:
    """Format fractions as ``'99.63 ± 0.13'`` percent (only the mean when std is NaN)."""
    if math.isnan(std):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def matches(ottt: Sequence[float], bptt: Sequence[float]) -> bool:
    """Return whether OTTT 'matches or beats' BPTT: its mean is at least BPTT's minus a tolerance.

    The tolerance is the larger of BPTT's seed standard deviation and one test image (1/360).
    """
    m_o, _ = mean_std(ottt)
    m_b, s_b = mean_std(bptt)
    tol = max(0.0 if math.isnan(s_b) else s_b, ONE_IMAGE_PP / 100)
    return m_o >= m_b - tol - 1e-12


def _images(delta: float) -> float:
    """Convert an accuracy difference (fraction) to test images of the 360."""
    return delta * 100 / ONE_IMAGE_PP


def _plot(rows: list[tuple[str, list[dict]]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (_label, runs) in enumerate(rows):
        accs = [100 * r["test_accuracy"] for r in runs]
        m, s = mean_std(accs)
        ax1.bar(i, m, yerr=0 if math.isnan(s) else s, color=f"C{i}", alpha=0.6, capsize=4)
        ax1.plot([i] * len(accs), accs, "ko", ms=4, label="one seed" if i == 0 else None)
        walls = [r["wall"] for r in runs]
        secs = [r["seconds"] for r in runs]
        ax2.plot([i - 0.1] * len(walls), walls, "o", color=f"C{i}")
        ax2.plot([i + 0.1] * len(secs), secs, "x", color=f"C{i}")
    ax2.plot([], [], "ko", label="wall clock around train()")
    ax2.plot([], [], "kx", label="trainer's 'seconds'")
    ax2.axhline(TARGET_SECONDS, color="r", ls="--", label=f"{TARGET_SECONDS:.0f} s target")
    names = [label for label, _ in rows]
    lo = min(100 * r["test_accuracy"] for _, runs in rows for r in runs)
    ax1.set_ylim(max(0.0, min(lo, 100 * TARGET_ACCURACY) - 1.0), 100.2)
    ax1.axhline(100 * TARGET_ACCURACY, color="r", ls="--", label="99% target")
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, fontsize=8)
        ax.set_xlabel("training method")
        ax.legend(fontsize=8)
    ax1.set_ylabel("final test accuracy (%)")
    ax1.set_title("digits, mean ± std over seeds (bars)")
    ax2.set_ylabel("time per run (s)")
    ax2.set_ylim(bottom=0)
    ax2.set_title("wall time per training run")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(quick: bool) -> Section:
    """Train every method on digits and return section 3.

    Args:
      quick: one seed (0) and ``QUICK_EPOCHS`` epochs instead of three seeds and 30 epochs.

    Returns:
      The section: setup, table, figure and claims.
    """
    with Timer() as total:
        seeds = SEEDS[:1] if quick else SEEDS
        epochs = QUICK_EPOCHS if quick else None
        rows: list[tuple[str, list[dict]]] = []
        by_method = {}
        for m in METHODS:
            by_method[m] = [run_digits(m, s, epochs=epochs) for s in seeds]
            rows.append((LABELS[m], by_method[m]))
        acc = {m: [r["test_accuracy"] for r in runs] for m, runs in by_method.items()}
        tuned = None
        if not quick and mean_std(acc["ottt_o"])[0] < TARGET_ACCURACY:
            ov = (f"optim.lr={TUNED_OTTT_O_LR}",)
            tuned = [run_digits("ottt_o", s, epochs=epochs, overrides=ov) for s in seeds]
            rows.append((f"OTTT_O, tuned lr {TUNED_OTTT_O_LR} (extra row)", tuned))
        for m in SLTT_METHODS:
            by_method[m] = [run_digits(m, s, epochs=epochs) for s in seeds]
            acc[m] = [r["test_accuracy"] for r in by_method[m]]
            rows.append((SLTT_LABELS[m], by_method[m]))
        cfg = by_method["ottt_a"][0]["cfg"]
        n_epochs = cfg.optim.epochs

        table_rows = []
        for label, runs in rows:
            a = [r["test_accuracy"] for r in runs]
            b = [r["best_test_accuracy"] for r in runs]
            table_rows.append(
                [
                    label,
                    len(runs),
                    n_epochs,
                    runs[0]["cfg"].optim.lr,
                    fmt_pct(*mean_std(a)),
                    f"{100 * max(a):.2f}",
                    fmt_pct(*mean_std(b)),
                    ", ".join(f"{100 * x:.2f}" for x in a),
                    f"{statistics.fmean(r['seconds'] for r in runs):.1f}",
                    f"{statistics.fmean(r['wall'] for r in runs):.1f} "
                    f"(max {max(r['wall'] for r in runs):.1f})",
                ]
            )
        table = md_table(
            [
                "method",
                "seeds",
                "epochs",
                "lr",
                "final test acc. (%) mean ± std",
                "best seed (%)",
                "best eval during training (%) mean ± std",
                "per seed (%)",
                "trainer s / run",
                "wall s / run (max)",
            ],
            table_rows,
        )
        fig = figure_path("accuracy_digits.png")
        _plot(rows, fig)

    mode = (
        f"**Quick mode**: 1 seed and {n_epochs} epochs (not the preset's 30), so these numbers are "
        "a smoke check, not the benchmark."
        if quick
        else f"Full mode: seeds {', '.join(map(str, seeds))}, the preset's {n_epochs} epochs."
    )
    ma, mo, mb = (mean_std(acc[m]) for m in METHODS)
    all_runs = [r for _, runs in rows for r in runs]
    max_wall = max(r["wall"] for r in all_runs)
    max_sec = max(r["seconds"] for r in all_runs)
    setup = (
        "Setup: `config.get_config('digits', ['method=<m>', 'seed=<s>'])`, i.e. the "
        f"`{list(cfg.model.options.vgg_cfg)}` spiking conv net (sWS, LIF λ = "
        f"{cfg.model.decay}, sigmoid surrogate), T = {cfg.num_steps}, batch "
        f"{cfg.data.batch_size}, SGD lr {cfg.optim.lr} "
        f"momentum {cfg.optim.momentum}, cosine schedule, β = {cfg.loss_beta}; scikit-learn digits "
        "(1437 train / 360 test, pixels/16). Only `method` differs between rows; OTTT_O's cosine "
        "schedule counts its T updates per batch. Each run trains on one device "
        "(`devices=jax.devices()[:1]`), evaluates every 5 epochs and at the end, and writes its "
        "checkpoints to a temporary folder. 'final' is the accuracy after the last epoch; "
        "'best eval' is the best of the periodic test evaluations (selected on the test set, so "
        "optimistic). 'trainer s' is the `seconds` the trainer returns (from the first step, "
        "compilation included); 'wall s' is a clock around the whole `train()` call (model "
        "init, checkpointing and the curve plot included). Times depend on the machine's load; "
        "other jobs sharing the 2 cores make them longer. " + mode
    )
    discussion = (
        f"OTTT_A reaches {fmt_pct(*ma)}%, OTTT_O {fmt_pct(*mo)}% and BPTT {fmt_pct(*mb)}% final "
        f"test accuracy. One test image is {ONE_IMAGE_PP:.2f} pp. Against BPTT, OTTT_A is "
        f"{100 * (ma[0] - mb[0]):+.2f} pp and OTTT_O {100 * (mo[0] - mb[0]):+.2f} pp, i.e. "
        f"{_images(ma[0] - mb[0]):+.1f} and {_images(mo[0] - mb[0]):+.1f} test images per run "
        f"on average, with {len(seeds)} seed(s) per method. For reference, the performance "
        "notes measured OTTT_A 99.63 ± 0.13%, OTTT_O 99.26 ± 0.34% and BPTT 99.63 ± 0.34% "
        "with a throwaway implementation of the same setup. "
        f"The slowest run took {max_wall:.1f} s wall "
        f"({max_sec:.1f} s by the trainer's own clock)."
    )
    sltt_acc = {m: mean_std(acc[m]) for m in SLTT_METHODS}
    discussion += (
        f" Beyond the paper, SLTT reaches {fmt_pct(*sltt_acc['sltt'])}% and SLTT-K (K = 2 of "
        f"T = {cfg.num_steps}, its gradient not rescaled, as the authors') "
        f"{fmt_pct(*sltt_acc['sltt_k'])}%, with the same preset."
    )
    if tuned is not None:
        mt = mean_std([r["test_accuracy"] for r in tuned])
        discussion += (
            f" OTTT_O missed {100 * TARGET_ACCURACY:.0f}% with the preset lr, so an extra row "
            f"with lr {TUNED_OTTT_O_LR} is shown ({fmt_pct(*mt)}%); the preset row stays the "
            "reported result."
        )
    body = "\n\n".join([setup, table, f"![accuracy]({rel(fig)})", discussion])

    claims = []
    for m in ("ottt_a", "ottt_o"):
        ok = matches(acc[m], acc["bptt"])
        claims.append(
            (
                f"{LABELS[m]} matches or beats BPTT accuracy (Table 1)",
                "holds" if ok else "misses",
                ("quick mode, " if quick else "")
                + f"digits, {len(seeds)} seed(s), {n_epochs} epochs: {LABELS[m]} "
                f"{fmt_pct(*mean_std(acc[m]))}% vs BPTT {fmt_pct(*mb)}% (tolerance: BPTT's std "
                "or one test image)",
            )
        )
    for m in SLTT_METHODS:
        claims.append(
            (
                f"{SLTT_LABELS[m]} (beyond the paper) against BPTT on digits",
                "holds" if matches(acc[m], acc["bptt"]) else "misses",
                ("quick mode, " if quick else "")
                + f"{SLTT_LABELS[m]} {fmt_pct(*sltt_acc[m])}% vs BPTT {fmt_pct(*mb)}% (matches "
                "or beats, tolerance: BPTT's std or one test image)",
            )
        )
    if quick:
        verdict = "n/a"
    else:
        ok = ma[0] >= TARGET_ACCURACY and mo[0] >= TARGET_ACCURACY
        verdict = "holds" if ok else "misses"
    claims.append(
        (
            "Target: ≥ 99% mean test accuracy for OTTT_A and OTTT_O on digits",
            verdict,
            f"OTTT_A {fmt_pct(*ma)}%, OTTT_O {fmt_pct(*mo)}% ({n_epochs} epochs"
            + (", quick mode: too few epochs to judge)" if quick else ")"),
        )
    )
    claims.append(
        (
            "Target: each digits run under 60 s on 2 CPU cores, compilation included",
            "holds" if max_wall < TARGET_SECONDS else "misses",
            f"slowest of {len(all_runs)} runs: {max_wall:.1f} s wall around train(), "
            f"{max_sec:.1f} s trainer clock ({n_epochs} epochs)",
        )
    )
    return Section(TITLE, body, figures=[rel(fig)], claims=claims, seconds=total.seconds)


def render(section: Section) -> str:
    """Return a section as markdown: heading, body, claims table and its run time."""
    claims = md_table(["paper claim", "verdict", "evidence"], [list(c) for c in section.claims])
    return (
        f"## {section.title}\n\n{section.body}\n\n{claims}\n\n"
        f"_Section run time: {section.seconds:.0f} s._\n"
    )


if __name__ == "__main__":
    set_default_cpu_flags()  # XLA:CPU defaults of the benchmarks (ottt_jax.xla_flags)
    print(render(run(quick="--quick" in sys.argv[1:])))
