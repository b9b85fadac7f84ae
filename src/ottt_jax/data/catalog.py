"""The dataset catalog: one table holding every fact about each dataset.

A :class:`DatasetSpec` says everything the configuration and the data layer need to know about a
dataset: its classes, frame shape, split sizes, normalization, whether it is a sequence of event
frames and which frame counts it offers, the record key of the image, its training and evaluation
transforms and how to open a split. :mod:`ottt_jax.config` validates against it and
:mod:`ottt_jax.data` loads from it; neither keeps a copy.

Importing this module imports neither TensorFlow nor TFDS, so the configuration can read it
cheaply; the TFDS openers import ``tensorflow_datasets`` when a split is opened.

The frames rule (sequence datasets, one frame per time step), decided here once by
:func:`resolve_num_frames`:

* ``num_frames=None`` means ``num_steps`` (the training T) when the caller knows it, the
  configuration always does; a caller that knows no T (a bare :func:`~ottt_jax.data.make_loader`)
  gets the dataset's ``default_frames``.
* An explicit ``num_frames`` must equal ``num_steps``.
* The resolved count must be one of the dataset's ``frames`` (CIFAR10-DVS: 4, 5, 8, 10, 16, 20,
  the frame counts its TFDS builder prepares).
* Evaluation feeds the same sequences, so the evaluation T must equal that count too.

Static datasets take no ``num_frames`` (it must be ``None``).

Register your own dataset with :func:`register_dataset`, or build the spec with
:func:`numpy_dataset` (in-memory arrays) or :func:`tfds_image_dataset` (any TFDS image
classification dataset prepared in ``TFDS_DATA_DIR``), then train on it by name
(``data.dataset=NAME``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ottt_jax.data import augment

__all__ = [
    "SPLITS",
    "ArraySource",
    "ArraySplits",
    "DatasetInfo",
    "DatasetNotPreparedError",
    "DatasetSpec",
    "TfdsOpener",
    "check_split",
    "dataset_info",
    "dataset_names",
    "get_dataset",
    "numpy_dataset",
    "prepare_command",
    "register_dataset",
    "resolve_num_frames",
    "tfds_image_dataset",
    "unregister_dataset",
]

#: The split names every dataset offers (ImageNet's ``test`` is its validation set).
SPLITS = ("train", "test")


class DatasetNotPreparedError(FileNotFoundError):
    """The dataset's ``array_record`` files are not in the data directory."""


