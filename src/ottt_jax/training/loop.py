"""The training loop ``train(cfg)``, evaluation, and evaluation of a saved run.

Multi-host runs call :func:`~ottt_jax.training.distributed.initialize` first
(``ottt-train --multihost``); each host loads its rows of every global batch, and the batches do not
depend on the host count. SIGINT / SIGTERM on any host stops every host after the same step with
one checkpoint (:class:`~ottt_jax.training.distributed.TrainingStopped`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding

from ottt_jax import config as config_lib
from ottt_jax import data as data_lib
from ottt_jax.checkpoint import (
    Checkpointer,
    IncompatibleCheckpointError,
    decode_iterator_state,
    encode_iterator_state,
)
from ottt_jax.training.build import (
    Setup,
    make_optimizer,
    make_setup,
    per_host_batch,
    resolve_workdir,
    resolved_config_json,
    update_count,
)
from ottt_jax.training.distributed import StopRequest, TrainingStopped, agree_to_stop
from ottt_jax.training.logging import (
    MetricsLogger,
    plot_curves,
    progress_bar,
    read_metrics,
    summary,
)
from ottt_jax.training.steps import init_train_state, make_eval_step, make_train_step
from ottt_jax.training.workdir import WorkdirError, WorkdirLock, check_workdir

__all__ = [
    "TrainingDivergedError",
    "TrainingStopped",
    "best_ties",
    "device_batch",
    "evaluate",
    "evaluate_checkpoint",
    "train",
    "write_config",
]

PyTree = Any


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def _global_array(sharding: NamedSharding, local: np.ndarray) -> jax.Array:
    return jax.make_array_from_process_local_data(sharding, local)


def device_batch(s: Setup, batch: dict) -> tuple[jax.Array, jax.Array]:
    """Return a loader batch as global ``(images float32, labels int32)`` sharded over the mesh.

    Args:
      s: the run's setup.
      batch: ``{'image': [B_host, ...], 'label': [B_host]}`` from this host's loader.

    Returns:
      ``(images, labels)`` with the global batch ``B_host · process_count``.
    """
    images = np.asarray(batch["image"], np.float32)
    labels = np.asarray(batch["label"], np.int32)
    return _global_array(s.batch_sharding, images), _global_array(s.batch_sharding, labels)


def evaluate(
    s: Setup, params: PyTree, *, num_steps: int, data_dir: str | None = None
) -> dict[str, float]:
    """Evaluate ``params`` on the test split with ``num_steps`` time steps.

    The last batch is padded to ``data.eval_batch_size`` (one compiled shape) and the padding is
    masked out of every sum.

    Args:
      s: the run's setup.
      params: the parameters (replicated).
      num_steps: ``T_eval``.
      data_dir: override ``cfg.data.data_dir``.

    Returns:
      ``{'accuracy', 'loss', 'count'}``; accuracy uses ``argmax Σ_t out_t`` (the paper's rule),
      loss is the per-step cross-entropy averaged over steps and samples, count the examples.
    """
    cfg = s.cfg
    per_host = per_host_batch(cfg.data.eval_batch_size, s.mesh.size, pad=True)
    loader = data_lib.make_loader(
        cfg.data.dataset,
        "test",
        batch_size=per_host,
        seed=cfg.seed,
        data_dir=data_dir or cfg.data.data_dir,
        drop_remainder=False,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        worker_count=cfg.data.worker_count,
        num_frames=cfg.effective_num_frames,
    )
    step = make_eval_step(s, num_steps)
    tot = {"correct": 0.0, "loss": 0.0, "count": 0.0}
    for batch in loader:
        images = np.asarray(batch["image"], np.float32)
        labels = np.asarray(batch["label"], np.int32)
        mask = np.ones(len(labels), np.float32)
        pad = per_host - len(labels)
        if pad:  # keep one compiled shape: pad the last batch and mask the padding out
            images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), np.float32)])
            labels = np.concatenate([labels, np.zeros(pad, np.int32)])
            mask = np.concatenate([mask, np.zeros(pad, np.float32)])
        out = step(
            params,
            _global_array(s.batch_sharding, images),
            _global_array(s.batch_sharding, labels),
            _global_array(s.batch_sharding, mask),
        )
        for k in tot:
            tot[k] += float(out[k])
    count = max(tot["count"], 1.0)
    return {"accuracy": tot["correct"] / count, "loss": tot["loss"] / count, "count": tot["count"]}


def _check_compatible(saved: dict, cfg: config_lib.Config, workdir: str) -> None:
    saved_cfg = config_lib.from_dict(saved)
    diffs = config_lib.diff(saved_cfg, cfg, ignore=config_lib.RESUMABLE_KEYS)
    if diffs:
        raise IncompatibleCheckpointError(
            f"the checkpoint in workdir {workdir} was written with a different config; refusing "
            "to resume. Pass another --workdir (or workdir=) to start a new run, or leave "
            "--workdir out to get one per config. Differences (checkpoint != requested):\n  "
            + "\n  ".join(diffs)
        )


def write_config(cfg: config_lib.Config, workdir: str) -> str:
    """Write the resolved config (``workdir`` filled in) to ``<workdir>/config.json`` atomically.

    ``ottt-train --config <workdir>/config.json`` reruns (resumes) the same run.

    Args:
      cfg: the validated config.
      workdir: the absolute run directory.

    Returns:
      The path of ``config.json``.

    Raises:
      WorkdirError: the file cannot be written (one line naming it).
    """
    path = os.path.join(workdir, "config.json")
    tmp = f"{path}.tmp-{os.getpid()}"
    text = resolved_config_json(cfg, workdir)
    try:
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    except OSError as e:
        raise WorkdirError(
            f"cannot write {path} ({e.strerror or e}); free space, make {workdir} writable or "
            "pass another --workdir"
        ) from None
    return path


def train(
    cfg: config_lib.Config | str,
    overrides: Sequence[str] | dict | None = None,
    *,
    workdir: str | None = None,
    devices: Sequence[jax.Device] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train a spiking network with the gradient rule ``cfg.method`` names.

    Args:
      cfg: a :class:`~ottt_jax.config.Config` or a preset name (``'digits'``, ``'cifar10_vgg'``...).
      overrides: dotted ``key=value`` overrides applied to ``cfg``.
      workdir: where checkpoints, ``config.json``, ``metrics.jsonl`` and ``curves.png`` go
        (default ``cfg.workdir``, else ``runs/<name>-<method>[-<hash of the other changed
        keys>]``, :func:`~ottt_jax.training.build.default_workdir`). A workdir with a checkpoint
        resumes from it; a workdir in use by another run is refused
        (:class:`~ottt_jax.training.workdir.WorkdirLockedError`). Nothing is created on disk
        before the config, devices and data have been checked.
      devices: devices to train on (default: all); the global batch must divide by their number.
      on_step: called as ``on_step(step)`` after every training step (``step`` counts from 1),
        before logging, evaluation and saving; a SIGINT / SIGTERM raised in it stops the run
        with an exact checkpoint at ``step``.

    Returns:
      ``{'test_accuracy', 'test_loss', 'best_test_accuracy', 'train_accuracy', 'train_loss',
      'steps', 'epochs', 'seconds', 'workdir', 'checkpoint', 'best_checkpoint', 'metrics',
      'curves', 'params'}``.

    Raises:
      TrainingDivergedError: the loss became non-finite (the last good checkpoint is kept).
      IncompatibleCheckpointError: the workdir holds a checkpoint of another config.
      WorkdirError: the workdir is a file, read-only or in use (one line naming it and the fix).
      TrainingStopped: a SIGINT / SIGTERM on any host; every host saved the same step (a
        ``KeyboardInterrupt``; a second signal raises a plain ``KeyboardInterrupt`` at once).
    """
    if isinstance(cfg, str):
        cfg = config_lib.get_config(cfg, overrides or ())
    elif overrides:
        cfg = config_lib.apply_overrides(cfg, overrides)
    else:
        cfg = config_lib.validate(cfg)
    workdir = resolve_workdir(cfg, workdir)

    s = make_setup(cfg, devices)
    per_host = per_host_batch(cfg.data.batch_size, s.mesh.size)
    loader = data_lib.make_loader(
        cfg.data.dataset,
        "train",
        batch_size=per_host,
        seed=cfg.seed,
        data_dir=cfg.data.data_dir,
        augment=cfg.data.augment,
        drop_remainder=True,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        worker_count=cfg.data.worker_count,
        num_frames=cfg.effective_num_frames,
    )
    workdir = check_workdir(workdir)  # the first thing created on disk
    with WorkdirLock(workdir):
        return _train_locked(cfg, workdir, s, loader, on_step)


def _train_locked(
    cfg: config_lib.Config,
    workdir: str,
    s: Setup,
    loader: Any,
    on_step: Callable[[int], None] | None,
) -> dict[str, Any]:
    is_main = jax.process_index() == 0
    steps_per_epoch = loader.steps_per_epoch
    total_steps = cfg.optim.epochs * steps_per_epoch
    if cfg.max_train_steps is not None:
        total_steps = min(total_steps, cfg.max_train_steps)
    tx, schedule = make_optimizer(cfg, steps_per_epoch)
    ts = init_train_state(s, tx)
    ckpt = Checkpointer(workdir, max_to_keep=cfg.max_checkpoints)
    it = iter(loader)
    best_acc, history = -1.0, []
    meta_cfg = config_lib.to_dict(cfg)

    if ckpt.latest_step() is not None:
        if not cfg.resume:
            raise ValueError(
                f"workdir {workdir} already holds a checkpoint (step {ckpt.latest_step()}) and "
                "resume=false; pass another --workdir or set resume=true"
            )
        meta = ckpt.read_meta()
        _check_compatible(meta["config"], cfg, workdir)
        ts, meta = ckpt.restore(ts)
        ts = jax.device_put(ts, s.replicated)
        it.set_state(decode_iterator_state(meta["data_state"]))
        best_acc = meta.get("best_accuracy", -1.0)
        if is_main:
            print(f"resumed from {ckpt.latest_dir}/{int(ts.step)} (epoch {meta['epoch']})")

    if is_main:
        write_config(cfg, workdir)
    train_step = make_train_step(s, tx)
    eval_t = cfg.effective_eval_num_steps
    logger = MetricsLogger(workdir, is_main)
    logger.keep_until(int(ts.step))  # a killed run's records past its checkpoint are replayed

    def save(step: int, best: bool = False, eval_acc: float | None = None):
        meta = {
            "config": meta_cfg,
            "step": step,
            "epoch": step // steps_per_epoch,
            "data_state": encode_iterator_state(it.get_state()),
            "best_accuracy": best_acc,
            "eval_accuracy": eval_acc,
        }
        ckpt.save(step, ts, meta, best=best)

    step = int(ts.step)
    bar = progress_bar(cfg.progress and is_main and step < total_steps, total_steps, step)
    run_loss = run_acc = 0.0
    run_batches = 0
    t0 = t_last = time.perf_counter()
    last_eval: dict[str, float] = {}
    train_acc = train_loss = float("nan")
    pending: list[tuple[int, dict]] = []
    if step >= total_steps:  # a finished run rerun: report its logged results
        last_eval, train_loss, train_acc = _logged_results(logger.path, step)
        if is_main:
            print(f"the run in {workdir} is already complete (step {step} of {total_steps})")

    def flush() -> None:
        """Pull pending step metrics to the host; stop on a non-finite loss before any save."""
        nonlocal run_loss, run_acc, run_batches
        for at, m in jax.device_get(pending):
            loss = float(m["loss"])
            if not (math.isfinite(loss) and bool(m["finite"])):
                last = ckpt.latest_step()
                where = (
                    f"the last good checkpoint is {ckpt.latest_dir}/{last}"
                    if last is not None
                    else "no checkpoint had been written yet"
                )
                raise TrainingDivergedError(
                    f"non-finite training loss or parameters (loss {loss}) at step {at} (epoch "
                    f"{(at - 1) // steps_per_epoch}); stopped. {where}"
                )
            run_loss += loss
            run_acc += float(m["accuracy"])
            run_batches += 1
        pending.clear()

    stop = StopRequest(announce=True)  # after jax.distributed.initialize (the CLI's order)
    try:
        while step < total_steps:
            images, labels = device_batch(s, next(it))
            ts, m = train_step(ts, images, labels)
            step += 1
            pending.append((step, m))  # synced lazily: the host keeps feeding the device
            if on_step is not None:
                on_step(step)
            epoch_end = step % steps_per_epoch == 0 or step == total_steps
            epoch = math.ceil(step / steps_per_epoch)
            do_eval = epoch_end and (epoch % cfg.eval_every_epochs == 0 or step == total_steps)
            do_save = do_eval or step % cfg.checkpoint_every_steps == 0
            if step % cfg.log_every == 0 or step == total_steps or do_save:
                flush()
            if step % cfg.log_every == 0 or step == total_steps:
                now = time.perf_counter()
                train_loss = run_loss / max(run_batches, 1)
                train_acc = run_acc / max(run_batches, 1)
                ips = run_batches * cfg.data.batch_size / max(now - t_last, 1e-9)
                rec = {
                    "kind": "train",
                    "step": step,
                    "epoch": step / steps_per_epoch,
                    "loss": train_loss,
                    "accuracy": train_acc,
                    "lr": float(schedule(update_count(cfg, step))),
                    "images_per_sec": ips,
                }
                logger.write(rec)
                history.append(rec)
                if bar is not None:
                    bar.set_postfix(
                        loss=f"{train_loss:.4f}", acc=f"{train_acc:.3f}", ips=f"{ips:.0f}"
                    )
                run_loss = run_acc = 0.0
                run_batches = 0
                t_last = now
            if bar is not None:
                bar.update(1)
            if do_eval:
                last_eval = evaluate(s, ts.params, num_steps=eval_t)
                rec = {"kind": "eval", "step": step, "epoch": epoch, **last_eval}
                logger.write(rec)
                history.append(rec)
                improved = last_eval["accuracy"] > best_acc
                best_acc = max(best_acc, last_eval["accuracy"])
                save(step, best=improved and cfg.keep_best, eval_acc=last_eval["accuracy"])
            elif do_save:
                save(step)
            if agree_to_stop(stop.requested):  # every host: the same step boundary
                flush()
                save(step)
                if is_main:
                    print(f"\nstopped at step {step}; checkpoint saved, rerun to resume")
                raise TrainingStopped(step, stop.signal_name)
    finally:
        stop.restore()
        if bar is not None:
            bar.close()
        logger.close()

    if ckpt.latest_step() != step:
        save(step)
    if not last_eval:
        last_eval = evaluate(s, ts.params, num_steps=eval_t)
    seconds = time.perf_counter() - t0
    curves = os.path.join(workdir, "curves.png")
    if is_main:  # one writer of the shared workdir
        curves = plot_curves(os.path.join(workdir, "metrics.jsonl"), curves)
    result = {
        "test_accuracy": last_eval["accuracy"],
        "test_loss": last_eval["loss"],
        "best_test_accuracy": max(best_acc, last_eval["accuracy"]),
        "train_accuracy": train_acc,
        "train_loss": train_loss,
        "steps": step,
        "epochs": step / steps_per_epoch,
        "seconds": seconds,
        "workdir": workdir,
        "checkpoint": f"{ckpt.latest_dir}/{ckpt.latest_step()}",
        "best_checkpoint": (
            f"{ckpt.best_dir}/{ckpt.best_step()}" if ckpt.best_step() is not None else None
        ),
        "metrics": os.path.join(workdir, "metrics.jsonl"),
        "curves": curves,
        "params": ts.params,
    }
    ckpt.close()
    if is_main and cfg.progress:
        print(summary(cfg, result))
    return result


def _logged_results(path: str, step: int) -> tuple[dict[str, float], float, float]:
    """Return ``(last eval at step, train loss, train accuracy)`` from a run's metrics file."""
    recs = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    train = [r for r in recs if r.get("kind") == "train"]
    ev = [r for r in recs if r.get("kind") == "eval" and r.get("step") == step]
    last_eval = {k: ev[-1][k] for k in ("accuracy", "loss", "count")} if ev else {}
    if not train:
        return last_eval, float("nan"), float("nan")
    return last_eval, train[-1]["loss"], train[-1]["accuracy"]


def best_ties(workdir: str, best_step: int) -> list[int]:
    """Return the steps whose logged test accuracy equals that of the best checkpoint.

    The best checkpoint is replaced only by a strictly better evaluation, so among tied
    evaluations it is the earliest: ``best_ties(...)[0] == best_step`` when there are ties.

    Args:
      workdir: the run directory (its ``metrics.jsonl``).
      best_step: the step of the best checkpoint.

    Returns:
      The tied eval steps in order (``[]`` when the metrics do not show a tie).
    """
    ev = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if r["kind"] == "eval"]
    best = [r["accuracy"] for r in ev if r["step"] == best_step]
    if not best:
        return []
    ties = [r["step"] for r in ev if r["accuracy"] == best[-1]]
    return ties if len(ties) > 1 else []


