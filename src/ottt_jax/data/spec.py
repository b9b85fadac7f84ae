"""One dataset's facts: :class:`DatasetSpec` (a catalog entry) and :class:`DatasetInfo` (resolved).

The catalog (:mod:`ottt_jax.data.catalog`) holds the specs; the random-access sources they open
live in :mod:`ottt_jax.data.sources`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["SPLITS", "DatasetInfo", "DatasetSpec", "SplitSizes", "check_split", "is_int"]

#: The split names every dataset offers (ImageNet's ``test`` is its validation set).
SPLITS = ("train", "test")


def check_split(split: str) -> None:
    """Raise a ``ValueError`` unless ``split`` is ``"train"`` or ``"test"``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def is_int(value: Any) -> bool:
    """Return whether ``value`` is an int (Python or NumPy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class SplitSizes:
    """``num_examples(split)`` over the ``num_train`` / ``num_test`` fields of a dataclass."""

    num_train: int
    num_test: int

    def num_examples(self, split: str) -> int:
        """Return the size of ``split`` (``"train"`` or ``"test"``)."""
        check_split(split)
        return self.num_train if split == "train" else self.num_test


@dataclasses.dataclass(frozen=True)
class DatasetSpec(SplitSizes):
    """Every fact about one dataset (one catalog entry).

    Attributes:
      name: the name used by ``data.dataset`` and :func:`~ottt_jax.data.make_loader`.
      num_classes: number of labels ``K``; labels are in ``[0, K)``.
      frame_shape: ``(H, W, C)`` of one model input frame after preprocessing (NHWC).
      num_train: examples in the full ``train`` split.
      num_test: examples in the full ``test`` split.
      open_split: ``open_split(split, data_dir, num_frames)`` returns a random-access source
        (``len`` and integer indexing) of dicts holding the image under ``image_key`` and an
        integer ``"label"``; ``num_frames`` is the resolved frame count (None for static data).
      eval_transform: ``eval_transform(image) -> float32 image``: the deterministic preprocessing
        of one record (frames ``[T, H, W, C]`` for sequences).
      train_transform: ``train_transform(image, rng) -> float32 image``, the training
        augmentation, or None when the dataset has none.
      uses_cutout: ``train_transform`` takes the loader's ``cutout=`` mode (CIFAR).
      mean: per-channel mean subtracted by the preprocessing (of pixels scaled to [0, 1]).
      std: per-channel std divided by the preprocessing.
      frames: for a sequence dataset (each record a ``[T, H, W, C]`` sequence of event frames, one
        fed per time step) the frame counts it offers; empty for static images.
      default_frames: the frame count when neither ``num_frames`` nor ``num_steps`` is known; one
        of ``frames`` (None for static images).
      image_key: the record key holding the image.
    """

    name: str
    num_classes: int
    frame_shape: tuple[int, int, int]
    num_train: int
    num_test: int
    open_split: Callable[[str, str | None, int | None], Any]
    eval_transform: Callable[[np.ndarray], np.ndarray]
    train_transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None
    uses_cutout: bool = False
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    frames: tuple[int, ...] = ()
    default_frames: int | None = None
    image_key: str = "image"

    def __post_init__(self):
        def bad(field: str, what: str) -> ValueError:
            return ValueError(
                f"DatasetSpec.{field} must be {what}; got {getattr(self, field)!r}"
                f" (dataset {self.name!r})"
            )

        if not isinstance(self.name, str) or not self.name.strip():
            raise bad("name", "a non-empty string")
        if not (is_int(self.num_classes) and self.num_classes >= 1):
            raise bad("num_classes", "an int >= 1")
        shape = tuple(self.frame_shape) if isinstance(self.frame_shape, (tuple, list)) else ()
        if len(shape) != 3 or not all(is_int(s) and s >= 1 for s in shape):
            raise bad("frame_shape", "(H, W, C), three ints >= 1")
        object.__setattr__(self, "frame_shape", tuple(int(s) for s in shape))
        for field in ("num_train", "num_test"):
            if not (is_int(getattr(self, field)) and getattr(self, field) >= 1):
                raise bad(field, "an int >= 1")
        for field in ("open_split", "eval_transform"):
            if not callable(getattr(self, field)):
                raise bad(field, "callable")
        if self.train_transform is not None and not callable(self.train_transform):
            raise bad("train_transform", "callable or None")
        if self.uses_cutout and self.train_transform is None:
            raise bad("uses_cutout", "False when there is no train_transform")
        channels = self.frame_shape[-1]
        for field in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, field)) or (
                (0.0,) * channels if field == "mean" else (1.0,) * channels
            )
            object.__setattr__(self, field, values)
            if len(values) != channels:
                raise bad(field, f"one value per channel ({channels})")
        if any(s <= 0 for s in self.std):
            raise bad("std", "positive")
        frames = tuple(self.frames)
        if not all(is_int(t) and t >= 1 for t in frames):
            raise bad("frames", "a tuple of ints >= 1 (empty for static images)")
        object.__setattr__(self, "frames", tuple(int(t) for t in frames))
        if frames and self.default_frames not in frames:
            raise bad("default_frames", f"one of frames {frames}")
        if not frames and self.default_frames is not None:
            raise bad("default_frames", "None for a static dataset (frames is empty)")
        if not isinstance(self.image_key, str) or not self.image_key:
            raise bad("image_key", "a non-empty string")

    @property
    def is_sequence(self) -> bool:
        """Return whether each record is a sequence of frames ``[T, H, W, C]``."""
        return bool(self.frames)

    @property
    def has_augmentation(self) -> bool:
        """Return whether the dataset has a training augmentation."""
        return self.train_transform is not None


@dataclasses.dataclass(frozen=True)
class DatasetInfo(SplitSizes):
    """The facts of a dataset with its frame count resolved (what a loader serves).

    Attributes:
      name: the dataset name.
      num_classes: number of labels ``K``.
      frame_shape: ``(H, W, C)`` of one model input frame.
      num_train: examples in the full ``train`` split.
      num_test: examples in the full ``test`` split (ImageNet: the validation set).
      is_sequence: True when each example is a sequence of frames ``[T, H, W, C]`` (DVS).
      num_frames: ``T`` for sequence datasets, else ``None``.
      mean: per-channel mean subtracted by the preprocessing.
      std: per-channel std divided by the preprocessing.
    """

    name: str
    num_classes: int
    frame_shape: tuple[int, int, int]
    num_train: int
    num_test: int
    is_sequence: bool
    num_frames: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example without the batch axis: ``(T, H, W, C)`` or ``(H, W, C)``."""
        if self.is_sequence:
            return (self.num_frames, *self.frame_shape)
        return self.frame_shape
