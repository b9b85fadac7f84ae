"""ottt_jax: Online Training Through Time (Xiao et al., NeurIPS 2022) for spiking networks in JAX.

Core (pure functions over pytrees):

* :mod:`ottt_jax.surrogate` — Heaviside spikes with pluggable surrogate derivatives.
* :mod:`ottt_jax.mode` — :class:`Mode` (``OTTT``, ``SLTT``, ``BPTT``): what a rule asks of a net.
* :mod:`ottt_jax.neuron` — the :class:`Neuron` protocol and the LIF neuron step.
* :mod:`ottt_jax.trace` — presynaptic traces and the spike-forward / trace-gradient ops.
* :mod:`ottt_jax.online` — OTTT_A, OTTT_O and BPTT over any ``step(params, state, x_t)``.
* :mod:`ottt_jax.rules` — the gradient-rule registry (:func:`get_rule`, :func:`register_rule`).
* :mod:`ottt_jax.losses` — the paper's instantaneous loss.

``ottt_jax.train(cfg)`` (the training entry point, :func:`ottt_jax.training.train`) is imported
lazily.
"""

from ottt_jax.losses import instantaneous_loss
from ottt_jax.mode import BPTT, OTTT, SLTT, Mode
from ottt_jax.neuron import LIF, LIFState, Neuron
from ottt_jax.online import (
    OnlineResult,
    OnlineUpdateResult,
    bptt_grad,
    forward,
    ottt_grad,
    ottt_update,
    three_factor_grad,
)
from ottt_jax.rules import Rule, get_rule, register_rule, rule_names
from ottt_jax.surrogate import Atan, Clamp, Rectangular, Sigmoid, custom, get_surrogate
from ottt_jax.trace import conv_spike_trace, dense_spike_trace, spike_trace, update_trace

__version__ = "0.1.0"

__all__ = [
    "BPTT",
    "LIF",
    "OTTT",
    "SLTT",
    "Atan",
    "Clamp",
    "LIFState",
    "Mode",
    "Neuron",
    "OnlineResult",
    "OnlineUpdateResult",
    "Rectangular",
    "Rule",
    "Sigmoid",
    "bptt_grad",
    "conv_spike_trace",
    "custom",
    "dense_spike_trace",
    "forward",
    "get_rule",
    "get_surrogate",
    "instantaneous_loss",
    "ottt_grad",
    "ottt_update",
    "register_rule",
    "rule_names",
    "spike_trace",
    "three_factor_grad",
    "train",
    "update_trace",
]


def __getattr__(name: str):
    if name == "train":  # lazy: the training package imports the whole library
        from ottt_jax.training import train

        return train
    raise AttributeError(f"module 'ottt_jax' has no attribute {name!r}")
