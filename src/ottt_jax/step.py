"""The step contract: :class:`Step` (a step function with its mode and hoist) and its helpers.

A step advances a model by one time step, ``step(params, state, x_t) -> (out_t, new_state)``.
The rules (:mod:`ottt_jax.rules`) take it as a :class:`Step`, ``Step(fn, mode, hoist=None)``:
data, not attributes on a function, so it survives wrapping (:func:`as_step`). See
``docs/architecture.md`` ("The step contract") for the decisions on wrappers.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ottt_jax import mode as mode_lib
from ottt_jax.mode import Mode

PyTree = Any
StepFn = Callable[[PyTree, PyTree, PyTree], tuple[PyTree, PyTree]]

__all__ = [
    "Hoist",
    "Step",
    "as_step",
    "check_num_steps",
    "hoisted",
    "step_parts",
    "with_step_mode",
]


class Hoist(NamedTuple):
    """A step's loop-invariant parameter transform: ``step(p, st, x) == inner(prepare(p), st, x)``.

    Set it as ``step.hoist``. With the parameters fixed over a sequence, ``prepare`` is the same
    at every step; a rule that hoists it computes ``q = prepare(params)`` once, runs ``inner``
    with ``q``, sums the per-step gradients ``Σ_t ∂L[t]/∂q`` and returns
    ``vjp_prepare(Σ_t ∂L[t]/∂q) = Σ_t ∂L[t]/∂params`` (the VJP is linear; only the float
    summation order differs). The time loop then keeps neither ``prepare``'s residuals nor a
    gradient accumulator the size of ``params`` besides the one of ``q``.

    Attributes:
      prepare: ``prepare(params) -> q``, differentiable.
      inner: ``inner(q, state, x_t) -> (out_t, state)``.
    """

    prepare: Callable[[PyTree], PyTree]
    inner: StepFn


@dataclasses.dataclass(frozen=True)
class Step:
    """A step function with the mode it was built for: ``step(params, state, x_t)``.

    A frozen dataclass (immutable, hashable, and weak-referenceable, which ``jax.jit(step)``
    needs; a NamedTuple is not), with ``_replace`` like a NamedTuple's.

    Attributes:
      fn: ``fn(params, state, x_t) -> (out_t, new_state)``.
      mode: the :class:`~ottt_jax.mode.Mode` of the model behind ``fn``; a rule refuses a step
        of another mode, and traces ``fn`` with this mode active. None: the model has no mode
        of its own and runs in the mode of the rule given it (its layers inherit it).
      hoist: an optional :class:`Hoist` with ``fn(p, st, x) == hoist.inner(hoist.prepare(p),
        st, x)``.
    """

    fn: StepFn
    mode: Mode | None
    hoist: Hoist | None = None

    def _replace(self, **changes: Any) -> Step:
        """Return the step with some fields changed."""
        return dataclasses.replace(self, **changes)

    def __call__(self, params: PyTree, state: PyTree, x_t: PyTree) -> tuple[PyTree, PyTree]:
        """Run one step: ``fn(params, state, x_t)``."""
        return self.fn(params, state, x_t)

    def map(self, transform: Callable[[StepFn], StepFn]) -> Step:
        """Return the step with ``transform`` applied to ``fn`` and to ``hoist.inner``.

        Args:
          transform: a function transform that keeps the step signature (e.g. a decorator
            adding logging, ``jax.checkpoint``). It must act the same on both.

        Returns:
          A :class:`Step` of the same mode that keeps its hoist.
        """
        hoist = self.hoist
        if hoist is not None:
            hoist = Hoist(prepare=hoist.prepare, inner=transform(hoist.inner))
        return Step(transform(self.fn), self.mode, hoist)


def _check_step_fields(step: Step) -> Step:
    if not callable(step.fn):
        raise ValueError(f"Step.fn must be callable, got {step.fn!r}")
    if step.mode is not None and not isinstance(step.mode, Mode):
        raise ValueError(f"Step.mode must be an ottt_jax.mode.Mode or None, got {step.mode!r}")
    if step.hoist is not None and not isinstance(step.hoist, Hoist):
        raise ValueError(f"Step.hoist must be an ottt_jax.online.Hoist, got {step.hoist!r}")
    return step


def _is_jit(f: Any) -> bool:
    return isinstance(f, jax.stages.Wrapped) and hasattr(f, "lower")


def as_step(step: Any, mode: Mode | None = None) -> Step | None:
    """Return the :class:`Step` a (possibly wrapped) step function stands for.

    Args:
      step: a :class:`Step`; ``jax.jit(step)`` (the Step itself is returned: same function,
        mode and hoist); ``functools.partial``, ``jax.vmap`` or a ``functools.wraps`` decorator
        around a Step (``Step(wrapper, mode)``: the mode is kept, the hoist dropped since the
        wrapper may change the function); or a bare callable.
      mode: the mode of a bare callable (None: unknown).

    Returns:
      The Step, or None for a bare callable without ``mode``.

    Raises:
      ValueError: ``step`` is not callable, or ``mode`` disagrees with the Step's own.
    """
    if not callable(step):
        raise ValueError(f"step must be callable (an ottt_jax.Step), got {type(step).__name__}")
    found, f, wrapped = None, step, False
    for _ in range(64):  # unwrap __wrapped__ / .func chains down to a Step
        if isinstance(f, Step):
            found = _check_step_fields(f)
            break
        inner = f.func if isinstance(f, functools.partial) else getattr(f, "__wrapped__", None)
        if inner is None:
            break
        wrapped = wrapped or not _is_jit(f)
        f = inner
    if found is None:
        return None if mode is None else _check_step_fields(Step(step, mode))
    if mode is not None and found.mode not in (None, mode):
        raise ValueError(f"mode={mode} was given for a step built with mode={found.mode}")
    if mode is not None and found.mode is None:
        found = found._replace(mode=mode)
    return Step(step, found.mode) if wrapped else found


def step_parts(step: Any) -> tuple[StepFn, Hoist | None, Mode | None]:
    """Return ``(fn, hoist, mode)`` of a step: a Step, a wrapped Step or a bare callable.

    Args:
      step: as in :func:`as_step`.

    Returns:
      The function to call, its :class:`Hoist` (None when there is none or a wrapper hides it)
      and its mode (None when unknown).
    """
    s = as_step(step)
    if s is None:
        return step, None, None
    return s.fn, s.hoist, s.mode


def with_step_mode(f: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a transform ``f(step, ...)`` so it traces a :class:`Step` in the step's mode.

    Args:
      f: a function whose first argument is a step.

    Returns:
      ``f`` run with ``step``'s mode active (:func:`ottt_jax.mode.active`), unless the mode is
      unknown or a rule already made one active.
    """

    @functools.wraps(f)
    def run(step, *args, **kwargs):
        _, _, mode = step_parts(step)
        if mode is None or mode_lib.active_mode() is not None:  # bare, or a rule set it
            return f(step, *args, **kwargs)
        with mode_lib.active(mode, f"{f.__name__} of a Step", debug=mode_lib.debug_checks()):
            return f(step, *args, **kwargs)

    return run


