"""Compile the training step for a TPU topology without a TPU: memory per chip, FLOPs, a roofline.

``ottt-train --aot v5e:2x2 [--config ...] [--set ...]`` (or
``python -m ottt_jax.training.aot v5e:2x2 ...``)
builds exactly the step ``ottt-train`` would run from the config (the same rule, model, optimizer,
``('data',)`` mesh, batch sharding and donation, through :func:`ottt_jax.training.build.make_setup`,
:func:`~ottt_jax.training.build.make_optimizer` and
:func:`~ottt_jax.training.steps.make_train_step`), lowers it on abstract arguments
(``jax.ShapeDtypeStruct`` with the run's ``NamedSharding``; no data is loaded, no parameter is
initialised) over the devices of ``jax.experimental.topologies.get_topology_desc``, and compiles
it with the TPU compiler of ``libtpu`` (the optional extra ``pip install -e ".[tpu-aot]"``).

What it reports, per chip, is the compiler's own: ``memory_analysis()`` (argument, output,
aliased, temporary and code bytes; the peak is ``argument + output − alias + temp + code``,
checked against the chip's HBM from :mod:`ottt_jax.accelerators`) and ``cost_analysis()``.

XLA's cost analysis counts a while loop's body **once**, whatever its trip count; the time loop
of every rule is a ``lax.scan`` (a while loop), so the counted FLOPs and bytes ``c`` satisfy
``c = once + body`` while a step does ``W = once + T·body``. Hence ``c ≤ W ≤ T·c``; the report
gives both bounds and its roofline uses the upper one, ``T·c`` (a conservative work count). The
roofline itself is an **estimate**: ``time = max(W_flops / peak_bf16, W_bytes / HBM bandwidth)``,
``images/s per chip = per-chip batch / time``, compiled, never measured on hardware.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from ottt_jax import config as config_lib
from ottt_jax.accelerators import Chip, chip_for_topology
from ottt_jax.training import build, steps

__all__ = [
    "EXIT_DOES_NOT_FIT",
    "abstract_arguments",
    "aot_report",
    "compile_train_step",
    "is_compile_time_oom",
    "libtpu_version",
    "main",
    "refusal_line",
    "render_markdown",
    "run_aot",
    "topology_devices",
]

#: ``ottt-train --aot`` exit status when the step does not fit the chip's HBM.
EXIT_DOES_NOT_FIT = 3

MiB = 1024**2


def topology_devices(topology: str) -> list[Any]:
    """Return the devices of a TPU topology (needs ``libtpu``; no TPU is needed).

    Args:
      topology: a topology name, e.g. ``'v5e:2x2'``, ``'v5e:16x16'``, ``'v5p:4x4x4'``.

    Returns:
      The topology's devices, every chip of every host of the slice.

    Raises:
      ValueError: an unknown generation, or ``libtpu`` missing (with the install command).
    """
    chip_for_topology(topology)  # the one-line error for an unknown generation
    # libtpu takes a process lock; a second process compiling at the same time is harmless here.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies

    try:
        return list(topologies.get_topology_desc(platform="tpu", topology_name=topology).devices)
    except Exception as e:  # jaxlib raises a plain RuntimeError family without a stable type
        text = str(e)
        if "libtpu" in text.lower() or ("tpu" in text.lower() and "plugin" in text.lower()):
            raise ValueError(
                f"--aot {topology}: the TPU compiler is not installed ({text.splitlines()[0]}); "
                'install it with pip install -e ".[tpu-aot]"'
            ) from e
        raise ValueError(f"--aot {topology}: {text.splitlines()[0]}") from e


def abstract_arguments(s: build.Setup, tx: Any) -> tuple[Any, Any, Any]:
    """Return the train step's arguments as ``jax.ShapeDtypeStruct`` with the run's shardings.

    Args:
      s: the run's setup (its mesh spans the topology's devices).
      tx: the optimizer.

    Returns:
      ``(train_state, images, labels)``: the :class:`~ottt_jax.training.steps.TrainState`
      replicated, images ``[B, H, W, C]`` (``[B, F, H, W, C]`` for a sequence dataset) float32 and
      labels ``[B]`` int32 split over ``'data'``, as the trainer feeds them; ``B`` is the global
      ``data.batch_size``.
    """
    cfg, info = s.cfg, s.info
    frame = tuple(info.frame_shape)

    def state(key):
        params = steps.init_params(s.model, frame, key)
        return steps.TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), key)

    shapes = jax.eval_shape(state, jax.random.PRNGKey(0))
    ts = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s.replicated), shapes
    )
    b = cfg.data.batch_size
    image_shape = (b, info.num_frames, *frame) if info.is_sequence else (b, *frame)
    images = jax.ShapeDtypeStruct(image_shape, jnp.float32, sharding=s.batch_sharding)
    labels = jax.ShapeDtypeStruct((b,), jnp.int32, sharding=s.batch_sharding)
    return ts, images, labels


def compile_train_step(cfg: config_lib.Config, topology: str) -> tuple[Any, build.Setup, float]:
    """Compile ``ottt-train``'s training step of ``cfg`` for ``topology`` (ahead of time).

    Args:
      cfg: a validated config; ``data.batch_size`` is the global batch over all chips.
      topology: a TPU topology name, e.g. ``'v5e:2x2'``.

    Returns:
      ``(compiled, setup, compile_seconds)``: the ``jax.stages.Compiled`` of
      :func:`~ottt_jax.training.steps.make_train_step` (state donated, as in training).

    Raises:
      ValueError: ``data.batch_size`` not divisible by the chip count (naming both), an unknown
        topology, or no ``libtpu``.
    """
    devices = topology_devices(topology)
    n = len(devices)
    if cfg.data.batch_size % n:
        b = cfg.data.batch_size
        raise ValueError(
            f"data.batch_size={b} (the global batch) must be divisible by the {n} chips of "
            f"{topology}; e.g. --set data.batch_size={b * n} for {b} per chip"
        )
    s = build.make_setup(cfg, devices)
    steps_per_epoch = max(1, s.info.num_train // cfg.data.batch_size)
    tx, _ = build.make_optimizer(cfg, steps_per_epoch)
    args = abstract_arguments(s, tx)
    t0 = time.perf_counter()
    compiled = steps.make_train_step(s, tx).lower(*args).compile()
    return compiled, s, time.perf_counter() - t0


def is_compile_time_oom(err: BaseException) -> bool:
    """Whether ``err`` is the TPU compiler refusing a program over its HBM (RESOURCE_EXHAUSTED)."""
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text or "CompileTimeHbmOom" in text


def _memory(compiled: Any) -> dict[str, int]:
    m = compiled.memory_analysis()
    mem = {
        "argument": int(m.argument_size_in_bytes),
        "output": int(m.output_size_in_bytes),
        "alias": int(m.alias_size_in_bytes),
        "temp": int(m.temp_size_in_bytes),
        "code": int(m.generated_code_size_in_bytes),
    }
    mem["peak"] = mem["argument"] + mem["output"] - mem["alias"] + mem["temp"] + mem["code"]
    return mem


def _cost(compiled: Any) -> dict[str, float]:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return {
        "flops": float(ca.get("flops", 0.0)),
        "bytes_accessed": float(ca.get("bytes accessed", 0.0)),
    }


def aot_report(
    cfg: config_lib.Config, topology: str, *, compiled: Any = None, compile_s: float | None = None
) -> dict[str, Any]:
    """Compile (unless given) and return the per-chip report of ``cfg`` on ``topology``.

    Args:
      cfg: a validated config.
      topology: a TPU topology name.
      compiled: an already compiled step of ``cfg`` on ``topology`` (default: compile it).
      compile_s: its compile time, when ``compiled`` is given.

    Returns:
      A JSON-able dict: ``config`` facts, ``chips``, ``per_chip_batch``, ``memory`` (bytes per
      chip from ``memory_analysis``; ``peak = argument + output − alias + temp + code``),
      ``hbm_bytes``, ``fits``, ``cost`` (``counted`` = XLA's count with each loop body once;
      ``low`` = counted, ``high`` = T·counted bounds of one step's work), and ``roofline``
      (estimate from ``high``: seconds per step and images/s per chip).
    """
    chip = chip_for_topology(topology)
    oom = None
    if compiled is None:
        t0 = time.perf_counter()
        try:
            compiled, _, compile_s = compile_train_step(cfg, topology)
        except Exception as e:  # the TPU compiler refuses a step over its HBM: RESOURCE_EXHAUSTED
            if not is_compile_time_oom(e):
                raise
            oom, compile_s = str(e).strip().splitlines()[0], time.perf_counter() - t0
    n = len(topology_devices(topology))
    t = cfg.num_steps
    per_chip = cfg.data.batch_size // n
    if oom is None:
        mem = _memory(compiled)
        counted = _cost(compiled)
        high = {k: v * t for k, v in counted.items()}
        cost = {"counted": counted, "low": dict(counted), "high": high}
        roof = _roofline(high, chip, per_chip)
        fits = mem["peak"] <= chip.hbm_bytes
    else:
        mem, cost, roof, fits = None, None, None, False
    return {
        "topology": topology,
        "chip": chip._asdict(),
        "chips": n,
        "config": {
            "name": cfg.name,
            "method": cfg.method,
            "arch": cfg.model.arch,
            "dataset": cfg.data.dataset,
            "num_steps": t,
            "compute_dtype": cfg.compute_dtype,
            "global_batch": cfg.data.batch_size,
            "optimizer": cfg.optim.name,
        },
        "per_chip_batch": per_chip,
        "memory": mem,
        "hbm_bytes": chip.hbm_bytes,
        "fits": fits,
        "compiler_out_of_memory": oom,
        "cost": cost,
        "roofline": roof,
        "compile_s": compile_s,
        "jax": jax.__version__,
        "libtpu": libtpu_version(),
    }


def _roofline(work: dict[str, float], chip: Chip, per_chip_batch: int) -> dict[str, float]:
    t_flops = work["flops"] / chip.peak_bf16_flops
    t_bytes = work["bytes_accessed"] / chip.hbm_bytes_per_s
    step = max(t_flops, t_bytes)
    return {
        "compute_s": t_flops,
        "memory_s": t_bytes,
        "step_s": step,
        "bound": "compute" if t_flops >= t_bytes else "memory",
        "images_per_s_per_chip": per_chip_batch / step if step > 0 else float("inf"),
    }


def libtpu_version() -> str | None:
    """Return the installed libtpu version, or None."""
    try:
        from importlib.metadata import version

        return version("libtpu")
    except Exception:
        return None


def _mib(b: float) -> str:
    return f"{b / MiB:,.1f} MiB"


def refusal_line(r: dict[str, Any]) -> str:
    """Return the one-line refusal of a report whose step does not fit (its numbers in MiB)."""
    m, c = r["memory"], r["config"]
    what = (
        f"does not fit: {c['name']} method={c['method']} T={c['num_steps']} "
        f"{c['compute_dtype']} batch {r['per_chip_batch']}/chip on {r['topology']}"
    )
    if m is None:  # the compiler refused it; its message has the numbers
        return f"{what}: the TPU compiler says: {r['compiler_out_of_memory']}"
    return (
        f"does not fit: {c['name']} method={c['method']} T={c['num_steps']} "
        f"{c['compute_dtype']} batch {r['per_chip_batch']}/chip on {r['topology']} needs "
        f"{_mib(m['peak'])} per chip (arguments {_mib(m['argument'])} + outputs "
        f"{_mib(m['output'])} - donated {_mib(m['alias'])} + temporaries {_mib(m['temp'])} + "
        f"code {_mib(m['code'])}) > {_mib(r['hbm_bytes'])} HBM of a {r['chip']['name']} chip"
    )


def render_markdown(r: dict[str, Any]) -> str:
    """Return the per-chip report as a markdown table (compiled numbers and labelled estimates)."""
    m, c, roof = r["memory"], r["config"], r["roofline"]
    if m is None:
        return (
            f"### `{c['name']}` method={c['method']} T={c['num_steps']} {c['compute_dtype']} "
            f"on `{r['topology']}`\n\n{refusal_line(r)}\n"
        )
    lo, hi = r["cost"]["low"], r["cost"]["high"]
    rows = [
        ("chips", f"{r['chips']} × {r['chip']['name']}"),
        ("batch per chip (global)", f"{r['per_chip_batch']} ({c['global_batch']})"),
        ("arguments", _mib(m["argument"])),
        ("outputs", _mib(m["output"])),
        ("donated (aliased)", _mib(m["alias"])),
        ("temporaries", _mib(m["temp"])),
        ("code", _mib(m["code"])),
        ("peak = args + outs − donated + temp + code", _mib(m["peak"])),
        ("HBM per chip", _mib(r["hbm_bytes"])),
        ("fits", "yes" if r["fits"] else "**NO**"),
        (
            "GFLOP per step (XLA count, loop body once .. × T)",
            f"{lo['flops'] / 1e9:,.2f} .. {hi['flops'] / 1e9:,.2f}",
        ),
        (
            "GB accessed per step (same bounds)",
            f"{lo['bytes_accessed'] / 1e9:,.3f} .. {hi['bytes_accessed'] / 1e9:,.3f}",
        ),
        (
            "estimate: step time (roofline, upper work)",
            f"{1e3 * roof['step_s']:,.2f} ms ({roof['bound']}-bound)",
        ),
        ("estimate: images/s per chip", f"{roof['images_per_s_per_chip']:,.0f}"),
        ("compile time on this host", f"{r['compile_s']:.1f} s"),
    ]
    head = (
        f"### `{c['name']}` method={c['method']} T={c['num_steps']} {c['compute_dtype']} "
        f"on `{r['topology']}`\n\n"
        f"Compiled, not measured on hardware (jax {r['jax']}, libtpu {r['libtpu']}). Memory is "
        "the TPU compiler's `memory_analysis()` per chip; FLOPs and bytes are its "
        "`cost_analysis()` per chip, which counts each loop body once, so one step's work lies "
        "between the count and T × the count; the roofline uses T × the count and the chip's "
        "peak bf16 FLOP/s and HBM bandwidth, and is an estimate.\n\n"
        "| per chip | value |\n|---|---|\n"
    )
    return head + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"


def run_aot(
    cfg: config_lib.Config, topology: str, *, out_dir: str | os.PathLike | None = None
) -> int:
    """Compile, print the per-chip table, write ``<out>/<name>-<method>-<topology>.{json,md}``.

    Args:
      cfg: a validated config.
      topology: a TPU topology name.
      out_dir: where to write the report (default ``./aot``).

    Returns:
      0 when the step fits every chip's HBM, else :data:`EXIT_DOES_NOT_FIT` after printing
      :func:`refusal_line` to stderr.
    """
    r = aot_report(cfg, topology)
    out = Path(out_dir or "aot")
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{cfg.name}-{cfg.method}-{topology.replace(':', '_')}"
    (out / f"{stem}.json").write_text(json.dumps(r, indent=1) + "\n")
    md = render_markdown(r)
    (out / f"{stem}.md").write_text(md)
    print(md)
    print(f"wrote {out / stem}.json and .md")
    if not r["fits"]:
        print(f"ottt-train: error: {refusal_line(r)}", file=sys.stderr)
        return EXIT_DOES_NOT_FIT
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m ottt_jax.training.aot TOPOLOGY [--config C] [--set K=V ...] [--out DIR]``."""
    p = argparse.ArgumentParser(
        prog="python -m ottt_jax.training.aot",
        description="Compile ottt-train's training step for a TPU topology without a TPU and "
        "report memory per chip, FLOPs and a roofline estimate (same as ottt-train --aot).",
    )
    p.add_argument("topology", help="a TPU topology, e.g. v5e:2x2, v5e:16x16, v5p:4x4x4")
    p.add_argument("--config", default="digits", help="a preset name or a config .json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=None, help="report directory (default ./aot)")
    args = p.parse_args(argv)
    try:
        cfg = config_lib.get_config(args.config, list(args.set))
        return run_aot(cfg, args.topology, out_dir=args.out)
    except (ValueError, OSError) as e:
        print(f"python -m ottt_jax.training.aot: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
