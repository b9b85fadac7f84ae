"""Average pooling of spikes and traces, with a gradient that stays one broadcast on TPU.

``avg_pool`` is a sum of the window's strided slices in row-major order (the order of a
reduce-window, bit for bit), not ``lax.reduce_window``; over non-overlapping tiles its backward is
a custom VJP (see :func:`avg_pool`). :mod:`ottt_jax.layers` re-exports it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["avg_pool"]


def avg_pool(x: Array, window: int = 2, stride: int | None = None, padding: int = 0) -> Array:
    """Average-pool an NHWC array (spikes and traces alike), counting padded zeros.

    Args:
      x: ``[B, H, W, C]``.
      window: square window size.
      stride: defaults to ``window``.
      padding: symmetric zero padding, included in the average (PyTorch's default).

    Returns:
      ``[B, Ho, Wo, C]``, ``Ho = (H + 2·padding − window) // stride + 1``: each output the sum of
      its window in row-major order, divided by ``window²``. Non-overlapping windows (stride =
      window, no padding) take their gradient through a custom VJP (a broadcast): reverse mode
      (``jax.grad``, ``jax.vjp``) only there, as for the neurons and traced layers.

    Raises:
      ValueError: ``x`` is not 4-D, or ``window``/``stride``/``padding`` is out of range.
    """
    stride = window if stride is None else stride
    if jnp.ndim(x) != 4:
        raise ValueError(f"avg_pool x must be [B, H, W, C] (NHWC), got shape {jnp.shape(x)}")
    for name, v, low in (("window", window, 1), ("stride", stride, 1), ("padding", padding, 0)):
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ValueError(f"avg_pool {name} must be an int >= {low}, got {v!r}")
    if min(x.shape[1:3]) + 2 * padding < window:
        raise ValueError(
            f"avg_pool window {window} is larger than the padded input {tuple(x.shape[1:3])} "
            f"+ 2·{padding}"
        )
    if padding == 0 and stride == window:
        return _tiled_avg_pool(x, window, tuple(x.shape[1:3]))
    if padding:
        x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    return _window_sum(x, window, stride) / (window * window)


def _window_sum(x: Array, window: int, stride: int) -> Array:
    """Return the sum of each window of ``x`` (unpadded), in row-major order."""
    ho = (x.shape[1] - window) // stride + 1
    wo = (x.shape[2] - window) // stride + 1
    # The window's k·k strided slices summed in row-major order (the order of a reduce-window),
    # not lax.reduce_window: XLA:CPU fuses a reduce-window into the next conv's YNNPACK fusion
    # and materializes every scalar it meets there (the 1/k², the spike scale, the leak λ) as a
    # full-size buffer (196 MiB live at once for VGG-11 at batch 128).
    total = None
    for i in range(window):
        for j in range(window):
            rows = slice(i, i + stride * (ho - 1) + 1, stride)
            part = x[:, rows, j : j + stride * (wo - 1) + 1 : stride]
            total = part if total is None else total + part
    return total


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _tiled_avg_pool(x: Array, window: int, hw: tuple[int, int]) -> Array:
    """Average-pool non-overlapping ``window × window`` tiles (stride = window, no padding).

    The forward is :func:`avg_pool`'s row-major window sum. The backward spreads each output's
    cotangent over its tile as one broadcast instead of autodiff's transpose of the k² strided
    slices, which is k² zero-interleaved pads of the input's size summed: the TPU compiler keeps
    all k² of them (4 × 64 MiB for VGG-11's first pool at batch 128 in float32) live at the step's
    peak. The values are the same: each input element gets exactly one ``g / k²``.
    """
    return _window_sum(x, window, window) / (window * window)


def _tiled_avg_pool_fwd(x: Array, window: int, hw: tuple[int, int]):
    return _tiled_avg_pool(x, window, hw), None


def _tiled_avg_pool_bwd(window: int, hw: tuple[int, int], _, g: Array):
    (h, w), (b, ho, wo, c) = hw, g.shape
    g = g / (window * window)
    tile = jnp.broadcast_to(g[:, :, None, :, None, :], (b, ho, window, wo, window, c))
    dx = tile.reshape(b, ho * window, wo * window, c)
    if (ho * window, wo * window) != (h, w):  # rows and columns no window reached
        dx = jnp.pad(dx, ((0, 0), (0, h - ho * window), (0, w - wo * window), (0, 0)))
    return (dx,)


_tiled_avg_pool.defvjp(_tiled_avg_pool_fwd, _tiled_avg_pool_bwd)
