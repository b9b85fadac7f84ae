"""Dataset facts and random-access sources, read from the catalog (:mod:`ottt_jax.data.catalog`).

Every built-in dataset except ``digits`` is read through ``tfds.data_source(..., download=False)``
from a TFDS data directory prepared beforehand in the ``array_record`` format (see
``docs/datasets.md`` and :mod:`ottt_jax.data.prepare`). Reading needs no TensorFlow. ``digits``
ships with scikit-learn and is served from memory.
"""

from __future__ import annotations

import os
from typing import Any

from ottt_jax.data import catalog
from ottt_jax.data.catalog import SPLITS, DatasetInfo, DatasetNotPreparedError

__all__ = [
    "DATASET_NAMES",
    "SPLITS",
    "DatasetInfo",
    "DatasetNotPreparedError",
    "get_dataset_info",
    "open_source",
    "prepare_command",
]

#: The built-in datasets (``catalog.dataset_names()`` also lists the registered ones).
DATASET_NAMES = catalog.dataset_names()


def get_dataset_info(name: str, *, num_frames: int | None = None) -> DatasetInfo:
    """Return the :class:`DatasetInfo` of a dataset.

    Args:
      name: a registered dataset name (built-ins: ``digits``, ``cifar10``, ``cifar100``,
        ``cifar10_dvs``, ``imagenet2012``).
      num_frames: frames per sample, for sequence datasets only (``cifar10_dvs``: default 10);
        must be ``None`` for static datasets (see :func:`catalog.resolve_num_frames`).

    Returns:
      The dataset's info (full split sizes, preprocessed frame shape, normalization).
    """
    return catalog.dataset_info(name, num_frames=num_frames)


def prepare_command(name: str, *, data_dir: str | os.PathLike | None = None) -> str:
    """Return the shell command that prepares ``name`` (see ``docs/datasets.md``).

    Raises:
      ValueError: ``name`` is not a registered dataset.
    """
    catalog.get_dataset(name)
    return catalog.prepare_command(name, data_dir=data_dir)


def open_source(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    num_frames: int | None = None,
) -> Any:
    """Open the random-access source of one split.

    Args:
      name: a registered dataset name.
      split: ``"train"`` or ``"test"`` (ImageNet's ``test`` is TFDS ``validation``).
      data_dir: TFDS data directory (default: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      num_frames: frames per sample (sequence datasets only).

    Returns:
      A sequence-like source (``len`` and integer indexing) of dicts with the image under the
      spec's ``image_key`` (``"frames"`` for ``cifar10_dvs``) and an integer ``"label"``.

    Raises:
      DatasetNotPreparedError: the dataset has not been prepared in ``data_dir``.
    """
    spec = catalog.get_dataset(name)
    catalog.check_split(split)
    frames = catalog.resolve_num_frames(spec, num_frames)
    return spec.open_split(split, None if data_dir is None else os.fspath(data_dir), frames)
