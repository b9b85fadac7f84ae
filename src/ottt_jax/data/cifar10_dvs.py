"""CIFAR10-DVS: an AEDAT reader, count-split frame integration and a TFDS builder.

The dataset (Li et al., 2017; https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671) has
one folder per class (airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck), each
with 1000 recordings ``cifar10_<class>_<i>.aedat`` of a 128×128 DVS camera. Nothing here needs
TensorFlow: :func:`prepare` writes ``array_record`` files that ``tfds.data_source`` reads.

Facts and where they come from:

* **File layout** (SpikingJelly's AEDAT reader, which the authors' ``datasets/cifar10_dvs.py``
  copies): a text header of lines starting with ``#`` (read line by line while the stripped line
  starts with ``#``), then big-endian ``uint32`` pairs ``(address, timestamp)``; the byte count
  after the header must be a multiple of 8. No event type filter is applied.
* **Address bits for CIFAR10-DVS** (the authors' ``read_bin``, the masks SpikingJelly passes for
  this dataset): ``x = (a & 0xFE) >> 1``, ``y = (a & 0x7F00) >> 8``, ``p = a & 1``.
* **Transforms** (the authors' ``read_bin``): ``x ← 127 − x`` (mirror), ``y`` unchanged,
  ``p ← 1 − p`` (inverted polarity). Later SpikingJelly versions instead return
  ``x = 127 − y_raw, y = 127 − x_raw``; the authors' commit uses the version above.
* **Frames** (``integrate_events_to_frames(split_by='number')`` in the authors' code): with ``N``
  events and ``T`` frames, frame ``j`` counts events ``[j·⌊N/T⌋, (j+1)·⌊N/T⌋)``, the last frame
  ``[(T−1)·⌊N/T⌋, N)``; each frame counts events per ``(p, y, x)``. Stored here as ``uint16``
  ``[T, 128, 128, 2]`` (height, width, polarity), no normalization.
* **Split** (the authors' ``CIFAR10DVS(split_ratio=0.9)``, which opens the files by name): per
  class, recordings ``cifar10_<class>_0 … _899`` train and ``_900 … _999`` test.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from typing import ClassVar, NamedTuple

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from ottt_jax.data import catalog
from ottt_jax.data import events as event_data

__all__ = [
    "CLASS_NAMES",
    "Cifar10Dvs",
    "Cifar10DvsConfig",
    "DvsEvents",
    "decode_addresses",
    "events_to_frames",
    "find_class_files",
    "header_length",
    "parse_aedat",
    "prepare",
    "read_events",
]

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
SENSOR_SIZE = 128
#: The frame counts the builder prepares (one config each) and its default: the catalog's facts.
NUM_FRAMES_CHOICES = catalog.get_dataset("cifar10_dvs").frames
DEFAULT_NUM_FRAMES = catalog.get_dataset("cifar10_dvs").default_frames

X_MASK, X_SHIFT = 0x00FE, 1
Y_MASK, Y_SHIFT = 0x7F00, 8
P_MASK = 0x0001


class DvsEvents(NamedTuple):
    """Events of one recording, in file order.

    Attributes:
      t: timestamps, ``uint32`` ``[N]``.
      x: column in ``[0, 128)``, after the mirror ``127 − x``; ``int64`` ``[N]``.
      y: row in ``[0, 128)``; ``int64`` ``[N]``.
      p: polarity in ``{0, 1}``, after the inversion ``1 − p``; ``int64`` ``[N]``.
    """

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray


def header_length(data: bytes) -> int:
    """Return the byte length of the leading ``#`` header lines of an AEDAT file.

    Args:
      data: the file's bytes.

    Returns:
      The offset of the first line whose stripped text does not start with ``#`` (or is empty,
      or is not valid UTF-8): the start of the binary events.
    """
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end + 1
        try:
            text = data[pos:end].decode().strip()
        except UnicodeDecodeError:
            break
        if not text.startswith("#"):
            break
        pos = end
    return pos


def parse_aedat(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Split an AEDAT 3.1 byte string into raw addresses and timestamps.

    Args:
      data: the whole file: ``#`` header lines, then big-endian ``uint32`` pairs
        ``(address, timestamp)``.

    Returns:
      ``(addresses, timestamps)``, both ``uint32`` ``[N]`` in native byte order.
    """
    body = data[header_length(data) :]
    if len(body) % 8:
        raise ValueError(
            f"AEDAT event data must be (address, timestamp) pairs of big-endian uint32, "
            f"got {len(body)} bytes after the header (not a multiple of 8)"
        )
    words = np.frombuffer(body, dtype=">u4").astype(np.uint32)
    return words[0::2], words[1::2]


