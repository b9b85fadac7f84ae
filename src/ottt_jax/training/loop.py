"""The training loop: restore or initialize, a pure cadence, the step loop.

:func:`~ottt_jax.training.run.train` builds a run once
(:func:`~ottt_jax.training.build.make_training`: setup, loader, optimizer, schedule), then
:func:`train_run` restores the latest checkpoint or starts at step 0
(:func:`restore_or_init`), runs the steps, and after each one does what
:func:`~ottt_jax.training.cadence.cadence` decides (log, close the epoch, evaluate, save).

Multi-host runs call :func:`~ottt_jax.training.distributed.initialize` first
(``ottt-train --multihost``); each host loads its rows of every global batch, and the batches do not
depend on the host count. SIGINT / SIGTERM on any host stops every host after the same step with
one checkpoint (:class:`~ottt_jax.training.distributed.TrainingStopped`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax

from ottt_jax import config as config_lib
from ottt_jax.checkpoint import (
    Checkpointer,
    IncompatibleCheckpointError,
    decode_iterator_state,
    encode_iterator_state,
)
from ottt_jax.training.build import (
    Training,
    resolved_config_json,
)
from ottt_jax.training.cadence import Cadence, cadence
from ottt_jax.training.distributed import StopRequest, TrainingStopped, agree_to_stop
from ottt_jax.training.evaluation import (
    best_ties,
    device_batch,
    evaluate,
    evaluate_checkpoint,
)
from ottt_jax.training.logging import (
    MetricsLogger,
    plot_curves,
    progress_bar,
    read_metrics,
    summary,
)
from ottt_jax.training.result import EpochStats, TrainResult, epoch_record, history_from_records
from ottt_jax.training.steps import (
    TrainState,
    check_user_model,
    init_train_state,
    make_train_step,
)
from ottt_jax.training.workdir import WorkdirError

__all__ = [
    "TrainingDivergedError",
    "TrainingStopped",
    "best_ties",
    "device_batch",
    "evaluate",
    "evaluate_checkpoint",
    "restore_or_init",
    "train_run",
    "write_config",
]


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


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


class _Mean:
    """A running mean of the training loss and accuracy over steps."""

    def __init__(self) -> None:
        self.loss = self.accuracy = 0.0
        self.count = 0

    def add(self, loss: float, accuracy: float) -> None:
        """Add one step's loss and accuracy."""
        self.loss += loss
        self.accuracy += accuracy
        self.count += 1

    def means(self) -> tuple[float, float]:
        """Return ``(mean loss, mean accuracy)`` (NaN when empty)."""
        if not self.count:
            return float("nan"), float("nan")
        return self.loss / self.count, self.accuracy / self.count


@dataclasses.dataclass
class _LoopState:
    """The training loop's mutable state, one object passed explicitly to the loop's parts."""

    ts: TrainState
    it: Any  # this host's loader iterator (its state is checkpointed)
    step: int
    best_acc: float
    history: list[EpochStats]
    last_eval: dict[str, float] = dataclasses.field(default_factory=dict)
    train_loss: float = float("nan")
    train_acc: float = float("nan")
    pending: list = dataclasses.field(default_factory=list)  # (step, device metrics) not synced
    window: _Mean = dataclasses.field(default_factory=_Mean)  # since the last log record
    epoch: _Mean = dataclasses.field(default_factory=_Mean)  # since the epoch began
    t_log: float = dataclasses.field(default_factory=time.perf_counter)
    t_epoch: float = dataclasses.field(default_factory=time.perf_counter)


