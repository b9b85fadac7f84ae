"""Presynaptic traces and the spike-forward / trace-gradient rule.

OTTT (Eq. (4)–(5)) runs each synaptic layer forward on the current spikes ``s[t]`` but takes its
weight gradient at the presynaptic trace ``â[t] = λ â[t−1] + s[t]``. For a layer ``f(params, x)``
that is linear (affine) in its input ``x``:

* forward value: ``f(params, s)``;
* parameter cotangent: ``vjp_params f(params, â)`` — for ``x @ W`` this is ``â ⊗ g``; it flows
  through any weight transform inside ``f`` (e.g. weight standardization) evaluated at ``â``;
* bias cotangent: ``g`` (a bias does not depend on the input);
* input cotangent: ``Wᵀ g``, sent to the spikes ``s`` (then through the surrogate); the trace
  receives none.

:func:`spike_trace` implements this for any such ``f``. :func:`conv_spike_trace` is the same rule
for an NHWC/HWIO convolution whose backward pass is written as *forward* convolutions: inside
``lax.scan`` XLA:CPU runs the transposed convolutions that autodiff emits about 80× slower
(jax-ml/jax#12868), and ``scan(unroll=True)`` would lose the constant memory in T.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ottt_jax.vma import match_varying, varying_axes

Array = jax.Array

__all__ = [
    "conv_input_grad",
    "conv_spike_trace",
    "conv_weight_grad",
    "dense_spike_trace",
    "normalize_padding",
    "spike_trace",
    "update_trace",
]


def update_trace(trace: Array, spikes: Array, decay: float) -> Array:
    """Return the next presynaptic trace, carrying no gradient.

    Args:
      trace: ``â[t−1]``, any shape ``[B, ...]``.
      spikes: ``s[t]``, same shape.
      decay: the leak ``λ``.

    Returns:
      ``â[t] = λ·â[t−1] + s[t]`` (Eq. (4)), wrapped in ``stop_gradient``.
    """
    return lax.stop_gradient(decay * trace + spikes)


def _typed(cts, w, trace):
    """Type the cotangents of ``(w, spikes, trace)`` like their primals (:mod:`ottt_jax.vma`).

    Under ``shard_map(check_vma=True)`` a replicated weight receives the sum of its per-device
    cotangents and spikes replicated over an axis the weight is split on the sum of the
    per-shard ones, as JAX's autodiff of the plain layer gives them. The spikes vary like the
    trace (:func:`_check_pair`), which is the residual kept.
    """
    d_w, d_spikes, d_trace = cts
    trace_axes = varying_axes(trace)
    d_spikes, d_trace = match_varying((d_spikes, d_trace), trace_axes)
    return match_varying(d_w, varying_axes(w)), d_spikes, d_trace


# ---------------------------------------------------------------------------------------------
# General rule, for any layer affine in its input.
# ---------------------------------------------------------------------------------------------


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _spike_trace(f, params, spikes, trace):
    return f(params, spikes)


def _spike_trace_fwd(f, params, spikes, trace):
    return f(params, spikes), (params, trace)


def _spike_trace_bwd(f, res, g):
    params, trace = res
    # f is affine in x, so its input-VJP is the same at any point; evaluate it at the trace.
    _, vjp = jax.vjp(f, params, trace)
    d_params, d_spikes = vjp(g)  # JAX's VJP types them like params and trace (ottt_jax.vma)
    return d_params, d_spikes, jnp.zeros_like(trace)


_spike_trace.defvjp(_spike_trace_fwd, _spike_trace_bwd)


def spike_trace(f: Callable[[Any, Array], Array], params: Any, spikes: Array, trace: Array):
    """Apply ``f`` to spikes forward, with the parameter gradient taken at the trace.

    Args:
      f: ``f(params, x) -> y``, affine in ``x`` (dense, conv, conv with a weight transform, ...).
        Must be hashable (a module-level function or a ``functools.partial`` of one is fine).
      params: any pytree.
      spikes: ``s[t]``, ``[B, ...]``.
      trace: ``â[t]``, same shape and dtype as ``spikes``.

    Returns:
      ``f(params, spikes)``. Under autodiff: ``∂/∂params`` is that of ``f(params, trace)``, the
      input cotangent goes to ``spikes``, none to ``trace``. Eq. (5): ``∇W = g[t] â[t]ᵀ``.
    """
    _check_pair(spikes, trace)
    return _spike_trace(f, params, spikes, trace)


def dense_spike_trace(w: Array, spikes: Array, trace: Array, trace_scale: float = 1.0) -> Array:
    """Dense ``spikes @ w`` forward with the weight gradient ``c·traceᵀ g`` (Eq. (5)).

    Args:
      w: ``[in, out]``.
      spikes: ``[..., in]``.
      trace: ``[..., in]``.
      trace_scale: the constant ``c`` (see :func:`conv_spike_trace`).

    Returns:
      ``[..., out]``.
    """
    _check_pair(spikes, trace)
    return _dense_st(w, spikes, trace, float(trace_scale))


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _dense_st(w, spikes, trace, trace_scale):
    return spikes @ w


def _dense_st_fwd(w, spikes, trace, trace_scale):
    return spikes @ w, (w, trace)


def _dense_st_bwd(trace_scale, res, g):
    w, trace = res
    a2 = trace.reshape(-1, trace.shape[-1])
    dw = (a2.T @ g.reshape(-1, g.shape[-1])) * trace_scale
    cts = (dw.astype(w.dtype), (g @ w.T).astype(trace.dtype), jnp.zeros_like(trace))
    return _typed(cts, w, trace)


_dense_st.defvjp(_dense_st_fwd, _dense_st_bwd)


# ---------------------------------------------------------------------------------------------
# Convolution, with its backward pass as forward convolutions.
# ---------------------------------------------------------------------------------------------

_NHWC = ("NHWC", "HWIO", "NHWC")


def normalize_padding(padding, kernel_hw: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Return explicit ``((lo, hi), (lo, hi))`` padding for a conv with kernel ``kernel_hw``.

    Args:
      padding: ``'SAME'`` (symmetric for odd kernels), ``'VALID'``, an int, or pairs.
      kernel_hw: the kernel's ``(kh, kw)``.

    Returns:
      The per-spatial-dimension ``(lo, hi)`` padding that :func:`conv_spike_trace` applies.
    """
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return ((0, 0), (0, 0))
        if padding.upper() == "SAME":
            # symmetric 'SAME' for odd kernels (what the paper's layers use)
            return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_hw)
        raise ValueError(
            f"padding must be 'SAME', 'VALID' or ((lo, hi), (lo, hi)), got {padding!r}"
        )
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def _conv(x: Array, w: Array, strides, padding) -> Array:
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC)


