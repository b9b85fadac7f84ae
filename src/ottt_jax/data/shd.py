"""SHD, the Spiking Heidelberg Digits (Cramer et al., 2022): a reader of its ``.h5`` files.

The dataset (https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/; CC BY 4.0) holds
spoken digits 0–9 in English and German (20 classes) converted to spikes of 700 cochlear
channels: 8156 train / 2264 test recordings, in ``shd_train.h5`` and ``shd_test.h5`` (distributed
gzipped; either form is read).

**File format**: HDF5 datasets ``spikes/times`` (one float array per recording, seconds),
``spikes/units`` (one integer array per recording, the channel of each spike) and ``labels``.
Times become integer µs, ``round(t · 10⁶)``.

**Frames**: binned by time in fixed windows from ``t = 0``
(:func:`ottt_jax.data.events.bin_events`, ``by="time"``, ``duration`` = 1.4 s); ``T = 100``
(14 ms steps) by default, the binning of Zenke & Vogels (Neural Computation, 2021) and of the
SHD tutorials built on it. A frame is ``[1, 1, 700]``: the channel is the last axis.

Reading needs ``h5py`` (``pip install "ottt_jax[events]"``); nothing else does.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from collections.abc import Iterator

import numpy as np

from ottt_jax.data import events

__all__ = ["MANUAL_INSTRUCTIONS", "NAME", "NUM_CHANNELS", "SPEC", "prepare", "read_h5"]

NAME = "shd"
NUM_CHANNELS = 700
#: The window binned into ``T`` frames, µs.
DURATION_US = 1_400_000
FILES = {"train": "shd_train.h5", "test": "shd_test.h5"}

MANUAL_INSTRUCTIONS = """\
Download shd_train.h5.gz and shd_test.h5.gz from
https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/ into manual_dir (gunzipped or
not). Then run `python -m ottt_jax.data.prepare shd --manual_dir <manual_dir>` (needs h5py:
pip install "ottt_jax[events]").
"""

SPEC = events.event_dataset(
    NAME,
    num_classes=20,
    sensor_size=(NUM_CHANNELS,),
    num_train=8156,
    num_test=2264,
    by="time",
    duration=DURATION_US,
    default_frames=100,
)


def _h5py():
    try:
        import h5py
    except ImportError as err:
        raise ImportError(
            'reading SHD needs h5py; install the events extra: pip install "ottt_jax[events]"'
        ) from err
    return h5py


def read_h5(path: str | os.PathLike) -> Iterator[tuple[np.ndarray, int]]:
    """Yield ``(events, label)`` of every recording of an SHD ``.h5`` file, in file order.

    Args:
      path: ``shd_train.h5`` or ``shd_test.h5``.

    Yields:
      :data:`~ottt_jax.data.events.AUDIO_EVENT` ``[N]`` (time µs, channel) and the label.
    """
    h5py = _h5py()
    with h5py.File(os.fspath(path), "r") as f:
        for name in ("spikes/times", "spikes/units", "labels"):
            if name not in f:
                raise ValueError(f"{path} is not an SHD file: it has no dataset {name!r}")
        times, units, labels = f["spikes/times"], f["spikes/units"], f["labels"]
        if not len(times) == len(units) == len(labels):
            raise ValueError(
                f"{path}: spikes/times, spikes/units and labels have different lengths "
                f"({len(times)}, {len(units)}, {len(labels)})"
            )
        for i in range(len(labels)):
            t = np.rint(np.asarray(times[i], np.float64) * 1e6).astype(np.int64)
            ch = np.asarray(units[i]).astype(np.int64)
            if t.shape != ch.shape:
                raise ValueError(f"{path}: recording {i} has {t.size} times but {ch.size} units")
            yield events.audio_events(t, ch), int(labels[i])


def _find(manual_dir: str | os.PathLike, split: str) -> str:
    for suffix in ("", ".gz"):
        path = os.path.join(os.fspath(manual_dir), FILES[split] + suffix)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"SHD: {FILES[split]}(.gz) not found in {manual_dir}.\n" + MANUAL_INSTRUCTIONS
    )


def prepare(manual_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> str:
    """Write SHD's train and test splits as ``array_record`` event files.

    Returns:
      The dataset's folder, ``<data_dir>/shd/events``.
    """
    _h5py()
    for split in ("train", "test"):
        path = _find(manual_dir, split)
        with tempfile.TemporaryDirectory() as tmp:
            if path.endswith(".gz"):
                plain = os.path.join(tmp, FILES[split])
                with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                path = plain
            out, _ = events.write_split(NAME, split, read_h5(path), data_dir)
    return os.path.dirname(out)
