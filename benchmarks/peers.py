"""Same-run peer benchmark: ottt_jax against SpikingJelly 2.0 on this CPU.

``python -m benchmarks.peers`` (after ``pip install -e ".[peers]"``) times one training iteration
of the authors' VGG-11 sWS (CIFAR-10 shapes, batch 32, T = 6, SGD with momentum 0.9) for OTTT_A,
OTTT_O and BPTT in both frameworks. Every measurement runs in its own fresh process (one
warm-up iteration, then ``--iters`` timed ones on one fixed batch); the two sides alternate
order from round to round, and the table shows per side the median over the rounds of each
process's median. Both sides get the same seeded inputs (:func:`synthetic_batch`) and must have
the same number of parameters (9,228,362), which is checked.

It also reports ottt_jax's achieved GFLOP/s (XLA's cost analysis of the compiled iteration over
its measured time) against this CPU's fp32 peak, derived from ``lscpu`` and printed with its
derivation.

Options: ``--rounds N`` (3), ``--iters N`` (2), ``--batch`` (32), ``--steps`` (6),
``--methods ottt_a,ottt_o,bptt``, ``--quick`` (tiny sizes: checks that both sides run and
learn: loss decreases, parameters move), ``--json PATH``, ``--torch-python PATH`` (an interpreter
with torch, when it is not this one), and ``--xla-flags-ab FLAGS``: instead of the peer, time
ottt_jax with and without extra ``XLA_FLAGS`` (appended to the user's own), alternated, ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

from benchmarks.common import REPO, md_table
from benchmarks.train_iteration import (
    METHODS,
    check_method,
    cost_flops,
    count_params,
    init_params,
    iteration_flops,
    label,
    make_iteration,
    synthetic_batch,
)
from ottt_jax.xla_flags import set_default_cpu_flags

NUM_PARAMS_VGG11 = 9_228_362  # the authors' VGG-11 sWS at K = 10 (both sides must match)
SIDES = ("spikingjelly", "ottt_jax")


# ---------------------------------------------------------------------------------------------
# The CPU's fp32 peak
# ---------------------------------------------------------------------------------------------


def parse_lscpu(text: str) -> dict[str, str]:
    """Parse ``lscpu`` output (``Key:   value`` lines) into a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def fp32_flops_per_cycle(vendor: str, family: int, flags: set[str]) -> tuple[int, str]:
    """Return a core's peak fp32 FLOPs per cycle and the reasoning, from its vendor and ISA.

    A fused multiply-add is 2 FLOPs per lane. Assumed FMA throughput per cycle: Intel cores with
    AVX-512 have two 512-bit FMA ports (16 lanes each); AMD Zen 4 (family 25) runs AVX-512 on two
    256-bit FMA pipes (8 lanes each), Zen 5 (family 26) on two 512-bit ones; AVX2 cores two
    256-bit FMA ports; SSE only two 128-bit ones.

    Args:
      vendor: ``Vendor ID`` (GenuineIntel, AuthenticAMD).
      family: ``CPU family``.
      flags: the ISA flags.

    Returns:
      ``(flops_per_cycle, explanation)``.
    """
    if "avx512f" in flags:
        if vendor == "AuthenticAMD" and family < 26:
            lanes, isa = 8, "AVX-512 on 256-bit pipes (Zen 4)"
        else:
            lanes, isa = 16, "AVX-512"
    elif "avx2" in flags and "fma" in flags:
        lanes, isa = 8, "AVX2+FMA"
    else:
        lanes, isa = 4, "SSE"
    units = 2
    fpc = units * lanes * 2
    return fpc, f"{isa}: {units} FMA units x {lanes} fp32 lanes x 2 FLOPs = {fpc} FLOPs/cycle"


def cpu_ghz(info: dict[str, str], cpuinfo: str = "") -> tuple[float, str]:
    """Return the core clock in GHz and where it came from.

    Prefers ``CPU max MHz`` (lscpu), then the ``@ x.xxGHz`` of the model name, then ``cpu MHz``
    of /proc/cpuinfo (often the nominal clock in a VM), then BogoMIPS / 2.

    Raises:
      ValueError: when none of them is present.
    """
    if info.get("CPU max MHz"):
        return float(info["CPU max MHz"]) / 1000, "lscpu 'CPU max MHz'"
    m = re.search(r"@\s*([\d.]+)\s*GHz", info.get("Model name", ""))
    if m:
        return float(m.group(1)), "the model name"
    m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.MULTILINE)
    if m:
        return float(m.group(1)) / 1000, "/proc/cpuinfo 'cpu MHz' (no max clock reported)"
    if info.get("BogoMIPS"):
        return float(info["BogoMIPS"]) / 2000, "BogoMIPS / 2 (no clock reported)"
    raise ValueError("lscpu reports no clock ('CPU max MHz', model name, BogoMIPS)")


