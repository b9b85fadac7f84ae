"""N-MNIST (Orchard et al., 2015): a reader of the original ``.bin`` files and the catalog entry.

The dataset (https://www.garrickorchard.com/datasets/n-mnist; CC BY-SA 4.0) is MNIST recorded by
an ATIS camera moving in three saccades: 34×34 pixels, two polarities, 10 classes, 60000 train /
10000 test recordings, distributed as ``Train.zip`` and ``Test.zip`` that extract to
``Train/<digit>/<id>.bin`` and ``Test/<digit>/<id>.bin``.

**File format** (the dataset authors' ``Read_Ndataset.m``): every event is 40 bits, five bytes
``b0 … b4``: ``x = b0``, ``y = b1``, ``p = b2 >> 7``, timestamp (µs)
``t = ((b2 & 0x7F) << 16) | (b3 << 8) | b4``. An event with ``y = 240`` is a timestamp-overflow
marker, not an event: it adds ``2¹³`` µs to its own and every later timestamp and is dropped.

**Frames**: binned by event count (:func:`ottt_jax.data.events.bin_events`, ``by="count"``);
``T = 10`` by default (Fang et al., ICCV 2021, bin N-MNIST into 10 count-split frames).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from ottt_jax.data import events

__all__ = [
    "MANUAL_INSTRUCTIONS",
    "NAME",
    "SENSOR_SIZE",
    "SPEC",
    "encode_bin",
    "find_files",
    "prepare",
    "read_bin",
]

NAME = "nmnist"
#: ``(W, H, P)``.
SENSOR_SIZE = (34, 34, 2)
OVERFLOW_Y = 240
OVERFLOW_STEP = 1 << 13
SPLIT_DIRS = {"train": "Train", "test": "Test"}

MANUAL_INSTRUCTIONS = """\
Download Train.zip and Test.zip of N-MNIST from https://www.garrickorchard.com/datasets/n-mnist
and extract both into manual_dir, so that it holds Train/0/*.bin … Train/9/*.bin and
Test/0/*.bin … Test/9/*.bin (a folder nested deeper is found too). Then run
`python -m ottt_jax.data.prepare nmnist --manual_dir <manual_dir>`.
"""

SPEC = events.event_dataset(
    NAME,
    num_classes=10,
    sensor_size=SENSOR_SIZE,
    num_train=60_000,
    num_test=10_000,
    by="count",
    default_frames=10,
)


def read_bin(source: bytes | str | os.PathLike) -> np.ndarray:
    """Read one N-MNIST recording.

    Args:
      source: the ``.bin`` file's bytes or path.

    Returns:
      :data:`~ottt_jax.data.events.DVS_EVENT` ``[N]`` in file order, overflow markers removed.
    """
    source = events.recording_bytes(source)
    if len(source) % 5:
        raise ValueError(
            f"an N-MNIST .bin file holds 5-byte events; got {len(source)} bytes (not a multiple "
            "of 5)"
        )
    b = np.frombuffer(source, np.uint8).reshape(-1, 5).astype(np.int64)
    t = ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4]
    overflow = b[:, 1] == OVERFLOW_Y
    t = t + OVERFLOW_STEP * np.cumsum(overflow)
    keep = ~overflow
    return events.dvs_events(t[keep], b[keep, 0], b[keep, 1], b[keep, 2] >> 7)


def encode_bin(ev: np.ndarray) -> bytes:
    """Write :data:`~ottt_jax.data.events.DVS_EVENT` events in the ``.bin`` format (tests).

    Timestamps must be below ``2²³`` µs (no overflow markers are written).
    """
    t = ev["t"].astype(np.int64)
    if t.min(initial=0) < 0 or t.max(initial=0) >= 1 << 23:
        raise ValueError("N-MNIST timestamps must be in [0, 2**23) µs")
    out = np.empty((ev.shape[0], 5), np.uint8)
    out[:, 0], out[:, 1] = ev["x"], ev["y"]
    out[:, 2] = (ev["p"].astype(np.int64) << 7) | (t >> 16)
    out[:, 3], out[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    return out.tobytes()


def find_files(manual_dir: str | os.PathLike, split: str) -> list[tuple[int, str]]:
    """Return ``[(label, path), ...]`` of a split's ``.bin`` files, by label then file name.

    Raises:
      FileNotFoundError: no ``Train``/``Test`` folder with digit folders under ``manual_dir``.
    """
    want = SPLIT_DIRS[split]
    for dirpath, dirnames, _ in sorted(os.walk(os.fspath(manual_dir))):
        if os.path.basename(dirpath) == want and any(d.isdigit() for d in dirnames):
            found = []
            for digit in sorted((d for d in dirnames if d.isdigit()), key=int):
                folder = os.path.join(dirpath, digit)
                names = sorted(n for n in os.listdir(folder) if n.endswith(".bin"))
                found += [(int(digit), os.path.join(folder, n)) for n in names]
            return found
    raise FileNotFoundError(
        f"N-MNIST: no {want}/<digit>/*.bin folders under {manual_dir}.\n" + MANUAL_INSTRUCTIONS
    )


def _records(files: list[tuple[int, str]]) -> Iterator[tuple[np.ndarray, int]]:
    for label, path in files:
        yield read_bin(path), label


def prepare(manual_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> str:
    """Write N-MNIST's train and test splits as ``array_record`` event files.

    Returns:
      The dataset's folder, ``<data_dir>/nmnist/events``.
    """
    for split in ("train", "test"):
        path, _ = events.write_split(NAME, split, _records(find_files(manual_dir, split)), data_dir)
    return os.path.dirname(path)
