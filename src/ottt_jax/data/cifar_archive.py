"""CIFAR-10 / CIFAR-100 from the official python-version archives, prepared without TensorFlow.

The archives (https://www.cs.toronto.edu/~kriz/cifar.html) hold pickled batches: CIFAR-10's
``cifar-10-batches-py/data_batch_1 … data_batch_5`` and ``test_batch``, CIFAR-100's
``cifar-100-python/train`` and ``test``. Each is a dict with byte-string keys: ``b'data'`` (uint8
``[N, 3072]``: the 1024 red, then green, then blue values of a 32×32 image in row-major order),
``b'labels'`` (CIFAR-10) or ``b'fine_labels'`` and ``b'coarse_labels'`` (CIFAR-100),
``b'batch_label'`` and ``b'filenames'``. The class names are in ``batches.meta``
(``b'label_names'``) and ``meta`` (``b'fine_label_names'``, ``b'coarse_label_names'``).

What is written is exactly TFDS's own ``cifar10`` / ``cifar100`` 3.0.2 layout (the builders
subclass TFDS's, so their features, names, version and example keys are TFDS's), so
``tfds.data_source`` and :mod:`ottt_jax.data` read it unchanged. The one difference is how the
PNG bytes are made: TFDS's builder hands the ``Image`` feature a NumPy array, which it encodes
with TensorFlow; here each image is encoded to PNG with Pillow and the ``Image`` feature stores
those bytes as they are (it takes encoded bytes without TensorFlow). PNG is lossless, so the
decoded pixels equal the archive's. Reading needs no TensorFlow either (TFDS decodes PNG with
Pillow or OpenCV).

The batches are unpickled with an unpickler that only builds NumPy arrays and builtins, so a
tampered archive cannot run code.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import tarfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.image_classification import cifar as tfds_cifar

__all__ = [
    "ARCHIVES",
    "Cifar10FromArchive",
    "Cifar100FromArchive",
    "CifarArchive",
    "archive_path",
    "encode_png",
    "images_from_rows",
    "prepare",
    "read_archive",
]


@dataclasses.dataclass(frozen=True)
class CifarArchive:
    """Where the batches of one dataset are in its python-version archive.

    Attributes:
      filename: the archive's file name, looked up in ``--manual_dir``.
      url: where to download it.
      folder: the folder inside the archive.
      train: the training batch files, in order.
      test: the test batch files.
      meta: the file with the class names.
      label_key: the batch key of the labels TFDS calls ``label``.
      names_key: the meta key of their class names.
      coarse_key: CIFAR-100's superclass labels (TFDS ``coarse_label``), else None.
      coarse_names_key: their names in the meta file.
    """

    filename: str
    url: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: bytes
    names_key: bytes
    coarse_key: bytes | None = None
    coarse_names_key: bytes | None = None


ARCHIVES = {
    "cifar10": CifarArchive(
        filename="cifar-10-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test=("test_batch",),
        meta="batches.meta",
        label_key=b"labels",
        names_key=b"label_names",
    ),
    "cifar100": CifarArchive(
        filename="cifar-100-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        folder="cifar-100-python",
        train=("train",),
        test=("test",),
        meta="meta",
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
        coarse_key=b"coarse_labels",
        coarse_names_key=b"coarse_label_names",
    ),
}

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickle NumPy arrays, lists, dicts, numbers and strings only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"a CIFAR batch may hold only NumPy arrays and Python lists, not {module}.{name}"
            )
        return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> dict:
    try:
        batch = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ValueError(f"{where} is not a CIFAR python-version batch: {e}") from e
    if not isinstance(batch, dict):
        raise ValueError(f"{where} is not a CIFAR python-version batch (not a dict)")
    return batch


def images_from_rows(rows: np.ndarray) -> np.ndarray:
    """Turn CIFAR rows (channel planes) into images.

    Args:
      rows: uint8 ``[N, 3072]``: per row the 1024 red values of a 32×32 image in row-major order,
        then the 1024 green, then the 1024 blue.

    Returns:
      uint8 ``[N, 32, 32, 3]`` (NHWC), ``images[n, y, x, c] = rows[n, 1024 c + 32 y + x]``.
    """
    rows = np.asarray(rows)
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3072:
        raise ValueError(f"CIFAR rows must be uint8 [N, 3072]; got {rows.dtype} {rows.shape}")
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def encode_png(image: np.ndarray) -> bytes:
    """Encode one uint8 ``[H, W, 3]`` image as PNG bytes with Pillow (lossless)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def read_archive(path: str | os.PathLike, name: str) -> tuple[dict[str, dict], dict[str, list]]:
    """Read the splits and class names of a python-version CIFAR archive.

    Args:
      path: ``cifar-10-python.tar.gz`` or ``cifar-100-python.tar.gz``.
      name: ``'cifar10'`` or ``'cifar100'``.

    Returns:
      ``(splits, names)``: ``splits[split]`` for ``'train'`` and ``'test'`` is a dict with
      ``image`` (uint8 ``[N, 32, 32, 3]``), ``label`` (int64 ``[N]``) and, for CIFAR-100,
      ``coarse_label``; ``names`` maps ``'label'`` (and ``'coarse_label'``) to the class names.

    Raises:
      ValueError: a batch is missing, malformed or has labels out of range.
    """
    spec = ARCHIVES[name]
    path = os.fspath(path)
    wanted = {f"{spec.folder}/{f}" for f in (*spec.train, *spec.test, spec.meta)}
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile() and member.name.lstrip("./") in wanted:
                    files[member.name.lstrip("./")] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(f"cannot read the CIFAR archive {path}: {e}") from e
    missing = sorted(wanted - set(files))
    if missing:
        raise ValueError(
            f"the CIFAR archive {path} lacks {', '.join(missing)}; expected the python version "
            f"{spec.filename} from {spec.url}"
        )
    meta = _unpickle(files[f"{spec.folder}/{spec.meta}"], f"{path}:{spec.meta}")
    names = {"label": [n.decode() for n in meta[spec.names_key]]}
    keys = {"label": spec.label_key}
    if spec.coarse_key is not None:
        names["coarse_label"] = [n.decode() for n in meta[spec.coarse_names_key]]
        keys["coarse_label"] = spec.coarse_key
    splits = {}
    for split, batch_files in (("train", spec.train), ("test", spec.test)):
        parts: dict[str, list] = {"image": [], **{k: [] for k in keys}}
        for f in batch_files:
            where = f"{path}:{spec.folder}/{f}"
            batch = _unpickle(files[f"{spec.folder}/{f}"], where)
            absent = [k for k in (b"data", *keys.values()) if k not in batch]
            if absent:
                raise ValueError(f"{where} lacks the keys {absent}")
            images = images_from_rows(batch[b"data"])
            parts["image"].append(images)
            for field, key in keys.items():
                labels = np.asarray(batch[key], np.int64)
                if labels.shape != (len(images),):
                    raise ValueError(
                        f"{where}: {len(labels)} {key.decode()} for {len(images)} images"
                    )
                if labels.size and not (0 <= labels.min() and labels.max() < len(names[field])):
                    raise ValueError(f"{where}: {key.decode()} outside [0, {len(names[field])})")
                parts[field].append(labels)
        splits[split] = {k: np.concatenate(v) for k, v in parts.items()}
    return splits, names


