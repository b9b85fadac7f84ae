"""Build the spiking VGG's state types and static structure (no Flax, no parameters).

:mod:`ottt_jax.models.vgg` re-exports :data:`VGG11_CFG`, :class:`VGGFeedback` and
:class:`VGGState`; :class:`~ottt_jax.models.vgg.SpikingVGG` delegates to the functions here:

* :func:`check_cfg`: parse and validate a layout (``cfg``: conv widths and ``'M'`` pools);
* :func:`conv_specs`: the conv layers' official parameter names, neuron names, widths and pools;
* :func:`lif_shapes`: every neuron layer's ``(H, W, C)`` for an input shape;
* :func:`layer_sizes`, :func:`pool_map`, :func:`axis_fan`: the exact fan-out of the SOP count.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from ottt_jax.models.common import check_input_shape, conv_coverage

Array = jax.Array

__all__ = [
    "VGG11_CFG",
    "VGGFeedback",
    "VGGState",
    "axis_fan",
    "check_cfg",
    "conv_specs",
    "layer_sizes",
    "lif_shapes",
    "pool_map",
]

#: The authors' VGG-11 configuration ``'A'``: ints are 3×3 sWS conv widths, ``'M'`` a 2×2 avg pool.
VGG11_CFG: tuple = (64, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512)


class VGGFeedback(NamedTuple):
    """VGG-F's feedback buffer: the previous step's scaled last-block output ``F_{t−1}``.

    Attributes:
      spikes: ``2.74 · m · s`` pooled by the trailing pools, ``[B, h, w, C]`` (detached).
      trace: the same map of the trace ``â``, ``[B, h, w, C]`` (detached); None when the mode
        keeps no trace (``mode.keeps_trace`` False).
    """

    spikes: Array
    trace: Array | None


class VGGState(NamedTuple):
    """The state of one sequence of a :class:`SpikingVGG` (a pytree; None fields hold no leaves).

    Attributes:
      neurons: ``{lif_name: neuron state}`` over :attr:`SpikingVGG.neuron_names` (a ``LIFState(v,
        trace)`` for the default LIF), each leaf ``[B, H_l, W_l, C_l]``. Iterate it through
        ``neuron_names``: JAX transformations rebuild dicts in sorted key order.
      neuron_mask: ``{lif_name: [B, H_l, W_l, C_l]}`` per-sequence neuron-dropout masks (0 or
        ``1/(1−p)``), or None (no neuron dropout in this sequence).
      fc_mask: ``[B, C]`` the per-sequence dropout mask before the classifier, or None.
      feedback: VGG-F's :class:`VGGFeedback` ``F_{t−1}``; None for a VGG without feedback.
      step: VGG-F's step counter (int32 scalar, 0 at the first step: no feedback then); None
        without feedback.
    """

    neurons: dict[str, Any]
    neuron_mask: dict[str, Array] | None = None
    fc_mask: Array | None = None
    feedback: VGGFeedback | None = None
    step: Array | None = None


def check_cfg(cfg: Any) -> tuple:
    """Return ``cfg`` as a tuple after checking its entries (ValueError naming the bad entry)."""
    if isinstance(cfg, (str, bytes)) or not isinstance(cfg, (tuple, list)):
        raise ValueError(f"cfg must be a tuple of positive ints and 'M', got {cfg!r}")
    cfg = tuple(cfg)
    if not cfg:
        raise ValueError("cfg must not be empty; expected e.g. (64, 'M', 128)")
    for i, v in enumerate(cfg):
        is_int = isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
        if not (v == "M" if isinstance(v, str) else is_int and v > 0):
            raise ValueError(
                f"cfg[{i}] = {v!r} is invalid: entries must be positive ints (conv widths) or 'M' "
                f"(2x2 average pool)"
            )
    if not isinstance(cfg[0], (int, np.integer)):
        raise ValueError(f"cfg must start with a conv width (int), got cfg[0] = {cfg[0]!r}")
    return tuple(v if isinstance(v, str) else int(v) for v in cfg)


def pool_map(n: int, pools: int) -> tuple[np.ndarray, np.ndarray]:
    """Map each index of an axis of size n through ``pools`` 2×2 floor pools: (index, kept)."""
    idx = np.arange(n)
    kept = np.ones(n, bool)
    for _ in range(pools):
        kept &= idx < 2 * (n // 2)
        idx, n = idx // 2, n // 2
    return idx, kept


def axis_fan(n: int, pools: int, target: np.ndarray) -> np.ndarray:
    """Return, per index of an axis of size n, the ``target`` entry it reaches through the pools.

    Args:
      n: the axis size before the pools.
      pools: the number of 2×2 floor pools in between.
      target: per pooled index, its synapse count (e.g. from ``conv_coverage``).

    Returns:
      ``[n]``: ``target`` at each index's pooled position, 0 where a floor pool crops it.
    """
    idx, kept = pool_map(n, pools)
    return np.where(kept, target[np.minimum(idx, len(target) - 1)], 0)


def conv_specs(cfg: tuple, feedback: bool) -> list[tuple[str, str, int, int]]:
    """Return ``(param_name, neuron_name, features, pools_before)`` per conv of a checked ``cfg``.

    See :meth:`~ottt_jax.models.vgg.SpikingVGG.conv_specs`; ``feedback`` selects VGG-F's names.
    """
    convs, idx, pools, n = [], 0, 0, 0
    for v in cfg:
        if v == "M":
            idx, pools = idx + 1, pools + 1
            continue
        n += 1
        if feedback and n == 1:
            name = "conv1"
        else:
            name = f"features_{idx - 1 if feedback else idx}"
        convs.append((name, f"lif{n:02d}", v, pools))
        idx, pools = idx + 3, 0
    return convs


def lif_shapes(model: Any, input_shape: tuple[int, int, int]) -> dict[str, tuple[int, int, int]]:
    """Return a SpikingVGG's ``{lif_name: (H, W, C)}`` and validate ``input_shape``.

    Raises:
      ValueError: when a pool would see a map under 2×2, or VGG-F's H, W are not divisible by
        ``2**num_pools``.
    """
    h, w, _ = check_input_shape(input_shape)
    shapes = {}
    for _, lif, feat, pools in model.conv_specs():
        for _ in range(pools):
            if h < 2 or w < 2:
                raise ValueError(
                    f"input_shape {tuple(input_shape)} is too small for cfg {model.cfg}: a 2x2 "
                    f"pool would see a {h}x{w} map"
                )
            h, w = h // 2, w // 2
        shapes[lif] = (h, w, feat)
    for _ in range(model.num_tail_pools):
        if h < 2 or w < 2:
            raise ValueError(
                f"input_shape {tuple(input_shape)} is too small for cfg {model.cfg}: a 2x2 "
                f"pool would see a {h}x{w} map"
            )
        h, w = h // 2, w // 2
    if model.feedback:
        f = 2**model.num_pools
        if input_shape[0] % f or input_shape[1] % f:
            raise ValueError(
                f"feedback=True needs H and W divisible by 2**{model.num_pools} = {f} so the "
                f"upsampled feedback matches conv1's output; got input_shape {input_shape}"
            )
    return shapes


def layer_sizes(model: Any, input_shape: tuple[int, int, int]) -> dict[str, tuple[int, float]]:
    """Return a SpikingVGG's ``{lif_name: (num_neurons, fan_out)}`` (no parameters needed).

    The counting rules are :meth:`~ottt_jax.models.vgg.SpikingVGG.layer_sizes`'s.
    """
    shapes = lif_shapes(model, input_shape)
    convs = model.conv_specs()
    n_tail = model.num_tail_pools
    out = {}
    for j, (_, lif, _, _) in enumerate(convs):
        h, w, c = shapes[lif]
        if j + 1 < len(convs):
            _, nxt_lif, c_next, pools = convs[j + 1]
            h2, w2, _ = shapes[nxt_lif]
            rows = axis_fan(h, pools, conv_coverage(h2))
            cols = axis_fan(w, pools, conv_coverage(w2))
            fan = c_next * rows.sum() * cols.sum() / (h * w)
        else:
            rows = axis_fan(h, n_tail, np.ones(h // 2**n_tail, int))
            cols = axis_fan(w, n_tail, np.ones(w // 2**n_tail, int))
            fan = model.num_classes * rows.sum() * cols.sum() / (h * w)
            if model.feedback:
                s = 2**model.num_pools
                h0, w0 = int(input_shape[0]), int(input_shape[1])
                cov_r = conv_coverage(h0).reshape(-1, s).sum(1)  # per F row: its s×s block
                cov_c = conv_coverage(w0).reshape(-1, s).sum(1)
                rows = axis_fan(h, n_tail, cov_r)
                cols = axis_fan(w, n_tail, cov_c)
                fan += convs[0][2] * rows.sum() * cols.sum() / (h * w)
        out[lif] = (h * w * c, float(fan))
    return out
