"""The dataset catalog: the registry of :class:`DatasetSpec` entries and the built-in datasets.

A :class:`DatasetSpec` (:mod:`ottt_jax.data.spec`) says everything the configuration and the data
layer need to know about a dataset; :mod:`ottt_jax.config` validates against the catalog and
:mod:`ottt_jax.data` loads from it; neither keeps a copy. The sources the specs open live in
:mod:`ottt_jax.data.sources`. Importing this module imports neither TensorFlow nor TFDS.

The frames rule (sequence datasets, one frame per time step), decided once by
:func:`resolve_num_frames`: ``num_frames=None`` means ``num_steps`` (the training T) when the
caller knows it (the configuration always does), else the dataset's ``default_frames``; an
explicit ``num_frames`` must equal ``num_steps``; the count must be one of the dataset's ``frames``
(CIFAR10-DVS: 4, 5, 8, 10, 16, 20, the counts its TFDS builder prepares); evaluation feeds the
same sequences, so its T must equal that count too. Static datasets take ``num_frames=None``.

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

from ottt_jax.data import augment, digits, dvs_gesture, nmnist, shd
from ottt_jax.data import sources as sources_lib
from ottt_jax.data.sources import ArraySource, ArraySplits, DatasetNotPreparedError, TfdsOpener
from ottt_jax.data.spec import SPLITS, DatasetInfo, DatasetSpec, check_split
from ottt_jax.registry import Registry

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
    "get_dataset_info",
    "numpy_dataset",
    "open_source",
    "prepare_command",
    "register_dataset",
    "resolve_num_frames",
    "tfds_image_dataset",
    "unregister_dataset",
]


def _check_spec(spec: Any) -> None:
    if not isinstance(spec, DatasetSpec):
        raise ValueError(f"register_dataset expects a DatasetSpec, got {type(spec).__name__}")


_DATASETS: Registry[DatasetSpec] = Registry("dataset", check=_check_spec)


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
    _check_spec(spec)
    return _DATASETS.register(spec.name, spec, overwrite=overwrite)


def unregister_dataset(name: str) -> None:
    """Remove a dataset from the catalog (an unknown name is a ValueError listing the names)."""
    _DATASETS.unregister(name)


def dataset_names() -> tuple[str, ...]:
    """Return the registered dataset names, in registration order (built-ins first)."""
    return _DATASETS.names()


def get_dataset(name: str) -> DatasetSpec:
    """Return the :class:`DatasetSpec` ``name`` (unknown: a ValueError listing the names)."""
    return _DATASETS.get(name)


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
            sequences = ", ".join(repr(n) for n in _DATASETS if get_dataset(n).is_sequence)
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
    # Every other DatasetInfo field is the spec's attribute of the same name.
    names = [f.name for f in dataclasses.fields(DatasetInfo) if f.name != "num_frames"]
    facts = {f: getattr(spec, f) for f in names}
    frames = resolve_num_frames(spec, num_frames, num_steps=num_steps)
    return DatasetInfo(**facts, num_frames=frames)


#: The old name of :func:`dataset_info` (``ottt_jax.data.get_dataset_info``).
get_dataset_info = dataset_info


def prepare_command(name: str, *, data_dir: str | os.PathLike | None = None) -> str:
    """Return the shell command that prepares a registered dataset (see ``docs/datasets.md``).

    Raises:
      ValueError: ``name`` is not a registered dataset.
    """
    get_dataset(name)
    return sources_lib.prepare_command(name, data_dir=data_dir)


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
    spec = get_dataset(name)
    check_split(split)
    frames = resolve_num_frames(spec, num_frames)
    return spec.open_split(split, None if data_dir is None else os.fspath(data_dir), frames)


def _open_digits(split: str, data_dir: str | None, num_frames: int | None) -> Any:
    return digits.DigitsSource(split)


def _normalizer(mean: tuple[float, ...], std: tuple[float, ...], scale: float) -> Callable:
    return functools.partial(augment.normalize, mean=mean, std=std, scale=scale)


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

#: 'digits' is scikit-learn's 8×8 digits with the fixed stratified split (no download).
register_dataset(
    DatasetSpec(
        name="digits",
        num_classes=10,
        frame_shape=(8, 8, 1),
        num_train=digits.NUM_TRAIN,
        num_test=digits.NUM_TEST,
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

# Event datasets (N-MNIST, SHD, DVS128 Gesture): each module holds its spec (ottt_jax.data.events).
for _spec in (nmnist.SPEC, shd.SPEC, dvs_gesture.SPEC):
    register_dataset(_spec)
del _spec
