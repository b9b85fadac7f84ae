"""TPU memory and roofline of the real training step, compiled for TPU slices without a TPU.

``python -m benchmarks.tpu_aot [--groups TRPBt] [--budget SECONDS] [--out-json F] [--out-md F]``
compiles :func:`ottt_jax.training.steps.make_train_step` through
:func:`ottt_jax.training.aot.aot_report`
(the path of ``ottt-train --aot``) for each case and writes one JSON record per case as soon as
it is compiled, so an interrupted run keeps what it did. Needs ``pip install -e ".[tpu-aot]"``.

Groups (``--groups`` letters, run in the order given; default ``TRPBt``; each VGG-11 compile takes
1–7 min on a shared 2-core CPU):

* ``T``: VGG-11 (``cifar10_vgg``), batch 128 on ``v5e:1x1``: OTTT_A and BPTT at T ∈ {6, 32},
  float32 and bfloat16; ``t``: the rest of the T ∈ {2, 6, 16, 32} matrix (T ∈ {2, 16} for those
  two rules, and OTTT_O, SLTT, SLTT-K at every T).
* ``R``: NF-ResNet-34 (``imagenet_nfresnet34``, 224²), batch 64 on ``v5e:1x1``, T = 6.
* ``P``: pod slices: VGG-11 at 128 per chip on ``v5e:4x4`` and NF-ResNet-34 at 64 per chip on
  ``v5p:4x4x4`` (64 chips).
* ``B``: the largest batch per chip that fits one v5e chip, OTTT_A vs BPTT at T = 6 and 32
  (float32), predicted from two compiles and bracketed by compiles (:func:`largest_batch`).

``--resume`` keeps the cases already in ``--out-json``.

Every number is compiled, not measured on hardware; step times and images/s are roofline
estimates (see :mod:`ottt_jax.training.aot`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from ottt_jax.xla_flags import set_default_cpu_flags

MIB = 2.0**20
RULES_FIRST = ("ottt_a", "bptt")
RULES_REST = ("ottt_o", "sltt", "sltt_k")
DTYPES = ("float32", "bfloat16")


def cases(groups: str) -> list[dict[str, Any]]:
    """Return the compile cases of ``groups``, in the order the letters come.

    ``T``: OTTT_A and BPTT at T ∈ {6, 32}, both dtypes; ``t``: the rest of the T group; ``R``:
    NF-ResNet-34; ``P``: pod slices (``B`` is the batch search, run by :func:`main`).

    Returns:
      ``[{'group', 'preset', 'topology', 'set': [KEY=VALUE, ...]}]``.
    """
    first = [(r, t) for t in (6, 32) for r in RULES_FIRST]
    rest = [(r, t) for t in (2, 16) for r in RULES_FIRST]
    rest += [(r, t) for r in RULES_REST for t in (6, 32, 2, 16)]
    out = []
    for g in groups:
        if g in "Tt":
            for r, t in first if g == "T" else rest:
                for d in DTYPES:
                    out.append(_case("T", "cifar10_vgg", "v5e:1x1", r, t, d, 128))
        elif g == "R":
            for r in RULES_FIRST:
                for d in DTYPES:
                    out.append(_case("R", "imagenet_nfresnet34", "v5e:1x1", r, 6, d, 64))
        elif g == "P":
            for r in RULES_FIRST:
                out.append(_case("P", "cifar10_vgg", "v5e:4x4", r, 6, "float32", 128 * 16))
                out.append(_case("P", "imagenet_nfresnet34", "v5p:4x4x4", r, 6, "float32", 64 * 64))
    return out


def _case(group, preset, topology, rule, t, dtype, batch):
    sets = [f"method={rule}", f"num_steps={t}", f"compute_dtype={dtype}"]
    return {
        "group": group,
        "preset": preset,
        "topology": topology,
        "set": [*sets, f"data.batch_size={batch}"],
    }


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Compile one case and return its :func:`ottt_jax.training.aot.aot_report` plus the case."""
    from ottt_jax import config as config_lib
    from ottt_jax.training import aot

    cfg = config_lib.get_config(case["preset"], case["set"])
    t0 = time.perf_counter()
    r = aot.aot_report(cfg, case["topology"])
    r["wall_s"] = time.perf_counter() - t0
    r["case"] = case
    return r


