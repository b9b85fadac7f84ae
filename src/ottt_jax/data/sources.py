"""Dataset metadata and random-access sources (TFDS ``array_record`` or in memory).

Every dataset except ``digits`` is read through ``tfds.data_source(..., download=False)`` from a
TFDS data directory prepared beforehand in the ``array_record`` format (see ``docs/datasets.md``
and :mod:`ottt_jax.data.prepare`). Reading needs no TensorFlow. ``digits`` ships with
scikit-learn and is served from memory.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import tensorflow_datasets as tfds

from ottt_jax.data import augment
from ottt_jax.data.digits import DigitsSource

__all__ = [
    "DATASET_NAMES",
    "SPLITS",
    "DatasetInfo",
    "DatasetNotPreparedError",
    "get_dataset_info",
    "open_source",
    "prepare_command",
]

SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset, as the model sees it after preprocessing.

    Attributes:
      name: the dataset name used by :func:`~ottt_jax.data.make_loader`.
      num_classes: number of labels ``K``; labels are in ``[0, K)``.
      frame_shape: ``(H, W, C)`` of one model input frame (NHWC without the batch axis).
      num_train: examples in the full ``train`` split.
      num_test: examples in the full ``test`` split (ImageNet: the validation set).
      is_sequence: True when each example is a sequence of frames ``[T, H, W, C]`` (DVS).
      num_frames: ``T`` for sequence datasets, else ``None``.
      mean: per-channel mean subtracted by the preprocessing (of pixels scaled to [0, 1]).
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

    def num_examples(self, split: str) -> int:
        """Return the size of ``split`` (``"train"`` or ``"test"``)."""
        _check_split(split)
        return self.num_train if split == "train" else self.num_test


@dataclasses.dataclass(frozen=True)
class _Spec:
    info: DatasetInfo
    tfds_name: str | None  # None: in-memory
    tfds_splits: dict[str, str]
    image_key: str
    has_augmentation: bool


_SPECS: dict[str, _Spec] = {
    "digits": _Spec(
        DatasetInfo("digits", 10, (8, 8, 1), 1437, 360, False, None, (0.0,), (1.0,)),
        None,
        {"train": "train", "test": "test"},
        "image",
        False,
    ),
    "cifar10": _Spec(
        DatasetInfo(
            "cifar10", 10, (32, 32, 3), 50000, 10000, False, None, augment.CIFAR_MEAN,
            augment.CIFAR_STD,
        ),
        "cifar10",
        {"train": "train", "test": "test"},
        "image",
        True,
    ),
    "cifar100": _Spec(
        DatasetInfo(
            "cifar100", 100, (32, 32, 3), 50000, 10000, False, None, augment.CIFAR_MEAN,
            augment.CIFAR_STD,
        ),
        "cifar100",
        {"train": "train", "test": "test"},
        "image",
        True,
    ),
    "imagenet2012": _Spec(
        DatasetInfo(
            "imagenet2012", 1000, (224, 224, 3), 1281167, 50000, False, None,
            augment.IMAGENET_MEAN, augment.IMAGENET_STD,
        ),
        "imagenet2012",
        {"train": "train", "test": "validation"},
        "image",
        True,
    ),
    "cifar10_dvs": _Spec(
        DatasetInfo(
            "cifar10_dvs", 10, (48, 48, 2), 9000, 1000, True, 10, augment.DVS_MEAN,
            augment.DVS_STD,
        ),
        "cifar10_dvs",
        {"train": "train", "test": "test"},
        "frames",
        True,
    ),
}  # fmt: skip

DATASET_NAMES = tuple(_SPECS)


class DatasetNotPreparedError(FileNotFoundError):
    """The dataset's ``array_record`` files are not in the data directory."""


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _spec(name: str) -> _Spec:
    if name not in _SPECS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    return _SPECS[name]


def _dvs_frames(num_frames: int | None) -> int:
    from ottt_jax.data import cifar10_dvs

    if num_frames is None:
        return cifar10_dvs.DEFAULT_NUM_FRAMES
    if num_frames not in cifar10_dvs.NUM_FRAMES_CHOICES:
        raise ValueError(
            f"num_frames for cifar10_dvs must be one of {cifar10_dvs.NUM_FRAMES_CHOICES}, "
            f"got {num_frames!r}"
        )
    return num_frames


