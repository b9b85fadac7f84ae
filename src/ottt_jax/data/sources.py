"""Random-access sources of dataset splits: in-memory arrays and prepared TFDS ``array_record``.

Every built-in dataset except ``digits`` is read through ``tfds.data_source(..., download=False)``
from a TFDS data directory prepared beforehand in the ``array_record`` format (see
``docs/datasets.md`` and :mod:`ottt_jax.data.prepare`); reading needs no TensorFlow, and
``tensorflow_datasets`` is imported only when a split is opened. ``digits`` ships with
scikit-learn and is served from memory (:class:`ArraySource`).

A source has ``len`` and integer indexing returning ``{image_key: image, "label": int}``; an
opener ``open(split, data_dir, num_frames)`` returns one (a dataset spec's ``open_split``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from ottt_jax.data.spec import check_split

__all__ = [
    "ArraySource",
    "ArraySplits",
    "DatasetNotPreparedError",
    "TfdsOpener",
    "default_data_dir",
    "prepare_command",
]


class DatasetNotPreparedError(FileNotFoundError):
    """The dataset's ``array_record`` files are not in the data directory."""


class ArraySource:
    """A random-access source over in-memory arrays: records ``{"image": x[i], "label": y[i]}``.

    Args:
      images: ``[N, H, W, C]`` (or ``[N, T, H, W, C]`` for sequences).
      labels: ``[N]`` integer labels.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        images, labels = np.asarray(images), np.asarray(labels)
        if labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"labels must be [N] with N = len(images) = {len(images)}; got shape {labels.shape}"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
        self._images = images
        self._labels = labels.astype(np.int32)

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"image": self._images[index], "label": self._labels[index]}


@dataclasses.dataclass(frozen=True)
class ArraySplits:
    """Open a split of an in-memory dataset: ``ArraySplits(train=src, test=src)(split, ...)``."""

    train: ArraySource
    test: ArraySource

    def __call__(self, split: str, data_dir: str | None, num_frames: int | None) -> ArraySource:
        """Return the source of ``split``; ``data_dir`` and ``num_frames`` are unused."""
        check_split(split)
        return self.train if split == "train" else self.test


def default_data_dir() -> str:
    """Return ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    return os.environ.get("TFDS_DATA_DIR", os.path.join("~", "tensorflow_datasets"))


@dataclasses.dataclass(frozen=True)
class TfdsOpener:
    """Open a split of a TFDS dataset prepared as ``array_record`` files (no download).

    Attributes:
      tfds_name: the TFDS builder name.
      test_split: the TFDS split served as ``test`` (ImageNet: ``validation``).
      frames_config: select the builder config ``frames_{T}`` (sequence datasets).
      builder_module: a module to import first, which registers the builder with TFDS.
      prepare_name: the name ``python -m ottt_jax.data.prepare`` prepares it under, quoted in the
        error when the files are missing (None: the ``tfds build`` command is quoted).
      data_dir: the TFDS data directory used when the caller passes none (None:
        ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    """

    tfds_name: str
    test_split: str = "test"
    frames_config: bool = False
    builder_module: str | None = None
    prepare_name: str | None = None
    data_dir: str | None = None

    def __call__(self, split: str, data_dir: str | None, num_frames: int | None) -> Any:
        """Return the random-access source of ``split`` (``"train"`` or ``"test"``).

        Raises:
          DatasetNotPreparedError: the files are not in ``data_dir``.
        """
        import importlib

        import tensorflow_datasets as tfds

        if self.builder_module is not None:
            importlib.import_module(self.builder_module)
        name = f"{self.tfds_name}/frames_{num_frames}" if self.frames_config else self.tfds_name
        data_dir = self.data_dir if data_dir is None else os.fspath(data_dir)
        tfds_split = self.test_split if split == "test" else split
        try:
            return tfds.data_source(name, split=tfds_split, data_dir=data_dir, download=False)
        except Exception as err:  # TFDS raises several types for "not there / wrong format"
            version = tfds.builder_cls(self.tfds_name).VERSION
            where = os.path.join(data_dir or default_data_dir(), name, str(version))
            if self.prepare_name is not None:
                hint = prepare_command(self.prepare_name, data_dir=data_dir)
            else:
                hint = f"tfds build {self.tfds_name} --file_format=array_record"
            raise DatasetNotPreparedError(
                f"dataset {self.tfds_name!r} ({split}) is not prepared as array_record files in "
                f"{where}. Prepare it with:\n  {hint}\n(see docs/datasets.md). TFDS said: "
                f"{type(err).__name__}: {err}"
            ) from err


def prepare_command(name: str, *, data_dir: str | os.PathLike | None = None) -> str:
    """Return the shell command that prepares a built-in dataset (see ``docs/datasets.md``)."""
    cmd = f"python -m ottt_jax.data.prepare {name} --manual_dir <DIR>"
    if data_dir is not None:
        cmd += f" --data_dir {os.fspath(data_dir)}"
    return cmd
