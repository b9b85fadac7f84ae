"""A dense recurrent spiking network (RSNN), one time step per call, trainable by every rule.

Layer ``l`` (a LIF population of ``n_l`` neurons, named ``lif01, lif02, …``) receives, at step
``t``, the spikes of the layer below (for the first layer, the flattened input frame) and its own
spikes of the previous step::

    I_l[t] = W_l · a_{l−1}[t] + R_l · s_l[t−1] + b_l,      s_l[t], u_l[t] = LIF(u_l[t−1], I_l[t])

with ``a_0[t] = x[t]`` (the frame, flattened) and ``a_l = s_l`` above; ``out[t] = W_o · s_L[t] +
b_o`` (no neuron); the prediction is ``argmax Σ_t out[t]``. ``W_l`` is a :class:`~ottt_jax.layers.
Linear` (sWS by default, as VGG's hidden layers), ``R_l`` a bias-free plain ``Linear`` (None when
``recurrent=False``), the readout the authors' plain ``Linear``.

**Which trace feeds the recurrent weight.** ``R_l``'s presynaptic neurons are layer ``l`` itself,
one step earlier: its input is ``s_l[t−1]``, so under OTTT (``mode.synapse == "trace"``) its weight
gradient is taken at the trace of those spikes, ``â_l[t−1] = λ·â_l[t−2] + s_l[t−1]`` (Eq. (4)),
which is exactly the trace layer ``l``'s neuron carries into step ``t`` (``state.neurons[name]
.trace``, before the neuron updates it). Eq. (5) for a recurrent synapse is then
``∇R_l = Σ_t (∂L[t]/∂I_l[t]) â_l[t−1]ᵀ``: the trace is the presynaptic one, as for every other
synapse, and it is not the trace ``â_l[t]`` the layer above uses, which already contains
``s_l[t]`` (a spike that had no causal effect on ``I_l[t]``). Under SLTT (``"instantaneous"``) the
gradient is taken at ``s_l[t−1]`` itself; under BPTT (``"autodiff"``) ``s_l[t−1]`` is kept in the
state with its gradient, so the recurrent path is differentiated through time like the membrane.
With a detached temporal path (OTTT, SLTT) the stored spikes are detached, as the membrane is.

The state is an :class:`RSNNState`: the neuron states and the previous spikes per layer.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ottt_jax.layers import Linear, kaiming_normal_fan_out
from ottt_jax.mode import OTTT, Mode
from ottt_jax.models.common import (
    check_mode,
    check_positive_int,
    spikes_per_sample,
)
from ottt_jax.neuron import LIF, Neuron, check_neuron

Array = jax.Array

__all__ = ["RSNNState", "SpikingRSNN"]


class RSNNState(NamedTuple):
    """The state of :class:`SpikingRSNN` for one sequence.

    Attributes:
      neurons: ``{neuron_name: neuron state}``; each trace (when kept) is ``â_l[t−1]``, the trace
        the recurrent weight of that layer takes its gradient at.
      spikes: ``{neuron_name: s_l[t−1]}`` ``[B, n_l]``, the previous step's spikes (zeros at the
        start), detached unless the mode keeps the temporal gradient (BPTT).
    """

    neurons: dict[str, Any]
    spikes: dict[str, Array]


class SpikingRSNN(nn.Module):
    """A dense recurrent spiking network (see the module docstring for the equations).

    Attributes:
      num_classes: readout size ``K``.
      hidden: the widths ``n_1, …, n_L`` of the LIF layers.
      recurrent: give each LIF layer its recurrent weight ``R_l`` (False: a feed-forward net).
      weight_standardization: use sWS on the input weights ``W_l``.
      neuron: the neuron (default the paper's LIF); rebuilt with ``mode``.
      mode: the :class:`~ottt_jax.mode.Mode` of the rule that trains it.
      dtype: compute dtype.
    """

    num_classes: int = 20
    hidden: tuple[int, ...] = (128,)
    recurrent: bool = True
    weight_standardization: bool = True
    neuron: Neuron = LIF()
    mode: Mode = OTTT
    dtype: Any = jnp.float32

    #: sWS kernels are standardized once per sequence (``models.make_step``).
    hoists_standardization = True

    def __post_init__(self):
        check_positive_int("num_classes", self.num_classes)
        if not isinstance(self.hidden, (tuple, list)) or not self.hidden:
            raise ValueError(f"hidden must be a non-empty tuple of ints, got {self.hidden!r}")
        for n in self.hidden:
            check_positive_int("hidden width", n)
        object.__setattr__(self, "hidden", tuple(int(n) for n in self.hidden))
        check_mode(self.mode)
        check_neuron(self.neuron)
        super().__post_init__()

    @property
    def neuron_names(self) -> tuple[str, ...]:
        """Return the LIF layer names in network order, ``lif01, lif02, …``."""
        return tuple(f"lif{i + 1:02d}" for i in range(len(self.hidden)))

    def init_state(
        self,
        batch_size: int,
        input_shape: tuple[int, ...],
        *,
        key: Array | None = None,
        train: bool = True,
        dtype: Any = jnp.float32,
    ) -> RSNNState:
        """Return the zero state of a new sequence (``input_shape`` is one frame's; unused)."""
        del key, train, input_shape
        neuron = self.neuron.with_mode(self.mode)
        return RSNNState(
            neurons={
                name: neuron.init_state((batch_size, n), dtype)
                for name, n in zip(self.neuron_names, self.hidden)
            },
            spikes={
                name: jnp.zeros((batch_size, n), dtype)
                for name, n in zip(self.neuron_names, self.hidden)
            },
        )

    def layer_sizes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, float]]:
        """Return ``{name: (n_l, fan_out)}``: the layer above (or the readout) plus ``R_l``."""
        sizes = {}
        above = (*self.hidden[1:], self.num_classes)
        for name, n, up in zip(self.neuron_names, self.hidden, above):
            sizes[name] = (n, float(up + (n if self.recurrent else 0)))
        return sizes

    @nn.compact
    def __call__(self, state: RSNNState, x: Array, *, return_stats: bool = False):
        """Run one step on ``x`` ``[B, ...]`` (flattened to ``[B, D]``).

        Returns:
          ``(logits [B, K], state)``, or ``((logits, stats), state)`` with ``return_stats``.
        """
        if not isinstance(state, RSNNState) or set(state.neurons) != set(self.neuron_names):
            raise ValueError(
                f"state must be an RSNNState with neurons {self.neuron_names} (init_state); got "
                f"{type(state).__name__}"
            )
        neuron = self.neuron.with_mode(self.mode)
        detached = self.mode.detach_membrane
        a = x.reshape(x.shape[0], -1).astype(self.dtype)
        a_trace = None
        neurons, spikes, stats = {}, {}, {}
        for i, (name, n) in enumerate(zip(self.neuron_names, self.hidden)):
            current = Linear(
                n,
                weight_standardization=self.weight_standardization,
                kernel_init=kaiming_normal_fan_out,
                dtype=self.dtype,
                mode=self.mode,
                name=f"fc{i + 1}",
            )(a, a_trace)
            own = state.neurons[name]
            if self.recurrent:
                prev = state.spikes[name].astype(self.dtype)
                prev = jax.lax.stop_gradient(prev) if detached else prev
                current = current + Linear(
                    n,
                    use_bias=False,
                    kernel_init=nn.initializers.variance_scaling(1.0, "fan_in", "normal"),
                    dtype=self.dtype,
                    mode=self.mode,
                    name=f"rec{i + 1}",
                )(prev, own.trace)  # â_l[t−1]: the trace of s_l[t−1]
            s, neurons[name] = neuron(own, current)
            spikes[name] = s.astype(state.spikes[name].dtype)
            stats[name] = spikes_per_sample(s)
            a, a_trace = s, neurons[name].trace
        logits = Linear(self.num_classes, dtype=self.dtype, mode=self.mode, name="readout")(
            a, a_trace
        )
        new_state = RSNNState(neurons=neurons, spikes=spikes)
        return ((logits, stats), new_state) if return_stats else (logits, new_state)