def evaluate_checkpoint(
    workdir: str,
    *,
    num_steps: int | None = None,
    which: str = "best",
    data_dir: str | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint at any number of time steps.

    Args:
      workdir: the training run's directory.
      num_steps: ``T_eval`` (>= 1; default: the run's ``eval_num_steps``).
      which: 'best' (the best test accuracy; among ties the earliest, see :func:`best_ties`;
        falls back to 'latest' when there is none) or 'latest'.
      data_dir: override the data directory.
      devices: devices to evaluate on (default: all).

    Returns:
      ``{'accuracy', 'loss', 'count', 'num_steps', 'step', 'checkpoint', 'path', 'ties'}``:
      ``checkpoint`` is 'best' or 'latest' (the one used), ``path`` its directory, ``ties`` the
      steps tied with the best (``[]`` when none or for 'latest'). Nothing is written to
      ``workdir`` (it may be read-only).

    Raises:
      ValueError: ``num_steps`` < 1 or ``which`` unknown.
      WorkdirError: ``workdir`` is missing or not a directory.
      FileNotFoundError: ``workdir`` holds no checkpoint.
    """
    if num_steps is not None and (
        isinstance(num_steps, bool) or int(num_steps) != num_steps or num_steps < 1
    ):
        raise ValueError(f"num_steps must be an integer >= 1 (time steps T), got {num_steps!r}")
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    workdir = check_workdir(workdir, create=False)
    ckpt = Checkpointer(workdir, read_only=True)
    if which == "best" and ckpt.best_step() is None:
        which = "latest"
    meta = ckpt.read_meta(which)
    if meta is None:
        raise FileNotFoundError(
            f"no checkpoint under {workdir} (expected {ckpt.latest_dir}/<step>); point "
            "--workdir at a training run's directory"
        )
    cfg = config_lib.from_dict(meta["config"])
    s = make_setup(cfg, devices)
    tx, _ = make_optimizer(cfg, 1)
    ts, meta = ckpt.restore(init_train_state(s, tx), which=which)
    path = f"{ckpt.best_dir if which == 'best' else ckpt.latest_dir}/{int(ts.step)}"
    ckpt.close()
    ties = best_ties(workdir, int(ts.step)) if which == "best" else []
    t = cfg.effective_eval_num_steps if num_steps is None else int(num_steps)
    out = evaluate(s, jax.device_put(ts.params, s.replicated), num_steps=t, data_dir=data_dir)
    return {
        **out,
        "num_steps": t,
        "step": int(ts.step),
        "checkpoint": which,
        "path": path,
        "ties": ties,
    }
