"""scikit-learn's 8×8 handwritten digits as a fixed, offline train/test split.

The 1797 images ship with scikit-learn, so this dataset needs no download and no preparation. The
split is fixed: ``train_test_split(test_size=360, stratify=labels, random_state=0)`` gives 1437
training and 360 test images with the class proportions of the whole set. Pixels are divided by
16 (their maximum), giving float32 images in [0, 1] of shape ``[8, 8, 1]`` (NHWC).
"""

from __future__ import annotations

import functools

import numpy as np

from ottt_jax.data.sources import ArraySource

__all__ = ["NUM_TEST", "NUM_TRAIN", "DigitsSource", "load_digits_split"]

#: The split sizes (1797 images in all), written here only; the catalog reads them.
NUM_TEST = 360
NUM_TRAIN = 1797 - NUM_TEST
SPLIT_SEED = 0


@functools.cache
def _split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    labels = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=NUM_TEST, stratify=labels, random_state=SPLIT_SEED
    )
    for array in (x_train, x_test, y_train, y_test):
        array.setflags(write=False)
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


def load_digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)`` of the fixed digits split.

    Args:
      split: ``"train"`` (:data:`NUM_TRAIN` = 1437 samples) or ``"test"`` (:data:`NUM_TEST`).

    Returns:
      Read-only ``images`` float32 ``[N, 8, 8, 1]`` in [0, 1] (pixels/16) and ``labels`` int32
      ``[N]`` in [0, 10).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _split()[split]


class DigitsSource(ArraySource):
    """A random-access data source over one split of the digits, for Grain.

    Records are dicts ``{"image": float32 [8, 8, 1], "label": int32}``.
    """

    def __init__(self, split: str):
        self.split = split
        super().__init__(*load_digits_split(split))

    def __repr__(self) -> str:
        return f"DigitsSource(split={self.split!r})"

    def __reduce__(self):
        return (DigitsSource, (self.split,))
