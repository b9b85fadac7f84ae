"""The paper's instantaneous loss (Sec. 4.1, Eq. (3) with the MSE term of Appendix C)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ottt_jax.guards import raise_unless
from ottt_jax.mode import debug_checks
from ottt_jax.online import check_num_steps

Array = jax.Array

__all__ = ["check_beta", "instantaneous_loss"]


def check_beta(beta: float) -> float:
    """Return ``beta`` or raise a ValueError naming it unless it lies in [0, 1].

    Args:
      beta: the MSE weight β of :func:`instantaneous_loss`.

    Returns:
      ``beta`` unchanged.
    """
    if not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    return beta


def instantaneous_loss(
    logits: Array, labels: Array, *, num_steps: int, beta: float = 0.05
) -> Array:
    """Return the per-step loss ``L[t] = ((1−β)·CE(out_t, y) + β·MSE(out_t, onehot(y))) / T``.

    Args:
      logits: ``out_t``, ``[B, K]`` (computed in float32 whatever the input dtype).
      labels: integer class labels ``[B]`` in ``[0, K)``.
      beta: the MSE weight β in [0, 1] (``loss_lambda`` of the authors' code).
      num_steps: ``T``, the number of time steps the loss is summed over (required: a
        forgotten ``T`` would scale the loss and its gradients by ``T``).

    Returns:
      A scalar: CE averaged over the batch, MSE averaged over batch and classes, divided by ``T``.
      Summed over ``t`` this is the paper's total loss. Labels outside ``[0, K)`` are refused
      at once when concrete; traced (under ``jit``) they make the loss NaN, and a rule run with
      ``debug_checks=True`` refuses them while the step runs.
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(f"logits must be [batch, classes], got shape {logits.shape}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(
            f"labels must be [batch] = {logits.shape[:1]} to match logits, got {labels.shape}"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    check_beta(beta)
    num_steps = check_num_steps(num_steps)
    k = logits.shape[-1]
    valid = jnp.all((labels >= 0) & (labels < k))
    msg = f"labels must lie in [0, num_classes) = [0, {k})"
    if not isinstance(valid, jax.core.Tracer):
        if not bool(valid):
            raise ValueError(f"{msg}; got values in [{int(labels.min())}, {int(labels.max())}]")
    elif debug_checks():
        jax.debug.callback(raise_unless, valid, f"{msg} (debug_checks=True)")
    logits = logits.astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    mse = jnp.mean((logits - onehot) ** 2)
    loss = ((1.0 - beta) * ce + beta * mse) / num_steps
    # An out-of-range label makes the loss NaN (never a silent finite value). The poison is added
    # outside the gradient: the backward graph, and so every float of the gradient, is the plain
    # loss's (a select on the loss itself changed XLA's fusion and the digits trajectory).
    return loss + jax.lax.stop_gradient(jnp.where(valid, 0.0, jnp.nan))
