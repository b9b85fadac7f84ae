"""Where a training iteration's compiled memory goes, from XLA's buffer assignment.

``python -m benchmarks.memory_breakdown [--method ottt_a] [--steps 6] [--batch 128]`` compiles
the iteration of :func:`benchmarks.memory.measure` with XLA's dumps on, reads the live-range
report (``*-live-range.txt``: the buffers live at the program's peak) and the buffer assignment
(``*-buffer-assignment.txt``: each value's shape) and prints the live bytes at the peak by kind
next to the heap XLA allocates (``temp_size_in_bytes``, the number section 1 reports).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
import tempfile

from ottt_jax.xla_flags import set_default_cpu_flags

MIB = 2.0**20


def categorize(name: str, shape: str, batch: int) -> str:
    """Return the kind of a buffer live at the peak, from its HLO name and shape."""
    dims = [int(d) for d in re.findall(r"\d+", shape.split("]")[0].split("[", 1)[-1])]
    kernel = len(dims) == 4 and (dims[:2] == [3, 3] or dims[1:3] == [3, 3])
    activation = len(dims) == 4 and dims[0] == batch and not kernel
    if name.startswith(("params_", "opt_state_", "x.", "y.")):
        return "arguments (parameters, optimizer state, batch)"
    if name.startswith(("wide.arg_tuple", "while")):
        if activation:
            return "carried membrane and trace (the time loop's state)"
        if kernel or len(dims) <= 2:
            return "gradient accumulator (the time loop's carry)"
        return "other loop carry"
    if kernel and name.startswith("broadcast_multiply_fusion"):
        return "standardized kernels (sWS, hoisted: once per sequence)"
    if kernel and name.startswith("copy"):
        return "flipped kernels of the input-gradient conv (hoisted)"
    if activation:
        return "first conv of the static image and its bias (hoisted)"
    return "other (biases, gains, scalars)"


def _read_dump(dump: str, report: str) -> str:
    """Return the text of the iteration's ``*jit_fn*after_optimizations-<report>.txt`` dump."""
    found = glob.glob(os.path.join(dump, f"*jit_fn*after_optimizations-{report}.txt"))
    if len(found) != 1:
        raise RuntimeError(
            f"expected one {report} dump in {dump}, found {len(found)}: XLA reads --xla_dump_to "
            "when JAX starts, so call breakdown() before this process's first JAX computation"
        )
    with open(found[0]) as f:
        return f.read()


def breakdown(method: str, num_steps: int, batch: int) -> dict:
    """Compile the iteration with dumps and return ``{'heap', 'live', 'kinds': {kind: MiB}}``."""
    from benchmarks.memory import measure

    with tempfile.TemporaryDirectory(prefix="ottt_membreak_") as dump:
        os.environ["XLA_FLAGS"] = " ".join(
            [os.environ.get("XLA_FLAGS", ""), f"--xla_dump_to={dump}", "--xla_dump_hlo_as_text"]
        ).strip()
        heap = measure(method, num_steps, batch)["temp"]
        assignment = _read_dump(dump, "buffer-assignment")
        live = _read_dump(dump, "live-range")
    value = r"value: <\d+ (\S+)(?: \(phi\))? @\d+> \(size=\d+,offset=\d+\): (\S+)"
    shapes = {}
    for m in re.finditer(value, assignment):
        shapes.setdefault(m.group(1), m.group(2))
    block = live.split("(peak):", 1)[1]
    kinds: dict[str, float] = {}
    total = 0.0
    for m in re.finditer(r"^\s+(\S+): (\d+) bytes", block, re.M):
        name, size = m.group(1).removesuffix("{}"), int(m.group(2)) / MIB
        kind = categorize(name, shapes.get(name, ""), batch)
        kinds[kind] = kinds.get(kind, 0.0) + size
        total += size
    return {"heap": heap, "live": total, "kinds": kinds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", default="ottt_a")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=128)
    a = p.parse_args(argv)
    r = breakdown(a.method, a.steps, a.batch)
    print(
        f"{a.method}, VGG-11, batch {a.batch}, T = {a.steps}; XLA_FLAGS={os.environ['XLA_FLAGS']}"
    )
    print("| live at the peak | MiB |\n|---|---|")
    for kind, mib in sorted(r["kinds"].items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {mib:.1f} |")
    print(f"| **total live at the peak** | **{r['live']:.1f}** |")
    print(f"\nheap XLA allocates (temp_size_in_bytes, excludes the arguments): {r['heap']:.1f} MiB")
    return 0


if __name__ == "__main__":
    set_default_cpu_flags()  # XLA:CPU defaults of the benchmarks (ottt_jax.xla_flags)
    sys.exit(main())
