"""Per-sample preprocessing and augmentation, as pure NumPy/Pillow functions.

Every random function takes an explicit ``np.random.Generator``; in the input pipeline that
generator comes from Grain and is derived from the loader seed and the record's position in the
sample stream, so a fixed seed gives the same augmented batches on every run (and after resuming).
Images are HWC ``uint8`` until normalization, which returns ``float32``; DVS samples are
``[T, H, W, 2]`` (time, height, width, polarity).

What the authors' code does (facts this module reproduces; see ``docs/datasets.md``):

* **CIFAR-10/100, train:** ``RandomCrop(32, padding=4)`` (zero padding), then torchtoolbox's
  ``Cutout()``, then ``RandomHorizontalFlip()``, ``ToTensor()`` and ``Normalize`` with
  mean (0.4914, 0.4822, 0.4465) and std (0.2023, 0.1994, 0.2010), for CIFAR-100 too.
  torchtoolbox's ``Cutout`` is random erasing, not DeVries' fixed hole: with probability 0.5 it
  picks an area fraction ``s ~ U(0.02, 0.4)`` and an aspect ratio ``r ~ U(0.4, 2.5)``, takes
  ``w = int(sqrt(s·H·W / r))``, ``h = int(sqrt(s·H·W·r))``, a top-left corner uniform over the
  positions that keep the box inside the image, and a value ``c ~ U{0, …, 255}``, and pastes the
  integer ``c`` into the PIL RGB image. Pillow reads an integer colour of a multi-band image as a
  packed ``0xAABBGGRR`` value, so the box becomes ``(c, 0, 0)``: red ``c``, green and blue 0.
  :func:`random_erase` reproduces exactly that (``cutout="reference"``). :func:`cutout_hole` is
  DeVries & Taylor's Cutout (one 16×16 hole, zeroed after normalization), offered as
  ``cutout="hole"``.
* **CIFAR, test:** normalization only.
* **ImageNet:** ``RandomResizedCrop(224)`` (scale (0.08, 1), ratio (3/4, 4/3), bilinear) and
  ``RandomHorizontalFlip()`` for training; ``Resize(256)`` and ``CenterCrop(224)`` for testing;
  mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225). Resizing uses Pillow's bilinear filter,
  as torchvision does on PIL images.
* **CIFAR10-DVS:** every frame ``[2, 128, 128]`` of float event counts goes through torchvision's
  ``ToPILImage()``, which computes ``(255·c)`` and casts it to ``uint8`` (PyTorch casts float to
  uint8 through int64, so the value wraps modulo 256: a count of 1 gives 255, 2 gives 254, 0
  gives 0), and makes a two-band ``"LA"`` image (band L = polarity 0, band A = polarity 1). Then
  ``Resize(48)`` resizes it with Pillow's bilinear filter; for ``"LA"`` images Pillow
  premultiplies L by A/255 before resampling and divides afterwards, so polarity-0 counts at
  pixels without polarity-1 events are lost. Training adds ``Padding(4)`` (zeros) and one
  ``RandomCrop(48)`` shared by all frames of the sample. Then ``ToTensor()`` (divide by 255) and
  ``Normalize`` with mean (0.2728, 0.1295), std (0.2225, 0.1290). :func:`dvs_reference_frames`
  reproduces the conversion and the resize bit for bit with Pillow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "DVS_MEAN",
    "DVS_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "center_crop",
    "cifar_eval",
    "cifar_train",
    "crop_with_padding",
    "cutout_hole",
    "digits_eval",
    "dvs_eval",
    "dvs_reference_frames",
    "dvs_train",
    "horizontal_flip",
    "imagenet_eval",
    "imagenet_train",
    "normalize",
    "random_crop",
    "random_erase",
    "random_resized_crop_box",
    "resize_shorter_side",
]

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DVS_MEAN = (0.2728, 0.1295)
DVS_STD = (0.2225, 0.1290)

CUTOUT_MODES = ("reference", "hole", "none")


def _check_hwc(image: np.ndarray, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"{name} must be [H, W, C], got shape {image.shape}")
    return image


def normalize(
    image: np.ndarray, mean: Sequence[float], std: Sequence[float], *, scale: float = 255.0
) -> np.ndarray:
    """Return ``(image / scale − mean) / std`` per channel, as float32.

    Args:
      image: ``[..., C]`` array (``uint8`` pixels, or floats already in [0, 1] with ``scale=1``).
      mean: ``C`` channel means (of ``image / scale``).
      std: ``C`` channel standard deviations.
      scale: the divisor that maps pixels to [0, 1] (``ToTensor``).

    Returns:
      float32 array of the same shape: torchvision's ``ToTensor()`` + ``Normalize(mean, std)``.
    """
    image = np.asarray(image)
    mean_arr = np.asarray(mean, np.float32)
    std_arr = np.asarray(std, np.float32)
    if image.shape[-1] != mean_arr.shape[0] or std_arr.shape != mean_arr.shape:
        raise ValueError(
            f"mean/std must have one entry per channel ({image.shape[-1]}), "
            f"got {len(mean_arr)} and {len(std_arr)}"
        )
    x = image.astype(np.float32) / np.float32(scale)
    return (x - mean_arr) / std_arr


def crop_with_padding(
    image: np.ndarray, top: int, left: int, size: int | tuple[int, int], padding: int
) -> np.ndarray:
    """Zero-pad the two spatial axes by ``padding`` and cut a window at ``(top, left)``.

    Args:
      image: ``[..., H, W, C]``; leading axes (e.g. time) share the same window.
      top: window row in the padded image, in ``[0, H + 2·padding − size]``.
      left: window column in the padded image, in ``[0, W + 2·padding − size]``.
      size: output ``(h, w)`` or a square side.
      padding: zero border added on every side.

    Returns:
      ``padded[..., top:top+h, left:left+w, :]`` with ``padded`` the zero-padded image.
    """
    image = np.asarray(image)
    h, w = (size, size) if isinstance(size, int) else size
    height, width = image.shape[-3], image.shape[-2]
    if not (0 <= top <= height + 2 * padding - h and 0 <= left <= width + 2 * padding - w):
        raise ValueError(
            f"crop window ({top}, {left}, {h}, {w}) is outside the padded "
            f"{height + 2 * padding}x{width + 2 * padding} image"
        )
    pad = [(0, 0)] * (image.ndim - 3) + [(padding, padding), (padding, padding), (0, 0)]
    padded = np.pad(image, pad)
    return padded[..., top : top + h, left : left + w, :]


def random_crop(image: np.ndarray, rng: np.random.Generator, size: int, padding: int) -> np.ndarray:
    """Apply ``RandomCrop(size, padding)``: one uniform window of the zero-padded image.

    Args:
      image: ``[..., H, W, C]``; all leading slices (e.g. DVS frames) get the same window.
      rng: the sample's random generator.
      size: square output side.
      padding: zero border added on every side before cropping.

    Returns:
      ``[..., size, size, C]``; the window corner is uniform over all valid positions.
    """
    image = np.asarray(image)
    height, width = image.shape[-3], image.shape[-2]
    top = int(rng.integers(0, height + 2 * padding - size + 1))
    left = int(rng.integers(0, width + 2 * padding - size + 1))
    return crop_with_padding(image, top, left, size, padding)


def horizontal_flip(image: np.ndarray) -> np.ndarray:
    """Mirror the width axis of ``[..., H, W, C]``: ``out[..., j, :] = image[..., W−1−j, :]``."""
    return np.asarray(image)[..., ::-1, :]


def random_erase(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.4),
    ratio: tuple[float, float] = (0.4, 1 / 0.4),
) -> np.ndarray:
    """Apply torchtoolbox's ``Cutout()`` as the authors' CIFAR pipeline runs it on a PIL image.

    Args:
      image: ``uint8`` ``[H, W, C]`` with ``C ≥ 1``.
      rng: the sample's random generator.
      p: probability of erasing.
      scale: range of the erased area as a fraction of ``H·W``.
      ratio: range of the box aspect ratio ``h / w``.

    Returns:
      A copy of ``image``. With probability ``p`` a box of ``h = int(sqrt(s·H·W·r))`` rows and
      ``w = int(sqrt(s·H·W / r))`` columns, ``s ~ U(scale)``, ``r ~ U(ratio)``, at a uniform
      position inside the image, is set to ``(c, 0, …, 0)`` with ``c ~ U{0, …, 255}``: Pillow's
      reading of an integer colour pasted into a multi-band image.
    """
    image = _check_hwc(image)
    out = image.copy()
    if rng.random() >= p:
        return out
    height, width = image.shape[:2]
    area = rng.uniform(*scale) * height * width
    r = rng.uniform(*ratio)
    w = min(int(math.sqrt(area / r)), width)
    h = min(int(math.sqrt(area * r)), height)
    left = int(rng.integers(0, width - w + 1))
    top = int(rng.integers(0, height - h + 1))
    value = int(rng.integers(0, 256))
    out[top : top + h, left : left + w, :] = 0
    out[top : top + h, left : left + w, 0] = value
    return out


def cutout_hole(image: np.ndarray, rng: np.random.Generator, length: int = 16) -> np.ndarray:
    """Apply DeVries & Taylor's Cutout: zero one ``length × length`` square, clipped at the border.

    Args:
      image: ``[H, W, C]`` (normalized floats in the CIFAR pipeline).
      rng: the sample's random generator.
      length: side of the square.

    Returns:
      A copy with rows ``[clip(cy − length//2), clip(cy + length//2))`` and the same columns
      around ``cx`` set to 0, where the centre ``(cy, cx)`` is uniform over all pixels.
    """
    image = _check_hwc(image)
    height, width = image.shape[:2]
    cy = int(rng.integers(0, height))
    cx = int(rng.integers(0, width))
    half = length // 2
    y1, y2 = max(cy - half, 0), min(cy + length - half, height)
    x1, x2 = max(cx - half, 0), min(cx + length - half, width)
    out = image.copy()
    out[y1:y2, x1:x2, :] = 0
    return out


def cifar_train(
    image: np.ndarray, rng: np.random.Generator, *, cutout: str = "reference"
) -> np.ndarray:
    """Augment and normalize one CIFAR training image.

    Args:
      image: ``uint8`` ``[32, 32, 3]``.
      rng: the sample's random generator.
      cutout: ``"reference"`` (torchtoolbox random erasing, the authors' code), ``"hole"``
        (DeVries' 16×16 hole after normalization) or ``"none"``.

    Returns:
      float32 ``[32, 32, 3]``: crop 32 with padding 4, cutout, horizontal flip with p = 0.5,
      normalize with the CIFAR mean/std, in the authors' order.
    """
    if cutout not in CUTOUT_MODES:
        raise ValueError(f"cutout must be one of {CUTOUT_MODES}, got {cutout!r}")
    image = _check_hwc(image)
    x = random_crop(image, rng, image.shape[0], 4)
    if cutout == "reference":
        x = random_erase(x, rng)
    if rng.random() < 0.5:
        x = horizontal_flip(x)
    x = normalize(x, CIFAR_MEAN, CIFAR_STD)
    if cutout == "hole":
        x = cutout_hole(x, rng, 16)
    return x


def cifar_eval(image: np.ndarray) -> np.ndarray:
    """Normalize one CIFAR image (``uint8`` ``[32, 32, 3]`` → float32)."""
    return normalize(_check_hwc(image), CIFAR_MEAN, CIFAR_STD)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``uint8`` ``[H, W, C]`` with Pillow's bilinear filter (antialiased when shrinking)."""
    squeeze = image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    out = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))
    return out[..., None] if squeeze else out


def random_resized_crop_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """Draw torchvision's ``RandomResizedCrop`` box.

    Args:
      height: image height.
      width: image width.
      rng: the sample's random generator.
      scale: range of the box area as a fraction of the image area.
      ratio: range of the aspect ratio ``w / h`` (sampled log-uniformly).

    Returns:
      ``(top, left, h, w)``: up to 10 tries of ``w = round(sqrt(A·a))``, ``h = round(sqrt(A/a))``
      with ``A ~ U(scale)·H·W`` and ``log a ~ U(log ratio)``; if none fits, the largest central box
      with its ratio clamped into ``ratio``.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def resize_shorter_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize ``uint8`` ``[H, W, C]`` so the shorter side is ``size`` (torchvision ``Resize(int)``).

    The longer side becomes ``int(size · long / short)``; bilinear (Pillow).
    """
    image = _check_hwc(image)
    height, width = image.shape[:2]
    if height <= width:
        new_h, new_w = size, int(size * width / height)
    else:
        new_h, new_w = int(size * height / width), size
    if (new_h, new_w) == (height, width):
        return image
    return _resize(image, new_h, new_w)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Cut the central ``size × size`` window (torchvision ``CenterCrop``: rounded offsets)."""
    image = _check_hwc(image)
    height, width = image.shape[:2]
    if height < size or width < size:
        raise ValueError(f"image {height}x{width} is smaller than the crop {size}")
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return image[top : top + size, left : left + size]


def imagenet_train(image: np.ndarray, rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """Augment and normalize one ImageNet training image.

    Args:
      image: ``uint8`` ``[H, W, 3]``.
      rng: the sample's random generator.
      size: output side.

    Returns:
      float32 ``[size, size, 3]``: random-resized crop (bilinear), horizontal flip with p = 0.5,
      ImageNet normalization.
    """
    image = _check_hwc(image)
    top, left, h, w = random_resized_crop_box(image.shape[0], image.shape[1], rng)
    x = _resize(np.ascontiguousarray(image[top : top + h, left : left + w]), size, size)
    if rng.random() < 0.5:
        x = horizontal_flip(x)
    return normalize(x, IMAGENET_MEAN, IMAGENET_STD)


def imagenet_eval(image: np.ndarray, size: int = 224, resize: int = 256) -> np.ndarray:
    """Resize the shorter side to ``resize``, centre-crop ``size`` and normalize (float32)."""
    x = center_crop(resize_shorter_side(image, resize), size)
    return normalize(x, IMAGENET_MEAN, IMAGENET_STD)


def dvs_reference_frames(counts: np.ndarray, size: int = 48) -> np.ndarray:
    """Convert event-count frames as the authors' ``ToPILImage()`` + ``Resize(size)`` do.

    Args:
      counts: non-negative integer counts ``[T, H, W, 2]`` (polarity last).
      size: output side.

    Returns:
      ``uint8`` ``[T, size, size, 2]``: per frame, ``(255·c) mod 256`` as a Pillow ``"LA"`` image
      (L = polarity 0, A = polarity 1), resized bilinearly by Pillow (which premultiplies L by
      the alpha band while resampling).
    """
    counts = np.asarray(counts)
    if counts.ndim != 4 or counts.shape[-1] != 2:
        raise ValueError(f"counts must be [T, H, W, 2], got shape {counts.shape}")
    if not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"counts must be integers, got dtype {counts.dtype}")
    if counts.size and counts.min() < 0:
        raise ValueError("counts must be non-negative")
    # (255·c) mod 256; uint16 arithmetic wraps mod 65536, a multiple of 256, so this is exact.
    wrapped = (counts.astype(np.uint16, copy=False) * np.uint16(255)).astype(np.uint8)
    out = np.empty((counts.shape[0], size, size, 2), np.uint8)
    for t, frame in enumerate(wrapped):
        pil = Image.fromarray(np.ascontiguousarray(frame))  # [H, W, 2] uint8 -> mode "LA"
        out[t] = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))
    return out


def dvs_train(
    counts: np.ndarray, rng: np.random.Generator, size: int = 48, padding: int = 4
) -> np.ndarray:
    """Preprocess and augment one CIFAR10-DVS training sample.

    Args:
      counts: integer event counts ``[T, 128, 128, 2]``.
      rng: the sample's random generator.
      size: frame side after resizing.
      padding: zero border of the random crop.

    Returns:
      float32 ``[T, size, size, 2]``: :func:`dvs_reference_frames`, one pad-``padding`` random
      crop shared by all frames, then normalization with the DVS mean/std.
    """
    frames = random_crop(dvs_reference_frames(counts, size), rng, size, padding)
    return normalize(frames, DVS_MEAN, DVS_STD)


def dvs_eval(counts: np.ndarray, size: int = 48) -> np.ndarray:
    """Preprocess one CIFAR10-DVS test sample: :func:`dvs_reference_frames` then normalize."""
    return normalize(dvs_reference_frames(counts, size), DVS_MEAN, DVS_STD)


def digits_eval(image: np.ndarray) -> np.ndarray:
    """Return the digits image (already pixels/16 in [0, 1]) as float32 ``[8, 8, 1]``."""
    return np.asarray(image, np.float32)
