"""The reset-to-zero LIF: NIR's LIF with ``v_reset = 0``, exactly (see :mod:`ottt_jax.nir.lif`)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ottt_jax.mode import OTTT, Mode
from ottt_jax.neuron import LIF, LIFState
from ottt_jax.surrogate import Surrogate, get_surrogate
from ottt_jax.trace import update_trace

Array = jax.Array

__all__ = ["ResetToZeroLIF"]


@dataclasses.dataclass(frozen=True)
class ResetToZeroLIF:
    """A LIF neuron that resets to zero after a spike (NIR's LIF with ``v_reset = 0``).

    Same protocol and parameters as :class:`~ottt_jax.neuron.LIF`: ``u ← λ·v + x``;
    ``s = H(u − V_th)``; ``v ← u·(1 − s)`` (the reset detached, as the paper's); ``â ← λ·â + s``.
    Train with it when the network will be exported to NIR for another tool.
    """

    decay: float = 0.5
    v_th: float = 1.0
    surrogate: Surrogate | str = "sigmoid"
    mode: Mode = OTTT

    def __post_init__(self):
        LIF(decay=self.decay, v_th=self.v_th, mode=self.mode)  # the same value checks
        object.__setattr__(self, "surrogate", get_surrogate(self.surrogate))

    def with_mode(self, mode: Mode) -> ResetToZeroLIF:
        """Return this neuron in ``mode``."""
        return self if mode == self.mode else dataclasses.replace(self, mode=mode)

    def init_state(self, shape: tuple[int, ...], dtype=jnp.float32) -> LIFState:
        """Return zeros ``[B, ...]`` (trace None unless ``mode.keeps_trace``)."""
        z = jnp.zeros(shape, dtype)
        return LIFState(v=z, trace=z if self.mode.keeps_trace else None)

    def __call__(self, state: LIFState, x: Array) -> tuple[Array, LIFState]:
        """Advance one step on the input current ``x`` ``[B, ...]``; return ``(spikes, state)``."""
        v_prev = jax.lax.stop_gradient(state.v) if self.mode.detach_membrane else state.v
        u = self.decay * v_prev.astype(x.dtype) + x
        s = self.surrogate(u - self.v_th)
        v = (u * (1 - jax.lax.stop_gradient(s))).astype(state.v.dtype)
        if not self.mode.keeps_trace:
            return s, LIFState(v=v, trace=None)
        trace = update_trace(state.trace.astype(x.dtype), s, self.decay)
        return s, LIFState(v=v, trace=trace.astype(state.trace.dtype))