def fp32_peak(info: dict[str, str], cpuinfo: str = "") -> dict:
    """Return the machine's fp32 peak from parsed lscpu: cores x GHz x FLOPs/cycle.

    Args:
      info: :func:`parse_lscpu` of ``lscpu``.
      cpuinfo: the text of /proc/cpuinfo (for the clock when lscpu has none).

    Returns:
      ``{'gflops', 'cores', 'ghz', 'flops_per_cycle', 'derivation'}``.
    """
    cores = int(info.get("Core(s) per socket", 1)) * int(info.get("Socket(s)", 1))
    ghz, source = cpu_ghz(info, cpuinfo)
    flags = set(info.get("Flags", "").split())
    family = int(info.get("CPU family", 0))
    fpc, why = fp32_flops_per_cycle(info.get("Vendor ID", ""), family, flags)
    gflops = cores * ghz * fpc
    return {
        "gflops": gflops,
        "cores": cores,
        "ghz": ghz,
        "flops_per_cycle": fpc,
        "derivation": (
            f"{cores} cores x {ghz:.2f} GHz ({source}) x {fpc} FLOPs/cycle ({why}) "
            f"= {gflops:.0f} GFLOP/s"
        ),
    }


def this_cpu_peak() -> dict | None:
    """:func:`fp32_peak` of this machine (None when lscpu is missing or reports no clock)."""
    try:
        text = subprocess.check_output(["lscpu"], text=True, env={**os.environ, "LC_ALL": "C"})
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
        return fp32_peak(parse_lscpu(text), cpuinfo)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# The ottt_jax worker
# ---------------------------------------------------------------------------------------------


def run_jax_worker(
    method: str,
    batch: int,
    num_steps: int,
    size: int,
    iters: int,
    seed: int,
    lr: float = 0.1,
    momentum: float = 0.9,
) -> dict:
    """Compile, warm up once, and time ``iters`` ottt_jax training iterations on one fixed batch.

    Args:
      method: 'ottt_a', 'ottt_o' or 'bptt'.
      batch: B.
      num_steps: T.
      size: the image side (CIFAR-10: 32).
      iters: timed iterations after the warm-up.
      seed: the input seed (:func:`synthetic_batch`).
      lr: SGD learning rate.
      momentum: SGD momentum.

    Returns:
      As :func:`benchmarks.peers_torch.run_worker`, plus ``'compile_s'`` and ``'flops'`` (per
      iteration, from XLA's cost analysis; None if the backend gives none).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ottt_jax.models import vgg11

    shape = (size, size, 3)
    it = make_iteration(lambda mode: vgg11(10, mode=mode), method, num_steps, batch, shape)
    params = init_params(it.model, shape, seed)
    opt_state = it.optimizer.init(params)
    start = [np.array(a) for a in jax.tree_util.tree_leaves(params)]
    x, y = synthetic_batch(batch, shape, 10, seed)
    x, y = jnp.asarray(x), jnp.asarray(y, jnp.int32)
    t0 = time.perf_counter()
    compiled = jax.jit(it.fn, donate_argnums=(0, 1)).lower(params, opt_state, x, y).compile()
    compile_s = time.perf_counter() - t0
    flops = cost_flops(compiled)

    losses, times = [], []
    for i in range(iters + 1):  # the first is the warm-up
        t0 = time.perf_counter()
        params, opt_state, loss = jax.block_until_ready(compiled(params, opt_state, x, y))
        if i:
            times.append(time.perf_counter() - t0)
        losses.append(float(loss))
    moved = sum(
        float(np.sum((np.asarray(a) - s) ** 2))
        for a, s in zip(jax.tree_util.tree_leaves(params), start)
    )
    return {
        "side": "ottt_jax",
        "method": method,
        "params": count_params(params),
        "times": times,
        "losses": losses,
        "update_norm": moved**0.5,
        "compile_s": compile_s,
        "flops": None if flops is None else iteration_flops(flops, num_steps),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "version": f"jax {jax.__version__}",
    }


# ---------------------------------------------------------------------------------------------
# The driver: alternated processes, medians, ratios
# ---------------------------------------------------------------------------------------------


def schedule(rounds: int, methods: list[str], variants: tuple[str, ...]) -> list[tuple]:
    """Return the run order: ``(round, method, variant)``, variants alternating each round.

    Round ``r`` runs the variants in order for even ``r`` and reversed for odd ``r``, so neither
    side always runs first (a warm or cold machine, turbo, caches).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    order = []
    for r in range(rounds):
        for m in methods:
            vs = variants if r % 2 == 0 else tuple(reversed(variants))
            order += [(r, m, v) for v in vs]
    return order


