"""Synaptic layers: scaled weight standardization (sWS), spike/trace-aware convs and linears.

Every layer takes ``(x, trace=None)`` and a ``mode`` attribute (a :class:`~ottt_jax.mode.Mode`,
or None: inherit it from the enclosing model's ``mode`` or from the rule tracing the step, see
:func:`layer_mode`), and decides itself: when a ``trace`` is given (the input is spikes) and
``mode.synapse == "trace"`` (OTTT), the layer applies the spike-forward / trace-gradient rule of
:mod:`ottt_jax.trace`; otherwise it is an ordinary layer (the first conv on the image, BPTT, SLTT's
instantaneous rule). Models pass the trace unconditionally. Layouts: activations NHWC, conv kernels
HWIO, dense ``[in, out]``.

Parameter names: ``kernel`` (the raw weight), ``gain`` (sWS, one per output channel), ``bias``.

**Hoisting the standardization out of the time loop.** Within one sequence the parameters of
OTTT_A, SLTT, SLTT-K and BPTT do not change, so the sWS of a kernel is loop-invariant. A layer
with sWS reads its already-standardized kernel from the ``standardized`` collection
(:data:`STANDARDIZED`) when that collection holds one, and standardizes ``kernel``/``gain``
itself otherwise. :func:`split_standardized` builds those variables from ``params`` once per
sequence; the rules in :mod:`ottt_jax.online` then accumulate the gradient w.r.t. the
standardized kernels and apply the sWS backward once, after the scan (see
:class:`ottt_jax.online.Hoist`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ottt_jax.mode import Mode, resolve_mode
from ottt_jax.pooling import avg_pool
from ottt_jax.trace import conv_spike_trace, dense_spike_trace, spike_trace

Array = jax.Array

__all__ = [
    "SPIKE_SCALE",
    "STANDARDIZED",
    "Conv",
    "Linear",
    "Traced",
    "avg_pool",
    "kaiming_normal_fan_out",
    "layer_mode",
    "split_standardized",
    "standardize_weight",
    "traced",
]

#: The constant ``Scale(2.74)`` applied to every neuron's spikes and trace: ``1/sqrt(p(1−p))`` with
#: ``p = P(N(0,1) > 1)``, the std of a spike from a unit-variance input.
SPIKE_SCALE = 2.74

#: The Flax collection an sWS layer reads its standardized kernel from (:func:`split_standardized`).
STANDARDIZED = "standardized"

#: Kaiming-normal initialization with fan_out and the ReLU gain, as in the authors' convs.
kaiming_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def standardize_weight(kernel: Array, gain: Array, eps: float = 1e-4) -> Array:
    """Return the scaled weight-standardized kernel.

    Args:
      kernel: ``[..., out]`` (HWIO conv kernel or ``[in, out]`` dense); the fan-in is every axis
        but the last.
      gain: ``[out]`` per-output-channel gain.
      eps: added to ``var · fan_in`` under the square root.

    Returns:
      ``gain · (W − mean(W)) / sqrt(var(W) · fan_in + eps)``, mean and **unbiased** variance over
      each output channel's fan-in (Brock et al., 2021; the authors' ``WSConv2d``).

    Raises:
      ValueError: the fan-in is 1 (a one-input Linear, a 1×1 conv on one channel): the unbiased
        variance of a single weight is 0/0, so every weight would be NaN.
    """
    axes = tuple(range(kernel.ndim - 1))
    fan_in = 1
    for a in axes:
        fan_in *= kernel.shape[a]
    if fan_in < 2:
        raise ValueError(
            f"weight_standardization=True needs a fan-in of at least 2 (kernel shape "
            f"{tuple(kernel.shape)} has fan-in {fan_in}): the unbiased variance of one weight is "
            "NaN. Use weight_standardization=False for a layer with a single input."
        )
    mean = jnp.mean(kernel, axis=axes, keepdims=True)
    var = jnp.var(kernel, axis=axes, keepdims=True, ddof=1)
    return gain * (kernel - mean) * lax.rsqrt(var * fan_in + eps)


def split_standardized(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return the variables that run a model with every sWS kernel standardized beforehand.

    An sWS layer of this module keeps ``kernel`` and ``gain`` side by side in its parameter dict
    (the names are this module's convention); every such dict loses both and its standardized
    kernel moves to the :data:`STANDARDIZED` collection at the same path, where :class:`Conv`
    and :class:`Linear` read it. Everything else (biases, plain kernels, other parameters) stays
    in ``params``.

    Args:
      params: the model's ``params`` tree (nested dicts).

    Returns:
      ``{'params': rest, STANDARDIZED: kernels}``, to pass to ``model.apply``; a differentiable
      function of ``params`` (``jax.vjp`` of it maps gradients w.r.t. the standardized kernels
      back to ``kernel`` and ``gain``).
    """

    def walk(tree):
        rest, std = {}, {}
        for name, value in tree.items():
            if not isinstance(value, Mapping):
                rest[name] = value
                continue
            here = {}
            if "kernel" in value and "gain" in value:  # an sWS layer
                here["kernel"] = standardize_weight(value["kernel"], value["gain"])
                value = {k: v for k, v in value.items() if k not in ("kernel", "gain")}
            rest[name], below = walk(value)
            here.update(below)
            if here:
                std[name] = here
        return rest, std

    rest, std = walk(params)
    return {"params": rest, STANDARDIZED: std}


