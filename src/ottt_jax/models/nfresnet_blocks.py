"""Build NF-ResNet's residual blocks: the block spec, the block module and its size helpers.

:mod:`ottt_jax.models.nfresnet` re-exports :class:`BlockSpec` and :class:`NFBlock`;
:class:`~ottt_jax.models.nfresnet.NFResNet` builds its stages from them. One :class:`NFBlock` is
a pre-activation BasicBlock (3×3, 3×3) or Bottleneck (1×1, 3×3, 1×1 with 4× expansion): see the
structure notes of :mod:`ottt_jax.models.nfresnet`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ottt_jax.layers import SPIKE_SCALE, Conv
from ottt_jax.mode import OTTT, Mode
from ottt_jax.models.common import map_trace, spikes_per_sample
from ottt_jax.neuron import LIF, Neuron

Array = jax.Array

__all__ = ["EXPANSION", "SD_SCHEDULES", "BlockSpec", "NFBlock", "out_size"]

#: Output channels per ``planes`` of each block kind.
EXPANSION = {"basic": 1, "bottleneck": 4}
#: The stochastic-depth schedules ``NFResNet`` accepts.
SD_SCHEDULES = ("uniform", "linear")


class BlockSpec(NamedTuple):
    """Static description of one residual block.

    Attributes:
      name: the submodule name, ``layer{stage}_{index}`` (1-based stage, 0-based index).
      kind: ``'basic'`` or ``'bottleneck'``.
      in_features: channels of the block's input stream.
      planes: width of the residual branch's inner convs.
      out_features: channels of the block's output stream (``planes · expansion``).
      stride: spatial stride (2 at the first block of every stage but the first).
      has_downsample: whether the shortcut is a 1×1 sWS conv on ``h`` instead of the raw stream.
      beta: the input is divided by ``β = sqrt(expected variance)``.
      alpha: the residual branch is scaled by ``α`` (times ``skipinit_gain``).
      drop_rate: stochastic-depth rate of this block (0 when disabled).
    """

    name: str
    kind: str
    in_features: int
    planes: int
    out_features: int
    stride: int
    has_downsample: bool
    beta: float
    alpha: float
    drop_rate: float


def out_size(n: int, stride: int) -> int:
    """Spatial size after a conv/pool whose padding is ``(k − 1) / 2`` (every layer here)."""
    return (n - 1) // stride + 1


class NFBlock(nn.Module):
    """One pre-activation spiking NF-ResNet block (BasicBlock or Bottleneck), one time step.

    Attributes:
      kind: ``'basic'`` (3×3, 3×3) or ``'bottleneck'`` (1×1, 3×3, 1×1 with 4× expansion).
      planes: inner width.
      out_features: output channels.
      stride: stride of the block (on ``conv1`` for basic, ``conv2`` for bottleneck, and on the
        downsample).
      has_downsample: use a 1×1 sWS conv shortcut on ``h``.
      beta: input divisor β.
      alpha: residual scale α.
      neuron: the neuron (any :class:`~ottt_jax.neuron.Neuron`, already in ``mode``).
      mode: passed to every conv, which decides its weight-gradient rule from it.
      dtype: compute dtype.
    """

    kind: str
    planes: int
    out_features: int
    stride: int
    has_downsample: bool
    beta: float
    alpha: float
    neuron: Neuron = LIF()
    mode: Mode = OTTT
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, neurons: dict, keep: Array, x: Array) -> tuple[Array, dict, dict]:
        """Advance the block one step.

        Args:
          neurons: ``{'sn1': neuron state, 'sn2': ...[, 'sn3': ...]}``.
          keep: ``[B]`` the stochastic-depth draw (1 keeps the residual branch, 0 drops it).
          x: the residual stream ``[B, H, W, C_in]``.

        Returns:
          ``(out, new_neurons, stats)``: ``out = y · skipinit_gain · α · keep + shortcut``,
          ``[B, H', W', out_features]``; ``new_neurons`` keyed like ``neurons``; stats
          ``{'sn1': [B], ...}`` spikes per sample.
        """
        dt = self.dtype
        skip_gain = self.param("skipinit_gain", nn.initializers.zeros, ())
        x = x.astype(dt)
        new_neurons, stats = {}, {}

        def fire(key: str, inp: Array) -> tuple[Array, Array | None]:
            s, st = self.neuron(neurons[key], inp)
            new_neurons[key] = st
            stats[key] = spikes_per_sample(s)
            tr = map_trace(lambda t: t.astype(dt) * SPIKE_SCALE, st.trace)
            return s.astype(dt) * SPIKE_SCALE, tr

        def conv(name: str, k: int, stride: int, features: int):
            return Conv(features, k, stride, (k - 1) // 2, dtype=dt, mode=self.mode, name=name)

        h, h_tr = fire("sn1", x / self.beta)
        if self.has_downsample:
            shortcut = conv("downsample", 1, self.stride, self.out_features)(h, trace=h_tr)
        else:
            shortcut = x
        if self.kind == "basic":
            z = conv("conv1", 3, self.stride, self.planes)(h, trace=h_tr)
            h2, tr2 = fire("sn2", z)
            y = conv("conv2", 3, 1, self.out_features)(h2, trace=tr2)
        else:
            z = conv("conv1", 1, 1, self.planes)(h, trace=h_tr)
            h2, tr2 = fire("sn2", z)
            z = conv("conv2", 3, self.stride, self.planes)(h2, trace=tr2)
            h3, tr3 = fire("sn3", z)
            y = conv("conv3", 1, 1, self.out_features)(h3, trace=tr3)
        keep = keep.astype(dt)[:, None, None, None]
        out = y * skip_gain.astype(dt) * self.alpha * keep + shortcut
        return out, new_neurons, stats
