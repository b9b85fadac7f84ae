"""Grain input pipelines: global batches, per-host rows, augmentation, checkpointable iteration.

:func:`make_loader` returns a :class:`Loader`. Iterating it yields dicts ``{"image": float32
[B, H, W, C] (DVS: [B, T, H, W, C], batch-major), "label": int32 [B]}``. Its iterator
(:class:`LoaderIterator`) has ``get_state() -> bytes`` and ``set_state(bytes)``: restoring a saved
state yields exactly the batches that followed it.

Host-count independence: the record stream is the split, epoch after epoch, each epoch shuffled
with ``seed`` (Grain's ``IndexSampler``); global batch ``j`` is stream positions ``[j·G, (j+1)·G)``
with ``G = B·S`` (per-host batch ``B``, ``S`` hosts), and host ``k`` reads its rows
``[j·G + k·B, j·G + (k+1)·B)``. The record at position ``g`` is augmented with the generator
``Philox(seed + g)``: keyed by its global position, never by the host. So the sequence of global
batches is a function of ``(seed, G)`` only (not of ``S``, nor of ``worker_count``: each Grain
worker builds whole batches), and the iterator state is just the global batch position ``j``,
which every host restores from one saved copy.

Batches run across epoch boundaries (an endless loader has ``N/G`` batches per epoch on average).
With ``drop_remainder=True`` (training default) only full global batches are produced. With
``drop_remainder=False`` (test default) the last global batch holds the remaining records; a host
whose rows lie past the end gets a batch of 0 rows, so every host yields the same number of batches.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import grain
import numpy as np

from ottt_jax.data import augment as aug
from ottt_jax.data import catalog
from ottt_jax.data.catalog import DatasetSpec
from ottt_jax.data.spec import is_int

__all__ = [
    "Loader",
    "LoaderIterator",
    "check_batch_size",
    "make_loader",
    "shard_bounds",
    "steps_per_epoch",
]


def _check_shard(shard_index: Any, shard_count: Any) -> None:
    if not (is_int(shard_count) and shard_count >= 1):
        raise ValueError(f"shard_count must be a positive int, got {shard_count!r}")
    if not (is_int(shard_index) and 0 <= shard_index < shard_count):
        raise ValueError(f"shard_index must be an int in [0, {shard_count}), got {shard_index!r}")


def shard_bounds(
    num_records: int, shard_index: int, shard_count: int, *, drop_remainder: bool
) -> tuple[int, int]:
    """Return part ``k`` of ``S`` contiguous blocks of ``N`` records (e.g. to split a file list).

    :func:`make_loader` does not use it: each host reads its rows of every global batch.

    Args:
      num_records: records in the split, ``N``.
      shard_index: this host's index ``k`` in ``[0, S)``.
      shard_count: number of hosts ``S``.
      drop_remainder: True: equal blocks of ``⌊N/S⌋`` (the last ``N mod S`` records are unused);
        False: blocks covering all ``N`` records, the first ``N mod S`` hosts one record larger.

    Returns:
      ``(start, stop)``; the blocks of different hosts are disjoint.
    """
    _check_shard(shard_index, shard_count)
    if drop_remainder:
        per_host = num_records // shard_count
        return shard_index * per_host, (shard_index + 1) * per_host
    base, extra = divmod(num_records, shard_count)
    start = shard_index * base + min(shard_index, extra)
    return start, start + base + (1 if shard_index < extra else 0)


def check_batch_size(batch_size: int) -> int:
    """Return ``batch_size`` or raise a ValueError naming it unless it is an int >= 1."""
    if not (is_int(batch_size) and batch_size >= 1):
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
    """Return the global batches per epoch, from the full split size.

    Args:
      name: a dataset name.
      split: ``"train"`` or ``"test"``.
      batch_size: per-host batch size ``B``.
      drop_remainder: as in :func:`make_loader` (True drops the partial global batch).
      shard_count: number of hosts ``S``.
      num_frames: frames per sample (``cifar10_dvs`` only; does not change the count).

    Returns:
      ``⌊N/G⌋`` with ``drop_remainder``, else ``⌈N/G⌉``, with ``G = B·S``. A repeating loader's
      batches run across epoch boundaries, so this is the mean number of steps per epoch (exact
      when ``G`` divides ``N``). ``Loader.steps_per_epoch`` gives the same from the records found.
    """
    n = catalog.dataset_info(name, num_frames=num_frames).num_examples(split)
    check_batch_size(batch_size)
    if not (is_int(shard_count) and shard_count >= 1):
        raise ValueError(f"shard_count must be a positive int, got {shard_count!r}")
    return _num_batches(n, batch_size * shard_count, drop_remainder)


def _mark_absl_flags_parsed() -> None:
    """Let Grain's worker processes read their absl flags outside ``absl.app.run``.

    Grain 0.2's multiprocessing reads ``--grain_enable_multiprocess_worker_profiling`` directly,
    which raises ``UnparsedFlagAccessError`` unless the absl flags were parsed. Marking them parsed
    keeps every flag at its default; a later ``absl.app.run`` still parses the command line.
    """
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


@dataclasses.dataclass(frozen=True)
class _RecordFn:
    """Map ``(element, rng)`` to ``(image, label int32)``: ``fn(image, rng)`` or ``fn(image)``."""

    fn: Callable[..., np.ndarray]
    image_key: str
    random: bool

    def __call__(self, element: dict, rng: np.random.Generator | None):
        image = np.asarray(element[self.image_key])
        image = self.fn(image, rng) if self.random else self.fn(image)
        return image, np.int32(element["label"])


def _record_fn(spec: DatasetSpec, augment: bool, cutout: str) -> _RecordFn:
    """Return the per-record transform of ``spec`` (training augmentation or evaluation)."""
    if not augment:
        return _RecordFn(spec.eval_transform, spec.image_key, False)
    fn = spec.train_transform
    if spec.uses_cutout:
        fn = functools.partial(fn, cutout=cutout)
    return _RecordFn(fn, spec.image_key, True)


class _HostBatches:
    """Random-access source of this host's rows of every global batch (one element = one batch).

    Global batch ``j`` holds stream positions ``[j·G, (j+1)·G)``; host ``k`` reads positions
    ``[j·G + k·B, j·G + (k+1)·B)`` (``G = S·B``). Position ``g`` is record
    ``stream[g].record_key`` augmented with ``stream[g].rng`` (Grain's ``Philox(seed + g)``), so
    neither the records nor their randomness depend on the host.
    """

    def __init__(self, source, stream, fn, *, batch_size, shard_index, shard_count, total):
        self.source = source
        self.stream = stream
        self.fn = fn
        self.batch_size = batch_size
        self.shard_index = shard_index
        self.global_batch_size = batch_size * shard_count
        self.total = total  # stream positions available (None: endless)

    def __len__(self) -> int:
        return len(self.stream)

    def __getitem__(self, j: int) -> dict:
        lo = int(j) * self.global_batch_size + self.shard_index * self.batch_size
        hi = lo + self.batch_size if self.total is None else min(lo + self.batch_size, self.total)
        records = []
        for g in range(lo, hi) if hi > lo else (0,):  # an empty share still has the shape
            meta = self.stream[g]
            records.append(self.fn(self.source[meta.record_key], meta.rng))
        images = np.stack([r[0] for r in records])
        labels = np.stack([r[1] for r in records])
        if hi <= lo:
            images, labels = images[:0], labels[:0]
        return {"image": images, "label": labels}

    def __repr__(self) -> str:
        return f"_HostBatches(shard_index={self.shard_index}, batch_size={self.batch_size})"


class _BatchSampler:
    """Batch indices ``start, start + 1, ...`` below ``num_batches`` (None: endless)."""

    def __init__(self, start: int, num_batches: int | None):
        self.start = start
        self.num_batches = num_batches

    def __len__(self) -> int:
        return sys.maxsize if self.num_batches is None else self.num_batches - self.start

    def __getitem__(self, index: int) -> grain.RecordMetadata:
        if index < 0 or index >= len(self):
            raise IndexError(f"batch {index} out of range")
        return grain.RecordMetadata(index=index, record_key=self.start + index)

    def __repr__(self) -> str:
        return f"_BatchSampler(start={self.start}, num_batches={self.num_batches})"


class Loader:
    """One split's input pipeline; iterate it for batches (a fresh pass each time).

    Attributes:
      info: the dataset's :class:`~ottt_jax.data.DatasetInfo`.
      split: ``"train"`` or ``"test"``.
      num_records: records of the split (one epoch, all hosts together).
      batch_size: per-host batch size ``B`` (this host's rows of each global batch).
      global_batch_size: ``G = B · shard_count``.
      drop_remainder: whether partial global batches are dropped.
      num_epochs: epochs the loader runs, or ``None`` for an endless loader.
      num_batches: global batches the loader yields (``None``: endless).
    """

    def __init__(self, *, info, split, source, stream, fn, batch_size, shard_index, shard_count,
                 drop_remainder, num_epochs, worker_count, state_key):  # fmt: skip
        self.info = info
        self.split = split
        self.num_records = len(source)
        self.batch_size = batch_size
        self.global_batch_size = batch_size * shard_count
        self.drop_remainder = drop_remainder
        self.num_epochs = num_epochs
        total = None if num_epochs is None else num_epochs * self.num_records
        self.num_batches = (
            None if total is None else _num_batches(total, self.global_batch_size, drop_remainder)
        )
        self.worker_count = worker_count
        self.state_key = state_key
        self.batches = _HostBatches(
            source, stream, fn, batch_size=batch_size, shard_index=shard_index,
            shard_count=shard_count, total=total,
        )  # fmt: skip

    @property
    def steps_per_epoch(self) -> int:
        """Global batches per epoch: ``⌊N/G⌋`` (``⌈N/G⌉`` without ``drop_remainder``)."""
        return _num_batches(self.num_records, self.global_batch_size, self.drop_remainder)

    def grain_loader(self, start: int = 0) -> grain.DataLoader:
        """Return the ``grain.DataLoader`` that yields global batches ``start, start + 1, ...``."""
        return grain.DataLoader(
            data_source=self.batches,
            sampler=_BatchSampler(start, self.num_batches),
            operations=(),
            worker_count=self.worker_count,
            shard_options=grain.sharding.NoSharding(),
        )

    def __iter__(self) -> LoaderIterator:
        return LoaderIterator(self)


class LoaderIterator:
    """An iterator over a :class:`Loader` whose state is the global batch position.

    ``get_state()`` returns JSON bytes ``{"batch": j, ...}`` (the number of global batches taken,
    plus the loader facts it must match); it names no host, host count or worker count, so every
    host restores the same saved state, into any number of hosts.
    """

    def __init__(self, loader: Loader, batch: int = 0):
        self.loader = loader
        self.batch = batch
        self.iterator = iter(loader.grain_loader(batch))

    def __iter__(self) -> LoaderIterator:
        return self

    def __next__(self) -> dict:
        out = next(self.iterator)
        self.batch += 1
        return out

    def get_state(self) -> bytes:
        """Return the position as JSON bytes (global batches taken and the loader's facts)."""
        return json.dumps({"batch": self.batch, **self.loader.state_key}, sort_keys=True).encode()

    def set_state(self, state: bytes) -> None:
        """Continue after the batches a :meth:`get_state` value had taken.

        Raises:
          ValueError: the state is not one of this format, or was saved by a loader with other
            facts (naming the field: dataset, seed, global batch size...).
        """
        try:
            saved = json.loads(bytes(state).decode())
            batch = saved.pop("batch")
        except (ValueError, TypeError, AttributeError, KeyError):
            raise ValueError(
                "data iterator state is not a global batch position (saved by another ottt_jax "
                "version?); start a new workdir"
            ) from None
        for key, want in self.loader.state_key.items():
            if saved.get(key) != want:
                raise ValueError(
                    f"data iterator state has {key}={saved.get(key)!r} but this loader has "
                    f"{key}={want!r}"
                )
        if not (is_int(batch) and batch >= 0):
            raise ValueError(f"data iterator state has batch={batch!r}; expected an int >= 0")
        self.batch = batch
        self.iterator = iter(self.loader.grain_loader(batch))


def _check_loader_args(
    seed: Any, num_epochs: Any, worker_count: Any, shard_count: Any, shard_index: Any, cutout: Any
) -> None:
    """Raise a ValueError naming the first bad argument of :func:`make_loader`."""
    if not (is_int(seed) and 0 <= seed < 2**32):
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    if num_epochs is not None and not (is_int(num_epochs) and num_epochs >= 1):
        raise ValueError(f"num_epochs must be None or a positive int, got {num_epochs!r}")
    if not (is_int(worker_count) and worker_count >= 0):
        raise ValueError(f"worker_count must be an int >= 0, got {worker_count!r}")
    _check_shard(shard_index, shard_count)
    if cutout not in aug.CUTOUT_MODES:
        raise ValueError(f"cutout must be one of {aug.CUTOUT_MODES}, got {cutout!r}")


def _check_records(
    num_records: int, name: str, split: str, batch_size: int, shard_count: int, drop: bool
) -> None:
    """Refuse an empty split, or one with no full global batch when ``drop`` (drop_remainder)."""
    global_batch = batch_size * shard_count
    if num_records == 0:
        raise ValueError(f"split {split!r} of {name!r} is empty")
    if drop and global_batch > num_records:
        raise ValueError(
            f"the global batch {global_batch} (batch_size {batch_size} x {shard_count} hosts) "
            f"exceeds the {num_records} records of {name!r} ({split}); with drop_remainder=True "
            "no batch would be produced"
        )


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
    """Build the input pipeline of one split (this host's rows of every global batch).

    Args:
      name: a registered dataset name (built-ins: ``digits``, ``cifar10``, ``cifar100``,
        ``imagenet2012``, ``cifar10_dvs``; see :mod:`ottt_jax.data.catalog`).
      split: ``"train"`` or ``"test"`` (ImageNet ``test`` = the validation set).
      batch_size: per-host batch size ``B``; the global batch is ``G = B · shard_count``.
      seed: int in ``[0, 2**32)``: shuffling and augmentation randomness.
      data_dir: TFDS data directory (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      shuffle: default True for train, False for test; reshuffled every epoch.
      augment: default True for train (datasets with an augmentation), False for test.
      num_epochs: epochs to run; ``None`` means endless for train and 1 for test.
      drop_remainder: default True for train, False for test (see the module docstring).
      shard_index: this host's index ``k`` (e.g. ``jax.process_index()``).
      shard_count: number of hosts ``S`` (e.g. ``jax.process_count()``).
      worker_count: Grain worker processes (0: preprocess in this process); each worker builds
        whole batches, so the batches do not depend on it.
      num_frames: frames per sample for ``cifar10_dvs`` (default 10); ``None`` otherwise.
      cutout: CIFAR training cutout: ``"reference"`` (the authors' torchtoolbox random erasing),
        ``"hole"`` (DeVries' 16×16 hole) or ``"none"``.
      data_source: read these records instead of the dataset's own source (same record format:
        the image under ``"image"``, ``"frames"`` for DVS, and ``"label"``).

    Returns:
      A :class:`Loader` whose iteration yields ``{"image": float32 [B, H, W, C]`` (DVS:
      ``[B, T, H, W, C]``), ``"label": int32 [B]}`` (fewer rows, possibly 0, in the last global
      batch without ``drop_remainder``).

    Raises:
      ValueError: unknown name/split/cutout or a bad batch size, seed, shard or epoch count.
      DatasetNotPreparedError: the dataset's files are not in ``data_dir``.
    """
    spec = catalog.get_dataset(name)
    info = catalog.dataset_info(name, num_frames=num_frames)
    catalog.check_split(split)
    check_batch_size(batch_size)
    _check_loader_args(seed, num_epochs, worker_count, shard_count, shard_index, cutout)
    train = split == "train"
    shuffle = train if shuffle is None else bool(shuffle)
    drop_remainder = train if drop_remainder is None else bool(drop_remainder)
    if num_epochs is None and not train:
        num_epochs = 1
    if augment and not spec.has_augmentation:
        raise ValueError(f"dataset {name!r} has no augmentation; pass augment=False or None")
    augment = train and spec.has_augmentation if augment is None else augment

    if data_source is None:
        data_dir = None if data_dir is None else os.fspath(data_dir)
        data_source = spec.open_split(split, data_dir, info.num_frames)
    num_records = len(data_source)
    global_batch = batch_size * shard_count
    _check_records(num_records, name, split, batch_size, shard_count, drop_remainder)
    if worker_count > 0:
        _mark_absl_flags_parsed()
    # The global record stream: epoch after epoch of the split, each reshuffled with ``seed``.
    stream = grain.samplers.IndexSampler(
        num_records=num_records,
        shard_options=grain.sharding.NoSharding(),
        shuffle=shuffle,
        num_epochs=num_epochs,
        seed=seed,
    )
    keys = ("dataset", "split", "seed", "shuffle", "augment", "num_records", "global_batch_size")
    values = (name, split, seed, shuffle, bool(augment), num_records, global_batch)
    state_key = dict(zip(keys, values, strict=True))
    return Loader(
        info=info, split=split, source=data_source, stream=stream,
        fn=_record_fn(spec, augment, cutout), batch_size=batch_size, shard_index=shard_index,
        shard_count=shard_count, drop_remainder=drop_remainder, num_epochs=num_epochs,
        worker_count=worker_count, state_key=state_key,
    )  # fmt: skip