def decode_addresses(addresses: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode CIFAR10-DVS addresses into ``(x, y, p)`` with the authors' transforms.

    Args:
      addresses: raw ``uint32`` addresses ``[N]``.

    Returns:
      ``x = 127 − ((a & 0xFE) >> 1)``, ``y = (a & 0x7F00) >> 8``, ``p = 1 − (a & 1)``, each
      ``int64`` ``[N]``.
    """
    a = np.asarray(addresses).astype(np.int64)
    x = (SENSOR_SIZE - 1) - ((a & X_MASK) >> X_SHIFT)
    y = (a & Y_MASK) >> Y_SHIFT
    p = 1 - (a & P_MASK)
    return x, y, p


def read_events(source: bytes | str | os.PathLike) -> DvsEvents:
    """Read one CIFAR10-DVS recording.

    Args:
      source: the file's bytes or its path.

    Returns:
      :class:`DvsEvents` with the authors' x mirror and polarity inversion applied.
    """
    source = event_data.recording_bytes(source)
    addresses, timestamps = parse_aedat(source)
    x, y, p = decode_addresses(addresses)
    return DvsEvents(timestamps, x, y, p)


def events_to_frames(
    events: DvsEvents, num_frames: int, height: int = SENSOR_SIZE, width: int = SENSOR_SIZE
) -> np.ndarray:
    """Integrate events into ``num_frames`` count frames, splitting by event number.

    Args:
      events: the recording (only ``x``, ``y``, ``p`` are used; file order is time order).
      num_frames: ``T ≥ 1``.
      height: sensor rows.
      width: sensor columns.

    Returns:
      ``uint16`` ``[T, height, width, 2]``: frame ``j`` counts, per ``(y, x, p)``, the events
      ``[j·⌊N/T⌋, (j+1)·⌊N/T⌋)``; the last frame takes ``[(T−1)·⌊N/T⌋, N)``
      (SpikingJelly's ``split_by='number'``).
    """
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    n = np.shape(events.x)[0]
    if not (np.shape(events.y)[0] == n and np.shape(events.p)[0] == n):
        raise ValueError(
            f"x, y, p must have equal lengths, got {n}, {np.shape(events.y)[0]}, "
            f"{np.shape(events.p)[0]}"
        )
    # The one frame rule of the event datasets (ottt_jax.data.events): split by event number.
    stream = event_data.dvs_events(np.zeros(n, np.int64), events.x, events.y, events.p)
    if not np.array_equal(stream["x"], events.x) or not np.array_equal(stream["y"], events.y):
        raise ValueError(f"events outside the {height}x{width}x2 sensor")
    return event_data.bin_events(stream, (width, height, 2), num_frames, by="count")


_FILE_RE = re.compile(r"^cifar10_(?P<cls>[a-z]+)_(?P<index>\d+)\.aedat$")


def find_class_files(manual_dir: str | os.PathLike, class_name: str) -> list[tuple[int, str]]:
    """List one class's recordings, sorted by their numeric index.

    Args:
      manual_dir: the directory with one sub-folder per class (or, for a class whose folder is
        missing, any folder below ``manual_dir`` that holds its files, e.g. an extracted zip).
      class_name: one of :data:`CLASS_NAMES`.

    Returns:
      ``[(index, path), ...]`` for files ``cifar10_<class_name>_<index>.aedat``, by index.
    """
    root = os.fspath(manual_dir)
    candidates = [os.path.join(root, class_name)]
    if not os.path.isdir(candidates[0]):
        candidates = [
            dirpath
            for dirpath, _, filenames in sorted(os.walk(root))
            if any(f.startswith(f"cifar10_{class_name}_") for f in filenames)
        ]
    found: dict[int, str] = {}
    for folder in candidates:
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            match = _FILE_RE.match(name)
            if match and match["cls"] == class_name:
                found.setdefault(int(match["index"]), os.path.join(folder, name))
    return sorted(found.items())


TRAIN_PER_CLASS = 900
TEST_PER_CLASS = 100


@dataclasses.dataclass(eq=False)
class Cifar10DvsConfig(tfds.core.BuilderConfig):
    """A CIFAR10-DVS variant.

    Attributes:
      num_frames: frames per sample ``T``.
    """

    num_frames: int = DEFAULT_NUM_FRAMES


MANUAL_INSTRUCTIONS = """\
Download the ten class archives of CIFAR10-DVS (airplane.zip … truck.zip) from
https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671 and extract them so that
`manual_dir` holds one folder per class with its .aedat files:

  manual_dir/airplane/cifar10_airplane_0.aedat … cifar10_airplane_999.aedat
  manual_dir/automobile/…   (and so on for all ten classes)

Then run `python -m ottt_jax.data.prepare cifar10_dvs --manual_dir <manual_dir>`
(no TensorFlow needed).
"""


class Cifar10Dvs(tfds.core.GeneratorBasedBuilder):
    """CIFAR10-DVS as event-count frames (split by event number), per the authors' code."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "Count-split frames, uint16 [T, 128, 128, 2], 900/100 split."
    }
    BUILDER_CONFIGS: ClassVar[list[Cifar10DvsConfig]] = [
        Cifar10DvsConfig(name=f"frames_{t}", num_frames=t, description=f"{t} frames per sample")
        for t in NUM_FRAMES_CHOICES
    ]
    DEFAULT_BUILDER_CONFIG_NAME = f"frames_{DEFAULT_NUM_FRAMES}"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_INSTRUCTIONS

    def __init__(
        self,
        *,
        train_per_class: int = TRAIN_PER_CLASS,
        test_per_class: int = TEST_PER_CLASS,
        **kwargs,
    ):
        """Create the builder.

        Args:
          train_per_class: recordings ``0 … train_per_class−1`` (by file index) of each class
            go to ``train``. The real dataset uses 900; smaller values are for tests.
          test_per_class: the next ``test_per_class`` recordings of each class go to ``test``
            (100 for the real dataset).
          **kwargs: ``tfds`` builder arguments (``data_dir``, ``config``, ``file_format``...).
        """
        for field, value in (
            ("train_per_class", train_per_class),
            ("test_per_class", test_per_class),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} must be a positive int, got {value!r}")
        self.train_per_class = train_per_class
        self.test_per_class = test_per_class
        super().__init__(**kwargs)
        self._original_state.update(train_per_class=train_per_class, test_per_class=test_per_class)

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """Return this file (TFDS's own lookup needs ``importlib_resources``, often absent)."""
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        frame_shape = (config.num_frames, SENSOR_SIZE, SENSOR_SIZE, 2)
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "CIFAR10-DVS event streams integrated into event-count frames by event number "
                "(frames[t, y, x, p]; x mirrored, polarity inverted, as in the OTTT code)."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "frames": tfds.features.Tensor(
                        shape=frame_shape,
                        dtype=np.uint16,
                        encoding=tfds.features.Encoding.ZLIB,
                    ),
                    "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                    "index": tfds.features.Scalar(dtype=np.int32),
                }
            ),
            supervised_keys=("frames", "label"),
            homepage="https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671",
            citation=(
                "@article{li2017cifar10dvs, title={CIFAR10-DVS: An Event-Stream Dataset for "
                "Object Classification}, author={Li, Hongmin and Liu, Hanchao and Ji, Xiangyang "
                "and Li, Guoqi and Shi, Luping}, journal={Frontiers in Neuroscience}, "
                "volume={11}, pages={309}, year={2017}}"
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = dl_manager.manual_dir
        needed = self.train_per_class + self.test_per_class
        train, test = [], []
        for class_name in CLASS_NAMES:
            files = dict(find_class_files(manual_dir, class_name))
            missing = [i for i in range(needed) if i not in files]
            if missing:
                raise FileNotFoundError(
                    f"CIFAR10-DVS class {class_name!r}: {len(missing)} of the files "
                    f"cifar10_{class_name}_<i>.aedat for i = 0…{needed - 1} are missing under "
                    f"{manual_dir} (first: i = {missing[0]}).\n" + MANUAL_INSTRUCTIONS
                )
            for index in range(needed):
                item = (class_name, index, files[index])
                (train if index < self.train_per_class else test).append(item)
        return {"train": self._generate_examples(train), "test": self._generate_examples(test)}

    def _generate_examples(self, items: list[tuple[str, int, str]]) -> Iterator:
        num_frames = self.builder_config.num_frames
        for class_name, index, path in items:
            frames = events_to_frames(read_events(path), num_frames)
            yield f"{class_name}_{index}", {"frames": frames, "label": class_name, "index": index}


def prepare(
    manual_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    num_frames: int = DEFAULT_NUM_FRAMES,
    *,
    train_per_class: int = TRAIN_PER_CLASS,
    test_per_class: int = TEST_PER_CLASS,
) -> str:
    """Build CIFAR10-DVS as ``array_record`` files (no TensorFlow).

    Args:
      manual_dir: folder with the extracted class folders (see ``MANUAL_DOWNLOAD_INSTRUCTIONS``).
      data_dir: TFDS data directory (default: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      num_frames: frames per sample; one of ``NUM_FRAMES_CHOICES``.
      train_per_class: training recordings per class (900; fewer for tests).
      test_per_class: test recordings per class (100; fewer for tests).

    Returns:
      The directory the dataset was written to: ``<data_dir>/cifar10_dvs/frames_<T>/1.0.0``.
    """
    if num_frames not in NUM_FRAMES_CHOICES:
        raise ValueError(f"num_frames must be one of {NUM_FRAMES_CHOICES}, got {num_frames!r}")
    builder = Cifar10Dvs(
        config=f"frames_{num_frames}",
        data_dir=None if data_dir is None else os.fspath(data_dir),
        file_format="array_record",
        train_per_class=train_per_class,
        test_per_class=test_per_class,
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir))
    )
    return os.fspath(builder.data_dir)