def hoisted(step: Any, params: PyTree) -> tuple[StepFn, PyTree, Callable[[PyTree], PyTree]]:
    """Return ``(inner_step, q, pullback)``: the step over hoisted parameters.

    Args:
      step: a step function or :class:`Step` (its ``hoist``, if any, is used).
      params: its parameters.

    Returns:
      ``inner_step(q, state, x_t)``, the parameters ``q`` it runs with, and ``pullback(g_q) ->
      g_params``. Without a hoist: ``(fn, params, identity)``.
    """
    fn, hoist, _ = step_parts(step)
    if hoist is None:
        return fn, params, lambda g: g
    q, vjp = jax.vjp(hoist.prepare, params)
    return hoist.inner, q, lambda g: vjp(g)[0]


def check_num_steps(num_steps: Any, field: str = "num_steps") -> int:
    """Return ``num_steps`` as a Python int; NumPy and concrete JAX integers are accepted.

    Args:
      num_steps: ``T``.
      field: the name the error uses.

    Returns:
      ``int(num_steps)``.

    Raises:
      ValueError: naming ``field`` unless it is a (static) integer >= 1.
    """
    if isinstance(num_steps, jax.core.Tracer):
        raise ValueError(
            f"{field} must be a static integer (it sets the scan length); got a traced value: "
            "pass it as a Python int or mark it static in jax.jit"
        )
    if isinstance(num_steps, (bool, np.bool_)) or (
        hasattr(num_steps, "dtype") and not jnp.issubdtype(num_steps.dtype, jnp.integer)
    ):
        raise ValueError(f"{field} must be a positive int, got {num_steps!r}")
    try:
        t = operator.index(num_steps) if not hasattr(num_steps, "shape") else int(num_steps)
    except TypeError:
        raise ValueError(f"{field} must be a positive int, got {num_steps!r}") from None
    if t < 1:
        raise ValueError(f"{field} must be a positive int, got {num_steps!r}")
    return t
