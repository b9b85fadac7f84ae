"""GPU benchmark: speed and memory of every rule on one CUDA device, in one call.

``python -m benchmarks.gpu [--out-md PATH] [--out-json PATH] [--budget SECONDS]`` measures, per
case, images/s, ms per time step, the device's peak memory
(``device.memory_stats()['peak_bytes_in_use']``) and XLA's compiled memory analysis of one
training iteration (:mod:`benchmarks.train_iteration`: T steps on a static image, the rule's
gradients, SGD with momentum 0.9; params and optimizer state donated):

* VGG-11 sWS at CIFAR-10 shapes (32×32×3), batch 128, T ∈ {2, 6, 16, 32}: OTTT_A, OTTT_O, BPTT,
  in float32 and bfloat16 (compute dtype, as the trainer's ``compute_dtype=bfloat16``: the
  forward/backward and the carried neuron state in bfloat16, parameters and optimizer state
  float32);
* NF-ResNet-34 at 224×224×3, batch 64, T = 6, float32: OTTT_A and BPTT.

It writes a markdown section and a JSON file. It is built to finish in under 8 minutes on one
H200: every case is compiled first (in priority order, within ``--budget`` less a reserve for
the runs), then the compiled cases run (one warm-up, then up to ``--iters`` timed iterations)
in order of growing compiled footprint, because JAX cannot reset a device's peak-memory counter:
run that way, each case's peak is its own unless an earlier one (or compilation scratch) was
higher, which the table marks. Before running, a memory pre-check skips every case whose
compiled footprint (:func:`precheck`) exceeds the device's ``bytes_limit``. A case that runs out
of memory (RESOURCE_EXHAUSTED) or out of
time is recorded as skipped, with the reason, and the others go on.

``--smoke`` runs the same code path at tiny sizes (a two-conv VGG on 8×8 inputs, a one-block-
per-stage NF-ResNet on 16×16, batch 2, T ∈ {2, 3}) on whatever backend JAX has (CPU in CI), in
well under a minute.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import git_rev, hardware, md_table, versions
from benchmarks.train_iteration import (
    cost_flops,
    init_params,
    iteration_flops,
    label,
    make_iteration,
    synthetic_batch,
)
from ottt_jax.xla_flags import set_default_cpu_flags

MIB = 2.0**20
VGG_STEPS = (2, 6, 16, 32)
SMOKE_STEPS = (2, 3)
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Case:
    """One measurement.

    Attributes:
      model: ``'vgg11'`` or ``'nfresnet34'`` (their tiny layouts under ``--smoke``).
      method: a rule name.
      dtype: ``'float32'`` or ``'bfloat16'`` (compute dtype).
      batch: B.
      steps: T.
      input_shape: ``(H, W, C)``.
      num_classes: K.
    """

    model: str
    method: str
    dtype: str
    batch: int
    steps: int
    input_shape: tuple[int, int, int]
    num_classes: int

    @property
    def name(self) -> str:
        return f"{self.model} {label(self.method)} {self.dtype} B={self.batch} T={self.steps}"


def cases(smoke: bool = False) -> list[Case]:
    """Return the cases in priority order (the ones that matter most first).

    Priority: VGG-11 at the paper's T = 6 (both dtypes), NF-ResNet-34, then the other T.

    Args:
      smoke: tiny sizes (T ∈ {2, 3}) instead of the real ones.

    Returns:
      The cases; VGG-11: 3 methods × 2 dtypes × 4 T (smoke: × 2 T), NF-ResNet-34: 2 methods.
    """
    if smoke:
        vgg = dict(batch=2, input_shape=(8, 8, 3), num_classes=10)
        nf = dict(batch=2, input_shape=(16, 16, 3), num_classes=10, steps=2)
        steps, first = SMOKE_STEPS, SMOKE_STEPS[0]
    else:
        vgg = dict(batch=128, input_shape=(32, 32, 3), num_classes=10)
        nf = dict(batch=64, input_shape=(224, 224, 3), num_classes=1000, steps=6)
        steps, first = VGG_STEPS, 6
    out = []
    for t in (first, *(s for s in steps if s != first)):
        for dt in DTYPES:
            out += [Case("vgg11", m, dt, steps=t, **vgg) for m in ("ottt_a", "ottt_o", "bptt")]
        if t == first:
            out += [Case("nfresnet34", m, "float32", **nf) for m in ("ottt_a", "bptt")]
    return out


def builder(case: Case, smoke: bool) -> Callable[[Any], Any]:
    """Return ``build(mode) -> model`` for ``case`` (public model constructors only)."""
    import jax.numpy as jnp

    from ottt_jax import models

    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[case.dtype]
    k = case.num_classes
    if case.model == "vgg11":
        if smoke:
            return lambda mode: models.SpikingVGG(
                cfg=(8, "M", 16), num_classes=k, mode=mode, dtype=dtype
            )
        return lambda mode: models.vgg11(k, mode=mode, dtype=dtype)
    if case.model == "nfresnet34":
        if smoke:
            return lambda mode: models.NFResNet(
                stage_sizes=(1, 1), base_planes=4, num_classes=k, mode=mode, dtype=dtype
            )
        return lambda mode: models.nfresnet34(k, mode=mode, dtype=dtype)
    raise ValueError(f"Case.model must be 'vgg11' or 'nfresnet34', got {case.model!r}")


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is XLA's out-of-memory error (RESOURCE_EXHAUSTED / 'out of memory')."""
    text = f"{type(err).__name__} {err}".lower()
    return "resource_exhausted" in text or "out of memory" in text or "resourceexhausted" in text


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]


