"""Grain input pipelines: sharding, shuffling, augmentation, batching, checkpointable iteration.

:func:`make_loader` returns a :class:`Loader` (a ``grain.DataLoader``). Iterating it yields dicts
``{"image": float32 [B, H, W, C] (DVS: [B, T, H, W, C], batch-major), "label": int32 [B]}``.
Its iterator has ``get_state() -> bytes`` and ``set_state(bytes)``: restoring a saved state yields
exactly the batches that followed it.

Determinism: the order is a function of ``seed`` (reshuffled every epoch), and each record's
augmentation draws from a generator that Grain derives from the (per-host) seed and the record's
position in the stream. The batch sequence is therefore a function of ``(seed, shard_index,
shard_count, batch_size, worker_count)``: with ``worker_count ≥ 2`` each Grain worker batches its
own records, which changes how records are grouped (not the records or their augmentation), and
a saved state can only be restored into a loader with the same ``worker_count``.

Per-host sharding: host ``k`` of ``S`` reads a contiguous block of the split. With
``drop_remainder=True`` (training default) every host gets ``⌊N/S⌋`` records and only full
batches, so all hosts run the same number of steps. With ``drop_remainder=False`` (test default)
the blocks cover every record exactly once (sizes differ by at most one) and the last batch may be
smaller.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable
from typing import Any

import grain
import numpy as np

from ottt_jax.data import augment as aug
from ottt_jax.data import catalog
from ottt_jax.data.catalog import DatasetInfo, DatasetSpec

__all__ = ["Loader", "check_batch_size", "make_loader", "shard_bounds", "steps_per_epoch"]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def shard_bounds(
    num_records: int, shard_index: int, shard_count: int, *, drop_remainder: bool
) -> tuple[int, int]:
    """Return the ``[start, stop)`` block of records read by one host.

    Args:
      num_records: records in the split, ``N``.
      shard_index: this host's index ``k`` in ``[0, S)``.
      shard_count: number of hosts ``S``.
      drop_remainder: True: equal blocks of ``⌊N/S⌋`` (the last ``N mod S`` records are unused);
        False: blocks covering all ``N`` records, the first ``N mod S`` hosts one record larger.

    Returns:
      ``(start, stop)``; the blocks of different hosts are disjoint.
    """
    if not (_is_int(shard_count) and shard_count >= 1):
        raise ValueError(f"shard_count must be a positive int, got {shard_count!r}")
    if not (_is_int(shard_index) and 0 <= shard_index < shard_count):
        raise ValueError(f"shard_index must be an int in [0, {shard_count}), got {shard_index!r}")
    if drop_remainder:
        per_host = num_records // shard_count
        return shard_index * per_host, (shard_index + 1) * per_host
    base, extra = divmod(num_records, shard_count)
    start = shard_index * base + min(shard_index, extra)
    return start, start + base + (1 if shard_index < extra else 0)


def check_batch_size(batch_size: int) -> int:
    """Return ``batch_size`` or raise a ValueError naming it unless it is an int >= 1."""
    if not (_is_int(batch_size) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size


def _num_batches(num_records: int, batch_size: int, drop_remainder: bool) -> int:
    check_batch_size(batch_size)
    if drop_remainder:
        return num_records // batch_size
    return math.ceil(num_records / batch_size)


def steps_per_epoch(
    name: str,
    split: str,
    batch_size: int,
    *,
    drop_remainder: bool = True,
    shard_count: int = 1,
    num_frames: int | None = None,
) -> int:
    """Return the batches per epoch on one host, from the full split size.

    Args:
      name: a dataset name.
      split: ``"train"`` or ``"test"``.
      batch_size: per-host batch size ``B``.
      drop_remainder: as in :func:`make_loader` (True drops the shard and batch remainders).
      shard_count: number of hosts ``S``.
      num_frames: frames per sample (``cifar10_dvs`` only; does not change the count).

    Returns:
      ``⌊⌊N/S⌋/B⌋`` with ``drop_remainder``, else ``⌈n₀/B⌉`` with ``n₀ = ⌈N/S⌉`` the largest shard.
      A repeating loader's batches run across epoch boundaries, so this is the mean number of
      steps per epoch (exact when ``B`` divides the shard). ``Loader.steps_per_epoch`` gives the
      same from the records actually found.
    """
    n = catalog.dataset_info(name, num_frames=num_frames).num_examples(split)
    start, stop = shard_bounds(n, 0, shard_count, drop_remainder=drop_remainder)
    return _num_batches(stop - start, batch_size, drop_remainder)


def _mark_absl_flags_parsed() -> None:
    """Let Grain's worker processes read their absl flags outside ``absl.app.run``.

    Grain 0.2's multiprocessing reads ``--grain_enable_multiprocess_worker_profiling`` directly,
    which raises ``UnparsedFlagAccessError`` unless the absl flags were parsed. Marking them parsed
    keeps every flag at its default; a later ``absl.app.run`` still parses the command line.
    """
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class _ShardSource:
    """The records ``[start, stop)`` of a random-access source."""

    def __init__(self, source: Any, start: int, stop: int):
        self.source = source
        self.start = start
        self.stop = stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a shard of {len(self)} records")
        return self.source[self.start + int(index)]

    def __repr__(self) -> str:
        return f"_ShardSource({self.source!r}, start={self.start}, stop={self.stop})"


def _record(element: dict, image_key: str) -> tuple[np.ndarray, np.int32]:
    return np.asarray(element[image_key]), np.int32(element["label"])


@dataclasses.dataclass(frozen=True)
class _Preprocess(grain.transforms.Map):
    """Deterministic per-record preprocessing: ``{"image": fn(image), "label": int32}``."""

    fn: Callable[[np.ndarray], np.ndarray]
    image_key: str

    def map(self, element: dict) -> dict:
        image, label = _record(element, self.image_key)
        return {"image": self.fn(image), "label": label}


@dataclasses.dataclass(frozen=True)
class _RandomPreprocess(grain.transforms.RandomMap):
    """Random per-record augmentation: ``{"image": fn(image, rng), "label": int32}``."""

    fn: Callable[[np.ndarray, np.random.Generator], np.ndarray]
    image_key: str

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        image, label = _record(element, self.image_key)
        return {"image": self.fn(image, rng), "label": label}


def _transform(spec: DatasetSpec, augment: bool, cutout: str) -> _Preprocess | _RandomPreprocess:
    """Return the per-record transform of ``spec`` (training augmentation or evaluation)."""
    if not augment:
        return _Preprocess(spec.eval_transform, spec.image_key)
    fn = spec.train_transform
    if spec.uses_cutout:
        fn = functools.partial(fn, cutout=cutout)
    return _RandomPreprocess(fn, spec.image_key)


class Loader(grain.DataLoader):
    """A ``grain.DataLoader`` that also knows its dataset and epoch length.

    Attributes:
      info: the dataset's :class:`~ottt_jax.data.DatasetInfo`.
      split: ``"train"`` or ``"test"``.
      num_records: records of this host's shard (one epoch).
      batch_size: per-host batch size.
      drop_remainder: whether partial batches are dropped.
      num_epochs: epochs the loader runs, or ``None`` for an endless loader.
    """

    def __init__(
        self,
        *,
        info: DatasetInfo,
        split: str,
        num_records: int,
        batch_size: int,
        drop_remainder: bool,
        num_epochs: int | None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.info = info
        self.split = split
        self.num_records = num_records
        self.batch_size = batch_size
        self.drop_remainder = drop_remainder
        self.num_epochs = num_epochs

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch on this host: ``⌊n/B⌋`` (``⌈n/B⌉`` without ``drop_remainder``)."""
        return _num_batches(self.num_records, self.batch_size, self.drop_remainder)


