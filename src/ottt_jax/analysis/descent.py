"""Descent directions: OTTT against ``(∇L_sr)_sr`` (and BPTT), per leaf, layer and in total."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ottt_jax import metrics, rules
from ottt_jax.analysis.rates import check_steps_decay, clamp, clamp_grad
from ottt_jax.analysis.vgg_rates import (
    check_image_batch,
    check_vgg,
    vgg_preactivations,
    vgg_sr_grad,
)
from ottt_jax.losses import instantaneous_loss
from ottt_jax.models import SpikingVGG, make_step

Array = jax.Array
PyTree = Any

__all__ = ["compare_gradients", "descent_report", "gradient_comparison_fn"]


def _key_name(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _flat(tree: PyTree, what: str) -> tuple[list[str], list[Array], Any, list[tuple]]:
    pairs, treedef = jax.tree_util.tree_flatten_with_path(tree)
    if not pairs:
        raise ValueError(f"{what} has no array leaves")
    names = ["/".join(_key_name(k) for k in path) for path, _ in pairs]
    shapes = [tuple(jnp.shape(v)) for _, v in pairs]
    flat = [jnp.ravel(jnp.asarray(v)).astype(jnp.float32) for _, v in pairs]
    return names, flat, treedef, shapes


def _stats(groups: dict[str, Array]) -> dict[str, Array]:
    """Inner products, norms and cosines between the flat vectors in ``groups``."""
    out: dict[str, Array] = {}
    norms = {k: jnp.sqrt(jnp.sum(v * v)) for k, v in groups.items()}
    for k, n in norms.items():
        out[f"norm_{k}"] = n
    keys = list(groups)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            inner = jnp.sum(groups[a] * groups[b])
            denom = norms[a] * norms[b]
            out[f"inner_{a}_{b}"] = inner
            out[f"cos_{a}_{b}"] = jnp.where(denom > 0, inner / jnp.where(denom > 0, denom, 1), 0.0)
    return out


def descent_report(
    ottt_grads: PyTree, sr_grads: PyTree, bptt_grads: PyTree | None = None
) -> dict[str, Any]:
    """Compare OTTT gradients with ``(∇L_sr)_sr`` (and optionally BPTT): inner products, cosines.

    Args:
      ottt_grads: ``(∇L)_OTTT``, any pytree of arrays.
      sr_grads: ``(∇L_sr)_sr``, the same tree structure and shapes.
      bptt_grads: optional BPTT gradients, the same structure.

    Returns:
      ``{'leaves': {path: stats}, 'layers': {layer: stats}, 'total': stats}``. A leaf's path is
      its keys joined by ``/`` (``'features_0/kernel'``); a layer groups the leaves under the
      same parent (``'features_0'``: kernel, gain, bias); ``total`` is over all leaves. ``stats``
      holds float32 scalars ``norm_ottt``, ``norm_sr``, ``inner_ottt_sr``, ``cos_ottt_sr`` and,
      with BPTT, ``norm_bptt``, ``inner_ottt_bptt``, ``cos_ottt_bptt``, ``inner_sr_bptt``,
      ``cos_sr_bptt``. ``cos = ⟨a, b⟩ / (‖a‖‖b‖)``, defined as 0 when a norm is 0. OTTT is a
      descent direction of ``L_sr`` on a group when ``inner_ottt_sr > 0``.
    """
    trees = {"ottt": ottt_grads, "sr": sr_grads}
    if bptt_grads is not None:
        trees["bptt"] = bptt_grads
    flat = {k: _flat(t, f"{k}_grads") for k, t in trees.items()}
    names, _, treedef, shapes = flat["ottt"]
    for k, (_, _, td, sh) in flat.items():
        if td != treedef:
            raise ValueError(
                f"{k}_grads has tree structure {td}, expected that of ottt_grads {treedef}"
            )
        for n, a, b in zip(names, sh, shapes):
            if a != b:
                raise ValueError(f"{k}_grads leaf {n!r} has shape {a}, ottt_grads has {b}")
    report: dict[str, Any] = {"leaves": {}, "layers": {}}
    layers: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        report["leaves"][n] = _stats({k: v[1][i] for k, v in flat.items()})
        layers.setdefault(n.rsplit("/", 1)[0] if "/" in n else n, []).append(i)
    for layer, idx in layers.items():
        report["layers"][layer] = _stats(
            {k: jnp.concatenate([v[1][i] for i in idx]) for k, v in flat.items()}
        )
    report["total"] = _stats({k: jnp.concatenate(v[1]) for k, v in flat.items()})
    return report


# ---------------------------------------------------------------------------------------------
# The whole comparison for a SpikingVGG
# ---------------------------------------------------------------------------------------------


def gradient_comparison_fn(
    model: SpikingVGG,
    *,
    num_steps: int,
    beta: float = 0.05,
    with_bptt: bool = True,
    num_iters: int = 50,
    tol: float = 1e-4,
    solver: str = "fixed_point",
) -> Callable[[PyTree, Array, Array], dict[str, Any]]:
    """Build a jitted ``fn(params, x, labels) -> dict`` comparing OTTT, BPTT and SR gradients.

    Args:
      model: a :class:`~ottt_jax.models.SpikingVGG` (its ``mode`` is overridden: the gradients are
        those of the registry's ``ottt_a`` and ``bptt`` rules, each with its rule's mode; the
        parameters are the same).
      num_steps: ``T``; the static image is shown at every step.
      beta: the MSE weight of the loss (per-step ``instantaneous_loss`` for OTTT/BPTT, the same
        loss of the rate readout for SR).
      with_bptt: also compute the BPTT gradient.
      num_iters, tol, solver: of the implicit solver (VGG-F).

    Returns:
      ``fn(params, x [B, H, W, C], labels [B])`` returning ``{'report': descent_report(...),
      'ottt': grads, 'sr': grads, 'bptt': grads or None, 'loss_ottt', 'loss_sr', 'residual',
      'converged', 'rates', 'accuracy', 'linear_fraction', 'sr_error'}``: ``accuracy`` of
      ``argmax Σ_t out_t`` on the batch; per LIF layer, ``linear_fraction`` is the fraction of
      neurons with ``0 < z < 1`` (where the clamp Jacobian is 1, :func:`vgg_preactivations`)
      and ``sr_error`` the mean ``|clamp(z) − a[T]|`` (how far the actual rates are from the
      closed-form mapping). The initial state is ``init_state(..., train=False)`` (no dropout).
    """
    check_vgg(model)
    check_steps_decay(num_steps, model.neuron.decay)
    if not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    ottt_a, bptt = rules.get_rule("ottt_a"), rules.get_rule("bptt")
    online = model.clone(mode=ottt_a.mode)
    offline = model.clone(mode=bptt.mode)

    def fn(params, x, labels):
        x, labels = check_image_batch(x, labels)
        state = model.init_state(x.shape[0], tuple(x.shape[1:]), train=False)

        def loss_fn(out, y):
            return instantaneous_loss(out, y, beta=beta, num_steps=num_steps)

        ot = ottt_a.grad(make_step(online), loss_fn, params, state, x, labels, num_steps=num_steps)
        sr = vgg_sr_grad(
            model,
            params,
            x,
            labels,
            num_steps=num_steps,
            beta=beta,
            state=state,
            num_iters=num_iters,
            tol=tol,
            solver=solver,
        )
        z = vgg_preactivations(model, params, sr.rates, x, num_steps=num_steps)
        bp = None
        if with_bptt:
            bp = bptt.grad(
                make_step(offline), loss_fn, params, state, x, labels, num_steps=num_steps
            )
        return {
            "report": descent_report(ot.grads, sr.grads, None if bp is None else bp.grads),
            "ottt": ot.grads,
            "sr": sr.grads,
            "bptt": None if bp is None else bp.grads,
            "loss_ottt": ot.loss,
            "loss_sr": sr.loss,
            "residual": sr.residual,
            "converged": sr.converged,
            "rates": sr.rates,
            "accuracy": metrics.accuracy(ot.outputs, labels),
            "linear_fraction": {k: jnp.mean(clamp_grad(v)) for k, v in z.items()},
            "sr_error": {k: jnp.mean(jnp.abs(clamp(v) - sr.rates[k])) for k, v in z.items()},
        }

    return jax.jit(fn)


def compare_gradients(
    model: SpikingVGG,
    params: PyTree,
    x: Array,
    labels: Array,
    *,
    num_steps: int,
    beta: float = 0.05,
    with_bptt: bool = True,
    num_iters: int = 50,
    tol: float = 1e-4,
    solver: str = "fixed_point",
) -> dict[str, Any]:
    """Compare OTTT, BPTT and ``(∇L_sr)_sr`` for a SpikingVGG on one batch (see
    :func:`gradient_comparison_fn`, which this builds and calls once).

    Args:
      model, num_steps, beta, with_bptt, num_iters, tol, solver: as in
        :func:`gradient_comparison_fn`.
      params: the parameters.
      x: static images ``[B, H, W, C]``.
      labels: int ``[B]``.

    Returns:
      The dict of :func:`gradient_comparison_fn`; ``out['report']['total']['cos_ottt_sr']`` is
      the cosine over all parameters.
    """
    fn = gradient_comparison_fn(
        model,
        num_steps=num_steps,
        beta=beta,
        with_bptt=with_bptt,
        num_iters=num_iters,
        tol=tol,
        solver=solver,
    )
    return fn(params, x, labels)
