"""Evaluation: one split through the compiled eval step, and a saved run's checkpoints.

The batches of every step go through :func:`device_batch` (host rows → global sharded arrays);
the last test batch is padded to one compiled shape by :func:`pad_batch` and masked.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding

from ottt_jax import config as config_lib
from ottt_jax.checkpoint import Checkpointer
from ottt_jax.training.build import (
    Setup,
    make_optimizer,
    make_setup,
    per_host_batch,
    split_loader,
)
from ottt_jax.training.logging import read_metrics
from ottt_jax.training.steps import init_train_state, make_eval_step
from ottt_jax.training.workdir import check_workdir

__all__ = [
    "best_ties",
    "device_batch",
    "evaluate",
    "evaluate_checkpoint",
    "global_array",
    "pad_batch",
]

PyTree = Any


def global_array(sharding: NamedSharding, local: np.ndarray) -> jax.Array:
    """Return this host's rows ``local`` as one global array laid out by ``sharding``."""
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
    return global_array(s.batch_sharding, images), global_array(s.batch_sharding, labels)


def pad_batch(batch: dict, size: int) -> tuple[dict, np.ndarray]:
    """Pad a loader batch with zero rows to ``size`` rows.

    Args:
      batch: ``{'image': [n, ...], 'label': [n]}`` with ``n <= size``.
      size: the rows wanted.

    Returns:
      ``(padded batch, mask)``: ``mask`` float32 ``[size]`` is 1 on the batch's rows, 0 on the
      padding.
    """
    n = len(batch["label"])
    mask = (np.arange(size) < n).astype(np.float32)
    if n == size:
        return batch, mask
    padded = {
        k: np.concatenate([v, np.zeros((size - n, *np.shape(v)[1:]), np.asarray(v).dtype)])
        for k, v in batch.items()
    }
    return padded, mask


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
    loader = split_loader(cfg, "test", per_host, data_dir=data_dir)
    step = make_eval_step(s, num_steps)
    tot = {"correct": 0.0, "loss": 0.0, "count": 0.0}
    for batch in loader:
        batch, mask = pad_batch(batch, per_host)  # one compiled shape; the padding is masked
        images, labels = device_batch(s, batch)
        out = step(params, images, labels, global_array(s.batch_sharding, mask))
        for k in tot:
            tot[k] += float(out[k])
    count = max(tot["count"], 1.0)
    return {"accuracy": tot["correct"] / count, "loss": tot["loss"] / count, "count": tot["count"]}


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
    tx, _ = make_optimizer(cfg, 1, rule=s.rule)
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
