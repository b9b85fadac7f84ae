"""``train(cfg, ..., model=, data=)``: resolve the config, build the run once, lock the workdir.

This is the function behind ``ottt_jax.train``: it applies the overrides, registers in-memory
``data`` for the call, builds the run's static parts once
(:func:`~ottt_jax.training.build.make_training`), creates and locks the workdir, and hands over to
:func:`~ottt_jax.training.loop.train_run`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np

from ottt_jax import config as config_lib
from ottt_jax import data as data_lib
from ottt_jax.training.build import make_training, resolve_workdir
from ottt_jax.training.loop import train_run
from ottt_jax.training.result import TrainResult
from ottt_jax.training.workdir import WorkdirLock, check_workdir

__all__ = ["array_dataset", "train"]


@contextlib.contextmanager
def array_dataset(data: Any) -> Iterator[list[str]]:
    """Register in-memory data for one run and yield the overrides that select it.

    Args:
      data: ``(x_train, y_train, x_test, y_test)``, or None.

    Yields:
      ``['data.dataset=arrays-<hash>', 'model.num_classes=K']`` (``[]`` for None); the dataset
      (named by a hash of the arrays, so other data gets another default workdir) is
      unregistered on exit.
    """
    if data is None:
        yield []
        return
    if not (isinstance(data, (tuple, list)) and len(data) == 4):
        raise ValueError(
            f"data must be a tuple (x_train, y_train, x_test, y_test), got {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
        )
    arrays = [np.asarray(a) for a in data]
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(f"{a.shape}{a.dtype}".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    name = f"arrays-{digest.hexdigest()[:8]}"
    x, y, x_test, y_test = arrays
    spec = data_lib.numpy_dataset(name, (x, y), (x_test, y_test), overwrite=True)
    try:
        yield [f"data.dataset={name}", f"model.num_classes={spec.num_classes}"]
    finally:
        data_lib.unregister_dataset(name)


def _config(cfg: config_lib.Config | str, overrides: Any) -> config_lib.Config:
    if isinstance(cfg, str):
        return config_lib.get_config(cfg, overrides or ())
    if overrides:
        return config_lib.apply_overrides(cfg, overrides)
    return config_lib.validate(cfg)


def train(
    cfg: config_lib.Config | str = "digits",
    overrides: Sequence[str] | dict | None = None,
    *,
    model: Any = None,
    data: tuple[Any, Any, Any, Any] | None = None,
    workdir: str | None = None,
    devices: Sequence[jax.Device] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train a spiking network with the gradient rule ``cfg.method`` names.

    Args:
      cfg: a :class:`~ottt_jax.config.Config` or a preset name (``'digits'``, ``'cifar10_vgg'``...).
      overrides: dotted ``key=value`` overrides applied to ``cfg``.
      model: your own model instead of ``cfg.model``: a Flax module called as
        ``model(state, x_t) -> (logits, state)`` with ``init_state(batch, input_shape, **kw)``
        (``key=``, ``train=`` are passed), built with the rule's mode; or ``make_model(mode)``
        returning one (:func:`~ottt_jax.training.build.user_model`).
      data: in-memory data ``(x_train, y_train, x_test, y_test)`` instead of
        ``cfg.data.dataset``: images ``[N, H, W, C]`` (fed as given) or ``[N, T, H, W, C]``,
        int labels ``[N]``; ``model.num_classes`` is set from the labels. The dataset is
        registered for this call only (``ottt-eval`` in another process cannot load it).
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
      A :class:`~ottt_jax.training.result.TrainResult`: ``test_accuracy``, ``test_loss``,
      ``best_test_accuracy``, ``train_accuracy``, ``train_loss``, ``steps``, ``epochs``,
      ``seconds``, ``workdir``, ``checkpoint``, ``best_checkpoint``, ``metrics``, ``curves``,
      ``params`` and ``history`` (one :class:`~ottt_jax.training.result.EpochStats` per
      epoch); it also reads as a mapping of those names (``result["steps"]``).

    Raises:
      TrainingDivergedError: the loss became non-finite (the last good checkpoint is kept).
      IncompatibleCheckpointError: the workdir holds a checkpoint of another config.
      WorkdirError: the workdir is a file, read-only or in use (one line naming it and the fix).
      TrainingStopped: a SIGINT / SIGTERM on any host; every host saved the same step (a
        ``KeyboardInterrupt``; a second signal raises a plain ``KeyboardInterrupt`` at once).
    """
    cfg = _config(cfg, overrides)
    with array_dataset(data) as selected:
        if selected:
            cfg = config_lib.apply_overrides(cfg, selected)
        workdir = resolve_workdir(cfg, workdir)
        run = make_training(cfg, devices, model=model)
        workdir = check_workdir(workdir)  # the first thing created on disk
        with WorkdirLock(workdir):
            return train_run(run, workdir, on_step)