def largest_batch(rule: str, t: int, *, deadline: float, step: int = 32) -> dict[str, Any]:
    """Return the largest per-chip batch (a multiple of ``step``) whose step fits one v5e chip.

    The compiled peak is nearly affine in the batch, so two compiles that fit (128 and 256, or
    64 and 128) predict the largest batch under the chip's HBM. The search compiles the
    prediction, gallops up from a batch that fits (``step``, 2·``step``, 4·``step``, … above it)
    until one fails, then bisects the bracket down to ``step`` (about log2 of the bracket in
    compiles; the prediction can be off by hundreds of images, since the compiler packs large
    batches differently). Every bracket end is a compile. Fitting is assumed monotonic in the
    batch (the peak itself is not quite: the compiler's packing varies by a few MiB).

    Args:
      rule: the rule's name.
      t: the number of time steps.
      deadline: ``time.time()`` after which no compile starts beyond the first two.
      step: the batch granularity.

    Returns:
      ``{'rule', 'T', 'fits': largest batch that compiled within HBM, 'fails': smallest batch
      that did not (None if none was tried), 'predicted', 'tries': [(batch, fits, peak MiB or
      None)], 'complete': fits + step == fails}``.
    """
    from ottt_jax.accelerators import CHIPS

    tries: dict[int, tuple[bool, float | None]] = {}

    def fits(b):
        if b not in tries:
            r = run_case(_case("B", "cifar10_vgg", "v5e:1x1", rule, t, "float32", b))
            peak = None if r["memory"] is None else r["memory"]["peak"]
            tries[b] = (r["fits"], peak)
        return tries[b][0]

    pts = [b for b in (128, 256) if fits(b)]
    if len(pts) < 2:
        pts = [b for b in (64, 128) if fits(b)]
    predicted = None
    if len(pts) == 2:
        (b0, b1), (p0, p1) = pts, (tries[pts[0]][1], tries[pts[1]][1])
        slope = (p1 - p0) / (b1 - b0)
        predicted = max(step, int((CHIPS["v5e"].hbm_bytes - p0) / slope + b0) // step * step)
    lo = max([b for b, (ok, _) in tries.items() if ok], default=0)
    hi = min([b for b, (ok, _) in tries.items() if not ok], default=None)
    stride = step

    def following(lo: int, hi: int | None) -> int | None:
        if hi is None:
            return lo + stride
        mid = lo + (hi - lo) // (2 * step) * step
        return mid if mid > lo else None

    inside = predicted is not None and predicted > lo and (hi is None or predicted < hi)
    b = predicted if inside else following(lo, hi)
    while b is not None and time.time() < deadline:
        if fits(b):
            lo = b
            stride *= 2 if hi is None else 1
        else:
            hi = b
        b = following(lo, hi)
    return {
        "rule": rule,
        "T": t,
        "fits": lo,
        "fails": hi,
        "predicted": predicted,
        "tries": [(k, ok, None if p is None else p / MIB) for k, (ok, p) in sorted(tries.items())],
        "complete": hi is not None and hi - lo == step,
    }


def render(records: list[dict[str, Any]], searches: list[dict[str, Any]], meta: dict) -> str:
    """Return the markdown tables of the compiled cases and the batch searches."""
    lines = [
        f"Compiled, not measured on hardware: jax {meta['jax']}, libtpu {meta['libtpu']}, "
        f"command `{meta['command']}`. Memory per chip from the TPU compiler's "
        "`memory_analysis()`; peak = arguments + outputs − donated + temporaries + code. "
        "GFLOP: `cost_analysis()` × T (an upper bound; XLA counts the time loop's body once). "
        "Step time and images/s per chip: roofline **estimates** from that upper bound.",
        "",
        "| case | topology | batch/chip | T | dtype | method | args MiB | temp MiB | peak MiB | "
        "fits | GFLOP ≤ | est. ms/step | est. img/s/chip | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        c, m = r["config"], r["memory"]
        if m is None:
            cells = ["—", "—", "—", "**no** (compiler OOM)", "—", "—", "—"]
        else:
            roof = r["roofline"]
            cells = [
                f"{m['argument'] / MIB:,.0f}",
                f"{m['temp'] / MIB:,.0f}",
                f"{m['peak'] / MIB:,.0f}",
                "yes" if r["fits"] else "**no**",
                f"{r['cost']['high']['flops'] / 1e9:,.0f}",
                f"{1e3 * roof['step_s']:,.1f}",
                f"{roof['images_per_s_per_chip']:,.0f}",
            ]
        lines.append(
            f"| {r['case']['group']}: {c['name']} | {r['topology']} | {r['per_chip_batch']} | "
            f"{c['num_steps']} | {c['compute_dtype']} | {c['method']} | "
            + " | ".join(cells)
            + f" | {r['compile_s']:.0f} |"
        )
    if searches:
        lines += [
            "",
            "Largest batch per v5e chip (VGG-11, float32): compiled batches that fit / the "
            "smallest that did not.",
            "",
            "| method | T | fits | does not fit | tries (batch: peak MiB or OOM) |",
            "|---|---|---|---|---|",
        ]
        for s in searches:
            tries = ", ".join(
                f"{b}: {'OOM' if p is None else f'{p:,.0f}'}" for b, _, p in s["tries"]
            )
            lines.append(
                f"| {s['rule']} | {s['T']} | {s['fits']} | {s['fails'] or '—'} | {tries} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the groups within the budget; write JSON and markdown; return 0."""
    set_default_cpu_flags()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--groups", default="TRPBt", help="letters of T, t, R, P, B in run order")
    p.add_argument("--budget", type=float, default=3600, help="seconds; no case starts after")
    p.add_argument("--resume", action="store_true", help="keep the cases --out-json has")
    p.add_argument("--out-json", default="tpu_aot.json")
    p.add_argument("--out-md", default="tpu_aot.md")
    args = p.parse_args(argv)
    import jax

    from ottt_jax.training import aot

    deadline = time.time() + args.budget
    meta = {
        "jax": jax.__version__,
        "libtpu": aot.libtpu_version(),
        "command": "python -m benchmarks.tpu_aot " + " ".join(argv or sys.argv[1:]),
    }
    records, searches = [], []
    if args.resume and os.path.exists(args.out_json):
        with open(args.out_json) as f:
            records = json.load(f)["cases"]
    done = [r["case"] for r in records]

    def save():
        with open(args.out_json, "w") as f:
            json.dump({"meta": meta, "cases": records, "searches": searches}, f, indent=1)
        with open(args.out_md, "w") as f:
            f.write(render(records, searches, meta))

    for g in args.groups:
        if g == "B":
            for t in (6, 32):
                for rule in RULES_FIRST:
                    if time.time() > deadline:
                        break
                    searches.append(largest_batch(rule, t, deadline=deadline))
                    print(searches[-1], flush=True)
                    save()
            continue
        for case in cases(g):
            if case in done:
                continue
            if time.time() > deadline:
                print(f"budget spent before {case}", flush=True)
                break
            r = run_case(case)
            records.append(r)
            peak = (
                "compiler OOM" if r["memory"] is None else f"{r['memory']['peak'] / MIB:,.0f} MiB"
            )
            print(
                f"{case['preset']} {case['topology']} {' '.join(case['set'])}: peak {peak}, "
                f"compile {r['compile_s']:.0f} s",
                flush=True,
            )
            save()
    save()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    raise SystemExit(main())
