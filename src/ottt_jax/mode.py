"""The mode: what a gradient rule asks of the network it trains.

A :class:`Mode` is the one object neurons, layers and models need to know about the rule that
trains them (see ``docs/architecture.md``):

* ``temporal`` — ``"detached"``: the membrane entering a step carries no gradient (OTTT, SLTT;
  Sec. 4.1), or ``"kept"``: it keeps its gradient through time (BPTT).
* ``synapse`` — how a synaptic layer fed by spikes takes its weight gradient: ``"trace"`` (at the
  presynaptic trace, Eq. (5): ``∇W = Σ_t g_u[t]·â[t]ᵀ``), ``"instantaneous"`` (at the input spikes
  of the same step, SLTT) or ``"autodiff"`` (plain autodiff, BPTT).

Constants: :data:`OTTT`, :data:`SLTT`, :data:`BPTT`.

**One source for the mode.** Layers and neurons default to ``mode=None`` (inherit). While a rule
traces its step (:meth:`ottt_jax.rules.Rule.grad`, :meth:`~ottt_jax.rules.Rule.apply`, and the
functions of :mod:`ottt_jax.online` given an :class:`~ottt_jax.online.Step`), the step's mode is
*active* (:func:`active`): a layer or neuron without a mode of its own takes it, and one whose
mode (its own, or its enclosing model's) differs is a ValueError naming its path
(:func:`resolve_mode`). This check runs at trace time inside the rule, so no wrapper around the
step (``jax.jit``, ``functools.partial``, a decorator, a bare lambda) can skip it. Outside any
rule, a layer without a mode runs in :data:`OTTT`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import NamedTuple

__all__ = [
    "BPTT",
    "OTTT",
    "SLTT",
    "SYNAPSES",
    "TEMPORALS",
    "Mode",
    "active",
    "active_mode",
    "debug_checks",
    "resolve_mode",
]

#: The allowed values of :attr:`Mode.temporal`.
TEMPORALS = ("detached", "kept")
#: The allowed values of :attr:`Mode.synapse`.
SYNAPSES = ("trace", "instantaneous", "autodiff")


class _ModeFields(NamedTuple):
    temporal: str
    synapse: str


class Mode(_ModeFields):
    """How neurons treat the temporal path and how synaptic layers take weight gradients.

    Attributes:
      temporal: ``"detached"`` or ``"kept"``.
      synapse: ``"trace"``, ``"instantaneous"`` or ``"autodiff"``.

    Raises:
      ValueError: naming the field when a value is not one of the allowed ones.
    """

    __slots__ = ()

    def __new__(cls, temporal: str, synapse: str) -> Mode:
        """Build a validated mode.

        Args:
          temporal: one of :data:`TEMPORALS`.
          synapse: one of :data:`SYNAPSES`.

        Returns:
          The mode (a hashable tuple, usable as a static attribute of a Flax module).
        """
        if temporal not in TEMPORALS:
            raise ValueError(f"Mode.temporal must be one of {TEMPORALS}, got {temporal!r}")
        if synapse not in SYNAPSES:
            raise ValueError(f"Mode.synapse must be one of {SYNAPSES}, got {synapse!r}")
        return super().__new__(cls, temporal, synapse)

    @property
    def detach_membrane(self) -> bool:
        """Whether the membrane entering a step is detached (no gradient across time steps)."""
        return self.temporal == "detached"

    @property
    def keeps_trace(self) -> bool:
        """Whether neurons carry a presynaptic trace in their state.

        True for ``"trace"`` (the rule needs it) and ``"autodiff"`` (BPTT keeps it so its state,
        statistics and compiled memory stay those of the paper's baseline); False for
        ``"instantaneous"``.
        """
        return self.synapse != "instantaneous"

    @property
    def trace_rule(self) -> bool:
        """Whether synaptic layers fed by spikes take ``∇W`` at the presynaptic trace."""
        return self.synapse == "trace"


#: OTTT (OTTT_A and OTTT_O): detached membrane, weight gradients at the presynaptic trace.
OTTT = Mode("detached", "trace")
#: SLTT: detached membrane, weight gradients at the instantaneous input spikes.
SLTT = Mode("detached", "instantaneous")
#: The BPTT baseline: membrane gradients through time, plain autodiff everywhere.
BPTT = Mode("kept", "autodiff")


class _Active(NamedTuple):
    mode: Mode | None
    source: str
    debug: bool


# The mode of the step being traced; a ContextVar scoped by ``with active(...)``, so threads and
# nested rules each see their own and nothing outlives the block.
_ACTIVE: contextvars.ContextVar[_Active | None] = contextvars.ContextVar(
    "ottt_jax_active_mode", default=None
)


@contextlib.contextmanager
def active(mode: Mode | None, source: str, *, debug: bool = False) -> Iterator[None]:
    """Make ``mode`` the active mode while the block traces a step.

    Args:
      mode: the mode every layer and neuron traced inside must run in (None: no mode, only the
        ``debug`` flag).
      source: who asks for it, for the error message (e.g. ``"rule 'bptt'"``).
      debug: turn on the runtime input checks (:func:`debug_checks`) for the block.

    Yields:
      None; on exit the previous active mode is back.
    """
    if mode is not None and not isinstance(mode, Mode):
        raise ValueError(f"mode must be an ottt_jax.mode.Mode, got {mode!r}")
    token = _ACTIVE.set(_Active(mode, source, debug))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_mode() -> Mode | None:
    """Return the mode of the step being traced by a rule, or None outside one."""
    a = _ACTIVE.get()
    return None if a is None else a.mode


def debug_checks() -> bool:
    """Return whether the rule tracing the current step asked for runtime input checks."""
    a = _ACTIVE.get()
    return a is not None and a.debug


def resolve_mode(own: Mode | None, where: str, inherited: Mode | None = None) -> Mode:
    """Return the mode a layer or neuron runs in, refusing one that disagrees with the rule.

    Args:
      own: the layer's own ``mode`` attribute (None: inherit).
      where: the layer's path for the error message (e.g. ``"TinyConvSNN/Conv_1"``).
      inherited: the mode of its enclosing model, if any.

    Returns:
      ``own``, else ``inherited``, else the active mode (:func:`active`), else :data:`OTTT`.

    Raises:
      ValueError: naming ``where`` when its mode (own or inherited) is not the active one.
    """
    mine = own if own is not None else inherited
    if mine is not None and not isinstance(mine, Mode):
        raise ValueError(f"{where}: mode must be an ottt_jax.mode.Mode or None, got {mine!r}")
    a = _ACTIVE.get()
    if a is None or a.mode is None:
        return OTTT if mine is None else mine
    if mine is not None and mine != a.mode:
        origin = "its mode" if own is not None else "its model's mode"
        raise ValueError(
            f"{where}: {origin} is {mine}, but it is traced by {a.source} with mode={a.mode}; "
            "leave mode= out to inherit the rule's, or build it with mode=rule.mode"
        )
    return a.mode