def summarize(runs: list[dict], variants: tuple[str, str]) -> dict:
    """Return per method the median seconds per iteration of each variant and their ratio.

    Args:
      runs: worker results, each with ``'method'``, ``'variant'`` and ``'times'``.
      variants: ``(reference, ours)``; ``ratio`` is reference / ours (> 1: ours faster).

    Returns:
      ``{method: {variant: median_s, ..., 'rounds': n, 'ratio': float}}``; each round's value is
      the median of that process's timed iterations.
    """
    ref, ours = variants
    out: dict[str, dict] = {}
    for r in runs:
        per = out.setdefault(r["method"], {})
        per.setdefault(r["variant"], []).append(statistics.median(r["times"]))
    for m, per in out.items():
        missing = [v for v in variants if v not in per]
        if missing:
            raise ValueError(f"method {m} has no runs of {', '.join(missing)}")
        n = min(len(per[v]) for v in variants)
        med = {v: statistics.median(per[v]) for v in variants}
        out[m] = {**med, "rounds": n, "ratio": med[ref] / med[ours]}
    return out


def spawn(side: str, args: argparse.Namespace, method: str, extra_xla_flags: str = "") -> dict:
    """Run one worker in a fresh process and return its JSON result."""
    python = args.torch_python if side == "spikingjelly" else sys.executable
    worker = "torch" if side == "spikingjelly" else "jax"
    cmd = [
        python,
        "-m",
        "benchmarks.peers",
        "--worker",
        worker,
        "--methods",
        method,
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--size",
        str(args.size),
        "--iters",
        str(args.iters),
        "--seed",
        str(args.seed),
    ]
    env = dict(os.environ)
    if extra_xla_flags:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + extra_xla_flags).strip()
    proc = subprocess.run(cmd, env=env, cwd=REPO, text=True, capture_output=True)
    if proc.returncode:
        raise RuntimeError(
            f"{side} worker for {method} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def learning_check(run: dict) -> str | None:
    """Return why a worker's run does not look like training (None when it does).

    Training on one fixed batch must lower the loss from the warm-up to the last iteration and
    move the parameters.
    """
    losses = run["losses"]
    if not all(map(_finite, losses)):
        return f"non-finite loss {losses}"
    if len(losses) >= 2 and not losses[-1] < losses[0]:
        return f"loss did not decrease: {losses}"
    if not run["update_norm"] > 0:
        return "parameters did not move (zero gradients?)"
    return None


def _finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


def render(summary: dict, variants: tuple[str, str], args, peak: dict | None, runs) -> str:
    """Render the markdown section: the same-run table, GFLOP/s, setup and command."""
    ref, ours = variants
    rows = []
    for m in args.methods:
        s = summary[m]
        rows.append(
            [
                label(m),
                f"{s[ref]:.3f}",
                f"{s[ours]:.3f}",
                f"{s['ratio']:.2f}×",
                s["rounds"],
            ]
        )
    head = ["method", f"{ref} (s / iteration)", f"{ours} (s / iteration)", "ratio", "rounds"]
    lines = [
        f"Setup: VGG-11 sWS, {args.size}×{args.size}×3 inputs, batch {args.batch}, "
        f"T = {args.steps}, SGD momentum 0.9, float32; {args.rounds} rounds of alternated "
        f"processes, each {args.iters} timed iteration(s) after one warm-up; median over "
        f"rounds of each process's median. Ratio = {ref} / {ours} (> 1: {ours} faster).",
        "",
        md_table(head, rows),
    ]
    jax_runs = [r for r in runs if r["side"] == "ottt_jax" and r.get("flops")]
    if jax_runs and ours == "ottt_jax":
        frows = []
        for m in args.methods:
            fl = [r["flops"] for r in jax_runs if r["method"] == m]
            if not fl:
                continue
            gf = fl[0] / 1e9
            rate = gf / summary[m][ours]
            frac = f"{100 * rate / peak['gflops']:.0f}%" if peak else "n/a"
            frows.append([label(m), f"{gf:.1f}", f"{rate:.3g}", frac])
        head = ["method", "GFLOP / iteration", "GFLOP/s", "of fp32 peak"]
        lines += ["", f"{ours}'s achieved rate:", "", md_table(head, frows)]
        lines += [
            "",
            "GFLOP per iteration: XLA's `cost_analysis()['flops']` of the compiled iteration "
            "(one time step, since XLA counts a loop body once) × T.",
        ]
    if peak:
        lines += ["", f"fp32 peak: {peak['derivation']}."]
    flags = {(r["variant"], r["xla_flags"]) for r in runs if r["side"] == "ottt_jax"}
    lines += [
        "",
        "XLA_FLAGS: " + "; ".join(f"{v}: `{f or '(none)'}`" for v, f in sorted(flags)) + ".",
    ]
    versions = sorted({r["version"] for r in runs})
    lines += ["", "Versions: " + "; ".join(versions) + "."]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.peers", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=2, help="timed iterations per process")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=6, help="T")
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--quick", action="store_true", help="tiny sizes; checks both sides learn")
    p.add_argument("--json", default=None, help="write every run and the summary here")
    p.add_argument("--torch-python", default=sys.executable, help="interpreter with torch")
    p.add_argument("--xla-flags-ab", default=None, metavar="FLAGS")
    p.add_argument("--worker", choices=("jax", "torch"), default=None, help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, a in enumerate(argv[:-1]):  # its value starts with '--': glue it to the option
        if a == "--xla-flags-ab":
            argv[i : i + 2] = [f"--xla-flags-ab={argv[i + 1]}"]
            break
    args = p.parse_args(argv)
    try:
        args.methods = [check_method(m.strip()) for m in args.methods.split(",") if m.strip()]
    except ValueError as err:
        p.error(f"--methods: {err}")
    if not args.methods:
        p.error("--methods is empty")
    if args.quick:
        args.batch, args.steps, args.size, args.rounds, args.iters = 2, 2, 16, 1, 2
    for field in ("rounds", "iters", "batch", "steps", "size"):
        if getattr(args, field) < 1:
            p.error(f"--{field} must be >= 1, got {getattr(args, field)}")
    if args.size < 8:
        p.error(f"--size must be >= 8 (VGG-11 pools three times), got {args.size}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        run = run_jax_worker if args.worker == "jax" else _torch_worker()
        kw = dict(batch=args.batch, num_steps=args.steps, size=args.size, iters=args.iters)
        print(json.dumps(run(args.methods[0], seed=args.seed, **kw)))
        return 0

    ab = args.xla_flags_ab
    variants = ("ottt_jax", "ottt_jax + flags") if ab else SIDES
    runs = []
    for r, method, variant in schedule(args.rounds, args.methods, variants):
        side = "spikingjelly" if variant == "spikingjelly" else "ottt_jax"
        res = spawn(side, args, method, ab if variant == "ottt_jax + flags" else "")
        res.update(variant=variant, round=r)
        runs.append(res)
        print(
            f"[peers] round {r} {label(method):6s} {variant:16s} params {res['params']:,} "
            f"s/iter {statistics.median(res['times']):.3f} losses "
            + " ".join(f"{v:.4f}" for v in res["losses"]),
            file=sys.stderr,
            flush=True,
        )
    counts = {(r["variant"], r["params"]) for r in runs}
    if len({c for _, c in counts}) != 1:
        raise SystemExit(f"parameter counts differ between sides: {sorted(counts)}")
    if runs[0]["params"] != NUM_PARAMS_VGG11:
        n = runs[0]["params"]
        raise SystemExit(f"VGG-11 sWS has {n:,} parameters, not {NUM_PARAMS_VGG11:,}")
    summary = summarize(runs, variants)
    peak = this_cpu_peak()
    print(f"parameters: {runs[0]['params']:,} on every side")
    print(render(summary, variants, args, peak, runs))
    if ab:
        print(f"\nA/B flags: XLA_FLAGS += {ab!r}; ratio = without / with (> 1: the flag helps).")
    failures = [f"{r['variant']} {r['method']}: {why}" for r in runs if (why := learning_check(r))]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "runs": runs, "summary": summary, "peak": peak}, f)
    if failures:
        print("learning check failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1 if args.quick else 0
    print("learning check: every run lowered its loss and moved its parameters")
    return 0


def _torch_worker():
    from benchmarks.peers_torch import run_worker

    return run_worker


if __name__ == "__main__":
    set_default_cpu_flags()  # XLA:CPU defaults of the benchmarks (ottt_jax.xla_flags)
    sys.exit(main())
