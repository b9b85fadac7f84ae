"""NIR export and import: our spiking networks as ``nir.NIRGraph`` and back.

`NIR <https://neuroir.org>`_ (the Neuromorphic Intermediate Representation, ``pip install
"ottt_jax[nir]"``) describes a network as a graph of continuous-time nodes; simulators and chips
discretize it with their own step ``dt``. :func:`to_nir` exports :class:`~ottt_jax.models.vgg.
SpikingVGG`, :class:`~ottt_jax.models.rsnn.SpikingRSNN` or a :class:`SequentialSNN` (any
chain of our layers); :func:`from_nir` imports a graph as a :class:`SequentialSNN`, a model of
:mod:`ottt_jax.layers` trainable by every rule (``mode=rule.mode``).

**The LIF mapping.** NIR's LIF is ``τ dv/dt = (v_leak − v) + R·I``, spike ``z = [v > v_thr]``,
then ``v ← v_reset``. Its forward-Euler step ``dt`` is::

    v[t] = (1 − dt/τ)·v[t−1] + (dt/τ)·v_leak + (dt·R/τ)·I[t]

Ours (Eqs. (1)–(2)) is ``u[t] = λ·v[t−1] + I[t]``, ``s = H(u − V_th)``, ``v[t] = u − V_th·s``.
Matching term by term with ``v_leak = 0`` and ``dt·R/τ = 1``:

* ``λ = 1 − dt/τ``  ⇒  ``τ = dt / (1 − λ)``;
* ``dt·R/τ = 1``  ⇒  ``R = τ/dt = 1 / (1 − λ)``;
* ``v_leak = 0``, ``v_threshold = V_th``, ``v_reset = 0``.

(λ = 1, the IF neuron, exports as ``nir.IF`` with ``R = 1/dt``.) The paper's λ = 0.5, V_th = 1
with snnTorch's ``dt = 10⁻⁴`` gives ``τ = 2·10⁻⁴``, ``R = 2``. On import the same equations are
solved for the foreign node: ``λ = 1 − dt/τ`` and the input gain ``k = dt·R/τ`` and leak term
``(dt/τ)·v_leak`` are folded into the weight and bias of the layer(s) feeding the LIF (exact).

**The reset.** Our LIF resets by subtraction; NIR 1.0 has no subtractive reset (its issues
#137/#138). :func:`to_nir` writes the exact NIR LIF with ``v_reset = 0`` and records
``metadata = {"ottt_jax": {"reset": "subtract"}}`` on the node: :func:`from_nir` restores the
subtraction (the round trip is exact), while other tools read NIR's reset-to-zero, which differs
after every spike whose membrane exceeded ``V_th``; :func:`to_nir` warns about this. To export
exactly, train with :class:`ResetToZeroLIF` (``neuron=ResetToZeroLIF()`` in any model): its
nodes carry no such metadata and mean the same to every tool. A foreign LIF with ``v_reset = 0``
imports as :class:`ResetToZeroLIF`; another ``v_reset`` is refused. Spike times agree except on
``v = v_thr`` exactly (NIR fires on ``>``, ours on ``≥``).

**Layout.** NIR is channel-first (``Conv2d`` weight ``(C_out, C_in, kH, kW)``, ``Affine``
weight ``(out, in)``, shapes ``(C, H, W)``); our models are NHWC with HWIO and ``[in, out]``
kernels. ``Flatten`` flattens in NIR's ``(C, H, W)`` order. A graph whose input is 1-D ``(D,)``
takes frames of any shape, flattened (as the RSNN does). VGG's ``Scale(2.74)`` exports as
``nir.Scale``, its 2×2 pools as ``AvgPool2d``, global average pooling as ``AvgPool2d`` over the
whole map followed by ``Flatten``; sWS kernels export standardized.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ottt_jax.layers import SPIKE_SCALE, Conv, Linear, avg_pool, standardize_weight
from ottt_jax.mode import OTTT, Mode
from ottt_jax.models.common import check_mode, spikes_per_sample
from ottt_jax.neuron import LIF, LIFState
from ottt_jax.surrogate import Surrogate, get_surrogate
from ottt_jax.trace import update_trace

Array = jax.Array

__all__ = [
    "DEFAULT_DT",
    "ConvOp",
    "DenseOp",
    "FlattenOp",
    "LIFOp",
    "PoolOp",
    "ResetToZeroLIF",
    "ScaleOp",
    "SequentialSNN",
    "SequentialState",
    "from_nir",
    "lif_from_nir",
    "lif_to_nir",
    "to_nir",
]

#: The Euler step NIR graphs are written and read with by default (snnTorch's and spyx's).
DEFAULT_DT = 1e-4


def _nir():
    try:
        import nir
    except ImportError as err:
        raise ImportError(
            'ottt_jax.nir needs the nir package: pip install "ottt_jax[nir]"'
        ) from err
    return nir


# ----------------------------------------------------------------------------------------------
# The reset-to-zero LIF (exact NIR semantics).


@dataclasses.dataclass(frozen=True)
class ResetToZeroLIF:
    """A LIF neuron that resets to zero after a spike (NIR's LIF with ``v_reset = 0``).

    Same protocol and parameters as :class:`~ottt_jax.neuron.LIF`: ``u ← λ·v + x``;
    ``s = H(u − V_th)``; ``v ← u·(1 − s)`` (the reset detached, as the paper's); ``â ← λ·â + s``.
    Train with it when the network will be exported to NIR for another tool.
    """

    decay: float = 0.5
    v_th: float = 1.0
    surrogate: Surrogate | str = "sigmoid"
    mode: Mode = OTTT

    def __post_init__(self):
        LIF(decay=self.decay, v_th=self.v_th, mode=self.mode)  # the same value checks
        object.__setattr__(self, "surrogate", get_surrogate(self.surrogate))

    def with_mode(self, mode: Mode) -> ResetToZeroLIF:
        """Return this neuron in ``mode``."""
        return self if mode == self.mode else dataclasses.replace(self, mode=mode)

    def init_state(self, shape: tuple[int, ...], dtype=jnp.float32) -> LIFState:
        """Return zeros ``[B, ...]`` (trace None unless ``mode.keeps_trace``)."""
        z = jnp.zeros(shape, dtype)
        return LIFState(v=z, trace=z if self.mode.keeps_trace else None)

    def __call__(self, state: LIFState, x: Array) -> tuple[Array, LIFState]:
        """Advance one step on the input current ``x`` ``[B, ...]``; return ``(spikes, state)``."""
        v_prev = jax.lax.stop_gradient(state.v) if self.mode.detach_membrane else state.v
        u = self.decay * v_prev.astype(x.dtype) + x
        s = self.surrogate(u - self.v_th)
        v = (u * (1 - jax.lax.stop_gradient(s))).astype(state.v.dtype)
        if not self.mode.keeps_trace:
            return s, LIFState(v=v, trace=None)
        trace = update_trace(state.trace.astype(x.dtype), s, self.decay)
        return s, LIFState(v=v, trace=trace.astype(state.trace.dtype))


# ----------------------------------------------------------------------------------------------
# SequentialSNN: a chain of our layers (what from_nir builds; usable directly).


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


# ----------------------------------------------------------------------------------------------
# The LIF mapping.


def lif_to_nir(decay: float, v_th: float, shape: tuple[int, ...], *, dt: float, reset: str):
    """Return the NIR node of our LIF population (see the module docstring for the derivation).

    Args:
      decay: ``λ`` in (0, 1].
      v_th: ``V_th``.
      shape: the population's NIR shape (``(C, H, W)`` or ``(n,)``).
      dt: the Euler step the node is written for.
      reset: ``"subtract"`` (recorded in the node's metadata) or ``"zero"``.

    Returns:
      ``nir.LIF(τ = dt/(1−λ), R = 1/(1−λ), v_leak = 0, v_threshold = V_th, v_reset = 0)``, or
      ``nir.IF(R = 1/dt, V_th, 0)`` for ``λ = 1``.
    """
    nir = _nir()
    ones = np.ones(shape, np.float64)  # float64: 1 − dt/τ gives λ back to ~1e-16
    meta = {"ottt_jax": {"reset": "subtract"}} if reset == "subtract" else {}
    if decay == 1.0:
        return nir.IF(r=ones / dt, v_threshold=ones * v_th, v_reset=0 * ones, metadata=meta)
    tau = dt / (1.0 - decay)
    return nir.LIF(
        tau=ones * tau,
        r=ones / (1.0 - decay),
        v_leak=0 * ones,
        v_threshold=ones * v_th,
        v_reset=0 * ones,
        metadata=meta,
    )


def _uniform(node_name: str, field: str, values: Any) -> float:
    arr = np.asarray(values, np.float64)
    if arr.size == 0 or not np.all(arr == arr.flat[0]):
        raise ValueError(
            f"NIR node {node_name!r}: {field} must be equal for every neuron of the population "
            "(ottt_jax's LIF has one value per layer)"
        )
    return float(arr.flat[0])


def lif_from_nir(node_name: str, node: Any, *, dt: float) -> tuple[LIFOp, float, float]:
    """Return ``(LIFOp, k, c)`` for a foreign LIF/IF node: the input ``I`` of NIR becomes ``k·I +
    c`` of ours (``k = dt·R/τ``, ``c = (dt/τ)·v_leak``), folded into the feeding layer."""
    nir = _nir()
    v_reset = _uniform(node_name, "v_reset", node.v_reset)
    reset = node.metadata.get("ottt_jax", {}).get("reset") if node.metadata else None
    if reset is None:
        if v_reset != 0.0:
            raise ValueError(
                f"NIR node {node_name!r}: v_reset = {v_reset} is not representable (ottt_jax "
                "resets to zero or by subtraction)"
            )
        reset = "zero"
    v_th = _uniform(node_name, "v_threshold", node.v_threshold)
    r = _uniform(node_name, "r", node.r)
    if isinstance(node, nir.IF):
        return LIFOp(node_name, 1.0, v_th, reset), dt * r, 0.0
    tau = _uniform(node_name, "tau", node.tau)
    decay = 1.0 - dt / tau
    if not 0.0 < decay <= 1.0:
        raise ValueError(
            f"NIR node {node_name!r}: tau = {tau} with dt = {dt} gives λ = 1 − dt/τ = {decay}, "
            "outside (0, 1]; pass the dt the graph was written for"
        )
    v_leak = _uniform(node_name, "v_leak", node.v_leak)
    return LIFOp(node_name, decay, v_th, reset), dt * r / tau, dt / tau * v_leak


# ----------------------------------------------------------------------------------------------
# Export.


def _nchw(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)


def _export_ops(model: Any, params: Any, input_shape: tuple[int, ...]):
    """Return ``(ops, params, flatten_input, neuron)`` describing ``model`` as a chain."""
    from ottt_jax.models.rsnn import SpikingRSNN
    from ottt_jax.models.vgg import SpikingVGG

    if isinstance(model, SequentialSNN):
        return model.ops, params, model.flatten_input, None
    if isinstance(model, SpikingVGG):
        if model.feedback:
            raise ValueError("to_nir: VGG-F's feedback connection has no NIR export")
        ops, out = [], {}
        specs = iter(model.conv_specs())
        for v in model.cfg:
            if v == "M":
                ops.append(PoolOp("avg", 2, 2))
                continue
            name, lif, feat, _ = next(specs)
            p = params[name]
            kernel = standardize_weight(p["kernel"], p["gain"])
            out[name] = {"kernel": kernel, "bias": p["bias"]}
            ops += [ConvOp(name, feat, kernel.shape[0], 1, 1), LIFOp(lif), ScaleOp(SPIKE_SCALE)]
        h, w = (d // 2**model.num_pools for d in input_shape[:2])
        if h != w:
            raise ValueError(f"to_nir: global pooling needs a square map, got {h}x{w}")
        ops += [PoolOp("avg", h, h), FlattenOp()]
        ops.append(DenseOp("classifier_0", model.num_classes))
        out["classifier_0"] = dict(params["classifier_0"])
        return tuple(ops), out, False, model.neuron
    if isinstance(model, SpikingRSNN):
        ops, out = [], {}
        for i, lif in enumerate(model.neuron_names):
            p = params[f"fc{i + 1}"]
            kernel = p["kernel"]
            if model.weight_standardization:
                kernel = standardize_weight(kernel, p["gain"])
            out[f"fc{i + 1}"] = {"kernel": kernel, "bias": p["bias"]}
            ops += [DenseOp(f"fc{i + 1}", model.hidden[i]), LIFOp(lif, recurrent=model.recurrent)]
            if model.recurrent:
                out[f"{lif}_rec"] = dict(params[f"rec{i + 1}"])
        ops.append(DenseOp("readout", model.num_classes))
        out["readout"] = dict(params["readout"])
        return tuple(ops), out, True, model.neuron
    raise ValueError(
        f"to_nir exports SpikingVGG, SpikingRSNN or SequentialSNN, got {type(model).__name__}"
    )


def to_nir(model: Any, params: Any, input_shape: tuple[int, ...], *, dt: float = DEFAULT_DT) -> Any:
    """Export a trained model to a ``nir.NIRGraph``.

    Args:
      model: a :class:`~ottt_jax.models.vgg.SpikingVGG` (not VGG-F),
        :class:`~ottt_jax.models.rsnn.SpikingRSNN` or :class:`SequentialSNN`; its neuron a
        :class:`~ottt_jax.neuron.LIF` or :class:`ResetToZeroLIF`. Dropout is not exported.
      params: its ``params``.
      input_shape: one frame's shape ``(H, W, C)``.
      dt: the Euler step the LIF nodes are written for (module docstring).

    Returns:
      The graph: nodes ``input``, one per op (named as the parameters / neurons), ``output``.
      A subtractive-reset LIF warns (``UserWarning``) that tools other than ottt_jax read NIR's
      reset to zero.
    """
    nir = _nir()
    ops, p, flatten_input, neuron = _export_ops(model, params, tuple(input_shape))
    if neuron is not None:  # one neuron for every layer
        if isinstance(neuron, ResetToZeroLIF):
            reset = "zero"
        elif isinstance(neuron, LIF):
            reset = "subtract"
        else:
            raise ValueError(f"to_nir: neuron {type(neuron).__name__} has no NIR mapping")
        ops = tuple(
            dataclasses.replace(op, decay=neuron.decay, v_th=neuron.v_th, reset=reset)
            if isinstance(op, LIFOp)
            else op
            for op in ops
        )
    shape = (int(np.prod(input_shape)),) if flatten_input else tuple(input_shape)
    nodes = {"input": nir.Input(input_type={"input": np.array(_nchw(shape))})}
    edges, prev, counter = [], "input", 0
    subtract = []
    for op in ops:
        counter += 1
        if isinstance(op, ConvOp):
            h, w, _ = shape
            k = np.asarray(p[op.name]["kernel"], np.float32)
            bias = p[op.name].get("bias") if op.use_bias else None
            bias = np.zeros(op.features, np.float32) if bias is None else np.asarray(bias)
            node = nir.Conv2d(input_shape=(h, w), weight=k.transpose(3, 2, 0, 1),
                              stride=op.stride, padding=op.padding, dilation=1, groups=1,
                              bias=bias.astype(np.float32))  # fmt: skip
            name = op.name
            s, pad = op.stride, op.padding
            shape = ((h + 2 * pad - k.shape[0]) // s + 1, (w + 2 * pad - k.shape[1]) // s + 1,
                     op.features)  # fmt: skip
        elif isinstance(op, DenseOp):
            w = np.asarray(p[op.name]["kernel"], np.float32).T
            if op.use_bias:
                node = nir.Affine(weight=w, bias=np.asarray(p[op.name]["bias"], np.float32))
            else:
                node = nir.Linear(weight=w)
            name, shape = op.name, (op.features,)
        elif isinstance(op, ScaleOp):
            node = nir.Scale(scale=np.full(_nchw(shape), op.scale, np.float32))
            name = f"scale_{counter}"
        elif isinstance(op, PoolOp):
            cls = nir.AvgPool2d if op.kind == "avg" else nir.SumPool2d
            node = cls(kernel_size=np.array([op.window] * 2), stride=np.array([op.stride] * 2),
                       padding=np.array([op.padding] * 2))  # fmt: skip
            name = f"pool_{counter}"
            h, w, c = shape
            k, s, pad = op.window, op.stride, op.padding
            shape = ((h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1, c)
        elif isinstance(op, FlattenOp):
            node = nir.Flatten(input_type={"input": np.array(_nchw(shape))}, start_dim=0)
            name, shape = f"flatten_{counter}", (int(np.prod(shape)),)
        else:  # LIFOp
            node = lif_to_nir(op.decay, op.v_th, _nchw(shape), dt=dt, reset=op.reset)
            name = op.name
            if op.reset == "subtract":
                subtract.append(name)
            if op.recurrent:
                rec = f"{op.name}_rec"
                nodes[rec] = nir.Linear(weight=np.asarray(p[rec]["kernel"], np.float32).T)
                edges += [(name, rec), (rec, name)]
        nodes[name] = node
        edges.append((prev, name))
        prev = name
    nodes["output"] = nir.Output(output_type={"output": np.array(_nchw(shape))})
    edges.append((prev, "output"))
    if subtract:
        warnings.warn(
            f"to_nir: LIF nodes {subtract} reset by subtraction, which NIR 1.0 cannot express; "
            "they are written with v_reset = 0 and metadata {'ottt_jax': {'reset': 'subtract'}}: "
            "ottt_jax.nir.from_nir restores them exactly, other tools reset to zero. Train with "
            "ottt_jax.nir.ResetToZeroLIF for an export every tool reads exactly.",
            UserWarning,
            stacklevel=2,
        )
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


# ----------------------------------------------------------------------------------------------
# Import.


def _chain(graph: Any) -> tuple[list[str], set[str]]:
    """Return the node names from input to output, and the LIFs with a self-recurrent loop."""
    succ: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
    inputs = [n for n, v in graph.nodes.items() if type(v).__name__ == "Input"]
    if len(inputs) != 1:
        raise ValueError(f"from_nir: the graph must have one Input node, got {inputs}")
    order, recurrent, node = [], set(), inputs[0]
    while True:
        order.append(node)
        nxt = succ.get(node, [])
        # a loop node -> rec -> node is a recurrent weight, not the chain
        loops = [m for m in nxt if node in succ.get(m, []) and len(succ.get(m, [])) == 1]
        if loops:
            recurrent.add(node)
        nxt = [m for m in nxt if m not in loops]
        if not nxt:
            break
        if len(nxt) > 1:
            raise ValueError(f"from_nir: node {node!r} branches to {nxt}; only chains import")
        node = nxt[0]
        if node in order:
            raise ValueError(f"from_nir: the graph has a cycle through {node!r}")
    return order, recurrent


def from_nir(
    graph: Any,
    *,
    dt: float = DEFAULT_DT,
    mode: Mode = OTTT,
    surrogate: str = "sigmoid",
    dtype: Any = jnp.float32,
) -> tuple[SequentialSNN, dict[str, Any]]:
    """Import a NIR graph as a :class:`SequentialSNN` and its parameters.

    Args:
      graph: a ``nir.NIRGraph``: a chain ``Input → … → Output`` of ``Conv2d`` (square kernel,
        symmetric padding, no dilation or groups), ``Affine``, ``Linear``, ``Scale`` (one value),
        ``AvgPool2d``, ``SumPool2d``, ``Flatten``, ``LIF`` and ``IF`` nodes; a LIF may have a
        self loop through a ``Linear``/``Affine`` node (a recurrent weight). Each LIF must be
        fed by a ``Conv2d``/``Affine``/``Linear`` (its input gain is folded there).
      dt: the Euler step the graph's time constants are meant for (snnTorch, spyx: 1e-4).
      mode: the mode of the rule that will train the model.
      surrogate: the surrogate of the imported neurons.
      dtype: compute dtype.

    Returns:
      ``(model, params)``: run it with ``model.apply({"params": params}, state, x)``.
    """
    nir = _nir()
    order, recurrent = _chain(graph)
    ops: list[Any] = []
    params: dict[str, Any] = {}
    in_shape = np.asarray(graph.nodes[order[0]].input_type["input"]).tolist()
    flatten_input = len(in_shape) == 1
    for name in order[1:]:
        node = graph.nodes[name]
        if isinstance(node, nir.Output):
            break
        if isinstance(node, nir.Conv2d):
            w = np.asarray(node.weight, np.float32)
            pad, stride = node.padding, node.stride
            if isinstance(pad, str) or len(set(np.ravel(pad))) != 1:
                raise ValueError(f"from_nir: Conv2d {name!r} needs one integer padding")
            if len(set(np.ravel(stride))) != 1 or w.shape[2] != w.shape[3]:
                raise ValueError(f"from_nir: Conv2d {name!r} needs a square kernel and stride")
            if np.any(np.asarray(node.dilation) != 1) or node.groups != 1:
                raise ValueError(f"from_nir: Conv2d {name!r} with dilation/groups is unsupported")
            ops.append(ConvOp(name, w.shape[0], w.shape[2], int(np.ravel(stride)[0]),
                              int(np.ravel(pad)[0])))  # fmt: skip
            params[name] = {"kernel": w.transpose(2, 3, 1, 0), "bias": np.asarray(node.bias)}
        elif isinstance(node, (nir.Affine, nir.Linear)):
            w = np.asarray(node.weight, np.float32)
            has_bias = isinstance(node, nir.Affine)
            ops.append(DenseOp(name, w.shape[0], use_bias=True))
            bias = np.asarray(node.bias, np.float32) if has_bias else np.zeros(w.shape[0])
            params[name] = {"kernel": w.T, "bias": bias.astype(np.float32)}
        elif isinstance(node, nir.Scale):
            ops.append(ScaleOp(_uniform(name, "scale", node.scale)))
        elif isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            k, s, pad = (int(_uniform(name, f, getattr(node, f)))
                         for f in ("kernel_size", "stride", "padding"))  # fmt: skip
            ops.append(PoolOp("avg" if isinstance(node, nir.AvgPool2d) else "sum", k, s, pad))
        elif isinstance(node, nir.Flatten):
            ops.append(FlattenOp())
        elif isinstance(node, (nir.LIF, nir.IF)):
            lif, k, c = lif_from_nir(name, node, dt=dt)
            feeder = ops[-1] if ops else None
            if not isinstance(feeder, (ConvOp, DenseOp)):
                raise ValueError(
                    f"from_nir: LIF {name!r} must be fed by a Conv2d/Affine/Linear node"
                )
            params[feeder.name] = {
                "kernel": params[feeder.name]["kernel"] * k,
                "bias": params[feeder.name]["bias"] * k + c,
            }
            if name in recurrent:
                succ = [b for a, b in graph.edges if a == name]
                rec = next(m for m in succ if (m, name) in graph.edges)
                rw = np.asarray(graph.nodes[rec].weight, np.float32).T * k
                params[f"{name}_rec"] = {"kernel": rw}
                if isinstance(graph.nodes[rec], nir.Affine):  # its bias joins the feeder's
                    rb = np.asarray(graph.nodes[rec].bias, np.float32) * k
                    params[feeder.name]["bias"] = params[feeder.name]["bias"] + rb
                lif = dataclasses.replace(lif, recurrent=True)
            ops.append(lif)
        else:
            raise ValueError(f"from_nir: node {name!r} of type {type(node).__name__} unsupported")
    model = SequentialSNN(ops=tuple(ops), flatten_input=flatten_input, surrogate=surrogate,
                          mode=mode, dtype=dtype)  # fmt: skip
    params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)
    return model, params
