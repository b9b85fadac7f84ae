"""Spike-representation gradients and the descent-direction analysis (Sec. 4.2, Theorems 1 and 2).

Spike representation
--------------------
For a LIF layer with leak λ run for T steps, the **weighted firing rate** and the **weighted
average input** are ::

    a[T] = Σ_{τ=1..T} λ^{T−τ} s[τ] / Σ_{τ=1..T} λ^{T−τ} = â[T] / Λ[T],
    ū[T] = Σ_{τ=1..T} λ^{T−τ} u[τ] / Λ[T],            Λ[T] = Σ_{k=0..T−1} λ^k,

where ``â[T] = λ·â[T−1] + s[T]`` is the neuron's presynaptic trace (``LIFState.trace``) and
``u[τ]`` its input current. :func:`weighted_rate` computes ``a[T]`` from the trace. As T grows
(and exactly at an equilibrium) the rates satisfy the closed-form mapping ::

    a^{l+1} = σ((W^l a^l + b^l) / V_th),     σ(x) = clamp(x, 0, 1),     σ'(x) = 1[0 < x < 1].

In the networks of this package ``Scale(2.74)`` and average pooling are linear maps applied to the
spikes, so they apply to the rates unchanged (so do per-sequence dropout masks); the first layer
reads the static image, whose "rate" is the image itself; the readout is the affine
``o = W a + b`` of the last (scaled, pooled) rate.

The gradient (∇_W L_sr)_sr (Eq. (6))
------------------------------------
``L_sr`` is a loss of the readout ``o`` computed from the rates through the closed-form mappings.
``(∇_W L_sr)_sr`` is its gradient by the chain rule with **every mapping's Jacobian evaluated at
the actual SNN rates** ``a^l[T]`` (not at the closed-form values): ::

    ∂L/∂W^l = (1/V_th) · [σ'(z^l) ⊙ δ^{l+1}] (a^l)ᵀ,    z^l = (W^l a^l + b^l)/V_th,
    δ^l = (W^l)ᵀ [σ'(z^l) ⊙ δ^{l+1}] / V_th,          with every a^l the actual rate.

:func:`sr_map` makes this generic: ``sr_map(z, a_actual)`` has the value ``a_actual`` and the
derivative ``σ'(z)`` w.r.t. ``z`` (and none w.r.t. ``a_actual``), i.e. it equals
``stop_gradient(a_actual) + σ(z) − stop_gradient(σ(z))`` with an exact value. Write the *rate
version* of a model once, with ``a^{l+1} = sr_map(pre^l / V_th, actual_rate^{l+1})`` at each
neuron, and ``jax.grad`` of the loss of its readout is ``(∇L_sr)_sr``. :func:`vgg_rate_forward`
is that rate version for :class:`~ottt_jax.models.SpikingVGG`.

**Loss.** ``L_sr = (1−β)·CE(o, y) + β·mean((o − onehot(y))²)``, the paper's loss (with its MSE
term) applied once to the readout ``o`` of the rates: :func:`ottt_jax.losses.instantaneous_loss`
with ``num_steps=1``. (The OTTT gradient is ``Σ_t ∇L[t]`` with ``L[t]`` the same loss of ``out_t``
divided by T, so both are on the scale of one loss; cosines and signs do not depend on it.)

Feedback networks (VGG-F) and implicit differentiation
------------------------------------------------------
With feedback the rates of all layers, ``a = (a^1, …, a^L)``, form an equilibrium ``a* = F(a*,
x; θ)``. Its gradient is taken by implicit differentiation, with the Jacobians of ``F`` evaluated
at the actual rates: ::

    ∇_θ L = ∂L/∂θ|_readout + (∂F/∂θ)ᵀ v,     v = g + (∂F/∂a)ᵀ v,     g = ∂L/∂a.

:func:`implicit_sr_grad` solves for ``v`` with a fixed number ``num_iters`` (default 50) of
fixed-point iterations ``v_0 = g``, ``v_{k+1} = g + (∂F/∂a)ᵀ v_k`` (one ``jax.vjp`` each; after
K iterations ``v_K = Σ_{j≤K} ((∂F/∂a)ᵀ)^j g``, which converges when the spectral radius of
``∂F/∂a`` is below 1; for a feedforward ``F`` it is exact after L−1 iterations). Convergence is
checked, not assumed: the result carries the relative residual
``‖g + (∂F/∂a)ᵀ v − v‖ / ‖v‖`` of the returned ``v`` (``converged`` = residual < ``tol``,
default 1e-4). When the loop gain exceeds 1 (the iteration diverges; seen after training a
VGG-F) ``solver='gmres'`` solves the same linear system with restarted GMRES instead (per
example for a batch, ``per_example=True``).

**Our VGG-F's feedback path in rates.** At step ``t`` (0-based) layer 1 receives
``u¹[t] = conv1(x) + 1[t ≥ 1]·fb_conv(up(F[t−1]))``, ``F`` being the last block's scaled,
pooled spikes and ``fb_conv`` affine (bias included in the ``1[t ≥ 1]`` term). Its weighted
average input over T steps is therefore exactly ::

    ū¹[T] = conv1(x) + κ_T · fb_conv(up(a_F[T−1])),      κ_T = Λ[T−1] / Λ[T],

with ``a_F[T−1]`` the weighted rate of ``F`` over the first T−1 steps (the feedback lags one
step and is absent at the first). The equilibrium map takes ``a_F[T−1] ≈ a_F[T]`` (the fixed
point assumption) and keeps the exact factor κ_T (:func:`feedback_input_scale`; κ_T → 1 as
T → ∞), so ::

    F¹(a) = σ((conv1(x) + κ_T · fb_conv(up(2.74 · pool_tail(a^L)))) / V_th),
    F^{l+1}(a) = σ(conv_{l+1}(pool(2.74 · a^l)) / V_th),
    o = W_fc · GAP(2.74 · pool_tail(a^L)) + b.

Descent directions
------------------
The paper proves that, under its conditions, OTTT gradients are descent directions for
``L_sr``: ``⟨(∇L)_OTTT, (∇L_sr)_sr⟩ > 0`` — Theorem 1 for feedforward networks and Theorem 2 for
feedback ones (its analysis uses the clamp surrogate ``1[|v − V_th| < V_th]``, whose derivative
matches σ' of the closed form; ``surrogate='clamp'``). :func:`descent_report`
measures the inner products and cosines per parameter leaf, per layer and over all parameters;
:func:`compare_gradients` runs OTTT, BPTT and the spike-representation gradient of a
:class:`~ottt_jax.models.SpikingVGG` on one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ottt_jax.layers import SPIKE_SCALE, Conv, Linear, avg_pool
from ottt_jax.losses import instantaneous_loss
from ottt_jax.models import SpikingVGG, make_step
from ottt_jax.online import bptt_grad, forward, ottt_grad

Array = jax.Array
PyTree = Any

__all__ = [
    "ImplicitResult",
    "SRResult",
    "clamp",
    "clamp_grad",
    "compare_gradients",
    "descent_report",
    "feedback_input_scale",
    "gradient_comparison_fn",
    "implicit_sr_grad",
    "rate_normalizer",
    "sr_map",
    "vgg_preactivations",
    "vgg_rate_forward",
    "vgg_rate_map",
    "vgg_rates",
    "vgg_readout",
    "vgg_sr_grad",
    "weighted_rate",
]


# ---------------------------------------------------------------------------------------------
# Rates and the clamp mapping
# ---------------------------------------------------------------------------------------------


def _check_steps_decay(num_steps: Any, decay: Any, *, min_steps: int = 1) -> None:
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
    _check_steps_decay(num_steps, decay, min_steps=0)
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
    _check_steps_decay(num_steps, decay)
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
    _check_steps_decay(num_steps, decay)
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


# ---------------------------------------------------------------------------------------------
# Implicit differentiation of an equilibrium (feedback networks)
# ---------------------------------------------------------------------------------------------


class ImplicitResult(NamedTuple):
    """What :func:`implicit_sr_grad` returns.

    Attributes:
      loss: the loss of the readout of the given rates (scalar).
      grads: ``∂L/∂θ|_readout + (∂F/∂θ)ᵀ v``, the tree of ``params``.
      adjoint: ``v``, the tree of ``rates``.
      residual: ``‖g + (∂F/∂a)ᵀ v − v‖₂ / ‖v‖₂`` of the returned ``v`` (scalar).
      converged: ``residual < tol`` (bool scalar).
    """

    loss: Array
    grads: PyTree
    adjoint: PyTree
    residual: Array
    converged: Array


def _tree_norm(t: PyTree) -> Array:
    leaves = jax.tree.leaves(t)
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))


def _check_count(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _gmres(
    matvec: Callable[[PyTree], PyTree],
    b: PyTree,
    x0: PyTree,
    *,
    num_iters: int,
    restart: int,
    per_example: bool,
) -> PyTree:
    """Solve ``matvec(x) = b`` by restarted GMRES (CGS2 Arnoldi, least squares by SVD).

    With ``per_example`` every leaf's leading axis indexes independent systems (``matvec`` must
    not mix them): inner products, norms and the Krylov coefficients are per example, so each
    example converges at the rate of its own spectrum. Otherwise the whole tree is one vector.
    Runs ``max(1, num_iters // m)`` cycles of ``m = min(restart, num_iters, dimension)``
    matvecs; memory is ``m + 1`` copies of ``b``.
    """
    leaves, treedef = jax.tree.flatten(b)
    nb = int(leaves[0].shape[0]) if per_example else 1
    for leaf in leaves:
        if per_example and (leaf.ndim == 0 or leaf.shape[0] != nb):
            raise ValueError(
                f"per_example=True needs every rates leaf to share the leading (example) axis; "
                f"got shapes {[tuple(x.shape) for x in leaves]}"
            )
    shapes = [leaf.shape for leaf in leaves]
    splits = np.cumsum([int(np.prod(sh)) // nb for sh in shapes])[:-1]

    def flat(t):
        return jnp.concatenate(
            [x.reshape(nb, -1).astype(jnp.float32) for x in jax.tree.leaves(t)], axis=1
        )

    def unflat(f):
        parts = jnp.split(f, splits, axis=1)
        out = [p.reshape(sh).astype(x.dtype) for p, sh, x in zip(parts, shapes, leaves)]
        return jax.tree.unflatten(treedef, out)

    def op(f):
        return flat(matvec(unflat(f)))

    bf = flat(b)
    m = min(int(restart), int(num_iters), int(bf.shape[1]))  # no more than the dimension
    k = jnp.arange(m + 1)

    def safe(n):
        return jnp.where(n > 0, n, 1.0)

    def cycle(_, x):
        r = bf - op(x)
        beta = jnp.linalg.norm(r, axis=1)
        basis = jnp.zeros((nb, m + 1, bf.shape[1]), bf.dtype)  # example-major: batched matvecs
        basis = basis.at[:, 0].set(r / safe(beta)[:, None])
        cols = jnp.zeros((nb, m, m + 1), bf.dtype)  # column j of the Hessenberg matrix, as a row

        def arnoldi(j, carry):
            basis, cols = carry
            w = op(jax.lax.dynamic_index_in_dim(basis, j, axis=1, keepdims=False))
            col = jnp.zeros((nb, m + 1), bf.dtype)
            for _ in range(2):  # classical Gram-Schmidt, twice
                h = jnp.einsum("bkd,bd->bk", basis, w) * (k <= j)
                w = w - jnp.einsum("bkd,bk->bd", basis, h)
                col = col + h
            hn = jnp.linalg.norm(w, axis=1)
            col = col + hn[:, None] * (k == j + 1)
            cols = jax.lax.dynamic_update_index_in_dim(cols, col, j, axis=1)
            basis = jax.lax.dynamic_update_index_in_dim(basis, w / safe(hn)[:, None], j + 1, 1)
            return basis, cols

        basis, cols = jax.lax.fori_loop(0, m, arnoldi, (basis, cols))
        e1 = jnp.zeros((nb, m + 1), bf.dtype).at[:, 0].set(beta)
        hess = jnp.swapaxes(cols, 1, 2)
        y = jax.vmap(lambda h, e: jnp.linalg.lstsq(h, e)[0])(hess, e1)
        return x + jnp.einsum("bkd,bk->bd", basis[:, :m], y)

    return unflat(jax.lax.fori_loop(0, max(1, int(num_iters) // m), cycle, flat(x0)))


def implicit_sr_grad(
    fixed_point_fn: Callable[[PyTree, PyTree], PyTree],
    readout_fn: Callable[[PyTree, PyTree], Array],
    loss_fn: Callable[[Array], Array],
    params: PyTree,
    rates: PyTree,
    *,
    num_iters: int = 50,
    tol: float = 1e-4,
    solver: str = "fixed_point",
    restart: int = 50,
    per_example: bool = False,
) -> ImplicitResult:
    """Return the implicit (equilibrium) gradient ``(∇L_sr)_sr`` of a feedback network.

    Args:
      fixed_point_fn: ``F(params, a) -> a'`` (same tree as ``rates``), the closed-form map of
        every layer's rate from the rates it reads; build it with :func:`sr_map` anchored at the
        actual rates so its Jacobians are evaluated there (e.g. :func:`vgg_rate_map`).
      readout_fn: ``readout_fn(params, a) -> o``.
      loss_fn: ``loss_fn(o) -> scalar``.
      params: the parameters θ.
      rates: the actual SNN rates ``a[T]`` (the point where everything is linearized).
      num_iters: ``'fixed_point'``: the iterations ``K >= 0`` of ``v ← g + (∂F/∂a)ᵀ v`` from
        ``v = g``. ``'gmres'``: the number of matvecs (one ``vjp`` each), in cycles of
        ``restart``.
      tol: the residual below which ``converged`` is True.
      solver: ``'fixed_point'`` (default; converges iff the spectral radius of ``∂F/∂a`` is
        < 1, i.e. the equilibrium is stable under the closed-form iteration) or ``'gmres'``
        (restarted GMRES on ``(I − (∂F/∂a)ᵀ) v = g`` from ``v = g``; it also solves
        non-contracting systems, where the implicit function theorem still applies as long as
        ``I − ∂F/∂a`` is invertible).
      restart: GMRES Krylov dimension per cycle (memory: ``restart + 1`` copies of ``rates``).
      per_example: GMRES only: the leading axis of every ``rates`` leaf indexes examples that
        ``F`` does not mix (true of a network applied to a batch), so each example's system is
        solved with its own Krylov coefficients — far fewer iterations than one joint system.

    Returns:
      :class:`ImplicitResult`. ``grads = ∂L/∂θ + (∂F/∂θ)ᵀ v`` with ``v`` solving
      ``v = g + (∂F/∂a)ᵀ v``, ``g = ∂L/∂a`` (implicit function theorem at ``a = F(a)``).
    """
    _check_count("num_iters", num_iters, 0)
    _check_count("restart", restart, 1)
    if solver not in ("fixed_point", "gmres"):
        raise ValueError(f"solver must be 'fixed_point' or 'gmres', got {solver!r}")

    def total(p, a):
        return loss_fn(readout_fn(p, a))

    loss, (g_theta, g_a) = jax.value_and_grad(total, argnums=(0, 1))(params, rates)
    _, vjp = jax.vjp(fixed_point_fn, params, rates)

    def update(v):
        return jax.tree.map(jnp.add, g_a, vjp(v)[1])

    if solver == "fixed_point":
        v = jax.lax.fori_loop(0, int(num_iters), lambda _, v: update(v), g_a)
    elif num_iters == 0:
        v = g_a
    else:
        v = _gmres(
            lambda v: jax.tree.map(jnp.subtract, v, vjp(v)[1]),
            g_a,
            g_a,
            num_iters=int(num_iters),
            restart=int(restart),
            per_example=per_example,
        )
    r = jax.tree.map(jnp.subtract, update(v), v)
    residual = _tree_norm(r) / jnp.maximum(_tree_norm(v), jnp.finfo(jnp.float32).tiny)
    grads = jax.tree.map(jnp.add, g_theta, vjp(v)[0])
    return ImplicitResult(loss, grads, v, residual, residual < tol)


# ---------------------------------------------------------------------------------------------
# SpikingVGG / VGG-F in rates
# ---------------------------------------------------------------------------------------------


def _check_vgg(model: Any) -> None:
    if not isinstance(model, SpikingVGG):
        raise ValueError(f"model must be an ottt_jax.models.SpikingVGG, got {type(model).__name__}")


def _check_rates(model: SpikingVGG, rates: Any) -> None:
    if not isinstance(rates, dict) or set(rates) != set(model.lif_names):
        got = sorted(rates) if isinstance(rates, dict) else type(rates).__name__
        raise ValueError(f"rates must be a dict over {list(model.lif_names)}, got {got}")


def _masks(state: dict | None) -> tuple[dict, Array | None]:
    if state is None:
        return {}, None
    return state.get("neuron_mask", {}), state.get("fc_mask")


def vgg_rates(model: SpikingVGG, state: dict, num_steps: int) -> dict[str, Array]:
    """Return every LIF layer's weighted firing rate after a run of ``num_steps`` steps.

    Args:
      model: the :class:`~ottt_jax.models.SpikingVGG` that produced ``state``.
      state: the state after the last step (``state['lif'][name].trace`` is ``â[T]``).
      num_steps: ``T``.

    Returns:
      ``{lif_name: a[T]}``, each ``[B, H_l, W_l, C_l]``: the rate of the neuron's own spikes
      (before any neuron-dropout mask).
    """
    _check_vgg(model)
    if not isinstance(state, dict) or "lif" not in state:
        raise ValueError("state must be the model state dict (with 'lif'), from init_state")
    decay = model.neuron.decay
    return {n: weighted_rate(state["lif"][n].trace, num_steps, decay) for n in model.lif_names}


def _pool(h: Array, n: int) -> Array:
    for _ in range(n):
        h = avg_pool(h)
    return h


def _scaled(model: SpikingVGG, lif: str, a: Array, masks: dict) -> Array:
    """Block output in rates: ``2.74 · m · a`` (the linear maps applied to the spikes)."""
    if lif in masks:
        a = a * masks[lif].astype(a.dtype)
    return a * SPIKE_SCALE


def _conv(params: dict, name: str, features: int, h: Array, **kw) -> Array:
    return Conv(features, **kw).apply({"params": params[name]}, h)


def _last_block(model: SpikingVGG, a_last: Array, masks: dict) -> Array:
    """``pool_tail(2.74 · m · a^L)``: what feeds GAP and the feedback."""
    return _pool(_scaled(model, model.lif_names[-1], a_last, masks), model._num_tail_pools)


def vgg_readout(
    model: SpikingVGG, params: PyTree, rates: dict[str, Array], *, state: dict | None = None
) -> Array:
    """Return the readout ``o = W_fc · GAP(pool_tail(2.74 · a^L)) + b`` of the rates.

    Args:
      model: a :class:`~ottt_jax.models.SpikingVGG` (with or without feedback).
      params: its parameters.
      rates: ``{lif_name: [B, H_l, W_l, C_l]}`` (only the last layer's is read).
      state: optional state whose dropout masks (``neuron_mask``, ``fc_mask``) are applied.

    Returns:
      ``[B, K]`` logits (float32).
    """
    _check_vgg(model)
    _check_rates(model, rates)
    masks, fc_mask = _masks(state)
    h = _last_block(model, rates[model.lif_names[-1]], masks)
    z = jnp.mean(h, axis=(1, 2))
    if fc_mask is not None:
        z = z * fc_mask.astype(z.dtype)
    return Linear(model.num_classes).apply({"params": params["classifier_0"]}, z)


def _vgg_layers(
    model: SpikingVGG,
    params: PyTree,
    inputs: dict[str, Array],
    anchor: dict[str, Array] | None,
    x: Array,
    *,
    chain: bool,
    kappa: float,
    masks: dict,
) -> dict[str, Array]:
    """Apply every block's closed-form map, each ``sr_map``-anchored at ``anchor``.

    ``chain=True``: block l+1 reads block l's (sr-mapped) output (feedforward rate forward).
    ``chain=False``: block l+1 reads ``inputs[l]`` and block 1 the feedback of ``inputs[L]``
    (the equilibrium map ``F(a)``). ``anchor=None`` returns the pre-activations ``z^l``
    instead (only with ``chain=False``).
    """
    v_th = model.neuron.v_th
    convs = model._convs()  # (param name, lif name, features, pools before), network order
    x = jnp.asarray(x, jnp.float32)
    out: dict[str, Array] = {}
    prev = None
    for i, (name, lif, feat, pools) in enumerate(convs):
        if i == 0:
            pre = _conv(params, name, feat, x)
            if model.feedback:
                fb = _last_block(model, inputs[model.lif_names[-1]], masks)
                fb = jnp.repeat(jnp.repeat(fb, 2**model.num_pools, 1), 2**model.num_pools, 2)
                y = _conv(params, "fb_conv", feat, fb, weight_standardization=False)
                pre = pre + kappa * y
        else:
            src = out[prev] if chain else inputs[prev]
            h = _pool(_scaled(model, prev, src, masks), pools)
            pre = _conv(params, name, feat, h)
        z = pre / v_th
        out[lif] = z if anchor is None else sr_map(z, anchor[lif].astype(z.dtype))
        prev = lif
    return out


def vgg_rate_forward(
    model: SpikingVGG,
    params: PyTree,
    rates: dict[str, Array],
    x: Array,
    *,
    state: dict | None = None,
) -> Array:
    """Return the readout of the rate version of a feedforward SpikingVGG.

    Block by block ``a^l = sr_map(conv_l(pool(2.74·a^{l−1}))/V_th, a^l[T])`` (the first conv
    reads the image), then :func:`vgg_readout`. The value is the readout of the actual rates and
    ``jax.grad`` of a loss of it w.r.t. ``params`` is ``(∇L_sr)_sr`` (Eq. (6)).

    Args:
      model: a :class:`~ottt_jax.models.SpikingVGG` with ``feedback=False``.
      params: its parameters (read by the model's Flax names).
      rates: the actual rates ``{lif_name: [B, H_l, W_l, C_l]}`` (:func:`vgg_rates`).
      x: the static image ``[B, H, W, C]`` (its rate is itself).
      state: optional state whose dropout masks are applied (as in the SNN run).

    Returns:
      ``o``, ``[B, K]``.
    """
    _check_vgg(model)
    if model.feedback:
        raise ValueError(
            "vgg_rate_forward needs model.feedback=False; a VGG-F's rates are an equilibrium: "
            "use vgg_rate_map with implicit_sr_grad (or vgg_sr_grad)"
        )
    _check_rates(model, rates)
    masks, _ = _masks(state)
    a = _vgg_layers(model, params, rates, rates, x, chain=True, kappa=0.0, masks=masks)
    return vgg_readout(model, params, a, state=state)


def vgg_rate_map(
    model: SpikingVGG,
    params: PyTree,
    rates: dict[str, Array],
    x: Array,
    *,
    num_steps: int,
    anchor: dict[str, Array] | None = None,
    state: dict | None = None,
) -> dict[str, Array]:
    """Return ``F(a)``: every block's closed-form rate from the rates it reads (equilibrium map).

    Block 1 reads the image and, for VGG-F, ``κ_T · fb_conv(up(pool_tail(2.74·a^L)))``; block
    l+1 reads ``pool(2.74·a^l)``. Each output is ``sr_map(pre/V_th, anchor^l)``: its value is
    ``anchor`` and its Jacobian ``σ'`` of the pre-activation computed from ``rates``.

    Args:
      model: a :class:`~ottt_jax.models.SpikingVGG` (feedback or not).
      params: its parameters.
      rates: ``a``, ``{lif_name: [B, H_l, W_l, C_l]}``.
      x: the static image ``[B, H, W, C]``.
      num_steps: ``T`` (sets ``κ_T`` of the feedback, :func:`feedback_input_scale`).
      anchor: the actual rates where ``σ'`` is evaluated; default ``rates``. Linearize at
        ``rates == anchor`` (as :func:`vgg_sr_grad` does).
      state: optional state whose dropout masks are applied.

    Returns:
      ``{lif_name: [B, H_l, W_l, C_l]}``.
    """
    _check_vgg(model)
    _check_rates(model, rates)
    anchor = rates if anchor is None else anchor
    _check_rates(model, anchor)
    kappa = feedback_input_scale(num_steps, model.neuron.decay) if model.feedback else 0.0
    masks, _ = _masks(state)
    return _vgg_layers(model, params, rates, anchor, x, chain=False, kappa=kappa, masks=masks)


def vgg_preactivations(
    model: SpikingVGG,
    params: PyTree,
    rates: dict[str, Array],
    x: Array,
    *,
    num_steps: int,
    state: dict | None = None,
) -> dict[str, Array]:
    """Return every block's closed-form pre-activation ``z^l = (W^l a^{l−1} + b^l)/V_th``.

    ``z`` is computed from the given ``rates`` exactly as :func:`vgg_rate_map` does (VGG-F: with
    ``κ_T`` and the last block's rate as feedback); ``clamp(z)`` is the closed-form rate and
    ``1[0 < z < 1]`` the Jacobian mask of Eq. (6). ``z^l`` is also the weighted average input
    ``ū^l[T]/V_th`` of the SNN when ``rates`` are the layers' actual rates (for VGG-F, with the
    last block's rate over the first T−1 steps).

    Args:
      model, params, rates, x, num_steps, state: as in :func:`vgg_rate_map`.

    Returns:
      ``{lif_name: z^l [B, H_l, W_l, C_l]}``.
    """
    _check_vgg(model)
    _check_rates(model, rates)
    kappa = feedback_input_scale(num_steps, model.neuron.decay) if model.feedback else 0.0
    masks, _ = _masks(state)
    return _vgg_layers(model, params, rates, None, x, chain=False, kappa=kappa, masks=masks)


class SRResult(NamedTuple):
    """What :func:`vgg_sr_grad` returns.

    Attributes:
      loss: ``L_sr`` of the readout of the actual rates (scalar).
      grads: ``(∇L_sr)_sr``, the tree of ``params``.
      rates: the actual rates ``{lif_name: a[T]}``.
      outputs: the SNN's per-step logits ``[T, B, K]``.
      residual: the fixed-point residual (VGG-F; 0 for feedforward nets).
      converged: ``residual < tol`` (True for feedforward nets).
    """

    loss: Array
    grads: PyTree
    rates: dict
    outputs: Array
    residual: Array
    converged: Array


def _check_batch(x: Any, labels: Any) -> tuple[Array, Array]:
    x, labels = jnp.asarray(x), jnp.asarray(labels)
    if x.ndim != 4 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be a float image batch [B, H, W, C], got {x.dtype} {x.shape}")
    if labels.shape != x.shape[:1] or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"labels must be int [B] = {x.shape[:1]}, got {labels.dtype} {labels.shape}"
        )
    return x, labels


def vgg_sr_grad(
    model: SpikingVGG,
    params: PyTree,
    x: Array,
    labels: Array,
    *,
    num_steps: int,
    beta: float = 0.05,
    state: dict | None = None,
    num_iters: int = 50,
    tol: float = 1e-4,
    solver: str = "fixed_point",
) -> SRResult:
    """Run the SNN on a static image for T steps and return ``(∇L_sr)_sr`` at its rates.

    Args:
      model: a :class:`~ottt_jax.models.SpikingVGG` (``feedback`` True or False).
      params: its parameters.
      x: the static image ``[B, H, W, C]``, shown at every step.
      labels: int ``[B]``.
      num_steps: ``T``.
      beta: the MSE weight β of the loss.
      state: the initial state (default ``model.init_state(B, (H, W, C), train=False)``); its
        dropout masks, if any, are used in the rate version too.
      num_iters, tol, solver: of :func:`implicit_sr_grad` (VGG-F only; GMRES runs per
        example, ``restart=50``; its float32 residual levels off near 1e-4 when ``I − ∂F/∂a``
        is ill-conditioned, so pass a looser ``tol`` with it).

    Returns:
      :class:`SRResult`. Feedforward: ``jax.grad`` through :func:`vgg_rate_forward`. VGG-F:
      :func:`implicit_sr_grad` of :func:`vgg_rate_map` at the actual rates.
    """
    _check_vgg(model)
    x, labels = _check_batch(x, labels)
    _check_steps_decay(num_steps, model.neuron.decay)
    if state is None:
        state = model.init_state(x.shape[0], tuple(x.shape[1:]), train=False)
    outs, final = forward(make_step(model), params, state, x, num_steps=num_steps)
    rates = jax.lax.stop_gradient(vgg_rates(model, final, num_steps))

    def loss_fn(o):
        return instantaneous_loss(o, labels, beta=beta, num_steps=1)

    if not model.feedback:
        loss, grads = jax.value_and_grad(
            lambda p: loss_fn(vgg_rate_forward(model, p, rates, x, state=state))
        )(params)
        zero = jnp.zeros((), jnp.float32)
        return SRResult(loss, grads, rates, outs, zero, jnp.array(True))
    res = implicit_sr_grad(
        lambda p, a: vgg_rate_map(model, p, a, x, num_steps=num_steps, anchor=rates, state=state),
        lambda p, a: vgg_readout(model, p, a, state=state),
        loss_fn,
        params,
        rates,
        num_iters=num_iters,
        tol=tol,
        solver=solver,
        per_example=True,
    )
    return SRResult(res.loss, res.grads, rates, outs, res.residual, res.converged)


# ---------------------------------------------------------------------------------------------
# Descent-direction report
# ---------------------------------------------------------------------------------------------


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
      model: a :class:`~ottt_jax.models.SpikingVGG` (its ``online`` flag is overridden: OTTT uses
        ``online=True``, BPTT ``online=False``; the parameters are the same).
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
    _check_vgg(model)
    _check_steps_decay(num_steps, model.neuron.decay)
    if not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    online = model.clone(online=True)
    offline = model.clone(online=False)

    def fn(params, x, labels):
        x, labels = _check_batch(x, labels)
        state = model.init_state(x.shape[0], tuple(x.shape[1:]), train=False)

        def loss_fn(out, y):
            return instantaneous_loss(out, y, beta=beta, num_steps=num_steps)

        ot = ottt_grad(make_step(online), loss_fn, params, state, x, labels, num_steps=num_steps)
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
            bp = bptt_grad(
                make_step(offline), loss_fn, params, state, x, labels, num_steps=num_steps
            )
        correct = jnp.argmax(ot.outputs.sum(0), -1) == labels
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
            "accuracy": jnp.mean(correct.astype(jnp.float32)),
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
