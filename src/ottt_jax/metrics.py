"""Accuracy, firing rates and synaptic operations (SOPs) of spiking models.

The models return, with ``return_stats=True``, ``{layer: spikes per sample [B]}`` per time step;
stacked over a sequence by :func:`ottt_jax.online.forward` these become ``[T, B]``. Their
``layer_sizes(input_shape)`` gives ``{layer: (num_neurons, fan_out)}``. The functions below turn
those into the statistics reported by the paper (average firing rate per layer, Fig. 4 / Appendix)
and the usual energy proxy (synaptic operations per sample).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = ["accuracy", "firing_rates", "sops", "total_firing_rate"]


def accuracy(logits_sum: Array, labels: Array) -> Array:
    """Return the fraction of samples whose ``argmax Σ_t out_t`` equals the label.

    Args:
      logits_sum: ``Σ_t out_t``, ``[B, K]`` (or stacked per-step logits ``[T, B, K]``, summed
        here over ``T``).
      labels: integer labels ``[B]``.

    Returns:
      A float32 scalar in [0, 1]. The paper predicts with the summed outputs of all steps.
    """
    logits_sum = jnp.asarray(logits_sum)
    labels = jnp.asarray(labels)
    if logits_sum.ndim == 3:
        logits_sum = logits_sum.sum(0)
    if logits_sum.ndim != 2 or labels.shape != logits_sum.shape[:1]:
        raise ValueError(
            f"accuracy expects logits_sum [B, K] (or [T, B, K]) and labels [B]; got "
            f"{logits_sum.shape} and {labels.shape}"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    return jnp.mean(jnp.argmax(logits_sum, axis=-1) == labels, dtype=jnp.float32)


def _neurons(sizes: Mapping[str, Any], layer: str) -> Any:
    if layer not in sizes:
        raise ValueError(f"no size given for layer {layer!r}; sizes has {sorted(sizes)}")
    n = sizes[layer]
    return n[0] if isinstance(n, (tuple, list)) else n


def _totals(spike_counts: Mapping[str, Array]) -> dict[str, tuple[Array, int]]:
    """Return ``{layer: (total spikes, number of samples)}``; samples = the last axis."""
    if not isinstance(spike_counts, Mapping) or not spike_counts:
        raise ValueError("spike_counts must be a non-empty dict {layer: counts [..., B]}")
    out = {}
    for k, c in spike_counts.items():
        c = jnp.asarray(c, jnp.float32)
        if c.ndim < 1:
            raise ValueError(f"spike_counts[{k!r}] must be [B] or [T, B], got a scalar")
        out[k] = (jnp.sum(c), c.shape[-1])
    return out


def firing_rates(
    spike_counts_over_time: Mapping[str, Array],
    neurons_per_layer: Mapping[str, Any],
    num_steps: int,
) -> dict[str, Array]:
    """Return each layer's average firing rate: spikes / (neurons × T), averaged over samples.

    Args:
      spike_counts_over_time: ``{layer: counts}`` with counts ``[T, B]`` (per step and sample,
        as stacked by :func:`ottt_jax.online.forward`) or ``[B]`` (already summed over the T
        steps); any leading axes are summed, the last axis is the samples.
      neurons_per_layer: ``{layer: num_neurons}`` or a model's ``layer_sizes(input_shape)``
        (``{layer: (num_neurons, fan_out)}``).
      num_steps: ``T``, the number of steps the counts cover.

    Returns:
      ``{layer: rate}`` float32 scalars in [0, 1]: the probability that a neuron fires at a
      step, as in the authors' ``get_rate`` scripts.
    """
    if not isinstance(num_steps, (int, np.integer)) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    return {
        k: total / (b * _neurons(neurons_per_layer, k) * num_steps)
        for k, (total, b) in _totals(spike_counts_over_time).items()
    }


def total_firing_rate(rates: Mapping[str, Array], neurons_per_layer: Mapping[str, Any]) -> Array:
    """Return the network's firing rate: the neuron-weighted mean of the per-layer rates.

    Args:
      rates: from :func:`firing_rates`.
      neurons_per_layer: as in :func:`firing_rates`.

    Returns:
      ``Σ_l r_l n_l / Σ_l n_l`` (the authors' ``total_spike_rate``), a float32 scalar.
    """
    num = sum(r * _neurons(neurons_per_layer, k) for k, r in rates.items())
    den = sum(_neurons(neurons_per_layer, k) for k in rates)
    return jnp.asarray(num / den, jnp.float32)


def sops(
    spike_counts_over_time: Mapping[str, Array],
    layer_sizes: Mapping[str, tuple[int, float]],
    *,
    per_layer: bool = False,
) -> Array | dict[str, Array]:
    """Return the synaptic operations per sample: ``Σ_layers spikes × fan_out``.

    Args:
      spike_counts_over_time: ``{layer: counts [T, B] or [B]}`` as in :func:`firing_rates`
        (every spike of every step counts).
      layer_sizes: a model's ``layer_sizes(input_shape)``, ``{layer: (num_neurons, fan_out)}``,
        ``fan_out`` being the synaptic operations one spike of that layer triggers (see the
        model's docstring for how borders, pooling and the classifier are counted).
      per_layer: return ``{layer: SOPs per sample}`` instead of the total.

    Returns:
      A float32 scalar: the mean over samples of ``Σ_l Σ_t spikes_l[t] × fan_out_l``.
    """
    out = {}
    for k, (total, b) in _totals(spike_counts_over_time).items():
        if k not in layer_sizes or not isinstance(layer_sizes[k], (tuple, list)):
            raise ValueError(
                f"layer_sizes must map every layer to (num_neurons, fan_out); missing or bad "
                f"entry for {k!r}"
            )
        out[k] = total / b * jnp.float32(layer_sizes[k][1])
    if per_layer:
        return out
    return jnp.asarray(sum(out.values()), jnp.float32)
