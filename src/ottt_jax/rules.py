"""The gradient-rule registry: each training rule (OTTT_A, OTTT_O, BPTT, ...) is one entry.

A :class:`Rule` declares the :class:`~ottt_jax.mode.Mode` the network must be built with, whether
it updates the parameters once per sequence or after every step, and the function that runs one
batch. The trainer, the benchmarks and analysis pick rules only through :func:`get_rule`.

Adding a rule is one :func:`register_rule` call (``tests/test_rules.py`` adds one)::

    @dataclasses.dataclass(frozen=True)
    class KOptions:
        k: int = 1  # a rule option (e.g. SLTT-K's number of steps taking gradients)

    def my_grad(step, loss_fn, params, state, inputs, targets, *, num_steps, key, options):
        ...  # -> OnlineResult

    register_rule(Rule("my_rule", mode.SLTT, False, "one line", my_grad, options=KOptions()))
    get_rule("my_rule").with_options(k=2).grad(step, ...)

The batch function's signature depends on ``per_step_update``:

* ``False`` (a *grad rule*): ``fn(step, loss_fn, params, state, inputs, targets, *, num_steps,
  key, options) -> OnlineResult`` (the gradient summed over the sequence);
  :meth:`Rule.apply` adds one optimizer update.
* ``True`` (a *per-step rule*): ``fn(step, loss_fn, optimizer, params, opt_state, state, inputs,
  targets, *, num_steps, key, options, grad_reduce) -> OnlineUpdateResult`` (T updates).

``key`` is a PRNG key for stochastic rules (None for the built-in ones) and ``options`` the
rule's frozen options dataclass (None when it has none).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optax

from ottt_jax.mode import BPTT, OTTT, SLTT, Mode
from ottt_jax.online import (
    OnlineResult,
    OnlineUpdateResult,
    bptt_grad,
    ottt_grad,
    ottt_update,
    sltt_k_grad,
)

PyTree = Any

__all__ = ["Rule", "SLTTKOptions", "get_rule", "register_rule", "rule_names"]


@dataclasses.dataclass(frozen=True)
class Rule:
    """One gradient rule.

    Attributes:
      name: the registry name (e.g. ``"ottt_a"``; the config's ``method``).
      mode: the :class:`~ottt_jax.mode.Mode` the model must be built with.
      per_step_update: True when the optimizer updates after every time step (OTTT_O), so a
        batch of T steps makes T updates; False for one update per batch.
      summary: a one-line description.
      batch_fn: the function that runs one batch (signature in the module docstring).
      options: a frozen dataclass instance of the rule's options, or None.
    """

    name: str
    mode: Mode
    per_step_update: bool
    summary: str
    batch_fn: Callable[..., Any]
    options: Any = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Rule.name must be a non-empty str, got {self.name!r}")
        if not isinstance(self.mode, Mode):
            raise ValueError(f"Rule.mode must be an ottt_jax.mode.Mode, got {self.mode!r}")
        if not isinstance(self.per_step_update, bool):
            raise ValueError(f"Rule.per_step_update must be a bool, got {self.per_step_update!r}")
        if not callable(self.batch_fn):
            raise ValueError(f"Rule.batch_fn must be callable, got {self.batch_fn!r}")
        o = self.options
        if o is not None and not (dataclasses.is_dataclass(o) and not isinstance(o, type)):
            raise ValueError(f"Rule.options must be a dataclass instance or None, got {o!r}")

    def with_options(self, **changes: Any) -> Rule:
        """Return this rule with some options changed (``dataclasses.replace`` on ``options``).

        Args:
          **changes: option fields and their new values.

        Returns:
          A new :class:`Rule`; an unknown option is a ValueError naming the rule's options.
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
        if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        return num_steps if self.per_step_update else 1

    def check_step(self, step: Callable[..., Any]) -> None:
        """Refuse a step built for another mode (``step.mode``, set by ``models.make_step``).

        Args:
          step: a step function; one without a ``mode`` attribute is accepted as is.

        Raises:
          ValueError: naming the rule's mode and the step's.
        """
        got = getattr(step, "mode", None)
        if got is not None and got != self.mode:
            raise ValueError(
                f"rule {self.name!r} needs a model built with mode={self.mode}, but the step "
                f"function's model has mode={got}; build the model with mode=rule.mode"
            )

    def grad(
        self,
        step: Callable[..., Any],
        loss_fn: Callable[..., Any],
        params: PyTree,
        state: PyTree,
        inputs: PyTree,
        targets: PyTree,
        *,
        num_steps: int | None = None,
        key: Any = None,
    ) -> OnlineResult:
        """Return the rule's batch gradient (grad rules only).

        Args:
          step, loss_fn, params, state, inputs, targets, num_steps: as in
            :func:`ottt_jax.online.ottt_grad`.
          key: PRNG key for a stochastic rule.

        Returns:
          :class:`~ottt_jax.online.OnlineResult` with the gradients summed over the T steps.
        """
        if self.per_step_update:
            raise ValueError(
                f"rule {self.name!r} updates after every step and has no batch gradient; "
                "use rule.apply"
            )
        self.check_step(step)
        return self.batch_fn(
            step,
            loss_fn,
            params,
            state,
            inputs,
            targets,
            num_steps=num_steps,
            key=key,
            options=self.options,
        )

    def apply(
        self,
        step: Callable[..., Any],
        loss_fn: Callable[..., Any],
        optimizer: optax.GradientTransformation,
        params: PyTree,
        opt_state: PyTree,
        state: PyTree,
        inputs: PyTree,
        targets: PyTree,
        *,
        num_steps: int | None = None,
        key: Any = None,
        grad_reduce: Callable[[PyTree], PyTree] | None = None,
    ) -> OnlineUpdateResult:
        """Train on one batch: one optimizer update (grad rules) or one per step.

        Args:
          step, loss_fn, params, state, inputs, targets, num_steps: as in :meth:`grad`.
          optimizer: an optax transformation.
          opt_state: its state.
          key: PRNG key for a stochastic rule.
          grad_reduce: optional function applied to each gradient before its update.

        Returns:
          :class:`~ottt_jax.online.OnlineUpdateResult` after ``updates_per_batch(T)`` updates.
        """
        self.check_step(step)
        if self.per_step_update:
            return self.batch_fn(
                step,
                loss_fn,
                optimizer,
                params,
                opt_state,
                state,
                inputs,
                targets,
                num_steps=num_steps,
                key=key,
                options=self.options,
                grad_reduce=grad_reduce,
            )
        res = self.grad(step, loss_fn, params, state, inputs, targets, num_steps=num_steps, key=key)
        grads = res.grads if grad_reduce is None else grad_reduce(res.grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return OnlineUpdateResult(
            loss=res.loss, params=params, opt_state=opt_state, outputs=res.outputs, state=res.state
        )


_RULES: dict[str, Rule] = {}


def register_rule(rule: Rule, overwrite: bool = False) -> Rule:
    """Add ``rule`` to the registry under ``rule.name``.

    Args:
      rule: the :class:`Rule`.
      overwrite: replace an existing entry of that name (else that is a ValueError).

    Returns:
      ``rule``.
    """
    if not isinstance(rule, Rule):
        raise ValueError(f"register_rule expects an ottt_jax.rules.Rule, got {rule!r}")
    if rule.name in _RULES and not overwrite:
        raise ValueError(f"rule {rule.name!r} is already registered (pass overwrite=True)")
    _RULES[rule.name] = rule
    return rule


def get_rule(name: str) -> Rule:
    """Return the registered rule ``name`` (a ValueError lists the registered names)."""
    if name not in _RULES:
        raise ValueError(f"unknown rule {name!r}; registered rules: {rule_names()}")
    return _RULES[name]


def rule_names() -> tuple[str, ...]:
    """Return the registered rule names in registration order."""
    return tuple(_RULES)


def _ottt_a(*args, num_steps, key, options):
    return ottt_grad(*args, num_steps=num_steps)


def _bptt(*args, num_steps, key, options):
    return bptt_grad(*args, num_steps=num_steps)


def _ottt_o(*args, num_steps, key, options, grad_reduce):
    return ottt_update(*args, num_steps=num_steps, grad_reduce=grad_reduce)


register_rule(Rule("ottt_a", OTTT, False, "OTTT_A: per-step gradients summed (Eq. 5)", _ottt_a))
register_rule(Rule("ottt_o", OTTT, True, "OTTT_O: an optimizer update every step", _ottt_o))
register_rule(Rule("bptt", BPTT, False, "BPTT: autodiff through the whole sequence", _bptt))


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


def _sltt(step, loss_fn, params, state, inputs, targets, *, num_steps, key, options):
    """SLTT: ``Σ_t ∇L[t]`` of a step built with ``mode.SLTT`` (one backward per step).

    The mode does the rest: the membrane entering a step is detached and a synaptic layer fed by
    spikes takes ``∇W = δ_l[t] s_{l−1}[t]ᵀ`` at its instantaneous input, with no trace carried,
    so the per-step sum of :func:`~ottt_jax.online.ottt_grad` is SLTT's gradient.
    """
    return ottt_grad(step, loss_fn, params, state, inputs, targets, num_steps=num_steps)


def _sltt_k(step, loss_fn, params, state, inputs, targets, *, num_steps, key, options):
    k = options.k
    return sltt_k_grad(
        step, loss_fn, params, state, inputs, targets, num_steps=num_steps, key=key, k=k
    )


register_rule(
    Rule("sltt", SLTT, False, "SLTT: per-step gradients at the instantaneous spikes", _sltt)
)
register_rule(
    Rule(
        "sltt_k",
        SLTT,
        False,
        "SLTT-K: SLTT's gradient at K random steps of the T (rule.k), the rest forward only",
        _sltt_k,
        options=SLTTKOptions(),
    )
)
