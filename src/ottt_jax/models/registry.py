"""The architecture registry: each model is one entry, built by name.

An entry is a build function and a frozen ``options`` dataclass of its per-architecture settings
(defaults, one line of documentation per field in ``metadata['doc']``; the config reads them for
its keys, types and docs). Values are checked by the model itself, not here.

Adding a model is one call (``tests/test_models_registry.py`` adds one)::

    @dataclasses.dataclass(frozen=True)
    class MyOptions:
        width: int = dataclasses.field(default=16, metadata={"doc": "hidden channels"})

    def build(*, num_classes, neuron, mode, dtype, options: MyOptions):
        return MyModel(num_classes=num_classes, neuron=neuron, mode=mode, dtype=dtype, ...)

    register_model("mine", build, options=MyOptions)
    model = build_model("mine", num_classes=10, neuron=LIF(), mode=OTTT)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp

from ottt_jax.mode import OTTT, Mode
from ottt_jax.models.nfresnet import nfresnet18, nfresnet34, nfresnet50
from ottt_jax.models.vgg import VGG11_CFG, SpikingVGG
from ottt_jax.neuron import LIF, Neuron

__all__ = [
    "ModelEntry",
    "NFResNetOptions",
    "RSNNOptions",
    "VGGOptions",
    "build_model",
    "get_model_entry",
    "model_names",
    "register_model",
]


def _opt(default: Any, doc: str) -> Any:
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclasses.dataclass(frozen=True)
class VGGOptions:
    """Per-architecture settings of ``vgg`` and ``vggf``."""

    vgg_cfg: tuple = _opt(
        VGG11_CFG,
        "feature layout: an int is a 3×3 sWS conv of that width followed by a LIF neuron and "
        "Scale(2.74); 'M' is a 2×2 average pool. Must start with a conv. Default: VGG-11.",
    )
    neuron_dropout: float = _opt(
        0.0,
        "dropout rate on the neurons' outputs, one mask per sample sequence held for all T "
        "steps (official CIFAR10-DVS recipe: 0.1). In [0, 1).",
    )
    fc_dropout: float = _opt(
        0.0, "dropout rate on the classifier's input, mask fixed over the T steps. In [0, 1)."
    )


@dataclasses.dataclass(frozen=True)
class NFResNetOptions:
    """Per-architecture settings of the NF-ResNets."""

    stochastic_depth: float = _opt(
        0.0,
        "drop probability of the residual branches, drawn once per block and sequence and "
        "held for all steps. In [0, 1).",
    )
    fc_dropout: float = _opt(
        0.0, "dropout rate on the classifier's input, mask fixed over the T steps. In [0, 1)."
    )


class ModelEntry(NamedTuple):
    """One registered architecture.

    Attributes:
      name: the registry name (the config's ``model.arch``).
      build: ``build(*, num_classes, neuron, mode, dtype, options) -> model``.
      options: the frozen dataclass type of its settings (every field has a default and
        ``metadata['doc']``).
    """

    name: str
    build: Callable[..., Any]
    options: type


_MODELS: dict[str, ModelEntry] = {}


def register_model(
    name: str, build: Callable[..., Any], options: type, overwrite: bool = False
) -> ModelEntry:
    """Register an architecture.

    Args:
      name: the registry name.
      build: ``build(*, num_classes, neuron, mode, dtype, options) -> model`` (a
        :class:`~ottt_jax.models.common.SpikingModel`).
      options: a frozen dataclass type; every field needs a default and ``metadata['doc']``.
      overwrite: replace an entry of the same name (else that is a ValueError).

    Returns:
      The :class:`ModelEntry`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty str, got {name!r}")
    if not callable(build):
        raise ValueError(f"build for model {name!r} must be callable, got {build!r}")
    if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
        raise ValueError(f"options for model {name!r} must be a dataclass type, got {options!r}")
    if not options.__dataclass_params__.frozen:
        raise ValueError(f"options {options.__name__} for model {name!r} must be frozen")
    for f in dataclasses.fields(options):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"option {options.__name__}.{f.name} needs a default")
        if not isinstance(f.metadata.get("doc"), str):
            raise ValueError(f"option {options.__name__}.{f.name} needs metadata['doc']")
    if name in _MODELS and not overwrite:
        raise ValueError(f"model {name!r} is already registered (pass overwrite=True)")
    entry = ModelEntry(name, build, options)
    _MODELS[name] = entry
    return entry