def get_dataset_info(name: str, *, num_frames: int | None = None) -> DatasetInfo:
    """Return the :class:`DatasetInfo` of a dataset.

    Args:
      name: one of ``DATASET_NAMES``: ``digits``, ``cifar10``, ``cifar100``, ``imagenet2012``,
        ``cifar10_dvs``.
      num_frames: frames per sample, for ``cifar10_dvs`` only (default 10); must be ``None``
        for static datasets.

    Returns:
      The dataset's info (full split sizes, preprocessed frame shape, normalization).
    """
    spec = _spec(name)
    if not spec.info.is_sequence:
        if num_frames is not None:
            raise ValueError(f"num_frames applies to sequence datasets only, not {name!r}")
        return spec.info
    return dataclasses.replace(spec.info, num_frames=_dvs_frames(num_frames))


def _default_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR", os.path.join("~", "tensorflow_datasets"))


def prepare_command(name: str, *, data_dir: str | os.PathLike | None = None) -> str:
    """Return the shell command that prepares ``name`` (see ``docs/datasets.md``)."""
    _spec(name)
    cmd = f"python -m ottt_jax.data.prepare {name} --manual_dir <DIR>"
    if data_dir is not None:
        cmd += f" --data_dir {os.fspath(data_dir)}"
    return cmd


def _tfds_name(name: str, num_frames: int | None) -> str:
    spec = _spec(name)
    if spec.info.is_sequence:
        # Importing the module registers the builder with TFDS.
        from ottt_jax.data import cifar10_dvs  # noqa: F401

        return f"{spec.tfds_name}/frames_{_dvs_frames(num_frames)}"
    return spec.tfds_name


def open_source(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    num_frames: int | None = None,
) -> Any:
    """Open the random-access source of one split.

    Args:
      name: a dataset name (``DATASET_NAMES``).
      split: ``"train"`` or ``"test"`` (ImageNet's ``test`` is TFDS ``validation``).
      data_dir: TFDS data directory (default: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      num_frames: frames per sample (``cifar10_dvs`` only).

    Returns:
      A sequence-like source (``len`` and integer indexing) of dicts with the image under
      ``"image"`` (``"frames"`` for ``cifar10_dvs``) and an integer ``"label"``.

    Raises:
      DatasetNotPreparedError: the dataset has not been prepared in ``data_dir``.
    """
    spec = _spec(name)
    _check_split(split)
    if spec.tfds_name is None:
        if num_frames is not None:
            raise ValueError(f"num_frames applies to sequence datasets only, not {name!r}")
        return DigitsSource(split)
    if not spec.info.is_sequence and num_frames is not None:
        raise ValueError(f"num_frames applies to sequence datasets only, not {name!r}")
    tfds_name = _tfds_name(name, num_frames)
    try:
        return tfds.data_source(
            tfds_name,
            split=spec.tfds_splits[split],
            data_dir=None if data_dir is None else os.fspath(data_dir),
            download=False,
        )
    except Exception as err:  # TFDS raises several types for "not there / wrong format"
        base = tfds_name.split("/")[0]
        version = tfds.builder_cls(base).VERSION
        where = os.path.join(
            os.fspath(data_dir) if data_dir is not None else _default_data_dir(),
            tfds_name,
            str(version),
        )
        raise DatasetNotPreparedError(
            f"dataset {name!r} ({split}) is not prepared as array_record files in {where}. "
            f"Prepare it with:\n  {prepare_command(name, data_dir=data_dir)}\n"
            f"(see docs/datasets.md). TFDS said: {type(err).__name__}: {err}"
        ) from err


def image_key(name: str) -> str:
    """Return the record key holding the image (``"frames"`` for ``cifar10_dvs``)."""
    return _spec(name).image_key


def has_augmentation(name: str) -> bool:
    """Return whether the dataset has a training augmentation (all but ``digits``)."""
    return _spec(name).has_augmentation
