"""The implicit (equilibrium) gradient of a feedback network: fixed-point iteration or GMRES.

Model-free: the equilibrium map ``F(params, a)`` and the readout are passed in (see
:mod:`ottt_jax.analysis` for the implicit function theorem it applies).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
PyTree = Any

__all__ = ["ImplicitResult", "implicit_sr_grad"]


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
