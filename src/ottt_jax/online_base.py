"""Share the online rules' pieces: result types, time-axis checks, gradient sums, SLTT-K sampling.

:mod:`ottt_jax.online` re-exports every public name here (import them from there); this module
holds what the rule implementations build on, so that ``online`` stays one file per concern:

* :class:`OnlineResult`, :class:`OnlineUpdateResult`: what the rules return.
* :func:`check_time_major`, :func:`scan_inputs`, :func:`step_loss`: the time axis, one step's
  loss.
* :func:`acc_zeros`, :func:`acc_add`, :func:`acc_cast`: float32 gradient sums over the T steps.
* :func:`three_factor_grad`: the three-factor Hebbian form of a dense layer's gradient (Eq. (7)).
* :func:`check_k`, :func:`sample_time_steps`: SLTT-K's K sampled steps (Meng et al., ICCV 2023).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ottt_jax.step import check_num_steps

Array = jax.Array
PyTree = Any
StepFn = Callable[[PyTree, PyTree, PyTree], tuple[PyTree, PyTree]]
LossFn = Callable[[PyTree, PyTree], Array]

__all__ = [
    "LossFn",
    "OnlineResult",
    "OnlineUpdateResult",
    "StepFn",
    "acc_add",
    "acc_cast",
    "acc_zeros",
    "check_k",
    "check_time_major",
    "sample_time_steps",
    "scan_inputs",
    "step_loss",
    "three_factor_grad",
]


class OnlineResult(NamedTuple):
    """What :func:`ottt_grad` and :func:`bptt_grad` return.

    Attributes:
      loss: the loss summed over the T steps (scalar, float32).
      grads: gradients w.r.t. ``params``, summed over the T steps; same tree as ``params``.
      outputs: the per-step outputs stacked time-major, ``[T, ...]`` per leaf.
      state: the state after the last step.
    """

    loss: Array
    grads: PyTree
    outputs: PyTree
    state: PyTree


class OnlineUpdateResult(NamedTuple):
    """What :func:`ottt_update` returns.

    Attributes:
      loss: the loss summed over the T steps (each evaluated with that step's parameters).
      params: parameters after T optimizer updates.
      opt_state: optimizer state after T updates.
      outputs: per-step outputs, ``[T, ...]`` per leaf.
      state: the model state after the last step.
      rule_state: the rule's state after the batch (None for a stateless rule).
    """

    loss: Array
    params: PyTree
    opt_state: PyTree
    outputs: PyTree
    state: PyTree
    rule_state: PyTree = None


def check_time_major(inputs: PyTree, num_steps: int | None, targets: PyTree = None) -> int:
    """Validate the time axis of ``inputs`` and return ``T``.

    Args:
      inputs: a time-major sequence (every leaf ``[T, B, ...]``) when ``num_steps`` is None, else a
        static input (every leaf ``[B, ...]``) presented at each of ``num_steps`` steps.
      num_steps: ``T`` for a static input, or None for a sequence.
      targets: optional; if given, its leaves' leading (batch) axis must match the inputs' batch.

    Returns:
      The number of time steps ``T``.

    Raises:
      ValueError: naming the offending argument and the expected shape.
    """
    leaves = jax.tree.leaves(inputs)
    if not leaves:
        raise ValueError("inputs must contain at least one array")
    for leaf in leaves:
        if not hasattr(leaf, "shape") or not jnp.issubdtype(jnp.result_type(leaf), jnp.number):
            raise ValueError(f"inputs leaves must be numeric arrays, got {type(leaf).__name__}")
    if num_steps is None:
        shapes = [jnp.shape(x) for x in leaves]
        if any(len(s) < 2 for s in shapes):
            raise ValueError(
                f"inputs must be time-major [T, B, ...] (or pass num_steps=T for a static input); "
                f"got leaf shapes {shapes}"
            )
        lead = {s[0] for s in shapes}
        if len(lead) != 1:
            raise ValueError(f"inputs leaves disagree on the time axis [T, ...]: shapes {shapes}")
        t = lead.pop()
        batch = {s[1] for s in shapes}
    else:
        t = check_num_steps(num_steps)
        batch = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in leaves}
    if t < 1:
        raise ValueError(f"inputs have an empty time axis (T = {t}); expected T >= 1")
    if targets is not None:
        tb = {jnp.shape(x)[0] for x in jax.tree.leaves(targets) if jnp.ndim(x)}
        if tb and tb != batch:
            layout = "[B, ...] (static)" if num_steps is not None else "time-major [T, B, ...]"
            raise ValueError(
                f"targets batch size {sorted(tb)} does not match the inputs batch size "
                f"{sorted(b for b in batch if b is not None)}; inputs are read as {layout}"
            )
    return t


def scan_inputs(inputs, num_steps):
    """Return ``(xs, get)``: what to scan over and how to read step ``t``'s input from it."""
    if num_steps is None:
        return inputs, lambda x_t: x_t
    return None, lambda _: inputs


def step_loss(step: StepFn, loss_fn: LossFn, targets: PyTree):
    """Return ``f(params, state, x_t) -> (L[t], (out_t, new_state))``: one step and its loss.

    Args:
      step: ``step(params, state, x_t) -> (out_t, state)``.
      loss_fn: ``loss_fn(out_t, targets) -> scalar``.
      targets: passed to ``loss_fn`` at every step.

    Returns:
      The per-step loss function, in the ``has_aux`` form of ``jax.value_and_grad``.
    """

    def f(p, st, x_t):
        out, st = step(p, st, x_t)
        return loss_fn(out, targets), (out, st)

    return f


def three_factor_grad(pre_trace: Array, post_surrogate_grad: Array, modulator: Array) -> Array:
    """Return the three-factor Hebbian weight gradient of a dense layer (Eq. (7)).

    Args:
      pre_trace: presynaptic traces ``â_i[t]``, ``[B, in]``.
      post_surrogate_grad: postsynaptic surrogate derivatives ``f'(u_j[t])``, ``[B, out]``.
      modulator: the global learning signal ``δ_j[t] = ∂L[t]/∂s_j[t]``, ``[B, out]``.

    Returns:
      ``∇W_ij = Σ_b â_i · f'(u_j) · δ_j``, ``[in, out]`` (the layout of ``x @ W``).
    """
    pre_trace, post, mod = map(jnp.asarray, (pre_trace, post_surrogate_grad, modulator))
    if pre_trace.ndim != 2 or post.ndim != 2 or post.shape != mod.shape:
        raise ValueError(
            "three_factor_grad expects pre_trace [B, in] and post_surrogate_grad, modulator "
            f"[B, out]; got {pre_trace.shape}, {post.shape}, {mod.shape}"
        )
    if pre_trace.shape[0] != post.shape[0]:
        raise ValueError(f"batch sizes differ: {pre_trace.shape[0]} vs {post.shape[0]}")
    return pre_trace.T @ (post * mod)


def acc_zeros(params: PyTree) -> PyTree:
    """Zero gradient sums, in float32 for parameters of a lower float precision."""
    return jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), _acc_dtype(p)), params)