def check_split(split: str) -> None:
    """Raise a ``ValueError`` unless ``split`` is ``"train"`` or ``"test"``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
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
        if not (_is_int(self.num_classes) and self.num_classes >= 1):
            raise bad("num_classes", "an int >= 1")
        shape = tuple(self.frame_shape) if isinstance(self.frame_shape, (tuple, list)) else ()
        if len(shape) != 3 or not all(_is_int(s) and s >= 1 for s in shape):
            raise bad("frame_shape", "(H, W, C), three ints >= 1")
        object.__setattr__(self, "frame_shape", tuple(int(s) for s in shape))
        for field in ("num_train", "num_test"):
            if not (_is_int(getattr(self, field)) and getattr(self, field) >= 1):
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
        if not all(_is_int(t) and t >= 1 for t in frames):
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

    def num_examples(self, split: str) -> int:
        """Return the size of ``split`` (``"train"`` or ``"test"``)."""
        check_split(split)
        return self.num_train if split == "train" else self.num_test


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
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

    def num_examples(self, split: str) -> int:
        """Return the size of ``split`` (``"train"`` or ``"test"``)."""
        check_split(split)
        return self.num_train if split == "train" else self.num_test


_CATALOG: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec, overwrite: bool = False) -> DatasetSpec:
    """Add a dataset to the catalog, so that ``data.dataset=spec.name`` trains on it.

    Args:
      spec: the dataset's facts.
      overwrite: allow replacing an existing entry of the same name.

    Returns:
      ``spec``.

    Raises:
      ValueError: ``spec`` is not a DatasetSpec, or the name exists and ``overwrite`` is False.
    """
    if not isinstance(spec, DatasetSpec):
        raise ValueError(f"register_dataset expects a DatasetSpec, got {type(spec).__name__}")
    if spec.name in _CATALOG and not overwrite:
        raise ValueError(
            f"dataset {spec.name!r} is already registered; pass overwrite=True to replace it"
        )
    _CATALOG[spec.name] = spec
    return spec


def unregister_dataset(name: str) -> None:
    """Remove a dataset from the catalog (e.g. one a test registered).

    Raises:
      ValueError: unknown name (the message lists the registered names).
    """
    get_dataset(name)
    del _CATALOG[name]


def dataset_names() -> tuple[str, ...]:
    """Return the registered dataset names, in registration order (built-ins first)."""
    return tuple(_CATALOG)


def get_dataset(name: str) -> DatasetSpec:
    """Return the :class:`DatasetSpec` registered as ``name``.

    Raises:
      ValueError: unknown name (the message lists the registered names).
    """
    if not isinstance(name, str) or name not in _CATALOG:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(_CATALOG)}")
    return _CATALOG[name]


def resolve_num_frames(
    name: str | DatasetSpec, num_frames: int | None = None, *, num_steps: int | None = None
) -> int | None:
    """Return the frames per sample of a dataset, by the catalog's one frames rule.

    Args:
      name: a registered name or a spec.
      num_frames: the requested frame count (``data.num_frames``), or None.
      num_steps: the training T, when the caller knows it (the configuration does).

    Returns:
      None for a static dataset; for a sequence dataset ``num_frames``, else ``num_steps``, else
      the dataset's ``default_frames``.

    Raises:
      ValueError: ``num_frames`` set for a static dataset, different from ``num_steps``, or not
        one of the dataset's frame counts (the message lists them).
    """
    spec = name if isinstance(name, DatasetSpec) else get_dataset(name)
    if not spec.is_sequence:
        if num_frames is not None:
            sequences = ", ".join(repr(n) for n, s in _CATALOG.items() if s.is_sequence)
            raise ValueError(
                f"num_frames applies only to event datasets ({sequences}), whose samples are "
                f"sequences of frames; set it to none for {spec.name!r}, got {num_frames!r}"
            )
        return None
    if num_frames is not None:
        frames, source = num_frames, ""
    elif num_steps is not None:
        frames, source = num_steps, " (num_frames=none means num_steps)"
    else:
        frames, source = spec.default_frames, ""
    if frames not in spec.frames:
        raise ValueError(
            f"num_frames for {spec.name!r} must be one of {spec.frames}; got {frames!r}{source}"
        )
    if num_steps is not None and frames != num_steps:
        raise ValueError(
            f"num_frames must equal num_steps ({num_steps}) for {spec.name!r}, one frame per "
            f"time step; got {frames!r}"
        )
    return frames


def dataset_info(
    name: str, *, num_frames: int | None = None, num_steps: int | None = None
) -> DatasetInfo:
    """Return the :class:`DatasetInfo` of a registered dataset, frames resolved.

    Args:
      name: a registered dataset name.
      num_frames: as for :func:`resolve_num_frames`.
      num_steps: as for :func:`resolve_num_frames`.

    Returns:
      The dataset's info (full split sizes, preprocessed frame shape, normalization, frames).
    """
    spec = get_dataset(name)
    return DatasetInfo(
        name=spec.name,
        num_classes=spec.num_classes,
        frame_shape=spec.frame_shape,
        num_train=spec.num_train,
        num_test=spec.num_test,
        is_sequence=spec.is_sequence,
        num_frames=resolve_num_frames(spec, num_frames, num_steps=num_steps),
        mean=spec.mean,
        std=spec.std,
    )


# ----------------------------------------------------------------------------------------------
# Sources.


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


def _open_digits(split: str, data_dir: str | None, num_frames: int | None) -> Any:
    from ottt_jax.data.digits import DigitsSource

    return DigitsSource(split)


def _default_data_dir() -> str:
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
            where = os.path.join(data_dir or _default_data_dir(), name, str(version))
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


def _normalizer(mean: tuple[float, ...], std: tuple[float, ...], scale: float) -> Callable:
    return functools.partial(augment.normalize, mean=mean, std=std, scale=scale)


# ----------------------------------------------------------------------------------------------
# User datasets.


def numpy_dataset(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    num_classes: int | None = None,
    mean: tuple[float, ...] = (),
    std: tuple[float, ...] = (),
    scale: float = 1.0,
    train_transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    register: bool = True,
    overwrite: bool = False,
) -> DatasetSpec:
    """Build (and register) a dataset served from in-memory NumPy arrays.

    Images ``[N, H, W, C]`` are static; ``[N, T, H, W, C]`` are sequences of ``T`` frames (then
    ``data.num_frames`` / ``num_steps`` must be ``T``). Preprocessing is ``(x / scale − mean) /
    std`` per channel as float32 (defaults: 0 and 1, the arrays as given).

    Args:
      name: the dataset name.
      train: ``(images, labels)`` of the training split; labels int ``[N]`` in ``[0, K)``.
      test: ``(images, labels)`` of the test split.
      num_classes: ``K``; default ``max(label) + 1`` over both splits.
      mean: per-channel means (of ``x / scale``).
      std: per-channel standard deviations.
      scale: the divisor mapping pixels to [0, 1] (255 for uint8 images).
      train_transform: optional augmentation ``(image, rng) -> float32 image`` (it normalizes).
      register: also :func:`register_dataset` it.
      overwrite: as for :func:`register_dataset`.

    Returns:
      The spec.
    """
    arrays = {}
    for split, pair in (("train", train), ("test", test)):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError(f"{split} must be a pair (images, labels)")
        arrays[split] = (np.asarray(pair[0]), np.asarray(pair[1]))
    splits = ArraySplits(ArraySource(*arrays["train"]), ArraySource(*arrays["test"]))
    x_train, x_test = arrays["train"][0], arrays["test"][0]
    if x_train.ndim not in (4, 5):
        raise ValueError(
            f"train images must be [N, H, W, C] or [N, T, H, W, C]; got shape {x_train.shape}"
        )
    if x_test.shape[1:] != x_train.shape[1:]:
        raise ValueError(
            f"test images must have the train images' shape {x_train.shape[1:]}; got "
            f"{x_test.shape[1:]}"
        )
    labels = np.concatenate([arrays["train"][1], arrays["test"][1]])
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be in [0, num_classes={num_classes})")
    frames = (x_train.shape[1],) if x_train.ndim == 5 else ()
    channels = x_train.shape[-1]
    mean = tuple(mean) or (0.0,) * channels
    std = tuple(std) or (1.0,) * channels
    spec = DatasetSpec(
        name=name,
        num_classes=num_classes,
        frame_shape=tuple(x_train.shape[-3:]),
        num_train=len(x_train),
        num_test=len(x_test),
        open_split=splits,
        eval_transform=_normalizer(mean, std, scale),
        train_transform=train_transform,
        mean=mean,
        std=std,
        frames=frames,
        default_frames=frames[0] if frames else None,
    )
    return register_dataset(spec, overwrite=overwrite) if register else spec


def tfds_image_dataset(
    tfds_name: str,
    *,
    name: str | None = None,
    data_dir: str | os.PathLike | None = None,
    mean: tuple[float, ...] = (),
    std: tuple[float, ...] = (),
    test_split: str = "test",
    image_key: str = "image",
    train_transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    register: bool = True,
    overwrite: bool = False,
) -> DatasetSpec:
    """Build (and register) any TFDS image-classification dataset prepared as ``array_record``.

    The classes, image shape and split sizes are read from the builder (``num_classes`` of the
    ``label`` feature, the shape of the image feature, the prepared splits' sizes). Preprocessing
    is ``(pixels / 255 − mean) / std`` (defaults 0 and 1).

    Args:
      tfds_name: the TFDS name, e.g. ``'mnist'`` or ``'fashion_mnist'``.
      name: the catalog name (default ``tfds_name``).
      data_dir: the TFDS data directory (default ``$TFDS_DATA_DIR``); also the default of loaders.
      mean: per-channel means of pixels / 255.
      std: per-channel standard deviations.
      test_split: the TFDS split served as ``test``.
      image_key: the image feature.
      train_transform: optional augmentation ``(image, rng) -> float32 image`` (it normalizes).
      register: also :func:`register_dataset` it.
      overwrite: as for :func:`register_dataset`.

    Returns:
      The spec.
    """
    import tensorflow_datasets as tfds

    data_dir = None if data_dir is None else os.fspath(data_dir)
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    features = builder.info.features
    if image_key not in features or "label" not in features:
        raise ValueError(
            f"{tfds_name!r} is not an image classification dataset with {image_key!r} and "
            f"'label' features; it has {list(features)}"
        )
    shape = tuple(features[image_key].shape)
    if len(shape) != 3 or None in shape:
        raise ValueError(f"{tfds_name!r} images must have a fixed [H, W, C] shape; got {shape}")
    opener = TfdsOpener(tfds_name, test_split=test_split, data_dir=data_dir)
    sizes = {}
    for split, tfds_split in (("train", "train"), ("test", test_split)):
        info_split = builder.info.splits.get(tfds_split) if builder.info.splits else None
        if info_split is not None:
            sizes[split] = info_split.num_examples
        else:
            sizes[split] = len(opener(split, None, None))
    channels = shape[-1]
    mean = tuple(mean) or (0.0,) * channels
    std = tuple(std) or (1.0,) * channels
    spec = DatasetSpec(
        name=name or tfds_name,
        num_classes=features["label"].num_classes,
        frame_shape=shape,
        num_train=sizes["train"],
        num_test=sizes["test"],
        open_split=opener,
        eval_transform=_normalizer(mean, std, 255.0),
        train_transform=train_transform,
        mean=mean,
        std=std,
        image_key=image_key,
    )
    return register_dataset(spec, overwrite=overwrite) if register else spec


# ----------------------------------------------------------------------------------------------
# The built-in datasets.

#: 'digits' is scikit-learn's 8×8 digits with the stratified 1437/360 split (no download).
register_dataset(
    DatasetSpec(
        name="digits",
        num_classes=10,
        frame_shape=(8, 8, 1),
        num_train=1437,
        num_test=360,
        open_split=_open_digits,
        eval_transform=augment.digits_eval,
    )
)
for _name, _classes in (("cifar10", 10), ("cifar100", 100)):
    register_dataset(
        DatasetSpec(
            name=_name,
            num_classes=_classes,
            frame_shape=(32, 32, 3),
            num_train=50_000,
            num_test=10_000,
            open_split=TfdsOpener(_name, prepare_name=_name),
            eval_transform=augment.cifar_eval,
            train_transform=augment.cifar_train,
            uses_cutout=True,
            mean=augment.CIFAR_MEAN,  # the authors reuse CIFAR-10's for CIFAR-100
            std=augment.CIFAR_STD,
        )
    )
#: CIFAR10-DVS: 2×48×48 event frames, samples 0–899 of each class for training; the TFDS builder
#: (ottt_jax.data.cifar10_dvs) prepares one config per frame count of ``frames``.
register_dataset(
    DatasetSpec(
        name="cifar10_dvs",
        num_classes=10,
        frame_shape=(48, 48, 2),
        num_train=9_000,
        num_test=1_000,
        open_split=TfdsOpener(
            "cifar10_dvs",
            frames_config=True,
            builder_module="ottt_jax.data.cifar10_dvs",
            prepare_name="cifar10_dvs",
        ),
        eval_transform=augment.dvs_eval,
        train_transform=augment.dvs_train,
        mean=augment.DVS_MEAN,
        std=augment.DVS_STD,
        frames=(4, 5, 8, 10, 16, 20),
        default_frames=10,
        image_key="frames",
    )
)
register_dataset(
    DatasetSpec(
        name="imagenet2012",
        num_classes=1000,
        frame_shape=(224, 224, 3),
        num_train=1_281_167,
        num_test=50_000,
        open_split=TfdsOpener("imagenet2012", test_split="validation", prepare_name="imagenet2012"),
        eval_transform=augment.imagenet_eval,
        train_transform=augment.imagenet_train,
        mean=augment.IMAGENET_MEAN,
        std=augment.IMAGENET_STD,
    )
)
del _name, _classes

# Event datasets (N-MNIST, SHD, DVS128 Gesture): each module holds its spec
# (ottt_jax.data.events); imported last because they build on this module.
from ottt_jax.data import dvs_gesture as _dvs_gesture  # noqa: E402
from ottt_jax.data import nmnist as _nmnist  # noqa: E402
from ottt_jax.data import shd as _shd  # noqa: E402

for _spec in (_nmnist.SPEC, _shd.SPEC, _dvs_gesture.SPEC):
    register_dataset(_spec)
del _spec