def _dilate(x: Array, strides: tuple[int, int]) -> Array:
    """Insert ``stride − 1`` zeros between the spatial samples of an NHWC array."""
    sh, sw = strides
    if sh == 1 and sw == 1:
        return x
    b, h, w, c = x.shape
    out = jnp.zeros((b, (h - 1) * sh + 1, (w - 1) * sw + 1, c), x.dtype)
    return out.at[:, ::sh, ::sw, :].set(x)


def conv_input_grad(g: Array, w: Array, in_hw: tuple[int, int], strides, padding) -> Array:
    """Return ``∂⟨conv(x, w), g⟩/∂x`` as a forward convolution.

    Args:
      g: output cotangent ``[B, Ho, Wo, Co]``.
      w: kernel ``[kh, kw, Ci, Co]``.
      in_hw: the input's spatial size ``(H, W)``.
      strides: ``(sh, sw)``.
      padding: ``((lo, hi), (lo, hi))`` of the forward convolution.

    Returns:
      ``[B, H, W, Ci]``: ``g`` (zero-dilated by the stride) convolved with the spatially flipped,
      in/out-swapped kernel.
    """
    kh, kw = w.shape[:2]
    pads = []
    for k, (lo, hi), n, s, n_out in zip((kh, kw), padding, in_hw, strides, g.shape[1:3]):
        if lo > k - 1 or hi > k - 1:
            raise ValueError(f"padding {padding} larger than kernel size - 1 is not supported")
        rem = n + lo + hi - k - (n_out - 1) * s  # rows the forward conv never reached
        pads.append((k - 1 - lo, k - 1 - hi + rem))
    w_t = jnp.flip(w, (0, 1)).swapaxes(2, 3)
    return _conv(_dilate(g, strides), w_t, (1, 1), pads)


