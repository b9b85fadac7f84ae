"""Weighted firing rates, the clamp mapping and the straight-through ``sr_map`` (Sec. 4.2).

See :mod:`ottt_jax.analysis` for the equations. Model-free: arrays in, arrays out.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = [
    "check_steps_decay",
    "clamp",
    "clamp_grad",
    "feedback_input_scale",
    "rate_normalizer",
    "sr_map",
    "weighted_rate",
]


def check_steps_decay(num_steps: Any, decay: Any, *, min_steps: int = 1) -> None:
    """Raise ``ValueError`` naming the field unless ``num_steps`` is an int and λ is in (0, 1].

    Args:
      num_steps: ``T``, an int ``>= min_steps``.
      decay: the leak ``λ``, a number in (0, 1].
      min_steps: the smallest ``T`` allowed.
    """
    if not isinstance(num_steps, (int, np.integer)) or isinstance(num_steps, bool):
        raise ValueError(f"num_steps must be an int >= {min_steps}, got {num_steps!r}")
    if num_steps < min_steps:
        raise ValueError(f"num_steps must be an int >= {min_steps}, got {num_steps!r}")
    if not isinstance(decay, (int, float)) or isinstance(decay, bool) or not 0 < decay <= 1:
        raise ValueError(f"decay (lambda) must be a number in (0, 1], got {decay!r}")


def rate_normalizer(num_steps: int, decay: float) -> float:
    """Return ``Λ[T] = Σ_{k=0}^{T−1} λ^k``, the weight sum of the weighted firing rate.

    Args:
      num_steps: ``T >= 0`` (``Λ[0] = 0``).
      decay: the leak ``λ`` in (0, 1].

    Returns:
      ``Λ[T]`` as a Python float (``T`` for λ = 1, ``(1 − λ^T)/(1 − λ)`` otherwise).
    """
    check_steps_decay(num_steps, decay, min_steps=0)
    return float(sum(float(decay) ** k for k in range(int(num_steps))))


def weighted_rate(trace: Array, num_steps: int, decay: float) -> Array:
    """Return the weighted firing rate ``a[T] = â[T] / Λ[T]`` from a neuron's trace.

    Args:
      trace: ``â[T]`` after T steps, any shape (``LIFState.trace``; the recursion
        ``â[t] = λ·â[t−1] + s[t]`` from zero).
      num_steps: ``T >= 1``.
      decay: the neuron's leak ``λ``.

    Returns:
      ``a[T] = Σ_τ λ^{T−τ} s[τ] / Σ_τ λ^{T−τ}``, same shape and dtype as ``trace``, in [0, 1]
      for 0/1 spikes.
    """
    check_steps_decay(num_steps, decay)
    trace = jnp.asarray(trace)
    return trace / jnp.asarray(rate_normalizer(num_steps, decay), trace.dtype)


def feedback_input_scale(num_steps: int, decay: float) -> float:
    """Return ``κ_T = Λ[T−1]/Λ[T]``: the weight of VGG-F's feedback in layer 1's average input.

    The feedback enters at steps ``t ≥ 1`` only (it lags one step), so the weighted average of
    ``fb_conv(up(F[t−1]))`` over T steps is ``κ_T · fb_conv(up(a_F[T−1]))`` (see the module
    docstring). ``κ_1 = 0``; ``κ_T → 1``.

    Args:
      num_steps: ``T >= 1``.
      decay: the leak ``λ``.

    Returns:
      ``κ_T`` as a Python float.
    """
    check_steps_decay(num_steps, decay)
    return rate_normalizer(num_steps - 1, decay) / rate_normalizer(num_steps, decay)


def clamp_grad(x: Array) -> Array:
    """Return ``σ'(x) = 1[0 < x < 1]``, the derivative of the clamp, in the dtype of ``x``."""
    x = jnp.asarray(x)
    return ((x > 0) & (x < 1)).astype(x.dtype)


@jax.custom_jvp
def clamp(x: Array) -> Array:
    """Return ``σ(x) = clamp(x, 0, 1)``, the closed-form spike-representation nonlinearity.

    Its derivative is exactly ``1[0 < x < 1]`` (0 at the kinks), see :func:`clamp_grad`.
    """
    return jnp.clip(x, 0, 1)


@clamp.defjvp
def _clamp_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return clamp(x), dx * clamp_grad(x)


@jax.custom_jvp
def _sr_map(z: Array, a_actual: Array) -> Array:
    return a_actual


@_sr_map.defjvp
def _sr_map_jvp(primals, tangents):
    (z, a), (dz, _) = primals, tangents
    return a, (dz * clamp_grad(z)).astype(a.dtype)


def sr_map(z: Array, a_actual: Array) -> Array:
    """Straight-through spike-representation map: value ``a_actual``, derivative ``σ'(z)``.

    Args:
      z: the pre-activation ``(W a_in + b)/V_th`` computed from the (actual) input rates, any
        shape.
      a_actual: the neuron's actual rate ``a[T]`` (:func:`weighted_rate`), the shape of ``z``.

    Returns:
      ``a_actual`` (exactly). Under ``jax.grad``/``jax.vjp``/``jax.jvp`` the derivative w.r.t.
      ``z`` is ``1[0 < z < 1]`` elementwise and w.r.t. ``a_actual`` zero: the same derivatives
      as ``stop_gradient(a_actual) + σ(z) − stop_gradient(σ(z))``.

    Chaining ``a^{l+1} = sr_map((W^l a^l + b^l)/V_th, a^{l+1}[T])`` through a network makes
    ``jax.grad`` return ``(∇L_sr)_sr`` of Eq. (6): every Jacobian evaluated at the actual rates.
    """
    z, a_actual = jnp.asarray(z), jnp.asarray(a_actual)
    if z.shape != a_actual.shape:
        raise ValueError(
            f"sr_map needs z and a_actual of the same shape, got {z.shape} and {a_actual.shape}"
        )
    if not jnp.issubdtype(a_actual.dtype, jnp.floating):
        raise ValueError(f"a_actual must be floating point, got dtype {a_actual.dtype}")
    return _sr_map(z.astype(a_actual.dtype), a_actual)