def restore_or_init(
    run: Training, ckpt: Checkpointer, workdir: str
) -> tuple[TrainState, Any, float]:
    """Return the run's starting point: the latest checkpoint of ``workdir``, else step 0.

    Args:
      run: the run's static parts.
      ckpt: the run's checkpointer.
      workdir: the run directory (for messages).

    Returns:
      ``(train state (replicated), loader iterator at the same position, best test accuracy so
      far (-1 when none))``.

    Raises:
      ValueError: a checkpoint exists and ``resume=false``.
      IncompatibleCheckpointError: the checkpoint was written with another config.
    """
    s, cfg = run.setup, run.setup.cfg
    ts = init_train_state(s, run.tx)
    it = iter(run.loader)
    if ckpt.latest_step() is None:
        return ts, it, -1.0
    if not cfg.resume:
        raise ValueError(
            f"workdir {workdir} already holds a checkpoint (step {ckpt.latest_step()}) and "
            "resume=false; pass another --workdir or set resume=true"
        )
    _check_compatible(ckpt.read_meta()["config"], cfg, workdir)
    ts, meta = ckpt.restore(ts)
    ts = jax.device_put(ts, s.replicated)
    it.set_state(decode_iterator_state(meta["data_state"]))
    if jax.process_index() == 0:
        print(f"resumed from {ckpt.latest_dir}/{int(ts.step)} (epoch {meta['epoch']})")
    return ts, it, meta.get("best_accuracy", -1.0)


def _save(run: Training, ckpt: Checkpointer, ls: _LoopState, *, best=False, eval_acc=None):
    meta = {
        "config": config_lib.to_dict(run.setup.cfg),
        "step": ls.step,
        "epoch": ls.step // run.steps_per_epoch,
        "data_state": encode_iterator_state(ls.it.get_state()),
        "best_accuracy": ls.best_acc,
        "eval_accuracy": eval_acc,
    }
    ckpt.save(ls.step, ls.ts, meta, best=best)


def _sync(run: Training, ckpt: Checkpointer, ls: _LoopState) -> None:
    """Pull pending step metrics to the host; stop on a non-finite loss before any save."""
    for at, m in jax.device_get(ls.pending):
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
                f"{(at - 1) // run.steps_per_epoch}); stopped. {where}"
            )
        ls.window.add(loss, float(m["accuracy"]))
        ls.epoch.add(loss, float(m["accuracy"]))
    ls.pending.clear()


def _log(run: Training, logger: MetricsLogger, ls: _LoopState, bar: Any) -> None:
    now = time.perf_counter()
    ls.train_loss, ls.train_acc = ls.window.means()
    ips = ls.window.count * run.setup.cfg.data.batch_size / max(now - ls.t_log, 1e-9)
    logger.write(
        {
            "kind": "train",
            "step": ls.step,
            "epoch": ls.step / run.steps_per_epoch,
            "loss": ls.train_loss,
            "accuracy": ls.train_acc,
            "lr": run.lr(ls.step),
            "images_per_sec": ips,
        }
    )
    if bar is not None:
        bar.set_postfix(loss=f"{ls.train_loss:.4f}", acc=f"{ls.train_acc:.3f}", ips=f"{ips:.0f}")
    ls.window, ls.t_log = _Mean(), now


def _epoch_stats(run: Training, ls: _LoopState, epoch: int) -> EpochStats:
    loss, acc = ls.epoch.means()
    seconds = max(time.perf_counter() - ls.t_epoch, 1e-9)
    ips = ls.epoch.count * run.setup.cfg.data.batch_size / seconds
    return EpochStats(epoch, ls.step, loss, acc, None, run.lr(ls.step), ips)