def acc_add(g_sum: PyTree, g: PyTree) -> PyTree:
    """Add one step's gradients to the sums (in the sums' dtype)."""
    return jax.tree.map(lambda a, b: a + b.astype(a.dtype), g_sum, g)


def acc_cast(grads: PyTree, params: PyTree) -> PyTree:
    """Cast summed gradients back to their parameters' dtypes."""
    return jax.tree.map(lambda g, p: g.astype(jnp.result_type(p)), grads, params)


def _acc_dtype(x) -> jnp.dtype:
    dt = jnp.result_type(x)
    return jnp.float32 if jnp.issubdtype(dt, jnp.floating) and jnp.finfo(dt).bits < 32 else dt


# ---------------------------------------------------------------------------------------------
# SLTT-K (Meng et al., ICCV 2023): which K of the T steps backpropagate.
# ---------------------------------------------------------------------------------------------


def check_k(k: int, num_steps: int, field: str = "k") -> int:
    """Validate SLTT-K's number of backpropagated steps against ``T``.

    Args:
      k: the number of steps ``K``.
      num_steps: ``T``.
      field: the name the error uses (e.g. the config key ``rule.k``).

    Returns:
      ``k``.

    Raises:
      ValueError: naming ``field`` unless ``k`` is an int with ``1 <= k <= T``.
    """
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= num_steps:
        raise ValueError(f"{field} must be an int in [1, T] = [1, {num_steps}], got {k!r}")
    return k


def sample_time_steps(key: Array, num_steps: int, k: int) -> Array:
    """Draw the K time steps SLTT-K backpropagates at.

    Args:
      key: a PRNG key (one per iteration: the trainer folds the run key with the step).
      num_steps: ``T``.
      k: ``K``, ``1 <= K <= T``.

    Returns:
      A bool mask ``[T]`` with exactly ``K`` True entries, uniform over the ``C(T, K)`` subsets:
      the first ``K`` steps of a random permutation of ``0 … T−1`` (the authors' code:
      ``torch.randperm(T)[:K]``, drawn once per iteration and shared by the whole batch).
    """
    check_k(k, num_steps)
    chosen = jax.random.permutation(key, num_steps)[:k]
    return jnp.zeros((num_steps,), jnp.bool_).at[chosen].set(True)
