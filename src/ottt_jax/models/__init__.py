"""Spiking network models (Flax, one time step per call) and the step-function adapter.

* :class:`SpikingVGG` / :class:`SpikingVGGF`, :func:`vgg11`, :func:`vgg11f` — the authors' VGG-11
  (sWS) and its feedback variant VGG-F (CIFAR-10/100, CIFAR10-DVS).
* ``NFResNet``, ``nfresnet18/34/50`` — the normalizer-free spiking ResNets (ImageNet).
* :func:`make_step` — turn any model into ``step(params, state, x_t) -> (out_t, state)`` for
  :mod:`ottt_jax.online` and :mod:`ottt_jax.rules`; the step carries the model's ``mode``.
* :mod:`ottt_jax.models.registry` — architectures by name (:func:`build_model`,
  :func:`register_model`).

Every model follows :class:`~ottt_jax.models.common.SpikingModel`: ``mode``, ``neuron_names``,
``init_state(batch_size, input_shape, *, key=None, train=True, dtype)`` (a plain method, no
parameters) returning a :class:`~ottt_jax.models.common.ModelState` NamedTuple
(:class:`VGGState`, :class:`NFResNetState`), ``__call__(state, x_t, *, return_stats=False)`` and
``layer_sizes(input_shape)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn

from ottt_jax.layers import split_standardized
from ottt_jax.models.common import ModelState, SpikingModel
from ottt_jax.models.nfresnet import NFResNet, NFResNetState, nfresnet18, nfresnet34, nfresnet50
from ottt_jax.models.registry import build_model, get_model_entry, model_names, register_model
from ottt_jax.models.vgg import (
    VGG11_CFG,
    SpikingVGG,
    SpikingVGGF,
    VGGFeedback,
    VGGState,
    vgg11,
    vgg11f,
)
from ottt_jax.online import Hoist

__all__ = [
    "VGG11_CFG",
    "ModelState",
    "NFResNet",
    "NFResNetState",
    "SpikingModel",
    "SpikingVGG",
    "SpikingVGGF",
    "VGGFeedback",
    "VGGState",
    "build_model",
    "get_model_entry",
    "make_step",
    "model_names",
    "nfresnet18",
    "nfresnet34",
    "nfresnet50",
    "register_model",
    "vgg11",
    "vgg11f",
]


def make_step(model: nn.Module, return_stats: bool = False) -> Callable[[Any, Any, Any], Any]:
    """Wrap a one-step model as a step function for :mod:`ottt_jax.online`.

    Args:
      model: a model of this package (or any module called as ``model(state, x_t, ...)``).
      return_stats: make the step return ``((logits, stats), state)``, stats being
        ``{neuron_name: spikes per sample [B]}``.

    Returns:
      ``step(params, state, x_t) -> (out_t, new_state)`` that runs
      ``model.apply({'params': params}, state, x_t, return_stats=return_stats)``. Its ``mode``
      attribute is the model's (None when the model has none); :meth:`ottt_jax.rules.Rule.apply`
      refuses a step whose mode is not the rule's. A model whose class sets
      ``hoists_standardization = True`` (the package's models: every sWS kernel is one of
      :mod:`ottt_jax.layers`) also gets ``step.hoist``, a :class:`~ottt_jax.online.Hoist` of
      :func:`~ottt_jax.layers.split_standardized`: the grad rules standardize the kernels once
      per sequence and apply the sWS backward once, after the time loop.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a flax.linen Module, got {type(model).__name__}")

    def inner(variables: Any, state: Any, x_t: Any):
        return model.apply(variables, state, x_t, return_stats=return_stats)

    def step(params: Any, state: Any, x_t: Any):
        return inner({"params": params}, state, x_t)

    step.mode = getattr(model, "mode", None)
    if getattr(model, "hoists_standardization", False):
        step.hoist = Hoist(prepare=split_standardized, inner=inner)
    return step
