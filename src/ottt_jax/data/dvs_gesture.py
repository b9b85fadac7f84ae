"""DVS128 Gesture (Amir et al., CVPR 2017): readers of the original AEDAT 3.1 files and of tonic's
``.npy`` layout, and the catalog entry.

The dataset (https://research.ibm.com/interactive/dvsgesture/, ``DvsGesture.tar.gz``; CC BY 4.0)
holds 122 trials of 29 subjects under 3 lightings, each a 128×128 DVS recording
``userXX_<lighting>.aedat`` with ``userXX_<lighting>_labels.csv`` (``class,startTime_usec,
endTime_usec``, classes 1–11); ``trials_to_train.txt`` and ``trials_to_test.txt`` list the
trials of each split. Every labelled segment is one sample (label ``class − 1``), holding the
events with ``startTime ≤ t < endTime``.

**AEDAT 3.1** (jAER/cAER): ``#`` header lines up to ``#!END-HEADER``, then packets. A packet is
a 28-byte little-endian header ``(int16 eventType, int16 eventSource, int32 eventSize, int32
eventTSOffset, int32 eventTSOverflow, int32 eventCapacity, int32 eventNumber, int32
eventValid)`` and ``eventCapacity × eventSize`` bytes of events. Only polarity packets
(``eventType = 1``, 8-byte events ``uint32 data, int32 timestamp``) are read; an event counts
when its valid bit (``data & 1``) is set: ``p = (data >> 1) & 1``, ``y = (data >> 2) & 0x7FFF``,
``x = (data >> 17) & 0x7FFF``, ``t = (eventTSOverflow << 31) | timestamp`` µs.

**tonic's layout** (``ibmGestureTrain/<trial>/<label>.npy``, ``ibmGestureTest/…``): each file an
``[N, 4]`` array of ``(x, y, p, t)`` with ``t`` in ms, read as ``round(t · 1000)`` µs; its
segments were already cut (1077 / 264 samples instead of 1176 / 288). tonic itself is not used.

**Frames**: binned by event count, ``T = 20`` by default (Fang et al., ICCV 2021), 128×128×2.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator

import numpy as np

from ottt_jax.data import events

__all__ = [
    "MANUAL_INSTRUCTIONS",
    "NAME",
    "SENSOR_SIZE",
    "SPEC",
    "cut_segments",
    "prepare",
    "read_aedat",
    "read_labels",
    "read_npy",
]

NAME = "dvs_gesture"
#: ``(W, H, P)``.
SENSOR_SIZE = (128, 128, 2)
POLARITY_EVENT = 1
PACKET_HEADER = np.dtype(
    [("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
     ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")]
)  # fmt: skip
END_HEADER = b"#!END-HEADER"
NPY_DIRS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
TRIAL_LISTS = {"train": "trials_to_train.txt", "test": "trials_to_test.txt"}

MANUAL_INSTRUCTIONS = """\
Download DvsGesture.tar.gz from https://research.ibm.com/interactive/dvsgesture/ and extract it
into manual_dir (it holds user*.aedat, user*_labels.csv, trials_to_train.txt and
trials_to_test.txt), or put tonic's extracted ibmGestureTrain/ and ibmGestureTest/ folders there.
Then run `python -m ottt_jax.data.prepare dvs_gesture --manual_dir <manual_dir>`.
"""

SPEC = events.event_dataset(
    NAME,
    num_classes=11,
    sensor_size=SENSOR_SIZE,
    num_train=1176,
    num_test=288,
    by="count",
    default_frames=20,
)


def read_aedat(source: bytes | str | os.PathLike) -> np.ndarray:
    """Read the polarity events of an AEDAT 3.1 file.

    Args:
      source: the file's bytes or path.

    Returns:
      :data:`~ottt_jax.data.events.DVS_EVENT` ``[N]`` in file order (valid events only).
    """
    source = events.recording_bytes(source)
    end = source.find(END_HEADER)
    if end < 0:
        raise ValueError("not an AEDAT 3.1 file: no '#!END-HEADER' line")
    pos = source.find(b"\n", end) + 1
    parts = []
    while pos < len(source):
        if pos + PACKET_HEADER.itemsize > len(source):
            raise ValueError(f"AEDAT packet header truncated at byte {pos}")
        head = np.frombuffer(source, PACKET_HEADER, 1, pos)[0]
        pos += PACKET_HEADER.itemsize
        size, capacity = int(head["size"]), int(head["capacity"])
        body_len = size * capacity
        if size < 1 or capacity < 0 or pos + body_len > len(source):
            raise ValueError(f"AEDAT packet at byte {pos - 28} is truncated or malformed")
        if head["type"] == POLARITY_EVENT and capacity:
            if size < 8:
                raise ValueError(f"AEDAT polarity events must be >= 8 bytes, got {size}")
            raw = np.frombuffer(source, np.uint8, body_len, pos).reshape(capacity, size)
            data = raw[:, :4].copy().view("<u4")[:, 0].astype(np.int64)
            ts = raw[:, 4:8].copy().view("<i4")[:, 0].astype(np.int64)
            valid = (data & 1) == 1
            data, ts = data[valid], ts[valid]
            t = (int(head["ts_overflow"]) << 31) | ts
            parts.append(events.dvs_events(t, (data >> 17) & 0x7FFF, (data >> 2) & 0x7FFF,
                                           (data >> 1) & 1))  # fmt: skip
        pos += body_len
    return np.concatenate(parts) if parts else np.empty(0, events.DVS_EVENT)


def read_labels(path: str | os.PathLike) -> list[tuple[int, int, int]]:
    """Return ``[(label 0–10, start µs, end µs), ...]`` from a ``*_labels.csv`` file."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if not row or not row[0].strip().isdigit():
                continue  # the header line
            cls, start, end = (int(v) for v in row[:3])
            if not 1 <= cls <= 11:
                raise ValueError(f"{path}: class must be 1..11, got {cls}")
            rows.append((cls - 1, start, end))
    return rows


