"""Shared pieces of the benchmark sections: the Section record, hardware and version strings."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = os.path.join(REPO, "figures")


@dataclasses.dataclass
class Section:
    """One section of BENCHMARKS.md.

    Attributes:
      title: the section heading (e.g. "3. Accuracy on digits (Table 1 analog)").
      body: markdown: what was run (setup), tables, and a short discussion of the result.
      figures: paths of PNGs written under ``figures/`` (relative to the repo root).
      claims: ``(paper claim, verdict, evidence)`` rows; verdict is 'holds', 'misses' or 'n/a',
        evidence gives the numbers.
      seconds: wall time the section took.
    """

    title: str
    body: str
    figures: list[str] = dataclasses.field(default_factory=list)
    claims: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0


def figure_path(name: str) -> str:
    """Return the absolute path of ``figures/<name>`` (creating the folder)."""
    os.makedirs(FIGURES, exist_ok=True)
    return os.path.join(FIGURES, name)


def rel(path: str) -> str:
    return os.path.relpath(path, REPO)


def hardware() -> str:
    """Describe this machine: CPU model, cores, memory, JAX backend."""
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}; JAX backend {jax.default_backend()}"


def versions() -> str:
    names = ["jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy"]
    out = []
    for n in names:
        try:
            out.append(f"{n} {metadata.version(n)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out) + f"; Python {platform.python_version()}"


def git_rev() -> str:
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_in_subprocess(code: str, xla_flags: str, *, xla_defaults: bool = False) -> Any:
    """Run ``code`` (which prints JSON on its last line) in a fresh Python with extra XLA flags.

    XLA flags are process-wide and read once, so flag experiments never run in this process.
    ``xla_defaults=True`` runs it without the benchmarks' XLA:CPU defaults
    (:mod:`ottt_jax.xla_flags`): they are removed from ``XLA_FLAGS`` and not added back.
    """
    from ottt_jax.xla_flags import DEFAULT_CPU_FLAGS, OPT_OUT_ENV

    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "").split()
    if xla_defaults:
        flags = [f for f in flags if f not in DEFAULT_CPU_FLAGS]
        env[OPT_OUT_ENV] = "0"
    env["XLA_FLAGS"] = " ".join([*flags, *xla_flags.split()])
    out = subprocess.check_output([sys.executable, "-c", code], env=env, text=True, cwd=REPO)
    return json.loads(out.strip().splitlines()[-1])


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def md_table(header: list[str], rows: list[list]) -> str:
    """Render a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
