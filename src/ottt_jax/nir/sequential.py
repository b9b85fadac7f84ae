"""SequentialSNN: a chain of our layers (what :func:`~ottt_jax.nir.from_nir` builds; usable
directly), and the ops it chains."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ottt_jax.layers import Conv, Linear, avg_pool
from ottt_jax.mode import OTTT, Mode
from ottt_jax.models.common import check_mode, spikes_per_sample
from ottt_jax.neuron import LIF
from ottt_jax.nir.neuron import ResetToZeroLIF

Array = jax.Array

__all__ = [
    "ConvOp",
    "DenseOp",
    "FlattenOp",
    "LIFOp",
    "PoolOp",
    "ScaleOp",
    "SequentialSNN",
    "SequentialState",
]


@dataclasses.dataclass(frozen=True)
class ConvOp:
    """A plain conv (:class:`~ottt_jax.layers.Conv`, no sWS): square kernel, symmetric padding."""

    name: str
    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = True


@dataclasses.dataclass(frozen=True)
class DenseOp:
    """A plain dense layer (:class:`~ottt_jax.layers.Linear`, no sWS)."""

    name: str
    features: int
    use_bias: bool = True


@dataclasses.dataclass(frozen=True)
class LIFOp:
    """A LIF population fed by the op before it (and by ``R·s[t−1]`` when ``recurrent``).

    ``reset``: ``"subtract"`` (:class:`~ottt_jax.neuron.LIF`) or ``"zero"``
    (:class:`ResetToZeroLIF`). The recurrent weight is the parameter ``{name}_rec``; as in
    :class:`~ottt_jax.models.rsnn.SpikingRSNN` its OTTT gradient is taken at the trace of the
    population's own previous spikes.
    """

    name: str
    decay: float = 0.5
    v_th: float = 1.0
    reset: str = "subtract"
    recurrent: bool = False


@dataclasses.dataclass(frozen=True)
class ScaleOp:
    """Multiply the signal (and its trace) by a constant."""

    scale: float


@dataclasses.dataclass(frozen=True)
class PoolOp:
    """Average (``"avg"``) or sum (``"sum"``) pooling over square windows."""

    kind: str
    window: int
    stride: int
    padding: int = 0


@dataclasses.dataclass(frozen=True)
class FlattenOp:
    """Flatten ``[B, H, W, C]`` in ``(C, H, W)`` order (NIR's), ``[B, D]`` unchanged."""


class SequentialState(NamedTuple):
    """State of a :class:`SequentialSNN`: neuron states and previous spikes of recurrent ones."""

    neurons: dict[str, Any]
    spikes: dict[str, Array]


class SequentialSNN(nn.Module):
    """A chain of ops (:class:`ConvOp`, :class:`DenseOp`, :class:`LIFOp`, :class:`ScaleOp`,
    :class:`PoolOp`, :class:`FlattenOp`), one time step per call, trainable by every rule.

    The output of the last op is the logits. A signal keeps its presynaptic trace through
    ``Scale``, pools and ``Flatten`` (scaled, pooled, flattened alike, as VGG does), so a layer
    fed by spikes takes its OTTT weight gradient at their trace.

    Attributes:
      ops: the chain.
      flatten_input: flatten each frame to ``[B, D]`` first (a graph with a 1-D input).
      surrogate: the neurons' surrogate.
      mode: the :class:`~ottt_jax.mode.Mode` of the training rule.
      dtype: compute dtype.
    """

    ops: tuple = ()
    flatten_input: bool = False
    surrogate: str = "sigmoid"
    mode: Mode = OTTT
    dtype: Any = jnp.float32

    def __post_init__(self):
        check_mode(self.mode)
        if not self.ops:
            raise ValueError("SequentialSNN.ops must hold at least one op")
        for op in self.ops:
            if isinstance(op, LIFOp) and op.reset not in ("subtract", "zero"):
                raise ValueError(f"LIFOp {op.name!r}: reset must be 'subtract' or 'zero'")
            if isinstance(op, PoolOp) and op.kind not in ("avg", "sum"):
                raise ValueError(f"PoolOp.kind must be 'avg' or 'sum', got {op.kind!r}")
        super().__post_init__()

    @property
    def neuron_names(self) -> tuple[str, ...]:
        """Return the LIF op names in chain order."""
        return tuple(op.name for op in self.ops if isinstance(op, LIFOp))

    def neuron(self, op: LIFOp):
        """Return the neuron of a :class:`LIFOp` in this model's mode."""
        cls = LIF if op.reset == "subtract" else ResetToZeroLIF
        return cls(decay=op.decay, v_th=op.v_th, surrogate=self.surrogate, mode=self.mode)

    def init_state(self, batch_size, input_shape, *, key=None, train=True, dtype=jnp.float32):
        """Return the zero state for frames of ``input_shape``."""
        del key, train
        shapes = self.layer_shapes(input_shape)
        neurons, spikes = {}, {}
        for op in self.ops:
            if isinstance(op, LIFOp):
                shape = (batch_size, *shapes[op.name])
                neurons[op.name] = self.neuron(op).init_state(shape, dtype)
                if op.recurrent:
                    spikes[op.name] = jnp.zeros(shape, dtype)
        return SequentialState(neurons, spikes)

    def layer_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Return ``{lif_name: shape without batch}`` (NHWC or ``(n,)``)."""
        shape = (int(np.prod(input_shape)),) if self.flatten_input else tuple(input_shape)
        out = {}
        for op in self.ops:
            if isinstance(op, ConvOp):
                h, w, _ = shape
                k, s, p = op.kernel_size, op.stride, op.padding
                shape = ((h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1, op.features)
            elif isinstance(op, DenseOp):
                shape = (op.features,)
            elif isinstance(op, PoolOp):
                h, w, c = shape
                k, s, p = op.window, op.stride, op.padding
                shape = ((h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1, c)
            elif isinstance(op, FlattenOp):
                shape = (int(np.prod(shape)),)
            elif isinstance(op, LIFOp):
                out[op.name] = shape
        return out

    def layer_sizes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, float]]:
        """Return ``{lif_name: (neurons, fan_out)}``; the fan-out is not derived (1.0)."""
        return {n: (int(np.prod(s)), 1.0) for n, s in self.layer_shapes(input_shape).items()}

    @nn.compact
    def __call__(self, state: SequentialState, x: Array, *, return_stats: bool = False):
        """Run one step; return ``(logits, state)`` or ``((logits, stats), state)``."""
        if not isinstance(state, SequentialState):
            raise ValueError(f"state must be a SequentialState, got {type(state).__name__}")
        a = x.astype(self.dtype)
        if self.flatten_input:
            a = a.reshape(a.shape[0], -1)
        trace = None
        neurons, spikes, stats = {}, {}, {}
        for op in self.ops:
            if isinstance(op, ConvOp):
                a = Conv(op.features, op.kernel_size, op.stride, op.padding,
                         weight_standardization=False, use_bias=op.use_bias, dtype=self.dtype,
                         mode=self.mode, name=op.name)(a, trace)  # fmt: skip
                trace = None
            elif isinstance(op, DenseOp):
                a = Linear(op.features, use_bias=op.use_bias, dtype=self.dtype, mode=self.mode,
                           name=op.name)(a, trace)  # fmt: skip
                trace = None
            elif isinstance(op, ScaleOp):
                a = a * op.scale
                trace = None if trace is None else trace * op.scale
            elif isinstance(op, PoolOp):
                factor = op.window**2 if op.kind == "sum" else 1

                def pool(v, op=op, factor=factor):
                    return avg_pool(v, op.window, op.stride, op.padding) * factor

                a, trace = pool(a), None if trace is None else pool(trace)
            elif isinstance(op, FlattenOp):

                def flat(v):
                    return v.transpose(0, 3, 1, 2).reshape(v.shape[0], -1) if v.ndim == 4 else v

                a, trace = flat(a), None if trace is None else flat(trace)
            elif isinstance(op, LIFOp):
                own = state.neurons[op.name]
                if op.recurrent:
                    prev = state.spikes[op.name].astype(self.dtype)
                    if self.mode.detach_membrane:
                        prev = jax.lax.stop_gradient(prev)
                    a = a + Linear(a.shape[-1], use_bias=False, dtype=self.dtype, mode=self.mode,
                                   name=f"{op.name}_rec")(prev, own.trace)  # fmt: skip
                s, neurons[op.name] = self.neuron(op)(own, a)
                if op.recurrent:
                    spikes[op.name] = s.astype(state.spikes[op.name].dtype)
                stats[op.name] = spikes_per_sample(s)
                a, trace = s, neurons[op.name].trace
        new_state = SequentialState(neurons, spikes)
        return ((a, stats), new_state) if return_stats else (a, new_state)
