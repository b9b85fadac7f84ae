"""Input guards of the rules: the time layout of a sequence and the runtime (debug) checks."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ottt_jax.step import check_num_steps

PyTree = Any

__all__ = ["check_finite", "raise_unless", "time_major_inputs"]


def time_major_inputs(inputs: PyTree, targets: PyTree, num_steps: Any, time_axis: int | None):
    """Return ``(num_steps, inputs)`` with ``inputs`` time-major; refuse an ambiguous layout.

    Args:
      inputs: a static input ``[B, ...]`` (with ``num_steps``) or a sequence.
      targets: unused here (the batch check is :func:`ottt_jax.online.check_time_major`'s).
      num_steps: ``T`` for a static input (any integer type), or None for a sequence.
      time_axis: for a sequence, 0 (time-major ``[T, B, ...]``), 1 (batch-major, transposed
        here) or None (time-major, refused when the first two axes are equal, B == T).

    Returns:
      ``(int T or None, inputs)``.

    Raises:
      ValueError: naming ``time_axis`` when the layout cannot be told from the shapes.
    """
    if num_steps is not None:
        if time_axis is not None:
            raise ValueError("time_axis is for sequences; a static input (num_steps=T) has none")
        return check_num_steps(num_steps), inputs
    if time_axis not in (None, 0, 1):
        raise ValueError(f"time_axis must be 0 (time-major) or 1 (batch-major), got {time_axis!r}")
    leaves = jax.tree.leaves(inputs)
    if time_axis == 1:
        return None, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), inputs)
    if time_axis is None and leaves and all(jnp.ndim(x) >= 2 for x in leaves):
        if any(jnp.shape(x)[0] == jnp.shape(x)[1] for x in leaves):
            shape = jnp.shape(leaves[0])
            raise ValueError(
                f"inputs of shape {shape} have as many time steps as examples (B == T = "
                f"{shape[0]}), so the layout cannot be checked: pass time_axis=0 for time-major "
                "[T, B, ...] or time_axis=1 for batch-major [B, T, ...] (or num_steps=T for a "
                "static input)"
            )
    return None, inputs


def check_finite(tree: PyTree, field: str) -> None:
    """Refuse NaN/Inf in ``tree``: at once when concrete, else when the jitted code runs.

    Args:
      tree: arrays to check.
      field: their name for the error.

    Raises:
      ValueError: (or a runtime error carrying this message, under ``jit``) naming ``field``.
    """
    for leaf in jax.tree.leaves(tree):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            continue
        ok = jnp.all(jnp.isfinite(leaf))
        if not isinstance(ok, jax.core.Tracer):
            if not bool(ok):
                raise ValueError(f"{field} contain NaN or Inf (debug_checks=True)")
            continue
        jax.debug.callback(raise_unless, ok, f"{field} contain NaN or Inf (debug_checks=True)")


def raise_unless(ok: Any, message: str) -> None:
    """Raise a ValueError with ``message`` unless ``ok`` (a host callback of the checks)."""
    if not bool(ok):
        raise ValueError(message)