def _after_step(
    run: Training, ckpt: Checkpointer, logger: MetricsLogger, ls: _LoopState, c: Cadence, bar
) -> None:
    """Do what the cadence ``c`` asks after a step: sync, log, close the epoch, evaluate, save."""
    if c.sync:
        _sync(run, ckpt, ls)
    if c.log:
        _log(run, logger, ls, bar)
    if bar is not None:
        bar.update(1)
    stats = _epoch_stats(run, ls, c.epoch) if c.epoch_end else None
    improved = False
    if c.evaluate:
        ls.last_eval = evaluate(
            run.setup, ls.ts.params, num_steps=run.setup.cfg.effective_eval_num_steps
        )
        logger.write({"kind": "eval", "step": ls.step, "epoch": c.epoch, **ls.last_eval})
        improved = ls.last_eval["accuracy"] > ls.best_acc
        ls.best_acc = max(ls.best_acc, ls.last_eval["accuracy"])
    if stats is not None:  # logged before the save: a resume from here does not repeat it
        stats = stats._replace(test_accuracy=ls.last_eval["accuracy"] if c.evaluate else None)
        logger.write(epoch_record(stats))
        ls.history.append(stats)
        ls.epoch, ls.t_epoch = _Mean(), time.perf_counter()
    if c.evaluate:
        best = improved and run.setup.cfg.keep_best
        _save(run, ckpt, ls, best=best, eval_acc=ls.last_eval["accuracy"])
    elif c.save:
        _save(run, ckpt, ls)


def _run_steps(run, ckpt, logger, ls: _LoopState, on_step, bar) -> None:
    """Train from ``ls.step`` to ``run.total_steps``, stopping together on a signal."""
    cfg = run.setup.cfg
    train_step = make_train_step(run.setup, run.tx)
    stop = StopRequest(announce=True)  # after jax.distributed.initialize (the CLI's order)
    try:
        while ls.step < run.total_steps:
            images, labels = device_batch(run.setup, next(ls.it))
            ls.ts, m = train_step(ls.ts, images, labels)
            ls.step += 1
            ls.pending.append((ls.step, m))  # synced lazily: the host keeps feeding the device
            if on_step is not None:
                on_step(ls.step)
            c = cadence(
                ls.step,
                steps_per_epoch=run.steps_per_epoch,
                total_steps=run.total_steps,
                log_every=cfg.log_every,
                eval_every_epochs=cfg.eval_every_epochs,
                checkpoint_every_steps=cfg.checkpoint_every_steps,
            )
            _after_step(run, ckpt, logger, ls, c, bar)
            if agree_to_stop(stop.requested):  # every host: the same step boundary
                _sync(run, ckpt, ls)
                _save(run, ckpt, ls)
                if jax.process_index() == 0:
                    print(f"\nstopped at step {ls.step}; checkpoint saved, rerun to resume")
                raise TrainingStopped(ls.step, stop.signal_name)
    finally:
        stop.restore()


def _report_rule(s: Any, report: dict[str, str], is_main: bool) -> None:
    """Print which rule each kernel of a user's model follows; warn on a likely plain layer.

    Under a trace mode only a layer on the raw input should read ``"instantaneous"``: more than
    one such kernel is most likely a plain Flax layer fed by spikes (SLTT's gradient, not OTTT's).
    """
    if is_main:
        print(f"check_rule ({s.rule.name}): " + ", ".join(f"{k}: {v}" for k, v in report.items()))
    instantaneous = [k for k, v in report.items() if v == "instantaneous"]
    if s.rule.mode.trace_rule and len(instantaneous) > 1:
        warnings.warn(
            f"{len(instantaneous)} kernels of the model take their gradient at the instantaneous "
            f"input under {s.rule.name!r}: {instantaneous}; only a layer on the raw input should. "
            "Wrap a plain Flax layer fed by spikes with ottt_jax.layers.traced(...)",
            stacklevel=2,
        )


def _start(run: Training, ckpt: Checkpointer, workdir: str) -> tuple[_LoopState, MetricsLogger]:
    """Restore or initialize, write ``config.json`` and open the metrics (replaying none)."""
    ts, it, best_acc = restore_or_init(run, ckpt, workdir)
    is_main = jax.process_index() == 0
    if run.setup.user_model and int(ts.step) == 0:  # a user's model: its rule, before step 1
        _report_rule(run.setup, check_user_model(run.setup, ts.params), is_main)
    if is_main:
        write_config(run.setup.cfg, workdir)
    logger = MetricsLogger(workdir, is_main)
    step = int(ts.step)
    logger.keep_until(step)  # a killed run's records past its checkpoint are replayed
    records = read_metrics(logger.path) if step and os.path.exists(logger.path) else []
    ls = _LoopState(ts=ts, it=it, step=step, best_acc=best_acc, history=[])
    ls.history = history_from_records(records, step)
    if step >= run.total_steps:  # a finished run rerun: report its logged results
        ls.last_eval, ls.train_loss, ls.train_acc = _logged_results(records, step)
        if is_main:
            print(f"the run in {workdir} is already complete (step {step} of {run.total_steps})")
    return ls, logger