def get_model_entry(name: str) -> ModelEntry:
    """Return the entry ``name`` (a ValueError lists the registered names)."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {model_names()}")
    return _MODELS[name]


def model_names() -> tuple[str, ...]:
    """Return the registered model names in registration order."""
    return tuple(_MODELS)


def build_model(
    name: str,
    *,
    num_classes: int,
    neuron: Neuron | None = None,
    mode: Mode = OTTT,
    dtype: Any = jnp.float32,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """Build a registered model.

    Args:
      name: the registry name.
      num_classes: ``K``.
      neuron: the neuron (default ``LIF()``, the paper's).
      mode: the :class:`~ottt_jax.mode.Mode` of the rule that will train it (``rule.mode``).
      dtype: compute dtype.
      options: settings overriding the entry's option defaults (unknown keys are a ValueError
        naming the known ones).

    Returns:
      The model.
    """
    entry = get_model_entry(name)
    options = dict(options or {})
    known = [f.name for f in dataclasses.fields(entry.options)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"model {name!r} has options {known}; unknown {unknown}")
    return entry.build(
        num_classes=num_classes,
        neuron=LIF() if neuron is None else neuron,
        mode=mode,
        dtype=dtype,
        options=entry.options(**options),
    )


def _vgg(feedback: bool) -> Callable[..., Any]:
    def build(*, num_classes, neuron, mode, dtype, options: VGGOptions):
        return SpikingVGG(
            cfg=tuple(options.vgg_cfg),
            num_classes=num_classes,
            neuron=neuron,
            mode=mode,
            dtype=dtype,
            feedback=feedback,
            neuron_dropout=options.neuron_dropout,
            fc_dropout=options.fc_dropout,
        )

    return build


def _nfresnet(ctor: Callable[..., Any]) -> Callable[..., Any]:
    def build(*, num_classes, neuron, mode, dtype, options: NFResNetOptions):
        return ctor(
            num_classes,
            neuron=neuron,
            mode=mode,
            dtype=dtype,
            stochastic_depth=options.stochastic_depth,
            fc_dropout=options.fc_dropout,
        )

    return build


register_model("vgg", _vgg(False), VGGOptions)
register_model("vggf", _vgg(True), VGGOptions)
register_model("nfresnet18", _nfresnet(nfresnet18), NFResNetOptions)
register_model("nfresnet34", _nfresnet(nfresnet34), NFResNetOptions)
register_model("nfresnet50", _nfresnet(nfresnet50), NFResNetOptions)


# The recurrent spiking network (ottt_jax.models.rsnn): options and entry in one block.
@dataclasses.dataclass(frozen=True)
class RSNNOptions:
    """Per-architecture settings of ``rsnn``."""

    hidden: tuple = _opt((128,), "widths of the LIF layers, each dense with its own recurrence.")
    recurrent: bool = _opt(True, "give each LIF layer a recurrent weight R_l fed by s_l[t−1].")
    weight_standardization: bool = _opt(True, "use sWS on the input weights W_l.")


def _rsnn(*, num_classes, neuron, mode, dtype, options: RSNNOptions):
    from ottt_jax.models.rsnn import SpikingRSNN

    return SpikingRSNN(
        num_classes=num_classes,
        hidden=tuple(options.hidden),
        recurrent=options.recurrent,
        weight_standardization=options.weight_standardization,
        neuron=neuron,
        mode=mode,
        dtype=dtype,
    )


register_model("rsnn", _rsnn, RSNNOptions)
