"""Varying manual axes: the rules' values typed as ``shard_map(check_vma=True)`` requires.

Inside ``jax.shard_map`` (default ``check_vma=True``) every value records the manual mesh axes
it *varies* over (its shard of the batch differs per device) — JAX's docs call this the value's
vma. Two places in the library must agree with it:

* a ``lax.scan`` carry enters and leaves the body with one type: a zero created with
  ``jnp.float32(0)`` is replicated, the sum of per-device losses is not;
* a custom VJP returns cotangents typed like its primals: a replicated weight receives the
  cross-device sum of its per-device cotangents, as JAX's own autodiff gives it.

Outside ``shard_map``, or with ``check_vma=False``, no value varies and every helper here
returns its input unchanged.
"""

from __future__ import annotations

from typing import Any

import jax
from jax import lax

__all__ = ["cast_varying", "match_varying", "varying_axes"]


def _leaf_axes(leaf: Any) -> frozenset:
    typ = jax.typeof(leaf)
    mat = getattr(typ, "manual_axis_type", None)
    if mat is not None:
        return frozenset(mat.varying)
    return frozenset(getattr(typ, "vma", ()))


def _ordered(axes) -> tuple:
    return tuple(sorted(axes, key=str))


def varying_axes(*trees: Any) -> frozenset:
    """Return the manual mesh axes any leaf of ``trees`` varies over.

    Args:
      *trees: pytrees of arrays (or scalars).

    Returns:
      The union of the leaves' varying axes; empty outside ``shard_map`` or with
      ``check_vma=False``.
    """
    axes: frozenset = frozenset()
    for leaf in jax.tree.leaves(trees):
        axes |= _leaf_axes(leaf)
    return axes


def cast_varying(tree: Any, axes) -> Any:
    """Mark every leaf of ``tree`` as varying over ``axes`` (a type change; no data moves).

    Args:
      tree: a pytree of arrays.
      axes: manual mesh axes (any iterable); those a leaf varies over already are skipped.

    Returns:
      ``tree`` with each leaf varying over (at least) ``axes``: the initial carry of a scan whose
      body mixes the leaf with per-device data, or parameters whose gradient must stay the
      per-device one (differentiating at a replicated value sums its cotangents over devices).
    """
    axes = frozenset(axes)
    if not axes:
        return tree

    def cast(leaf):
        missing = axes - _leaf_axes(leaf)
        return lax.pcast(leaf, _ordered(missing), to="varying") if missing else leaf

    return jax.tree.map(cast, tree)


def match_varying(ct: Any, axes) -> Any:
    """Type cotangent ``ct`` like a primal that varies over ``axes``.

    Args:
      ct: a cotangent pytree computed from per-device values.
      axes: the manual axes the primal varies over (see :func:`varying_axes`).

    Returns:
      ``ct`` summed (``lax.psum``) over the axes it varies over and the primal does not — the
      transpose of broadcasting a replicated primal to every device — and cast to varying over
      the axes the primal varies over and it does not.
    """
    axes = frozenset(axes)

    def match(leaf):
        have = _leaf_axes(leaf)
        extra, missing = have - axes, axes - have
        if extra:
            leaf = lax.psum(leaf, _ordered(extra))
        if missing:
            leaf = lax.pcast(leaf, _ordered(missing), to="varying")
        return leaf

    return jax.tree.map(match, ct)
