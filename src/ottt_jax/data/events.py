"""Event datasets, one spec: structured events, the frame-binning rule, storage, the catalog kind.

An event dataset stores each recording as a structured NumPy array of events and bins it into
``T`` frames when a record is read, so one prepared copy serves every ``T`` the dataset offers.

* **Events.** Camera events (:data:`DVS_EVENT`): fields ``t`` (µs, int64), ``x``, ``y``
  (pixel column and row) and ``p`` (polarity 0/1). Audio spikes (:data:`AUDIO_EVENT`): fields
  ``t`` (µs) and ``ch`` (the input channel). A sensor of ``(W, H, P)`` gives frames
  ``[T, H, W, P]``; an audio sensor of ``C`` channels gives frames ``[T, 1, 1, C]``.
* **Frames** (:func:`bin_events`, the one place the frame rule lives; CIFAR10-DVS's frames go
  through it too): frame ``j`` counts the events of segment ``j`` per ``(y, x, p)``;

  - ``by="count"`` (SpikingJelly's ``split_by='number'``): with ``N`` events, segment ``j`` is
    events ``[j·⌊N/T⌋, (j+1)·⌊N/T⌋)`` in stream order, the last segment up to ``N``
    (all events in the last frame when ``N < T``);
  - ``by="time"`` without a ``duration`` (SpikingJelly's ``split_by='time'``): with
    ``Δ = max(⌊(t_max − t_min)/T⌋, 1)`` µs, segment ``j`` is ``t − t_min ∈ [jΔ, (j+1)Δ)``, the
    last segment up to ``t_max`` inclusive;
  - ``by="time"`` with ``duration`` ``D`` µs (fixed windows from ``t = 0``, as the SHD
    literature bins 1 s into 10 ms steps): segment ``j`` is ``t ∈ [jD/T, (j+1)D/T)``, i.e.
    ``j = ⌊t·T/D⌋``; events at ``t ≥ D`` are dropped.
* **Storage** (:func:`write_split`): ``<data_dir>/<name>/events/<split>.array_record``, one record
  per recording, each an ``np.savez`` archive of ``events`` and ``label`` (read back with
  ``allow_pickle=False``: a tampered file cannot run code), read through Grain's
  ``ArrayRecordDataSource`` like every other prepared dataset.
* **The catalog kind** (:func:`event_dataset`): a :class:`~ottt_jax.data.spec.DatasetSpec`
  whose ``open_split`` is an :class:`EventsOpener`, serving ``{"frames": uint16 [T, H, W, C],
  "label": int}`` records; :func:`counts_to_float` is the evaluation transform (counts as
  float32, no normalization).
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ottt_jax.data import sources
from ottt_jax.data import spec as spec_lib

__all__ = [
    "AUDIO_EVENT",
    "BINNINGS",
    "DVS_EVENT",
    "EVENT_FRAMES",
    "EventSource",
    "EventsOpener",
    "audio_events",
    "bin_events",
    "counts_to_float",
    "decode_record",
    "dvs_events",
    "encode_record",
    "event_dataset",
    "frame_shape",
    "recording_bytes",
    "split_path",
    "write_split",
]

#: A camera event: time (µs), column, row, polarity.
DVS_EVENT = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
#: An audio spike: time (µs), input channel.
AUDIO_EVENT = np.dtype([("t", "<i8"), ("ch", "<i2")])
#: The binning rules of :func:`bin_events`.
BINNINGS = ("count", "time")
#: The frame counts an event dataset offers by default (binned when read, so any of these).
EVENT_FRAMES = (1, 2, 3, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200, 250)


def dvs_events(t: Any, x: Any, y: Any, p: Any) -> np.ndarray:
    """Return camera events as a :data:`DVS_EVENT` array ``[N]`` (fields in the given order)."""
    t = np.asarray(t)
    out = np.empty(t.shape[0], DVS_EVENT)
    out["t"], out["x"], out["y"], out["p"] = t, x, y, p
    return out


def audio_events(t: Any, ch: Any) -> np.ndarray:
    """Return audio spikes as an :data:`AUDIO_EVENT` array ``[N]``."""
    t = np.asarray(t)
    out = np.empty(t.shape[0], AUDIO_EVENT)
    out["t"], out["ch"] = t, ch
    return out


def recording_bytes(source: bytes | str | os.PathLike) -> bytes:
    """Return a recording's bytes, given as bytes (returned as is) or as a file path.

    Args:
      source: the file's bytes or its path.

    Returns:
      The file's bytes.
    """
    if isinstance(source, bytes):
        return source
    with open(source, "rb") as f:
        return f.read()


def frame_shape(sensor_size: tuple[int, ...]) -> tuple[int, int, int]:
    """Return ``(H, W, C)`` of one frame: ``(H, W, P)`` for a ``(W, H, P)`` camera, ``(1, 1, C)``
    for an audio sensor of ``(C,)`` channels."""
    if len(sensor_size) == 1:
        return (1, 1, int(sensor_size[0]))
    if len(sensor_size) == 3:
        w, h, p = sensor_size
        return (int(h), int(w), int(p))
    raise ValueError(f"sensor_size must be (W, H, P) or (C,), got {sensor_size!r}")


def _segments(events: np.ndarray, num_frames: int, by: str, duration: int | None) -> np.ndarray:
    n = events.shape[0]
    if by == "count":
        per_frame = n // num_frames
        if per_frame == 0:
            return np.full(n, num_frames - 1, np.int64)
        return np.minimum(np.arange(n, dtype=np.int64) // per_frame, num_frames - 1)
    t = events["t"].astype(np.int64)
    if duration is not None:
        seg = (t * num_frames) // int(duration)
        return np.where((t >= 0) & (seg < num_frames), seg, -1)
    if n == 0:
        return np.zeros(0, np.int64)
    t0 = t.min()
    step = max((int(t.max()) - int(t0)) // num_frames, 1)
    return np.minimum((t - t0) // step, num_frames - 1)


def bin_events(
    events: np.ndarray,
    sensor_size: tuple[int, ...],
    num_frames: int,
    *,
    by: str = "count",
    duration: int | None = None,
    dtype: Any = np.uint16,
) -> np.ndarray:
    """Count events into ``num_frames`` frames (the module docstring states the rule).

    Args:
      events: a :data:`DVS_EVENT` or :data:`AUDIO_EVENT` array ``[N]`` in stream order.
      sensor_size: ``(W, H, P)`` for camera events, ``(C,)`` for audio spikes.
      num_frames: ``T ≥ 1``.
      by: ``"count"`` (equal event numbers) or ``"time"`` (equal time windows).
      duration: for ``by="time"``, the fixed window ``D`` µs binned from ``t = 0`` (events at
        ``t ≥ D`` dropped); None spans the recording's own first to last event.
      dtype: integer dtype of the counts; a count it cannot hold is a ValueError.

    Returns:
      ``[T, H, W, C]`` counts (:func:`frame_shape`): frame ``j`` holds, per ``(y, x, p)`` (or
      per channel), the number of events in segment ``j``.
    """
    if not isinstance(num_frames, (int, np.integer)) or isinstance(num_frames, bool):
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    if by not in BINNINGS:
        raise ValueError(f"by must be one of {BINNINGS}, got {by!r}")
    if duration is not None and (by != "time" or duration <= 0):
        raise ValueError(f"duration applies to by='time' and must be > 0, got {duration!r}")
    h, w, c = frame_shape(sensor_size)
    names = events.dtype.names or ()
    if "ch" in names:
        x = np.zeros(events.shape[0], np.int64)
        y = x
        p = events["ch"].astype(np.int64)
    elif {"x", "y", "p"} <= set(names):
        x, y, p = (events[f].astype(np.int64) for f in ("x", "y", "p"))
    else:
        raise ValueError(f"events must have fields (t, x, y, p) or (t, ch), got {names}")
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h) & (p >= 0) & (p < c)
    if not inside.all():
        raise ValueError(f"events outside the sensor {tuple(sensor_size)} (frames {h}x{w}x{c})")
    seg = _segments(events, int(num_frames), by, duration)
    keep = seg >= 0
    flat = ((seg[keep] * h + y[keep]) * w + x[keep]) * c + p[keep]
    counts = np.bincount(flat, minlength=int(num_frames) * h * w * c)
    if counts.max(initial=0) > np.iinfo(dtype).max:
        raise ValueError(f"an event count exceeds the {np.dtype(dtype).name} range")
    return counts.astype(dtype).reshape(int(num_frames), h, w, c)


def counts_to_float(frames: np.ndarray) -> np.ndarray:
    """Return event-count frames as float32 (the event datasets' evaluation transform)."""
    return np.asarray(frames, np.float32)


def encode_record(events: np.ndarray, label: int) -> bytes:
    """Serialize one recording: an ``np.savez`` archive of ``events`` and ``label``."""
    buf = io.BytesIO()
    np.savez(buf, events=np.ascontiguousarray(events), label=np.int64(label))
    return buf.getvalue()


def decode_record(data: bytes) -> tuple[np.ndarray, int]:
    """Return ``(events, label)`` of a record written by :func:`encode_record`."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return archive["events"], int(archive["label"])


def split_path(name: str, split: str, data_dir: str | os.PathLike | None = None) -> str:
    """Return ``<data_dir>/<name>/events/<split>.array_record`` (default data dir as TFDS's)."""
    spec_lib.check_split(split)
    if data_dir is None:
        data_dir = os.environ.get("TFDS_DATA_DIR", os.path.join("~", "tensorflow_datasets"))
    root = os.path.expanduser(os.fspath(data_dir))
    return os.path.join(root, name, "events", f"{split}.array_record")


def write_split(
    name: str,
    split: str,
    records: Iterable[tuple[np.ndarray, int]],
    data_dir: str | os.PathLike | None = None,
) -> tuple[str, int]:
    """Write ``(events, label)`` records as one ``array_record`` file.

    Returns:
      ``(path, number of records)``.
    """
    from array_record.python.array_record_module import ArrayRecordWriter

    path = split_path(name, split, data_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    writer = ArrayRecordWriter(tmp, "group_size:1")
    count = 0
    try:
        for events, label in records:
            writer.write(encode_record(events, label))
            count += 1
    finally:
        writer.close()
    os.replace(tmp, path)
    return path, count


class EventSource:
    """A random-access source of binned recordings: ``{"frames": [T, H, W, C], "label": int}``.

    Args:
      path: the split's ``array_record`` file.
      sensor_size: as for :func:`bin_events`.
      num_frames: ``T``.
      by: as for :func:`bin_events`.
      duration: as for :func:`bin_events`.
    """

    def __init__(self, path, sensor_size, num_frames, *, by="count", duration=None):
        import grain.python as grain

        self._source = grain.ArrayRecordDataSource([os.fspath(path)])
        self.sensor_size = tuple(sensor_size)
        self.num_frames = int(num_frames)
        self.by = by
        self.duration = duration

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        events, label = decode_record(self._source[index])
        frames = bin_events(
            events, self.sensor_size, self.num_frames, by=self.by, duration=self.duration
        )
        return {"frames": frames, "label": np.int64(label)}


@dataclasses.dataclass(frozen=True)
class EventsOpener:
    """Open a split of a prepared event dataset (a :class:`DatasetSpec`'s ``open_split``).

    Attributes:
      name: the dataset name (its folder in the data directory).
      sensor_size: ``(W, H, P)`` or ``(C,)``.
      by: the binning rule, ``"count"`` or ``"time"``.
      duration: the fixed window of ``by="time"`` in µs, or None.
    """

    name: str
    sensor_size: tuple[int, ...]
    by: str = "count"
    duration: int | None = None

    def __call__(self, split: str, data_dir: str | None, num_frames: int | None) -> EventSource:
        """Return the :class:`EventSource` of ``split`` binned to ``num_frames`` frames.

        Raises:
          DatasetNotPreparedError: the split's file is missing (the message names the command).
        """
        path = split_path(self.name, split, data_dir)
        if not os.path.isfile(path):
            raise sources.DatasetNotPreparedError(
                f"dataset {self.name!r} ({split}) is not prepared: {path} is missing. Prepare it "
                f"with:\n  {sources.prepare_command(self.name, data_dir=data_dir)}\n"
                "(see docs/datasets.md)"
            )
        return EventSource(path, self.sensor_size, num_frames, by=self.by, duration=self.duration)


def event_dataset(
    name: str,
    *,
    num_classes: int,
    sensor_size: tuple[int, ...],
    num_train: int,
    num_test: int,
    by: str,
    default_frames: int,
    duration: int | None = None,
    frames: tuple[int, ...] = EVENT_FRAMES,
    eval_transform: Callable[[np.ndarray], np.ndarray] = counts_to_float,
    train_transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
) -> spec_lib.DatasetSpec:
    """Return the :class:`~ottt_jax.data.spec.DatasetSpec` of an event dataset.

    Args:
      name: the catalog name (also the folder of its prepared files).
      num_classes: ``K``.
      sensor_size: ``(W, H, P)`` or ``(C,)``.
      num_train: recordings in the full train split.
      num_test: recordings in the full test split.
      by: the binning rule of :func:`bin_events`.
      default_frames: ``T`` when neither ``num_frames`` nor ``num_steps`` is known.
      duration: the fixed window of ``by="time"`` (µs), or None.
      frames: the frame counts offered.
      eval_transform: per-record transform of the counts (default: float32 counts).
      train_transform: optional augmentation.

    Returns:
      The spec (not registered).
    """
    return spec_lib.DatasetSpec(
        name=name,
        num_classes=num_classes,
        frame_shape=frame_shape(sensor_size),
        num_train=num_train,
        num_test=num_test,
        open_split=EventsOpener(name, tuple(sensor_size), by, duration),
        eval_transform=eval_transform,
        train_transform=train_transform,
        frames=frames,
        default_frames=default_frames,
        image_key="frames",
    )