MANUAL_INSTRUCTIONS = """\
Download the python version of the archive into `manual_dir` (no need to extract it):

  CIFAR-10:  https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz
  CIFAR-100: https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz

Then run `python -m ottt_jax.data.prepare cifar10 --manual_dir <manual_dir>` (or cifar100);
no TensorFlow needed.
"""


def archive_path(name: str, manual_dir: str | os.PathLike) -> str:
    """Return the path of ``name``'s python-version archive in ``manual_dir``.

    Raises:
      FileNotFoundError: it is not there (the message says where to download it, and notes a
        binary-version archive found instead).
    """
    spec = ARCHIVES[name]
    path = os.path.join(os.fspath(manual_dir), spec.filename)
    if not os.path.isfile(path):
        binary = os.path.join(os.fspath(manual_dir), spec.filename.replace("python", "binary"))
        found = (
            " (found the binary version, which this reader does not take)"
            if os.path.isfile(binary)
            else ""
        )
        raise FileNotFoundError(f"{path} not found{found}.\n" + MANUAL_INSTRUCTIONS)
    return path


class _FromArchive:
    """The python-archive reading shared by the two builders (mixed in before TFDS's class)."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_INSTRUCTIONS

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """Return this file (TFDS's own lookup needs ``importlib_resources``, often absent)."""
        return epath.Path(__file__)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        try:
            manual_dir = dl_manager.manual_dir
        except AssertionError:  # TFDS asserts when the manual dir is unset, missing or empty
            manual_dir = None
        if manual_dir is not None:
            path = archive_path(self.name, manual_dir)
        else:
            path = os.fspath(dl_manager.download(ARCHIVES[self.name].url))
        splits, names = read_archive(path, self.name)
        for field, field_names in names.items():
            self.info.features[field].names = field_names
        return {split: self._generate_examples(f"{split}_", data) for split, data in splits.items()}

    def _generate_examples(self, split_prefix: str, data: dict) -> Iterator:
        """Yield TFDS's keys (the index) and records, the image as PNG bytes."""
        fields = [k for k in data if k != "image"]
        for index, image in enumerate(data["image"]):
            record = {k: int(data[k][index]) for k in fields}
            record["id"] = f"{split_prefix}{index:05d}"
            record["image"] = encode_png(image)
            yield index, record


class Cifar10FromArchive(_FromArchive, tfds_cifar.Cifar10, skip_registration=True):
    """TFDS ``cifar10`` 3.0.2 built from ``cifar-10-python.tar.gz`` without TensorFlow."""

    name = "cifar10"


class Cifar100FromArchive(_FromArchive, tfds_cifar.Cifar100, skip_registration=True):
    """TFDS ``cifar100`` 3.0.2 built from ``cifar-100-python.tar.gz`` without TensorFlow."""

    name = "cifar100"


_BUILDERS = {"cifar10": Cifar10FromArchive, "cifar100": Cifar100FromArchive}


def prepare(
    name: str,
    manual_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
) -> str:
    """Build ``cifar10`` or ``cifar100`` as ``array_record`` files (no TensorFlow).

    Args:
      name: ``'cifar10'`` or ``'cifar100'``.
      manual_dir: the folder holding the python-version archive (see ``MANUAL_INSTRUCTIONS``);
        None downloads it.
      data_dir: TFDS data directory (default: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).

    Returns:
      The directory written: ``<data_dir>/<name>/3.0.2``.
    """
    if name not in _BUILDERS:
        raise ValueError(f"name must be one of {sorted(_BUILDERS)}, got {name!r}")
    if manual_dir is not None:
        archive_path(name, manual_dir)  # a missing archive is an error, not a download
    builder = _BUILDERS[name](
        data_dir=None if data_dir is None else os.fspath(data_dir), file_format="array_record"
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=None if manual_dir is None else os.fspath(manual_dir)
        )
    )
    return os.fspath(builder.data_dir)