def _finish(run: Training, ckpt: Checkpointer, ls: _LoopState, workdir: str, t0: float):
    """Save the last step, evaluate if needed, draw the curves and return the result."""
    cfg = run.setup.cfg
    if ckpt.latest_step() != ls.step:
        _save(run, ckpt, ls)
    if not ls.last_eval:
        ls.last_eval = evaluate(run.setup, ls.ts.params, num_steps=cfg.effective_eval_num_steps)
    seconds = time.perf_counter() - t0
    metrics = os.path.join(workdir, "metrics.jsonl")
    curves = os.path.join(workdir, "curves.png")
    if jax.process_index() == 0:  # one writer of the shared workdir
        curves = plot_curves(metrics, curves)
    best = ckpt.best_step()
    return TrainResult(
        test_accuracy=ls.last_eval["accuracy"],
        test_loss=ls.last_eval["loss"],
        best_test_accuracy=max(ls.best_acc, ls.last_eval["accuracy"]),
        train_accuracy=ls.train_acc,
        train_loss=ls.train_loss,
        steps=ls.step,
        epochs=ls.step / run.steps_per_epoch,
        seconds=seconds,
        workdir=workdir,
        checkpoint=f"{ckpt.latest_dir}/{ckpt.latest_step()}",
        best_checkpoint=f"{ckpt.best_dir}/{best}" if best is not None else None,
        metrics=metrics,
        curves=curves,
        params=ls.ts.params,
        history=tuple(ls.history),
    )


def train_run(run: Training, workdir: str, on_step: Callable[[int], None] | None = None):
    """Train a built run in a created, locked ``workdir`` (what :func:`train` runs).

    Args:
      run: the run's static parts (:func:`~ottt_jax.training.build.make_training`).
      workdir: the absolute run directory, created and locked by the caller.
      on_step: as for :func:`~ottt_jax.training.run.train`.

    Returns:
      The :class:`~ottt_jax.training.result.TrainResult`.
    """
    cfg = run.setup.cfg
    ckpt = Checkpointer(workdir, max_to_keep=cfg.max_checkpoints)
    try:
        ls, logger = _start(run, ckpt, workdir)
        show = cfg.progress and jax.process_index() == 0 and ls.step < run.total_steps
        bar = progress_bar(show, run.total_steps, ls.step)
        t0 = ls.t_log = ls.t_epoch = time.perf_counter()
        try:
            _run_steps(run, ckpt, logger, ls, on_step, bar)
        finally:
            if bar is not None:
                bar.close()
            logger.close()
        result = _finish(run, ckpt, ls, workdir, t0)
    finally:
        ckpt.close()
    if jax.process_index() == 0 and cfg.progress:
        print(summary(cfg, result))
    return result


def _logged_results(records: list[dict], step: int) -> tuple[dict[str, float], float, float]:
    """Return ``(last eval at step, train loss, train accuracy)`` from a run's metrics file."""
    recs = [r for r in records if r.get("step", 0) <= step]
    train = [r for r in recs if r.get("kind") == "train"]
    ev = [r for r in recs if r.get("kind") == "eval" and r.get("step") == step]
    last_eval = {k: ev[-1][k] for k in ("accuracy", "loss", "count")} if ev else {}
    if not train:
        return last_eval, float("nan"), float("nan")
    return last_eval, train[-1]["loss"], train[-1]["accuracy"]
