"""Prepare datasets offline as TFDS ``array_record`` files.

Command line::

    python -m ottt_jax.data.prepare NAME [--manual_dir DIR] [--data_dir DIR] [--num_frames T]

* ``cifar10_dvs``: from the extracted AEDAT folders in ``--manual_dir``; no TensorFlow needed.
* ``nmnist`` / ``shd`` / ``dvs_gesture``: from the original ``.bin`` folders / ``.h5`` files /
  ``.aedat`` trials (or tonic's ``.npy`` folders) in ``--manual_dir``
  (:mod:`ottt_jax.data.nmnist`, :mod:`ottt_jax.data.shd`, :mod:`ottt_jax.data.dvs_gesture`);
  stored as events, binned to any T when read (``--num_frames`` is not used); no TensorFlow.
* ``cifar10`` / ``cifar100``: from the python-version archives ``cifar-10-python.tar.gz`` /
  ``cifar-100-python.tar.gz`` in ``--manual_dir`` (without it they are downloaded); no TensorFlow
  needed (:mod:`ottt_jax.data.cifar_archive` writes TFDS's own layout, PNG-encoded with Pillow).
* ``imagenet2012``: from ``ILSVRC2012_img_train.tar`` and ``ILSVRC2012_img_val.tar`` in
  ``--manual_dir``; TFDS encodes the images with TensorFlow, so install the ``prepare`` extra
  (``pip install "ottt_jax[prepare]"``, plus ``importlib_resources``, which TFDS 4.9 imports
  without declaring it) for this step only.
* ``digits``: nothing to do (it ships with scikit-learn).
"""

from __future__ import annotations

import argparse
import importlib.util
import os

import tensorflow_datasets as tfds

from ottt_jax.data.catalog import dataset_names, get_dataset_info

__all__ = ["main", "prepare_dataset"]


def prepare_dataset(
    name: str,
    *,
    manual_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    num_frames: int | None = None,
) -> str | None:
    """Build one dataset in the ``array_record`` format that the loaders read.

    Args:
      name: a registered dataset name (``dataset_names()``).
      manual_dir: folder with the manually downloaded archives / extracted files.
      data_dir: TFDS data directory (default: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      num_frames: frames per sample for ``cifar10_dvs`` (default 10).

    Returns:
      The directory written, or ``None`` for ``digits`` (nothing to prepare).
    """
    info = get_dataset_info(name, num_frames=num_frames)
    if name == "digits":
        return None
    if name == "cifar10_dvs":
        from ottt_jax.data import cifar10_dvs

        if manual_dir is None:
            raise ValueError(
                "manual_dir is required for cifar10_dvs:\n" + cifar10_dvs.MANUAL_INSTRUCTIONS
            )
        return cifar10_dvs.prepare(manual_dir, data_dir, info.num_frames)
    if name in ("nmnist", "shd", "dvs_gesture"):  # stored as events, binned when read
        module = importlib.import_module(f"ottt_jax.data.{name}")
        if manual_dir is None:
            raise ValueError(f"manual_dir is required for {name}:\n" + module.MANUAL_INSTRUCTIONS)
        return module.prepare(manual_dir, data_dir)
    if name in ("cifar10", "cifar100"):
        from ottt_jax.data import cifar_archive

        return cifar_archive.prepare(name, manual_dir, data_dir)
    missing = [m for m in ("tensorflow", "importlib_resources") if not importlib.util.find_spec(m)]
    if missing:
        raise ImportError(
            f"preparing {name!r} needs {' and '.join(missing)} (TFDS encodes the images with "
            "TensorFlow and locates its builder code with importlib_resources); install them for "
            'this step, e.g. `pip install "ottt_jax[prepare]" importlib_resources`. Training '
            "does not need them."
        )
    builder = tfds.builder(
        name,
        data_dir=None if data_dir is None else os.fspath(data_dir),
        file_format="array_record",
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=None if manual_dir is None else os.fspath(manual_dir)
        )
    )
    return os.fspath(builder.data_dir)


def main(argv: list[str] | None = None) -> None:
    """Run :func:`prepare_dataset` from the command line."""
    parser = argparse.ArgumentParser(description="Prepare a dataset as TFDS array_record files.")
    parser.add_argument("name", choices=dataset_names())
    parser.add_argument("--manual_dir", default=None)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--num_frames", type=int, default=None)
    args = parser.parse_args(argv)
    out = prepare_dataset(
        args.name, manual_dir=args.manual_dir, data_dir=args.data_dir, num_frames=args.num_frames
    )
    print(out if out is not None else f"{args.name}: nothing to prepare")


if __name__ == "__main__":
    main()