def conv_weight_grad(x: Array, g: Array, kernel_hw: tuple[int, int], strides, padding) -> Array:
    """Return ``∂⟨conv(x, w), g⟩/∂w`` as a forward convolution over transposed operands.

    The batch axis plays the role of the channels: ``x`` is read as ``[Ci, H, W, B]`` and ``g`` as
    a ``[Ho, Wo, B, Co]`` kernel, so the result is ``Σ_b x_patch ⊗ g``.

    Args:
      x: the input at which the gradient is taken (the trace), ``[B, H, W, Ci]``.
      g: output cotangent ``[B, Ho, Wo, Co]``.
      kernel_hw: ``(kh, kw)``.
      strides, padding: those of the forward convolution.

    Returns:
      ``[kh, kw, Ci, Co]``.
    """
    kh, kw = kernel_hw
    # Explicit transposes to the canonical NHWC/HWIO layouts: XLA:CPU runs non-canonical
    # dimension numbers through a slow path inside loops.
    lhs = jnp.transpose(x, (3, 1, 2, 0))  # [Ci, H, W, B]: batch ↔ channels
    rhs = jnp.transpose(_dilate(g, strides), (1, 2, 0, 3))  # [Ho', Wo', B, Co]
    out = _conv(lhs, rhs, (1, 1), padding)  # [Ci, kh', kw', Co]
    return jnp.transpose(out[:, :kh, :kw], (1, 2, 0, 3))


@partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _conv_st(w, spikes, trace, strides, padding, trace_scale):
    return _conv(spikes, w, strides, padding)


def _conv_st_fwd(w, spikes, trace, strides, padding, trace_scale):
    return _conv(spikes, w, strides, padding), (w, trace)


def _conv_st_bwd(strides, padding, trace_scale, res, g):
    w, trace = res
    dw = conv_weight_grad(trace, g, w.shape[:2], strides, padding)
    if trace_scale != 1.0:
        dw = dw * trace_scale
    dw = dw.astype(w.dtype)
    dx = conv_input_grad(g, w, trace.shape[1:3], strides, padding).astype(trace.dtype)
    return _typed((dw, dx, jnp.zeros_like(trace)), w, trace)


_conv_st.defvjp(_conv_st_fwd, _conv_st_bwd)


def conv_spike_trace(
    w: Array,
    spikes: Array,
    trace: Array,
    strides: Sequence[int] = (1, 1),
    padding: str | int | Sequence[tuple[int, int]] = "SAME",
    trace_scale: float = 1.0,
) -> Array:
    """2-D convolution of spikes, with the weight gradient taken at the trace.

    Args:
      w: kernel ``[kh, kw, Ci, Co]`` (HWIO), already transformed (e.g. standardized): autodiff
        carries ``∂L/∂w`` back through the transform.
      spikes: ``s[t]``, ``[B, H, W, Ci]`` (NHWC).
      trace: ``â[t]``, same shape and dtype as ``spikes``.
      strides: ``(sh, sw)``.
      padding: ``'SAME'`` (symmetric, odd kernels), ``'VALID'``, an int, or explicit pairs.
      trace_scale: a constant ``c``: the weight gradient is taken at ``c·trace``. Passing the
        raw neuron trace with ``c = 2.74`` (instead of a scaled copy) lets the backward pass reuse
        the trace buffer the scan carries anyway, rather than keeping a scaled copy alive.

    Returns:
      ``conv(spikes, w)``, ``[B, Ho, Wo, Co]``. Backward: ``∂w = c·conv_weight_grad(trace, g)``,
      ``∂spikes = conv_input_grad(g, w)``, ``∂trace = 0`` — Eq. (5) for convolutions.
    """
    _check_pair(spikes, trace)
    if spikes.ndim != 4 or w.ndim != 4 or spikes.shape[-1] != w.shape[2]:
        raise ValueError(
            f"conv_spike_trace expects spikes [B, H, W, Ci] and w [kh, kw, Ci, Co]; got spikes "
            f"{spikes.shape} and w {w.shape}"
        )
    strides = tuple(int(s) for s in strides)
    pad = normalize_padding(padding, w.shape[:2])
    return _conv_st(w, spikes, trace, strides, pad, float(trace_scale))


def _check_pair(spikes, trace) -> None:
    if jnp.shape(spikes) != jnp.shape(trace):
        raise ValueError(
            f"spikes and trace must have the same shape, got {jnp.shape(spikes)} and "
            f"{jnp.shape(trace)}"
        )
    s_axes, t_axes = varying_axes(spikes), varying_axes(trace)
    if s_axes != t_axes:
        raise ValueError(
            f"spikes and trace must vary over the same shard_map axes (a trace is built from "
            f"its spikes), got {sorted(s_axes, key=str)} and {sorted(t_axes, key=str)}: cast "
            f"the replicated one with jax.lax.pcast(x, axes, to='varying')"
        )
