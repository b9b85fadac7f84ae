"""Section 5 of BENCHMARKS.md: accuracy against the inference time steps (Fig. 3 analog).

One OTTT_A model is trained on digits with T = 6 (the ``digits`` preset with ``num_steps=6``) and
its final checkpoint is evaluated at ``T_eval`` ∈ {1, 2, 4, 6, 8, 12, 16} with
``ottt_jax.training.evaluate_checkpoint``.

Run ``python -m benchmarks.time_steps [--quick]`` to print the section.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping

from benchmarks.accuracy import ONE_IMAGE_PP, render, run_digits
from benchmarks.common import Section, Timer, figure_path, md_table, rel
from ottt_jax.xla_flags import set_default_cpu_flags

TITLE = "5. Inference time steps (Fig. 3 analog)"
TRAIN_STEPS = 6
EVAL_STEPS = (1, 2, 4, 6, 8, 12, 16)
QUICK_EPOCHS = 5


def trend(acc: Mapping[int, float], t_train: int) -> dict[str, float]:
    """Summarize accuracy-by-``T_eval`` around the training ``T``.

    Args:
      acc: ``{T_eval: accuracy}`` (fractions); must hold ``t_train`` and some other ``T``.
      t_train: the training ``T``.

    Returns:
      ``{'at_train', 'min_fewer', 'mean_more', 'max_more', 'gain_1_to_train'}``: accuracy at
      ``t_train``, the lowest accuracy at fewer steps, mean and max at more steps (NaN where no
      such ``T``), and the gain from ``T_eval = min`` to ``t_train``.
    """
    if t_train not in acc:
        raise ValueError(f"acc must contain the training T={t_train}, got {sorted(acc)}")
    fewer = [a for t, a in acc.items() if t < t_train]
    more = [a for t, a in acc.items() if t > t_train]
    nan = float("nan")
    return {
        "at_train": acc[t_train],
        "min_fewer": min(fewer) if fewer else nan,
        "mean_more": sum(more) / len(more) if more else nan,
        "max_more": max(more) if more else nan,
        "gain_1_to_train": acc[t_train] - acc[min(acc)],
    }


def _plot(ts: list[int], accs: list[float], losses: list[float], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(ts, [100 * a for a in accs], "o-", label="OTTT_A, trained with T = 6")
    ax2.plot(ts, losses, "o-", color="C1", label="OTTT_A, trained with T = 6")
    for ax in (ax1, ax2):
        ax.axvline(TRAIN_STEPS, color="gray", ls="--", label="training T")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ts)
        ax.set_xticklabels([str(t) for t in ts])
        ax.set_xlabel("inference time steps T_eval")
        ax.legend(fontsize=8)
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_title("digits: accuracy of argmax Σ_t out_t")
    ax2.set_ylabel("test cross-entropy per step (nats)")
    ax2.set_title("digits: mean per-step test loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(quick: bool) -> Section:
    """Train with T = 6, evaluate at every ``T_eval`` and return section 5.

    Args:
      quick: train ``QUICK_EPOCHS`` epochs instead of the preset's 30.

    Returns:
      The section: setup, table, figure and claims.
    """
    import jax

    from ottt_jax import training

    with Timer() as total:
        epochs = QUICK_EPOCHS if quick else None
        r = run_digits(
            "ottt_a", 0, epochs=epochs, overrides=(f"num_steps={TRAIN_STEPS}",), keep_workdir=True
        )
        try:
            evals = {}
            for t in EVAL_STEPS:
                with Timer() as tm:
                    e = training.evaluate_checkpoint(
                        r["workdir"], num_steps=t, which="latest", devices=jax.devices()[:1]
                    )
                evals[t] = (e, tm.seconds)
        finally:
            shutil.rmtree(r["workdir"], ignore_errors=True)
        cfg = r["cfg"]
        acc = {t: e["accuracy"] for t, (e, _) in evals.items()}
        rows = [
            [
                _t_label(t),
                f"{100 * e['accuracy']:.2f}",
                round(e["accuracy"] * e["count"]),
                f"{e['loss']:.4f}",
                f"{sec:.1f}",
            ]
            for t, (e, sec) in evals.items()
        ]
        table = md_table(
            [
                "T_eval",
                "test accuracy (%)",
                f"correct / {int(evals[TRAIN_STEPS][0]['count'])}",
                "test CE per step",
                "eval s (compile incl.)",
            ],
            rows,
        )
        fig = figure_path("time_steps_digits.png")
        ts = list(evals)
        _plot(ts, [acc[t] for t in ts], [evals[t][0]["loss"] for t in ts], fig)

    s = trend(acc, TRAIN_STEPS)
    n_epochs = cfg.optim.epochs
    mode = (
        f"**Quick mode**: {n_epochs} epochs instead of 30, a smoke check only."
        if quick
        else f"Full mode: {n_epochs} epochs."
    )
    setup = (
        "Setup: `config.get_config('digits', ['num_steps=6'])` (OTTT_A, seed 0, otherwise the "
        f"section-3 preset), trained for {n_epochs} epochs ({r['steps']} iterations, "
        f"{r['wall']:.1f} s wall), then `training.evaluate_checkpoint(workdir, num_steps=T_eval, "
        "which='latest')` on the 360 test images: the final weights, the same static image fed "
        "at every step, prediction `argmax Σ_t out_t`. " + mode
    )
    discussion = (
        f"Accuracy at the training T = {TRAIN_STEPS} is {100 * s['at_train']:.2f}%. With fewer "
        f"steps it is {100 * acc[min(acc)]:.2f}% at T_eval = {min(acc)} (fewer step outputs "
        "are summed into the prediction). With more steps than in training the mean accuracy "
        f"is {100 * s['mean_more']:.2f}% (max {100 * s['max_more']:.2f}%), "
        + _change_text(s["mean_more"] - s["at_train"])
        + f" relative to T = {TRAIN_STEPS}; one test image is {ONE_IMAGE_PP:.2f} pp and this is "
        "one training seed, so changes of one or two images are not distinguishable from noise. "
        f"Digits is close to saturated at T = {TRAIN_STEPS}, which leaves little room for the "
        "gain from extra steps that the paper reports on ImageNet."
    )
    body = "\n\n".join([setup, table, f"![time steps]({rel(fig)})", discussion])
    tol = ONE_IMAGE_PP / 100
    claims = [
        (
            "Accuracy grows with the inference time steps up to the training T (Fig. 3)",
            "holds" if s["gain_1_to_train"] > tol else "misses",
            f"T_eval = {min(acc)}: {100 * acc[min(acc)]:.2f}% → T_eval = {TRAIN_STEPS}: "
            f"{100 * s['at_train']:.2f}%",
        ),
        (
            "Evaluating with more steps than in training works and can raise accuracy (Fig. 3, "
            "ImageNet)",
            "holds" if s["mean_more"] >= s["at_train"] - tol else "misses",
            f"T_eval ∈ {{{', '.join(str(t) for t in acc if t > TRAIN_STEPS)}}}: mean "
            f"{100 * s['mean_more']:.2f}%, max {100 * s['max_more']:.2f}% vs "
            f"{100 * s['at_train']:.2f}% at T = {TRAIN_STEPS} ('works': no drop beyond one test "
            "image; a gain is " + ("seen" if s["max_more"] > s["at_train"] else "not seen") + ")",
        ),
    ]
    return Section(TITLE, body, figures=[rel(fig)], claims=claims, seconds=total.seconds)


def _change_text(delta: float) -> str:
    """Describe an accuracy change (fraction) in percentage points and test images."""
    images = delta * 100 / ONE_IMAGE_PP
    if abs(images) < 0.05:
        return "no change"
    word = "a gain" if delta > 0 else "a drop"
    return f"{word} of {abs(100 * delta):.2f} pp ({abs(images):.1f} test images on average)"


def _t_label(t: int) -> str:
    return f"**{t}** (training T)" if t == TRAIN_STEPS else str(t)


if __name__ == "__main__":
    set_default_cpu_flags()  # XLA:CPU defaults of the benchmarks (ottt_jax.xla_flags)
    print(render(run(quick="--quick" in sys.argv[1:])))
