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

import inspect
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from ottt_jax.layers import split_standardized
from ottt_jax.mode import Mode
from ottt_jax.models.common import ModelState, SpikingModel
from ottt_jax.models.nfresnet import NFResNet, NFResNetState, nfresnet18, nfresnet34, nfresnet50
from ottt_jax.models.registry import (
    build_model,
    get_model_entry,
    model_names,
    register_model,
    unregister_model,
)
from ottt_jax.models.vgg import (
    VGG11_CFG,
    SpikingVGG,
    SpikingVGGF,
    VGGFeedback,
    VGGState,
    vgg11,
    vgg11f,
)
from ottt_jax.online import Hoist, Step

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
    "unregister_model",
    "vgg11",
    "vgg11f",
]


def make_step(model: nn.Module, return_stats: bool = False) -> Step:
    """Wrap a one-step model as an :class:`~ottt_jax.online.Step` for the rules.

    Args:
      model: any Flax module called as ``model(state, x_t)`` (the package's models, or your own;
        ``return_stats`` is passed only when its ``__call__`` takes it).
      return_stats: make the step return ``((logits, stats), state)``, stats being
        ``{neuron_name: spikes per sample [B]}`` (needs a model that takes ``return_stats``).

    Returns:
      ``Step(fn, mode, hoist)``: ``fn(params, state, x_t)`` runs
      ``model.apply({'params': params}, state, x_t)``; ``mode`` is the model's ``mode``
      attribute, or None when it has none (or None): the step then runs under any rule, in the
      rule's mode, which its layers and neurons inherit at trace time.
      A model whose class sets ``hoists_standardization = True`` (the package's models: every
      sWS kernel is one of :mod:`ottt_jax.layers`) also gets a :class:`~ottt_jax.online.Hoist`
      of :func:`~ottt_jax.layers.split_standardized`: the grad rules standardize the kernels
      once per sequence and apply the sWS backward once, after the time loop.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a flax.linen Module, got {type(model).__name__}")
    takes_stats = _accepts(type(model).__call__, "return_stats")
    if return_stats and not takes_stats:
        raise ValueError(
            f"make_step(return_stats=True): {type(model).__name__}.__call__ takes no return_stats"
        )
    kwargs = {"return_stats": return_stats} if takes_stats else {}

    def inner(variables: Any, state: Any, x_t: Any):
        return model.apply(variables, state, x_t, **kwargs)

    def fn(params: Any, state: Any, x_t: Any):
        return inner({"params": params}, state, x_t)

    mode = getattr(model, "mode", None)
    if mode is not None and not isinstance(mode, Mode):
        raise ValueError(f"{type(model).__name__}.mode must be an ottt_jax.mode.Mode, got {mode!r}")
    hoist = None
    if getattr(model, "hoists_standardization", False):
        hoist = Hoist(prepare=split_standardized, inner=inner)
    return Step(fn, mode, hoist)


def _accepts(f: Callable[..., Any], name: str) -> bool:
    """Whether ``f`` takes a keyword argument ``name`` (or ``**kwargs``)."""
    try:
        params = inspect.signature(f).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)
