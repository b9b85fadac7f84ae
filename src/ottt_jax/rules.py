"""The gradient-rule registry: each training rule (OTTT_A, OTTT_O, BPTT, ...) is one entry.

A :class:`Rule` declares the :class:`~ottt_jax.mode.Mode` the network must be built with, its
options (a frozen dataclass instance, each field with a default and ``metadata={"doc": ...}``;
the config's ``rule.*`` keys are derived from it) and, optionally, a state it carries across
batches. There are two kinds, with keyword-only fields:

* :class:`GradRule` — one optimizer update per batch. ``grad_fn(step, loss_fn, params, state,
  inputs, targets, *, num_steps, key, options, rule_state) -> (OnlineResult, new_rule_state)``.
* :class:`StepRule` — an optimizer update after every time step (OTTT_O). ``update_fn(step,
  loss_fn, optimizer, params, opt_state, state, inputs, targets, *, num_steps, key, options,
  rule_state, grad_reduce) -> OnlineUpdateResult``.

``step`` is an :class:`ottt_jax.online.Step`; ``key`` a PRNG key for stochastic rules;
``options`` the rule's options (None when it has none); ``rule_state`` the state from
``rule.init_rule_state(params)`` (None for a stateless rule). Adding a rule is one
:func:`register_rule` call (``tests/test_rules.py`` adds some)::

    register_rule(GradRule(name="my_rule", mode=mode.SLTT, summary="one line",
                           grad_fn=my_grad, options=MyOptions()))
    get_rule("my_rule").with_options(k=2).grad(step, ...)

:meth:`Rule.grad`/:meth:`Rule.apply` take an :class:`~ottt_jax.online.Step` (also wrapped, or a
bare callable, which runs in the rule's mode), refuse one of another mode, and trace it with the
rule's mode active so a layer or neuron of another mode is refused with its path. Input guards:
``num_steps`` of any integer type; ``time_axis=`` for a sequence with B == T;
``debug_checks=True`` for NaN/Inf inputs and out-of-range labels at run time
(:mod:`ottt_jax.guards`). See ``docs/architecture.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import optax

from ottt_jax import mode as mode_lib
from ottt_jax.guards import check_finite, time_major_inputs
from ottt_jax.mode import BPTT, OTTT, SLTT, Mode
from ottt_jax.online import (
    OnlineResult,
    OnlineUpdateResult,
    Step,
    as_step,
    bptt_grad,
    check_k,
    ottt_grad,
    ottt_update,
    sltt_k_grad,
)
from ottt_jax.registry import Registry

PyTree = Any

__all__ = [
    "GradRule",
    "Rule",
    "SLTTKOptions",
    "StepRule",
    "get_rule",
    "register_rule",
    "rule_names",
    "unregister_rule",
]


def _check_options(name: str, options: Any) -> None:
    if options is None:
        return
    if not (dataclasses.is_dataclass(options) and not isinstance(options, type)):
        raise ValueError(f"Rule.options must be a dataclass instance or None, got {options!r}")
    for f in dataclasses.fields(options):
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default or "doc" not in f.metadata:
            raise ValueError(
                f"rule {name!r}: option {f.name!r} needs a default and metadata={{'doc': ...}} "
                "(the config derives rule.<option> from them)"
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Rule:
    """One gradient rule (use one of its two kinds, :class:`GradRule` or :class:`StepRule`).

    Attributes:
      name: the registry name (e.g. ``"ottt_a"``; the config's ``method``).
      mode: the :class:`~ottt_jax.mode.Mode` the model must be built with.
      summary: a one-line description.
      options: a frozen dataclass instance of the rule's options, or None.
      init_state: ``init_state(params) -> rule_state``, the state carried across batches
        (in ``TrainState.rule_state``); None for a stateless rule.
    """

    name: str
    mode: Mode
    summary: str = ""
    options: Any = None
    init_state: Callable[[PyTree], PyTree] | None = None

    def __post_init__(self):
        if type(self) is Rule:
            raise TypeError("Rule is abstract: build a GradRule(...) or a StepRule(...)")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Rule.name must be a non-empty str, got {self.name!r}")
        if not isinstance(self.mode, Mode):
            raise ValueError(f"Rule.mode must be an ottt_jax.mode.Mode, got {self.mode!r}")
        if self.init_state is not None and not callable(self.init_state):
            raise ValueError(f"Rule.init_state must be callable or None, got {self.init_state!r}")
        _check_options(self.name, self.options)

    @property
    def per_step_update(self) -> bool:
        """Whether the optimizer updates after every time step (T updates per batch)."""
        return isinstance(self, StepRule)

    def with_options(self, **changes: Any) -> Rule:
        """Return this rule with some options changed (``dataclasses.replace`` on ``options``).

        Args:
          **changes: option fields and their new values.

        Returns:
          A new rule of the same kind; an unknown option is a ValueError naming the rule's
          options.
        """
        if not changes:
            return self
        if self.options is None:
            raise ValueError(f"rule {self.name!r} has no options; got {sorted(changes)}")
        known = {f.name for f in dataclasses.fields(self.options)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"rule {self.name!r} has options {sorted(known)}; unknown {unknown}")
        return dataclasses.replace(self, options=dataclasses.replace(self.options, **changes))

    def updates_per_batch(self, num_steps: int) -> int:
        """Return the optimizer updates one batch of ``num_steps`` steps makes (1 or T)."""
        is_int = isinstance(num_steps, (int, np.integer)) and not isinstance(num_steps, bool)
        if not is_int or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        return int(num_steps) if self.per_step_update else 1

    def init_rule_state(self, params: PyTree) -> PyTree:
        """Return the rule's initial state for ``params`` (None for a stateless rule)."""
        return None if self.init_state is None else self.init_state(params)

    def check_step(self, step: Any) -> Step:
        """Return the :class:`~ottt_jax.online.Step` the rule runs, refusing another mode.

        Args:
          step: a Step, a wrapped Step (``jax.jit``, ``functools.partial``, a decorator) or a
            bare callable (it then runs in the rule's mode).

        Returns:
          The Step.

        Raises:
          ValueError: naming the rule's mode and the step's.
        """
        s = as_step(step)
        if s is None:
            return Step(step, self.mode)
        if s.mode is None:  # a model without a mode of its own: it runs in the rule's
            return s._replace(mode=self.mode)
        if s.mode != self.mode:
            raise ValueError(
                f"rule {self.name!r} needs a model built with mode={self.mode}, but the step "
                f"function's model has mode={s.mode}; build the model with mode=rule.mode"
            )
        return s

    def _prepare(self, step, inputs, targets, num_steps, time_axis, debug_checks):
        """Return ``(step, inputs, num_steps, context)`` after the step and input guards."""
        s = self.check_step(step)
        num_steps, inputs = time_major_inputs(inputs, targets, num_steps, time_axis)
        if debug_checks:
            check_finite(inputs, "inputs")
        ctx = mode_lib.active(self.mode, f"rule {self.name!r}", debug=bool(debug_checks))
        return s, inputs, num_steps, ctx

    def apply(
        self,
        step: Any,
        loss_fn: Callable[..., Any],
        optimizer: optax.GradientTransformation,
        params: PyTree,
        opt_state: PyTree,
        state: PyTree,
        inputs: PyTree,
        targets: PyTree,
        *,
        num_steps: Any = None,
        key: Any = None,
        grad_reduce: Callable[[PyTree], PyTree] | None = None,
        rule_state: PyTree = None,
        time_axis: int | None = None,
        debug_checks: bool = False,
    ) -> OnlineUpdateResult:
        """Train on one batch: one optimizer update (a GradRule) or one per time step (a StepRule).

        Args:
          step: an :class:`~ottt_jax.online.Step` (see :meth:`check_step`).
          loss_fn, params, state, inputs, targets, num_steps: as in
            :func:`ottt_jax.online.ottt_grad`.
          optimizer: an optax transformation.
          opt_state: its state.
          key: PRNG key for a stochastic rule.
          grad_reduce: optional function applied to the gradient before each update.
          rule_state: the rule's state (None for a stateless rule).
          time_axis: 0 (time-major) or 1 (batch-major) for a sequence; needed when B == T.
          debug_checks: refuse non-finite inputs and out-of-range labels at run time.

        Returns:
          :class:`~ottt_jax.online.OnlineUpdateResult` with the new ``rule_state``. Under a
          StepRule, step ``t+1`` runs with the parameters updated at step ``t``.
        """
        s, inputs, num_steps, ctx = self._prepare(
            step, inputs, targets, num_steps, time_axis, debug_checks
        )
        args = (s, loss_fn, optimizer, params, opt_state, state, inputs, targets)
        kw = {"num_steps": num_steps, "key": key, "rule_state": rule_state}
        with ctx:
            return self._update(*args, **kw, grad_reduce=grad_reduce)

    def _update(self, *args: Any, **kw: Any) -> OnlineUpdateResult:  # pragma: no cover - abstract
        """Run the kind's update on a checked step inside the rule's mode (see :meth:`apply`)."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True, kw_only=True)
class GradRule(Rule):
    """A rule with one optimizer update per batch (OTTT_A, BPTT, SLTT, SLTT-K).

    Attributes:
      grad_fn: ``grad_fn(step, loss_fn, params, state, inputs, targets, *, num_steps, key,
        options, rule_state) -> (OnlineResult, new_rule_state)``.
    """

    grad_fn: Callable[..., tuple[OnlineResult, PyTree]]

    def __post_init__(self):
        super().__post_init__()
        if not callable(self.grad_fn):
            raise ValueError(f"GradRule.grad_fn must be callable, got {self.grad_fn!r}")

    def grad(
        self,
        step: Any,
        loss_fn: Callable[..., Any],
        params: PyTree,
        state: PyTree,
        inputs: PyTree,
        targets: PyTree,
        *,
        num_steps: Any = None,
        key: Any = None,
        rule_state: PyTree = None,
        time_axis: int | None = None,
        debug_checks: bool = False,
    ) -> OnlineResult:
        """Return the rule's batch gradient.

        Args:
          step: an :class:`~ottt_jax.online.Step` (see :meth:`Rule.check_step`).
          loss_fn, params, state, inputs, targets, num_steps: as in
            :func:`ottt_jax.online.ottt_grad`.
          key: PRNG key for a stochastic rule.
          rule_state: the rule's state (None for a stateless rule).
          time_axis: 0 (time-major) or 1 (batch-major) for a sequence; needed when B == T.
          debug_checks: refuse non-finite inputs and out-of-range labels at run time.

        Returns:
          :class:`~ottt_jax.online.OnlineResult` with the gradients summed over the T steps.
        """
        s, inputs, num_steps, ctx = self._prepare(
            step, inputs, targets, num_steps, time_axis, debug_checks
        )
        kw = {"num_steps": num_steps, "key": key, "rule_state": rule_state}
        with ctx:
            res, _ = self.grad_fn(
                s, loss_fn, params, state, inputs, targets, **kw, options=self.options
            )
        return res

    def _update(
        self, step, loss_fn, optimizer, params, opt_state, state, inputs, targets, **kw
    ) -> OnlineUpdateResult:
        """Take the batch gradient, then make one optimizer update (see :meth:`Rule.apply`)."""
        grad_reduce = kw.pop("grad_reduce")
        res, rule_state = self.grad_fn(
            step, loss_fn, params, state, inputs, targets, **kw, options=self.options
        )
        grads = res.grads if grad_reduce is None else grad_reduce(res.grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return OnlineUpdateResult(
            loss=res.loss,
            params=params,
            opt_state=opt_state,
            outputs=res.outputs,
            state=res.state,
            rule_state=rule_state,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepRule(Rule):
    """A rule with an optimizer update after every time step (OTTT_O).

    Attributes:
      update_fn: ``update_fn(step, loss_fn, optimizer, params, opt_state, state, inputs,
        targets, *, num_steps, key, options, rule_state, grad_reduce) -> OnlineUpdateResult``.
    """

    update_fn: Callable[..., OnlineUpdateResult]

    def __post_init__(self):
        super().__post_init__()
        if not callable(self.update_fn):
            raise ValueError(f"StepRule.update_fn must be callable, got {self.update_fn!r}")

    def grad(self, *args: Any, **kwargs: Any) -> OnlineResult:
        """Refuse: a per-step rule has no batch gradient (use :meth:`apply`)."""
        raise ValueError(
            f"rule {self.name!r} updates after every step and has no batch gradient; use rule.apply"
        )

    def _update(self, *args: Any, **kw: Any) -> OnlineUpdateResult:
        """Run ``update_fn``: an optimizer update after every step (see :meth:`Rule.apply`)."""
        return self.update_fn(*args, **kw, options=self.options)


def _check_rule(rule: Any) -> None:
    if not isinstance(rule, Rule):
        raise ValueError(f"register_rule expects a GradRule or StepRule, got {rule!r}")


_RULES: Registry[Rule] = Registry("rule", check=_check_rule)


def register_rule(rule: Rule, overwrite: bool = False) -> Rule:
    """Add ``rule`` to the registry under ``rule.name`` (a taken name needs ``overwrite``)."""
    _check_rule(rule)
    return _RULES.register(rule.name, rule, overwrite=overwrite)


def get_rule(name: str) -> Rule:
    """Return the registered rule ``name`` (a ValueError lists the registered names)."""
    return _RULES.get(name)


def rule_names() -> tuple[str, ...]:
    """Return the registered rule names in registration order."""
    return _RULES.names()


def unregister_rule(name: str) -> None:
    """Remove the rule ``name`` from the registry."""
    _RULES.unregister(name)


def _stateless(fn: Callable[..., OnlineResult]) -> Callable[..., tuple[OnlineResult, None]]:
    """Adapt an online transform to ``grad_fn`` (options and key unused, no rule state)."""

    def grad_fn(*args, num_steps, key, options, rule_state):
        return fn(*args, num_steps=num_steps), rule_state

    return grad_fn


def _ottt_o(*args, num_steps, key, options, rule_state, grad_reduce):
    res = ottt_update(*args, num_steps=num_steps, grad_reduce=grad_reduce)
    return res._replace(rule_state=rule_state)


_OTTT_A = "OTTT_A: per-step gradients summed (Eq. 5)"
register_rule(GradRule(name="ottt_a", mode=OTTT, summary=_OTTT_A, grad_fn=_stateless(ottt_grad)))
_OTTT_O = "OTTT_O: an optimizer update every step"
register_rule(StepRule(name="ottt_o", mode=OTTT, summary=_OTTT_O, update_fn=_ottt_o))
_BPTT = "BPTT: autodiff through the whole sequence"
register_rule(GradRule(name="bptt", mode=BPTT, summary=_BPTT, grad_fn=_stateless(bptt_grad)))


# SLTT and SLTT-K: Meng et al., "Towards Memory- and Time-Efficient Backpropagation for Training
# Spiking Neural Networks", ICCV 2023 (authors' code: github.com/qymeng94/SLTT).


@dataclasses.dataclass(frozen=True)
class SLTTKOptions:
    """Options of the ``sltt_k`` rule.

    Attributes:
      k: the number of time steps (of the T) that take a gradient, ``1 <= k <= T``; the authors'
        default is 2. Config key ``rule.k``.
    """

    k: int = dataclasses.field(
        default=2, metadata={"doc": "SLTT-K: time steps (of the T) that take a gradient, 1..T"}
    )

    def check(self, num_steps: int) -> None:
        """Refuse ``k`` outside ``[1, T]`` (the config runs it; the message starts with ``k``)."""
        check_k(self.k, num_steps)


def _sltt_k(step, loss_fn, params, state, inputs, targets, *, num_steps, key, options, rule_state):
    res = sltt_k_grad(
        step, loss_fn, params, state, inputs, targets, num_steps=num_steps, key=key, k=options.k
    )
    return res, rule_state


# SLTT is the per-step sum of ottt_grad over a step built with mode.SLTT: the mode detaches the
# membrane and makes a synaptic layer take ∇W = δ_l[t] s_{l−1}[t]ᵀ at its instantaneous input.
_SLTT = "SLTT: per-step gradients at the instantaneous spikes"
register_rule(GradRule(name="sltt", mode=SLTT, summary=_SLTT, grad_fn=_stateless(ottt_grad)))
_SLTT_K = "SLTT-K: SLTT's gradient at K random steps of the T (rule.k), the rest forward only"
register_rule(
    GradRule(name="sltt_k", mode=SLTT, summary=_SLTT_K, grad_fn=_sltt_k, options=SLTTKOptions())
)
