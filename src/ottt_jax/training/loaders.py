"""This host's loaders of a run: the per-host batch and the train / test loader of a config."""

from __future__ import annotations

import math
from typing import Any

import jax

from ottt_jax import config as config_lib
from ottt_jax import data as data_lib

__all__ = ["per_host_batch", "split_loader"]


def per_host_batch(global_batch: int, n_devices: int, *, pad: bool = False) -> int:
    """Return this host's share of a global batch.

    Args:
      global_batch: the global batch size.
      n_devices: the number of devices in the mesh.
      pad: round ``global_batch`` up to a multiple of ``n_devices`` (evaluation, which masks the
        padding) instead of refusing it.

    Returns:
      ``global_batch / process_count`` (after rounding up when ``pad``).

    Raises:
      ValueError: naming ``data.batch_size`` when it does not divide by the device count.
    """
    if global_batch % n_devices:
        if not pad:
            raise ValueError(
                f"data.batch_size={global_batch} must be divisible by the number of devices "
                f"({n_devices}); choose a multiple of {n_devices}"
            )
        global_batch = n_devices * math.ceil(global_batch / n_devices)
    return global_batch // jax.process_count()


def split_loader(
    cfg: config_lib.Config, split: str, batch_size: int, *, data_dir: str | None = None
) -> Any:
    """Return this host's loader of ``split`` as the config sets it.

    Args:
      cfg: a validated config (``data`` section, ``seed``, the frames).
      split: ``"train"`` (augmented as ``data.augment``, endless, full batches only) or
        ``"test"`` (one pass; the last batch may be short).
      batch_size: this host's batch size.
      data_dir: override ``data.data_dir``.

    Returns:
      The :class:`~ottt_jax.data.Loader` of this host's rows.
    """
    train = split == "train"
    return data_lib.make_loader(
        cfg.data.dataset,
        split,
        batch_size=batch_size,
        seed=cfg.seed,
        data_dir=data_dir or cfg.data.data_dir,
        augment=cfg.data.augment if train else None,
        drop_remainder=train,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        worker_count=cfg.data.worker_count,
        num_frames=cfg.effective_num_frames,
    )