def make_loader(
    name: str,
    split: str,
    *,
    batch_size: int,
    seed: int,
    data_dir: str | os.PathLike | None = None,
    shuffle: bool | None = None,
    augment: bool | None = None,
    num_epochs: int | None = None,
    drop_remainder: bool | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
    worker_count: int = 0,
    num_frames: int | None = None,
    cutout: str = "reference",
    data_source: Any = None,
) -> Loader:
    """Build the input pipeline of one split.

    Args:
      name: a registered dataset name (built-ins: ``digits``, ``cifar10``, ``cifar100``,
        ``imagenet2012``, ``cifar10_dvs``; see :mod:`ottt_jax.data.catalog`).
      split: ``"train"`` or ``"test"`` (ImageNet ``test`` = the validation set).
      batch_size: per-host batch size ``B``.
      seed: int in ``[0, 2**32)``: shuffling and augmentation randomness.
      data_dir: TFDS data directory (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      shuffle: default True for train, False for test; reshuffled every epoch.
      augment: default True for train (datasets with an augmentation), False for test.
      num_epochs: epochs to run; ``None`` means endless for train and 1 for test.
      drop_remainder: default True for train, False for test (see the module docstring).
      shard_index: this host's index (e.g. ``jax.process_index()``).
      shard_count: number of hosts (e.g. ``jax.process_count()``).
      worker_count: Grain worker processes (0: preprocess in this process).
      num_frames: frames per sample for ``cifar10_dvs`` (default 10); ``None`` otherwise.
      cutout: CIFAR training cutout: ``"reference"`` (the authors' torchtoolbox random erasing),
        ``"hole"`` (DeVries' 16×16 hole) or ``"none"``.
      data_source: read these records instead of the dataset's own source (same record format:
        the image under ``"image"``, ``"frames"`` for DVS, and ``"label"``).

    Returns:
      A :class:`Loader` whose iteration yields ``{"image": float32 [B, H, W, C]`` (DVS:
      ``[B, T, H, W, C]``), ``"label": int32 [B]}``.

    Raises:
      ValueError: unknown name/split/cutout or a bad batch size, seed, shard or epoch count.
      DatasetNotPreparedError: the dataset's files are not in ``data_dir``.
    """
    spec = catalog.get_dataset(name)
    info = catalog.dataset_info(name, num_frames=num_frames)
    catalog.check_split(split)
    check_batch_size(batch_size)
    if not (_is_int(seed) and 0 <= seed < 2**32):
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    if num_epochs is not None and not (_is_int(num_epochs) and num_epochs >= 1):
        raise ValueError(f"num_epochs must be None or a positive int, got {num_epochs!r}")
    if not (_is_int(worker_count) and worker_count >= 0):
        raise ValueError(f"worker_count must be an int >= 0, got {worker_count!r}")
    if cutout not in aug.CUTOUT_MODES:
        raise ValueError(f"cutout must be one of {aug.CUTOUT_MODES}, got {cutout!r}")
    train = split == "train"
    shuffle = train if shuffle is None else bool(shuffle)
    drop_remainder = train if drop_remainder is None else bool(drop_remainder)
    if num_epochs is None and not train:
        num_epochs = 1
    if augment is None:
        augment = train and spec.has_augmentation
    elif augment and not spec.has_augmentation:
        raise ValueError(f"dataset {name!r} has no augmentation; pass augment=False or None")

    if data_source is None:
        data_dir = None if data_dir is None else os.fspath(data_dir)
        data_source = spec.open_split(split, data_dir, info.num_frames)
    start, stop = shard_bounds(
        len(data_source), shard_index, shard_count, drop_remainder=drop_remainder
    )
    num_records = stop - start
    if num_records == 0:
        raise ValueError(
            f"shard {shard_index} of {shard_count} of {name!r} ({split}) is empty "
            f"({len(data_source)} records)"
        )
    if drop_remainder and batch_size > num_records:
        raise ValueError(
            f"batch_size {batch_size} exceeds the {num_records} records of this shard of "
            f"{name!r} ({split}); with drop_remainder=True no batch would be produced"
        )
    if worker_count > 0:
        _mark_absl_flags_parsed()
    # One independent 32-bit stream per host: decorrelates the hosts' augmentations.
    host_seed = int(np.random.SeedSequence([seed, shard_index]).generate_state(1)[0])
    sampler = grain.samplers.IndexSampler(
        num_records=num_records,
        shard_options=grain.sharding.NoSharding(),
        shuffle=shuffle,
        num_epochs=num_epochs,
        seed=host_seed,
    )
    operations = [
        _transform(spec, augment, cutout),
        grain.transforms.Batch(batch_size=batch_size, drop_remainder=drop_remainder),
    ]
    return Loader(
        info=info,
        split=split,
        num_records=num_records,
        batch_size=batch_size,
        drop_remainder=drop_remainder,
        num_epochs=num_epochs,
        data_source=_ShardSource(data_source, start, stop),
        sampler=sampler,
        operations=operations,
        worker_count=worker_count,
        shard_options=grain.sharding.NoSharding(),
    )