def initial_params(case: Case, smoke: bool) -> Any:
    """Return the case's initial parameters as host (numpy) arrays, initialized under ``jit``.

    They depend only on the model, K and the input shape, never on the rule, T or the compute
    dtype (parameters stay float32), so :func:`benchmark` computes them once per model.
    """
    import jax

    from ottt_jax import rules

    model = builder(case, smoke)(rules.get_rule(case.method).mode)
    init = jax.jit(lambda: init_params(model, case.input_shape)).lower()
    return jax.device_get(init.compile(compiler_options=compiler_options(smoke))())


def compiler_options(smoke: bool) -> dict | None:
    """XLA options: none, or for smoke runs (which only check the code path) no LLVM
    optimization, which halves the compile time; buffer assignment, hence the memory analysis,
    is decided before the backend runs."""
    return {"xla_backend_optimization_level": 0} if smoke else None


def compile_case(case: Case, smoke: bool, params: Any) -> dict:
    """Lower and compile one case from abstract shapes (nothing is allocated or run).

    Args:
      case: the case.
      smoke: tiny model layouts (and no LLVM optimization: only the code path is checked).
      params: its initial parameters (:func:`initial_params`; only their shapes are used).

    Returns:
      ``{'compiled', 'iteration', 'compile_s', 'memory': {temp, argument, output, alias,
      generated_code, total} in bytes, 'flops'}``; ``total`` = argument + output + temp − alias
      (what the program holds at once), ``flops`` per iteration (None if not reported).
    """
    import jax
    import jax.numpy as jnp

    it = make_iteration(builder(case, smoke), case.method, case.steps, case.batch, case.input_shape)
    params = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
    opt_state = jax.eval_shape(it.optimizer.init, params)
    x = jax.ShapeDtypeStruct((case.batch, *case.input_shape), jnp.float32)
    y = jax.ShapeDtypeStruct((case.batch,), jnp.int32)
    t0 = time.perf_counter()
    lowered = jax.jit(it.fn, donate_argnums=(0, 1)).lower(params, opt_state, x, y)
    compiled = lowered.compile(compiler_options=compiler_options(smoke))
    compile_s = time.perf_counter() - t0
    m = compiled.memory_analysis()
    mem = {
        "temp": m.temp_size_in_bytes,
        "argument": m.argument_size_in_bytes,
        "output": m.output_size_in_bytes,
        "alias": m.alias_size_in_bytes,
        "generated_code": m.generated_code_size_in_bytes,
    }
    mem["total"] = mem["argument"] + mem["output"] + mem["temp"] - mem["alias"]
    flops = cost_flops(compiled)
    return {
        "compiled": compiled,
        "iteration": it,
        "compile_s": compile_s,
        "memory": mem,
        "flops": None if flops is None else iteration_flops(flops, case.steps),
    }


