"""The mode: what a gradient rule asks of the network it trains.

A :class:`Mode` is the one object neurons, layers and models need to know about the rule that
trains them (see ``docs/architecture.md``):

* ``temporal`` — ``"detached"``: the membrane entering a step carries no gradient (OTTT, SLTT;
  Sec. 4.1), or ``"kept"``: it keeps its gradient through time (BPTT).
* ``synapse`` — how a synaptic layer fed by spikes takes its weight gradient: ``"trace"`` (at the
  presynaptic trace, Eq. (5): ``∇W = Σ_t g_u[t]·â[t]ᵀ``), ``"instantaneous"`` (at the input spikes
  of the same step, SLTT) or ``"autodiff"`` (plain autodiff, BPTT).

Constants: :data:`OTTT`, :data:`SLTT`, :data:`BPTT`.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["BPTT", "OTTT", "SLTT", "SYNAPSES", "TEMPORALS", "Mode"]

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
