"""Digits test accuracy with ``compute_dtype=bfloat16`` against float32, seed by seed.

``python -m benchmarks.bf16_accuracy [--method M] [--seeds 0 1 2] [--epochs N]`` trains the
``digits`` preset (the same runs as ``ottt-train --set compute_dtype=D --set seed=S``) in float32
and in bfloat16 for each seed on one device and prints a markdown table of the final test
accuracies and their difference in test images (the digits test split has 360 images).

Tolerance (BENCHMARKS.md §9, "bfloat16 end to end"): the rule :func:`benchmarks.accuracy.matches`
applies to OTTT against BPTT: bfloat16's mean over the seeds is at least float32's minus the larger
of float32's seed standard deviation and one test image. Seed by seed the two dtypes are not held
to one image: bfloat16 is another rounding of the same run, so its trajectory drifts from
float32's like another seed's would (float32 alone spans 3 test images over seeds 0–2).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import Any

from benchmarks.accuracy import ONE_IMAGE_PP, matches, mean_std, run_digits
from ottt_jax.xla_flags import set_default_cpu_flags

DTYPES = ("float32", "bfloat16")


def images(acc: float) -> int:
    """Return the number of correct test images behind a test accuracy (360 images).

    Args:
      acc: a test accuracy in [0, 1].

    Returns:
      ``round(acc · 360)``.

    Raises:
      ValueError: ``acc`` is not a whole number of images out of 360.
    """
    n = acc * 100 / ONE_IMAGE_PP
    if abs(n - round(n)) > 1e-3:
        raise ValueError(f"test_accuracy {acc!r} is not a whole number of the 360 test images")
    return round(n)


def compare(method: str, seeds: Sequence[int], epochs: int | None) -> list[dict[str, Any]]:
    """Train every seed in both dtypes and return one row per seed.

    Args:
      method: the rule (``method`` key).
      seeds: the seeds to train.
      epochs: epochs per run (None keeps the preset's 30).

    Returns:
      ``[{'seed', 'float32', 'bfloat16' (correct test images), 'diff' (bf16 − f32 images),
      'seconds': {dtype: trainer seconds}}]``.
    """
    rows = []
    for seed in seeds:
        row: dict[str, Any] = {"seed": seed, "seconds": {}}
        for dt in DTYPES:
            r = run_digits(method, seed, epochs=epochs, overrides=[f"compute_dtype={dt}"])
            row[dt] = images(r["test_accuracy"])
            row["seconds"][dt] = r["seconds"]
            print(f"seed {seed} {dt}: {row[dt]}/360, {r['seconds']:.1f} s", flush=True)
        row["diff"] = row["bfloat16"] - row["float32"]
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], method: str, command: str) -> str:
    """Return the markdown table of :func:`compare`'s rows and the tolerance verdict."""
    out = [
        f"`{command}` (digits preset, method {method}; test split 360 images):",
        "",
        "| seed | float32 test acc | bfloat16 test acc | bf16 − f32 (images) "
        "| train s f32 / bf16 |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['seed']} | {100 * r['float32'] / 360:.2f}% ({r['float32']}) | "
            f"{100 * r['bfloat16'] / 360:.2f}% ({r['bfloat16']}) | {r['diff']:+d} | "
            f"{r['seconds']['float32']:.1f} / {r['seconds']['bfloat16']:.1f} |"
        )
    f32 = [r["float32"] / 360 for r in rows]
    m32, s32 = mean_std(f32)
    m16, _ = mean_std([r["bfloat16"] / 360 for r in rows])
    tol = max(0.0 if math.isnan(s32) else s32, ONE_IMAGE_PP / 100)
    verdict = "within" if within(rows) else "OUTSIDE"
    out += [
        "",
        f"Mean over the seeds: float32 {100 * m32:.2f}%, bfloat16 {100 * m16:.2f}% "
        f"({(m16 - m32) * 360:+.2f} images); per seed bfloat16 − float32 from "
        f"{min(r['diff'] for r in rows):+d} to {max(r['diff'] for r in rows):+d} images. "
        f"Tolerance: bfloat16's mean ≥ float32's − {tol * 360:.2f} images (the larger of "
        f"float32's seed std and one image): {verdict}.",
    ]
    return "\n".join(out) + "\n"


def within(rows: list[dict[str, Any]]) -> bool:
    """Return whether bfloat16's mean accuracy is within the tolerance of float32's.

    The tolerance is :func:`benchmarks.accuracy.matches`': the larger of float32's seed standard
    deviation and one test image.
    """
    return matches([r["bfloat16"] / 360 for r in rows], [r["float32"] / 360 for r in rows])


def main(argv: list[str] | None = None) -> int:
    """Parse the options, train and print the table; return 0, or 1 outside the tolerance."""
    set_default_cpu_flags()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="ottt_a", help="the rule (default: ottt_a, the preset's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="default: the preset's 30")
    args = p.parse_args(argv)
    if any(s < 0 for s in args.seeds):
        raise SystemExit(f"--seeds must be >= 0, got {args.seeds}")
    if args.epochs is not None and args.epochs < 1:
        raise SystemExit(f"--epochs must be >= 1, got {args.epochs}")
    argv = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m benchmarks.bf16_accuracy", *argv])
    rows = compare(args.method, args.seeds, args.epochs)
    text = render(rows, args.method, command)
    print(text)
    return 0 if within(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