def device_limit(device) -> int | None:
    """Return the bytes the device's allocator may use (``memory_stats()['bytes_limit']``), or
    None when the backend keeps no memory statistics (CPU)."""
    stats = device.memory_stats()
    return int(stats["bytes_limit"]) if stats and stats.get("bytes_limit") else None


def precheck(memory: dict, limit: int | None) -> str | None:
    """Return why a compiled case cannot run on a device of ``limit`` bytes, or None.

    The pre-check compares XLA's compiled footprint, ``total + generated_code`` of
    :func:`compile_case`, with the allocator's limit before anything is allocated or run, so a
    case that cannot fit costs its compile time only.

    Args:
      memory: a compiled case's ``memory`` (bytes).
      limit: the device's ``bytes_limit`` (None: no check).

    Returns:
      ``'does not fit: compiled N MiB > M MiB of the device'`` or None.
    """
    need = memory["total"] + memory["generated_code"]
    if limit is None or need <= limit:
        return None
    return (
        f"does not fit: compiled {need / 2**20:,.0f} MiB > {limit / 2**20:,.0f} MiB of the device"
    )


def _peak_bytes(device) -> int | None:
    stats = device.memory_stats()
    return None if not stats else int(stats.get("peak_bytes_in_use", 0)) or None


def run_case(case: Case, built: dict, params: Any, *, iters: int, seconds_left: float) -> dict:
    """Run a compiled case: one warm-up, then timed iterations (at least one, at most ``iters``).

    The number of timed iterations also stays within ``seconds_left`` (judged from the warm-up).
    ``params`` (host arrays from :func:`initial_params`) are copied to the device (the iteration
    donates them).

    Returns:
      ``{'times', 'warmup_s', 'loss', 'peak_bytes', 'peak_own'}``; ``peak_bytes`` is the device's
      peak after the case (None when the backend keeps no memory statistics) and ``peak_own``
      whether it rose during this case's run (else it is an earlier, higher peak: an upper bound).
    """
    import jax
    import jax.numpy as jnp

    device = jax.devices()[0]
    it = built["iteration"]
    params = jax.tree_util.tree_map(jnp.asarray, params)
    opt_state = it.optimizer.init(params)
    xs, ys = synthetic_batch(case.batch, case.input_shape, case.num_classes, seed=0)
    x, y = jnp.asarray(xs), jnp.asarray(ys, jnp.int32)
    before = _peak_bytes(device)
    f = built["compiled"]
    t0 = time.perf_counter()
    params, opt_state, loss = jax.block_until_ready(f(params, opt_state, x, y))
    warm = time.perf_counter() - t0
    n = max(1, min(iters, int(seconds_left / max(warm, 1e-6))))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        params, opt_state, loss = jax.block_until_ready(f(params, opt_state, x, y))
        times.append(time.perf_counter() - t0)
    after = _peak_bytes(device)
    loss = float(loss)
    del params, opt_state
    return {
        "times": times,
        "warmup_s": warm,
        "loss": loss,
        "peak_bytes": after,
        "peak_own": None if after is None else (before is None or after > before),
    }


def record(case: Case, status: str = "ok", built: dict | None = None, run: dict | None = None):
    """Return the JSON record of a case (numbers derived from the run and the compilation)."""
    rec: dict[str, Any] = {
        "model": case.model,
        "method": case.method,
        "dtype": case.dtype,
        "batch": case.batch,
        "steps": case.steps,
        "input_shape": list(case.input_shape),
        "status": status,
    }
    if built is not None:
        rec.update(compile_s=built["compile_s"], compiled=built["memory"], flops=built["flops"])
    if run is not None:
        s = statistics.median(run["times"])
        rec.update(
            times_s=run["times"],
            warmup_s=run["warmup_s"],
            loss=run["loss"] if math.isfinite(run["loss"]) else None,  # JSON has no NaN
            s_per_iter=s,
            images_per_s=case.batch / s,
            ms_per_step=1e3 * s / case.steps,
            peak_bytes=run["peak_bytes"],
            peak_own=run["peak_own"],
            tflops_per_s=None if not rec.get("flops") else rec["flops"] / s / 1e12,
        )
    return rec


