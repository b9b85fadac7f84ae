"""ottt_jax: Online Training Through Time (Xiao et al., NeurIPS 2022) for spiking networks in JAX.

Core (pure functions over pytrees):

* :mod:`ottt_jax.surrogate` — Heaviside spikes with pluggable surrogate derivatives.
* :mod:`ottt_jax.mode` — :class:`Mode` (``OTTT``, ``SLTT``, ``BPTT``): what a rule asks of a net.
* :mod:`ottt_jax.neuron` — the :class:`Neuron` protocol and the LIF neuron step.
* :mod:`ottt_jax.trace` — presynaptic traces and the spike-forward / trace-gradient ops.
* :mod:`ottt_jax.online` — OTTT_A, OTTT_O and BPTT over any ``step(params, state, x_t)``.
* :mod:`ottt_jax.rules` — the gradient-rule registry (:func:`get_rule`, :func:`register_rule`).
* :mod:`ottt_jax.losses` — the paper's instantaneous loss.

``ottt_jax.train(cfg)`` (the training entry point, :func:`ottt_jax.api.train`) imports the trainer
when it is called, so ``import ottt_jax`` stays light.
"""

from ottt_jax.api import train
from ottt_jax.diagnose import check_rule
from ottt_jax.layers import Traced, traced
from ottt_jax.losses import instantaneous_loss
from ottt_jax.mode import BPTT, OTTT, SLTT, Mode
from ottt_jax.models import make_step
from ottt_jax.neuron import LIF, LIFState, Neuron
from ottt_jax.online import (
    Hoist,
    OnlineResult,
    OnlineUpdateResult,
    bptt_grad,
    forward,
    ottt_grad,
    ottt_update,
    sltt_k_grad,
    three_factor_grad,
)
from ottt_jax.rules import (
    GradRule,
    Rule,
    SLTTKOptions,
    StepRule,
    get_rule,
    register_rule,
    rule_names,
    unregister_rule,
)
from ottt_jax.step import Step, as_step
from ottt_jax.surrogate import Atan, Clamp, Rectangular, Sigmoid, get_surrogate
from ottt_jax.surrogate import custom as custom_surrogate
from ottt_jax.trace import conv_spike_trace, dense_spike_trace, spike_trace, update_trace

__version__ = "0.1.0"

__all__ = [
    "BPTT",
    "LIF",
    "OTTT",
    "SLTT",
    "Atan",
    "Clamp",
    "GradRule",
    "Hoist",
    "LIFState",
    "Mode",
    "Neuron",
    "OnlineResult",
    "OnlineUpdateResult",
    "Rectangular",
    "Rule",
    "SLTTKOptions",
    "Sigmoid",
    "Step",
    "StepRule",
    "Traced",
    "as_step",
    "bptt_grad",
    "check_rule",
    "conv_spike_trace",
    "custom_surrogate",
    "dense_spike_trace",
    "forward",
    "get_rule",
    "get_surrogate",
    "instantaneous_loss",
    "make_step",
    "ottt_grad",
    "ottt_update",
    "register_rule",
    "rule_names",
    "sltt_k_grad",
    "spike_trace",
    "three_factor_grad",
    "traced",
    "train",
    "unregister_rule",
    "update_trace",
]
