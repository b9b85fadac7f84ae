"""Datasets and input pipelines for ottt_jax (TFDS ``array_record`` sources + Grain).

* :mod:`ottt_jax.data.catalog` — the registry of dataset specs and the built-ins;
  :func:`register_dataset`, :func:`get_dataset`, :func:`dataset_names`, :func:`numpy_dataset`,
  :func:`tfds_image_dataset`.
* :mod:`ottt_jax.data.spec` — :class:`DatasetSpec` (one dataset's facts), :class:`DatasetInfo`.
* :mod:`ottt_jax.data.sources` — the random-access sources (in-memory arrays, TFDS array_record).
* :func:`get_dataset_info` — static facts (classes, frame shape, split sizes, mean/std).
* :func:`make_loader` — a checkpointable Grain loader yielding
  ``{"image": float32 [B, H, W, C] or [B, T, H, W, C], "label": int32 [B]}``.
* :func:`open_source` — the raw random-access source of a split.
* :mod:`ottt_jax.data.augment` — the per-sample NumPy augmentations.
* :mod:`ottt_jax.data.cifar10_dvs` — AEDAT reader, frame integration and TFDS builder.
* :mod:`ottt_jax.data.prepare` — ``python -m ottt_jax.data.prepare NAME ...`` (offline prep).

TensorFlow is needed only to prepare ``cifar10``, ``cifar100`` and ``imagenet2012`` (TFDS encodes
their images with it); reading and training never import it.
"""

from ottt_jax.data.catalog import (
    dataset_names,
    get_dataset,
    get_dataset_info,
    numpy_dataset,
    open_source,
    prepare_command,
    register_dataset,
    resolve_num_frames,
    tfds_image_dataset,
    unregister_dataset,
)
from ottt_jax.data.pipeline import Loader, make_loader, shard_bounds, steps_per_epoch
from ottt_jax.data.sources import DatasetNotPreparedError
from ottt_jax.data.spec import SPLITS, DatasetInfo, DatasetSpec

__all__ = [
    "SPLITS",
    "DatasetInfo",
    "DatasetNotPreparedError",
    "DatasetSpec",
    "Loader",
    "dataset_names",
    "get_dataset",
    "get_dataset_info",
    "make_loader",
    "numpy_dataset",
    "open_source",
    "prepare_command",
    "register_dataset",
    "resolve_num_frames",
    "shard_bounds",
    "steps_per_epoch",
    "tfds_image_dataset",
    "unregister_dataset",
]