def layer_mode(layer: nn.Module) -> Mode:
    """Return the mode a bound layer runs in, refusing one that disagrees with the rule.

    Args:
      layer: a bound Flax module with a ``mode`` attribute (None: inherit).

    Returns:
      The layer's own mode, else the nearest enclosing module's ``mode`` that is not None, else
      the active rule's (:func:`ottt_jax.mode.resolve_mode`), else :data:`~ottt_jax.mode.OTTT`.

    Raises:
      ValueError: naming the layer's path (``Model/Conv_1``) when its mode or its model's is
        not the mode of the rule tracing the step.
    """
    inherited, parent, top = None, layer.parent, layer
    while isinstance(parent, nn.Module):
        m = getattr(parent, "mode", None)
        if inherited is None and isinstance(m, Mode):
            inherited = m
        top, parent = parent, parent.parent
    where = "/".join((type(top).__name__, *layer.scope.path))
    return resolve_mode(layer.mode, f"layer {where}", inherited)


def _kernel(layer: nn.Module, shape: tuple[int, ...]) -> Array:
    """Return a Conv/Linear's kernel in its compute dtype, standardized when it uses sWS."""
    if layer.weight_standardization and layer.has_variable(STANDARDIZED, "kernel"):
        kernel = layer.get_variable(STANDARDIZED, "kernel")
        if tuple(kernel.shape) != shape:
            where = "/".join(layer.scope.path)
            raise ValueError(
                f"{where}: the standardized kernel has shape {tuple(kernel.shape)}, the layer "
                f"needs {shape}"
            )
    else:
        kernel = layer.param("kernel", layer.kernel_init, shape)
        if layer.weight_standardization:
            gain = layer.param("gain", nn.initializers.ones, (shape[-1],))
            kernel = standardize_weight(kernel, gain)
    return kernel.astype(layer.dtype)


class Conv(nn.Module):
    """2-D convolution, optionally sWS, applying the trace rule when a trace is passed.

    Attributes:
      features: output channels.
      kernel_size: square kernel size.
      strides: stride.
      padding: symmetric padding (int) or ``'SAME'``.
      weight_standardization: use sWS (``kernel``, ``gain``, ``bias``); else a plain conv.
      use_bias: add a bias (its gradient is plain ``g``, never a trace).
      kernel_init: initializer of the raw kernel.
      dtype: compute dtype (parameters stay float32).
      mode: the trace rule applies iff a trace is passed and ``mode.synapse == "trace"``; None
        inherits it (:func:`layer_mode`).
      op: the spike-forward / trace-gradient conv, with the signature of
        :func:`~ottt_jax.trace.conv_spike_trace` (None: that function); benchmarks compare
        implementations through it.
    """

    features: int
    kernel_size: int = 3
    strides: int = 1
    padding: int | str = 1
    weight_standardization: bool = True
    use_bias: bool = True
    kernel_init: Any = kaiming_normal_fan_out
    dtype: Any = jnp.float32
    mode: Mode | None = None
    op: Callable[..., Array] | None = None

    @nn.compact
    def __call__(self, x: Array, trace: Array | None = None, trace_scale: float = 1.0) -> Array:
        """Apply to ``x`` ``[B, H, W, Ci]``.

        Args:
          x: input ``[B, H, W, Ci]`` (spikes, or the image for a first layer).
          trace: the presynaptic trace of ``x``, same shape, or None.
          trace_scale: a constant the trace is multiplied by in the weight gradient.

        Returns:
          ``[B, Ho, Wo, features]``; with the trace rule ∇W is taken at ``trace_scale·trace``.
        """
        mode = layer_mode(self)
        k = self.kernel_size
        kernel = _kernel(self, (k, k, x.shape[-1], self.features))
        x = x.astype(self.dtype)
        strides = (self.strides, self.strides)
        # Without a trace the gradient is the ordinary one: the trace rule with trace := input.
        # Going through conv_spike_trace either way keeps the backward pass as forward
        # convolutions, which XLA:CPU runs far faster than autodiff's inside lax.scan.
        if trace is None or not mode.trace_rule:
            a, trace_scale = x, 1.0
        else:
            a = trace.astype(self.dtype)
        op = conv_spike_trace if self.op is None else self.op
        y = op(kernel, x, a, strides, self.padding, trace_scale)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (self.features,))
            y = y + bias.astype(self.dtype)
        return y