def benchmark(
    all_cases: list[Case],
    *,
    smoke: bool,
    budget_s: float,
    iters: int = 3,
    run_reserve_s: float | None = None,
    strict: bool = False,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> list[dict]:
    """Compile every case (in order, within the budget), then run them by growing footprint.

    Args:
      all_cases: from :func:`cases`.
      smoke: tiny model layouts.
      budget_s: wall-clock budget of the whole benchmark, from this call.
      iters: timed iterations per case (after one warm-up).
      run_reserve_s: seconds kept for the run phase (default: a quarter of the budget).
      strict: re-raise errors that are not out-of-memory (tests); else record them.
      log: progress sink.

    Returns:
      One :func:`record` per case, in the order of ``all_cases``.
    """
    t_start = time.perf_counter()
    reserve = budget_s / 4 if run_reserve_s is None else run_reserve_s
    left = lambda: budget_s - (time.perf_counter() - t_start)
    recs: dict[Case, dict] = {}
    built: dict[Case, dict] = {}
    host_params: dict[tuple, Any] = {}
    for c in all_cases:
        if left() < reserve:
            recs[c] = record(c, f"skipped: time budget ({budget_s:.0f} s) spent before compiling")
            continue
        try:
            key = (c.model, c.num_classes, c.input_shape)
            if key not in host_params:
                host_params[key] = initial_params(c, smoke)
            built[c] = compile_case(c, smoke, host_params[key])
            log(f"[gpu] compiled {c.name} in {built[c]['compile_s']:.1f} s")
        except Exception as err:
            if strict and not is_out_of_memory(err):
                raise
            why = "out of memory" if is_out_of_memory(err) else "error"
            recs[c] = record(c, f"skipped: {why} while compiling ({_first_line(err)})")
            log(f"[gpu] {c.name}: {recs[c]['status']}")
    import jax

    limit = device_limit(jax.devices()[0])
    for c in list(built):
        why = precheck(built[c]["memory"], limit)
        if why is not None:
            recs[c] = record(c, f"skipped: {why} (memory pre-check)", built.pop(c))
            log(f"[gpu] {c.name}: {recs[c]['status']}")
    order = sorted(built, key=lambda c: built[c]["memory"]["total"])
    for i, c in enumerate(order):
        if left() <= 0:
            recs[c] = record(c, f"skipped: time budget ({budget_s:.0f} s) spent", built[c])
            continue
        share = left() / (len(order) - i)
        try:
            params = host_params[c.model, c.num_classes, c.input_shape]
            run = run_case(c, built[c], params, iters=iters, seconds_left=share)
            recs[c] = record(c, "ok", built[c], run)
            r = recs[c]
            log(f"[gpu] ran {c.name}: {r['s_per_iter']:.4f} s/iter, {r['images_per_s']:.0f} img/s")
        except Exception as err:
            if strict and not is_out_of_memory(err):
                raise
            why = "out of memory" if is_out_of_memory(err) else "error"
            recs[c] = record(c, f"skipped: {why} while running ({_first_line(err)})", built[c])
            log(f"[gpu] {c.name}: {recs[c]['status']}")
        built[c].pop("compiled")  # free the executable
    return [recs[c] for c in all_cases]


#: Display names of the models (their tiny smoke layouts are flagged in the table titles).
TITLES = {"vgg11": "VGG-11 sWS", "nfresnet34": "NF-ResNet-34"}


def _mib(b: float | None) -> str:
    if b is None:
        return "n/a"
    return f"{b / MIB:.2f}" if b < 10 * MIB else f"{b / MIB:.0f}"


def render(result: dict) -> str:
    """Render the markdown section from the JSON result of :func:`main`."""
    recs = result["cases"]
    lines = [
        f"Device: {result['device']} ({result['platform']}); {result['hardware']}.",
        f"Command: `{result['command']}` ({result['elapsed_s']:.0f} s, budget "
        f"{result['budget_s']:.0f} s); git {result['git']}; {result['versions']}.",
        "",
        "One training iteration = T steps on a static image + the rule's gradients + SGD "
        "momentum (OTTT_O: T updates); params and optimizer state donated. Time: median of the "
        "timed iterations after one warm-up. Peak: `memory_stats()['peak_bytes_in_use']` after "
        "the case (cases run in order of growing compiled footprint; † = the peak did not rise "
        "during this case, so it is an earlier, higher peak: an upper bound). Compiled: XLA's "
        "`memory_analysis()` (temp; total = arguments + outputs + temp − donated aliases).",
    ]
    for model in dict.fromkeys(r["model"] for r in recs):
        rows = []
        for r in (r for r in recs if r["model"] == model):
            ok = r["status"] == "ok"
            mem = r.get("compiled") or {}
            peak = "n/a"
            if ok and r["peak_bytes"] is not None:
                peak = _mib(r["peak_bytes"]) + ("" if r["peak_own"] else " †")
            tf = r.get("tflops_per_s") if ok else None
            rows.append(
                [
                    label(r["method"]),
                    r["dtype"],
                    r["steps"],
                    f"{r['images_per_s']:.0f}" if ok else "—",
                    f"{r['ms_per_step']:.2f}" if ok else "—",
                    peak,
                    _mib(mem.get("temp")) if mem else "—",
                    _mib(mem.get("total")) if mem else "—",
                    f"{tf:.3g}" if tf else "—",
                    f"{r['compile_s']:.1f}" if "compile_s" in r else "—",
                    "ok" if ok else r["status"],
                ]
            )
        first = next(r for r in recs if r["model"] == model)
        h, w, c = first["input_shape"]
        lines += [
            "",
            f"**{TITLES[model]}**{' (tiny smoke layout)' if result['smoke'] else ''}, "
            f"{h}×{w}×{c}, batch {first['batch']}:",
            "",
            md_table(
                [
                    "method",
                    "dtype",
                    "T",
                    "images / s",
                    "ms / step",
                    "peak MiB",
                    "compiled temp MiB",
                    "compiled total MiB",
                    "TFLOP/s",
                    "compile s",
                    "status",
                ],
                rows,
            ),
        ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes, any backend (CI)")
    p.add_argument("--budget", type=float, default=None, help="seconds (default 420; smoke 120)")
    p.add_argument("--iters", type=int, default=3, help="timed iterations per case")
    p.add_argument("--out-md", default=None, help="markdown file (default gpu_benchmark.md)")
    p.add_argument("--out-json", default=None, help="JSON file (default gpu_benchmark.json)")
    args = p.parse_args(argv)
    if args.iters < 1:
        p.error(f"--iters must be >= 1, got {args.iters}")
    if args.budget is None:
        args.budget = 120.0 if args.smoke else 420.0
    if not args.budget > 0:
        p.error(f"--budget must be > 0 seconds, got {args.budget}")
    stem = "gpu_benchmark_smoke" if args.smoke else "gpu_benchmark"
    args.out_md = args.out_md or f"{stem}.md"
    args.out_json = args.out_json or f"{stem}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, write the markdown and JSON files; return the exit status."""
    args = parse_args(argv)
    # Let the BFC allocator use most of the device (the user's own setting wins).
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.92")
    import jax

    device = jax.devices()[0]
    if not args.smoke and device.platform != "gpu":
        print(
            f"benchmarks.gpu needs a CUDA device; JAX has {device.platform} ({device.device_kind})."
            " Use --smoke to check the code path on this backend.",
            file=sys.stderr,
        )
        return 2
    t0 = time.perf_counter()
    recs = benchmark(cases(args.smoke), smoke=args.smoke, budget_s=args.budget, iters=args.iters)
    result = {
        "device": device.device_kind,
        "platform": device.platform,
        "hardware": hardware(),
        "versions": versions(),
        "git": git_rev(),
        "command": "python -m benchmarks.gpu" + (" --smoke" if args.smoke else ""),
        "smoke": args.smoke,
        "budget_s": args.budget,
        "bytes_limit": device_limit(device),
        "elapsed_s": time.perf_counter() - t0,
        "cases": recs,
    }
    md = render(result)
    with open(args.out_json, "w") as f:
        json.dump(result, f, indent=1, allow_nan=False)
    with open(args.out_md, "w") as f:
        f.write(md + "\n")
    print(md)
    bad = [r for r in recs if r["status"] != "ok"]
    print(f"\n{len(recs) - len(bad)}/{len(recs)} cases ok; wrote {args.out_md}, {args.out_json}")
    return 0


if __name__ == "__main__":
    set_default_cpu_flags()  # XLA:CPU defaults of the benchmarks (ottt_jax.xla_flags)
    sys.exit(main())