def cut_segments(ev: np.ndarray, labels: list[tuple[int, int, int]]) -> Iterator:
    """Yield ``(events with start ≤ t < end, label)`` for each labelled segment."""
    for label, start, end in labels:
        keep = (ev["t"] >= start) & (ev["t"] < end)
        yield ev[keep], label


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """Read one sample of tonic's layout: ``[N, 4]`` ``(x, y, p, t ms)`` → events in µs."""
    arr = np.load(path, allow_pickle=False)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{path}: expected an [N, 4] array (x, y, p, t), got {arr.shape}")
    t = np.rint(arr[:, 3].astype(np.float64) * 1000).astype(np.int64)
    return events.dvs_events(t, arr[:, 0], arr[:, 1], arr[:, 2])


def _find(manual_dir: str | os.PathLike, name: str, is_dir: bool) -> str | None:
    for dirpath, dirnames, filenames in sorted(os.walk(os.fspath(manual_dir))):
        if name in (dirnames if is_dir else filenames):
            return os.path.join(dirpath, name)
    return None


def _records(manual_dir: str | os.PathLike, split: str) -> Iterator:
    trials = _find(manual_dir, TRIAL_LISTS[split], False)
    if trials is not None:
        root = os.path.dirname(trials)
        with open(trials, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
        for name in names:
            stem = os.path.splitext(name)[0]
            ev = read_aedat(os.path.join(root, name))
            yield from cut_segments(ev, read_labels(os.path.join(root, f"{stem}_labels.csv")))
        return
    folder = _find(manual_dir, NPY_DIRS[split], True)
    if folder is None:
        raise FileNotFoundError(
            f"DVS128 Gesture: neither {TRIAL_LISTS[split]} nor {NPY_DIRS[split]}/ under "
            f"{manual_dir}.\n" + MANUAL_INSTRUCTIONS
        )
    for trial in sorted(os.listdir(folder)):
        path = os.path.join(folder, trial)
        if not os.path.isdir(path):
            continue
        files = [f for f in os.listdir(path) if f.endswith(".npy") and f[:-4].isdigit()]
        for f in sorted(files, key=lambda f: int(f[:-4])):
            yield read_npy(os.path.join(path, f)), int(f[:-4])


def prepare(manual_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> str:
    """Write DVS128 Gesture's splits as ``array_record`` event files (AEDAT or tonic's npy).

    Returns:
      The dataset's folder, ``<data_dir>/dvs_gesture/events``.
    """
    for split in ("train", "test"):
        path, _ = events.write_split(NAME, split, _records(manual_dir, split), data_dir)
    return os.path.dirname(path)