class Linear(nn.Module):
    """A dense layer, optionally sWS, applying the trace rule when a trace is passed.

    The defaults (no sWS, N(0, 0.01²)) are the authors' **readout** layer, whose outputs are the
    logits. For a **hidden** layer that feeds a LIF neuron, build it like the convs:
    ``Linear(n, weight_standardization=True, kernel_init=kaiming_normal_fan_out)``. sWS gives each
    output unit weights of mean 0 and ``Σ_i W_ij² ≈ 1`` whatever the init, so its input current
    has the scale of its input and the next LIF (threshold 1) fires; with N(0, 0.01²) the current
    on 64 pixels in [0, 1] has std ≈ 0.04, the membrane never reaches the threshold, no spike
    reaches the layers above and the network stays at chance.

    Attributes:
      features: output size.
      weight_standardization: use sWS (adds ``gain``); needs at least 2 input features.
      use_bias: add a bias.
      kernel_init: defaults to N(0, 0.01²), the authors' readout init (see above for hidden
        layers).
      dtype: compute dtype.
      mode: the trace rule applies iff a trace is passed and ``mode.synapse == "trace"``; None
        inherits it (:func:`layer_mode`).
    """

    features: int
    weight_standardization: bool = False
    use_bias: bool = True
    kernel_init: Any = nn.initializers.normal(0.01)
    dtype: Any = jnp.float32
    mode: Mode | None = None

    @nn.compact
    def __call__(self, x: Array, trace: Array | None = None, trace_scale: float = 1.0) -> Array:
        """Apply to ``x`` ``[B, in]``.

        Args:
          x: input ``[B, in]``.
          trace: the presynaptic trace of ``x``, same shape, or None.
          trace_scale: a constant the trace is multiplied by in the weight gradient.

        Returns:
          ``[B, features]``; with the trace rule ∇W is taken at ``trace_scale·trace``.
        """
        mode = layer_mode(self)
        kernel = _kernel(self, (x.shape[-1], self.features))
        x = x.astype(self.dtype)
        if trace is None or not mode.trace_rule:
            y = x @ kernel
        else:
            y = dense_spike_trace(kernel, x, trace.astype(self.dtype), trace_scale)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
        return y


def _apply_params(layer: nn.Module, params: Any, x: Array) -> Array:
    """``layer.apply({'params': params}, x)``: the affine map ``f(params, x)`` of a Flax layer."""
    return layer.apply({"params": params}, x)


def _unit(v: Any) -> bool:
    return v is None or v == 1 or tuple(v) in ((1,), (1, 1))


def _fast_op(layer: nn.Module, x: Array) -> str | None:
    """Return ``"dense"``/``"conv"`` when ``layer`` is a plain ``nn.Dense``/``nn.Conv`` that the
    package's spike/trace ops compute exactly (else None: the general :func:`spike_trace`)."""
    if type(layer) is nn.Dense and x.ndim == 2 and layer.dot_general is None:
        return "dense" if layer.dot_general_cls is None else None
    if type(layer) is not nn.Conv or x.ndim != 4:
        return None
    k = layer.kernel_size
    plain = (
        len(tuple(k) if not isinstance(k, int) else (k, k)) == 2
        and layer.feature_group_count == 1
        and _unit(layer.input_dilation)
        and _unit(layer.kernel_dilation)
        and layer.mask is None
        and layer.conv_general_dilated is None
        and layer.conv_general_dilated_cls is None
    )
    pad = layer.padding
    if isinstance(pad, str):  # lax's 'SAME' is the symmetric one at stride 1
        ok = pad.upper() == "VALID" or (pad.upper() == "SAME" and _unit(layer.strides))
    else:
        ok = isinstance(pad, int) or all(len(p) == 2 for p in pad)
    return "conv" if plain and ok else None


