"""Regenerate BENCHMARKS.md and figures/*.png: ``python -m benchmarks.run_all [--quick]``.

Sections run in order; each returns a :class:`benchmarks.common.Section`. ``--only 1,3`` runs a
subset (the others are left out of the file). The whole run takes under 30 minutes on 2 CPU
cores; ``--quick`` a few minutes (fewer seeds, epochs and T values, flagged in each section).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import sys
import traceback

from benchmarks.common import REPO, Section, git_rev, hardware, md_table, versions
from ottt_jax.xla_flags import set_default_cpu_flags

SECTIONS = {
    "1": "benchmarks.memory",
    "2": "benchmarks.speed",
    "3": "benchmarks.accuracy",
    "4": "benchmarks.batch_one",
    "5": "benchmarks.time_steps",
    "6": "benchmarks.firing",
    "7": "benchmarks.descent",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="a few-minute version of every section")
    p.add_argument("--only", default=None, help="comma-separated section numbers, e.g. 1,2")
    p.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    args = p.parse_args(argv)
    keys = list(SECTIONS) if args.only is None else [k.strip() for k in args.only.split(",")]
    unknown = [k for k in keys if k not in SECTIONS]
    if unknown:
        p.error(f"unknown sections {unknown}; valid: {', '.join(SECTIONS)}")

    started = datetime.datetime.now(datetime.timezone.utc)
    sections: list[Section] = []
    failed = []
    for k in keys:
        print(f"[run_all] section {k}: {SECTIONS[k]}", file=sys.stderr, flush=True)
        try:
            mod = importlib.import_module(SECTIONS[k])
            sections.append(mod.run(quick=args.quick))
        except Exception:  # record the failure in the report instead of losing the others
            failed.append((k, traceback.format_exc()))
            print(failed[-1][1], file=sys.stderr)

    cmd = "python -m benchmarks.run_all" + (" --quick" if args.quick else "")
    if args.only:
        cmd += f" --only {args.only}"
    total = sum(s.seconds for s in sections)
    lines = [
        "# Benchmarks",
        "",
        "Every number below was produced by one command, on the machine named here:",
        "",
        f'- **Command:** `{cmd}` (from the repository root, after `pip install -e ".[test]"`)',
        f"- **Date:** {started:%Y-%m-%d %H:%M} UTC; commit `{git_rev()}`"
        + ("; **quick mode** (fewer seeds/epochs/T values)" if args.quick else ""),
        f"- **Hardware:** {hardware()}; no GPU was available to this run",
        f"- **Software:** {versions()}",
        f"- **XLA_FLAGS:** `{os.environ.get('XLA_FLAGS', '') or '(none)'}` (the benchmarks' "
        "XLA:CPU default from `ottt_jax.xla_flags`; section 2's last row runs without it)",
        f"- **Wall time:** {total / 60:.1f} min for the sections below",
        "",
        "## Paper claims at a glance",
        "",
        md_table(
            ["section", "claim", "verdict", "evidence"],
            [[s.title.split(".")[0], c, v, e] for s in sections for c, v, e in s.claims],
        ),
        "",
    ]
    for s in sections:
        lines += [f"## {s.title}", "", s.body, "", f"*Section time: {s.seconds:.0f} s.*", ""]
    for k, tb in failed:
        lines += [f"## Section {k} failed", "", "```", tb.strip(), "```", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"[run_all] wrote {args.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    set_default_cpu_flags()  # XLA:CPU defaults of the benchmarks (ottt_jax.xla_flags)
    sys.exit(main())