class Traced(nn.Module):
    """A plain Flax layer, affine in its input, made a synaptic layer of the rule (:func:`traced`).

    Attributes:
      layer: an unbound Flax module ``y = f(W, x)`` affine in ``x`` (``nn.Dense``, ``nn.Conv``,
        ``nn.DenseGeneral``, ...). Its parameters live in this module, under its own names.
      mode: as for :class:`Conv`; None inherits it (:func:`layer_mode`).
    """

    layer: nn.Module
    mode: Mode | None = None

    @nn.compact
    def __call__(self, x: Array, trace: Array | None = None, trace_scale: float = 1.0) -> Array:
        """Apply the layer to ``x``; with a trace under a trace mode, ``∇W`` is taken at it.

        Args:
          x: the input (spikes, or a real-valued input for a first layer), ``[B, ...]``.
          trace: the presynaptic trace of ``x``, same shape, or None.
          trace_scale: a constant the trace is multiplied by in the weight gradient.

        Returns:
          ``layer(x)``. Under ``mode.synapse == "trace"`` with a trace: ``∇W = Σ g·(c·â)ᵀ``
          (Eq. (5)); otherwise the layer's own gradient (SLTT's instantaneous rule, BPTT).
        """
        mode = layer_mode(self)
        inner = self.layer
        if self.is_initializing():
            init = inner.init(self.make_rng("params"), x)["params"]
            params = {k: self.param(k, lambda _, v=v: v) for k, v in init.items()}
        else:
            params = dict(self.variables.get("params", {}))
        use_trace = trace is not None and mode.trace_rule
        fast = _fast_op(inner, x)
        if fast is None:
            if not use_trace:
                return _apply_params(inner, params, x)
            a = trace.astype(x.dtype) * trace_scale
            return spike_trace(functools.partial(_apply_params, inner), params, x, a)
        kernel = params["kernel"]
        dtype = jnp.promote_types(x.dtype, kernel.dtype) if inner.dtype is None else inner.dtype
        kernel, x = kernel.astype(dtype), x.astype(dtype)
        a, scale = (trace.astype(dtype), trace_scale) if use_trace else (x, 1.0)
        if fast == "dense":
            y = dense_spike_trace(kernel, x, a, scale) if use_trace else x @ kernel
        else:  # the same op as Conv: its backward as forward convolutions
            strides = inner.strides if inner.strides is not None else 1
            strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
            y = conv_spike_trace(kernel, x, a, strides, inner.padding, scale)
        if inner.use_bias:
            y = y + params["bias"].astype(dtype)
        return y


def traced(layer: nn.Module, *, mode: Mode | None = None, name: str | None = None) -> Traced:
    """Wrap a plain Flax layer fed by spikes so it follows the rule (OTTT's trace rule, ...).

    Call the result as ``traced(nn.Dense(64))(spikes, trace)`` inside a compact method. The
    layer is cloned with ``parent=None`` (so Flax never binds it to the enclosing module: no
    ``NameInUseError``); its parameters live in the wrapper under their own names
    (``{"kernel", "bias"}``), like :class:`Linear`'s. A plain ``nn.Dense``/``nn.Conv`` (no
    groups, dilation or mask) runs through the same spike/trace ops as :class:`Linear`/
    :class:`Conv`, so it has their gradient and speed; any other layer affine in its input runs
    through :func:`~ottt_jax.trace.spike_trace`.

    Args:
      layer: the Flax layer, affine in its input (``y = A_W x + b_W``).
      mode: as for :class:`Conv` (None: inherit).
      name: the wrapper's name (its parameters' path), e.g. ``"fc1"``.

    Returns:
      A :class:`Traced` module called as ``(x, trace=None, trace_scale=1.0)``.

    Raises:
      ValueError: ``layer`` is not a Flax module.
    """
    if not isinstance(layer, nn.Module):
        raise ValueError(f"traced() expects a flax.linen Module, got {type(layer).__name__}")
    return Traced(layer=layer.clone(parent=None, name=None), mode=mode, name=name)
