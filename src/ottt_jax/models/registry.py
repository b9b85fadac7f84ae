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
from ottt_jax.registry import Registry

__all__ = [
    "ModelEntry",
    "NFResNetOptions",
    "RSNNOptions",
    "VGGOptions",
    "build_model",
    "get_model_entry",
    "model_names",
    "parse_vgg_cfg",
    "register_model",
    "unregister_model",
]


def _opt(default: Any, doc: str, **meta: Any) -> Any:
    return dataclasses.field(default=default, metadata={"doc": doc, **meta})


_LAYOUT = "a list of conv widths (ints) and 'M' (pools), e.g. [32,M,64]"


def parse_vgg_cfg(value: Any) -> tuple[int | str, ...]:
    """Parse a VGG layout from text (``[32,M,64]``, ``32,m,64``) or a list into a tuple.

    The ``parse`` of ``VGGOptions.vgg_cfg``: the config calls it for that key's values.
    """
    if isinstance(value, str):
        body = value.strip()
        body = body[1:-1] if body[:1] + body[-1:] in ("[]", "()") else body
        items: Any = [s.strip().strip("'\"") for s in body.split(",")] if body.strip() else []
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise ValueError(f"expects {_LAYOUT}; got {value!r}")
    out: list[int | str] = []
    for item in items:
        if isinstance(item, str) and item.upper() == "M":
            out.append("M")
        elif isinstance(item, int) and not isinstance(item, bool):
            out.append(int(item))
        elif isinstance(item, str) and item.isdigit():
            out.append(int(item))
        else:
            raise ValueError(f"expects {_LAYOUT}; got item {item!r} in {value!r}")
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class VGGOptions:
    """Per-architecture settings of ``vgg`` and ``vggf``."""

    vgg_cfg: tuple = _opt(
        VGG11_CFG,
        "feature layout: an int is a 3×3 sWS conv of that width followed by a LIF neuron and "
        "Scale(2.74); 'M' is a 2×2 average pool. Must start with a conv. Default: VGG-11.",
        parse=parse_vgg_cfg,
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


def _check_entry(entry: ModelEntry) -> None:
    name, build, options = entry
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


_MODELS: Registry[ModelEntry] = Registry("model", check=_check_entry)


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
    return _MODELS.register(name, ModelEntry(name, build, options), overwrite=overwrite)


def unregister_model(name: str) -> None:
    """Remove the entry ``name`` (a ValueError lists the registered names when unknown)."""
    _MODELS.unregister(name)


def get_model_entry(name: str) -> ModelEntry:
    """Return the entry ``name`` (a ValueError lists the registered names)."""
    return _MODELS.get(name)


def model_names() -> tuple[str, ...]:
    """Return the registered model names in registration order."""
    return _MODELS.names()


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


# The built-in builders pass ``common`` (num_classes, neuron, mode, dtype: what build_model
# gives every model) through unchanged and map only their options.


def _vgg(feedback: bool) -> Callable[..., Any]:
    def build(*, options: VGGOptions, **common: Any) -> SpikingVGG:
        return SpikingVGG(
            cfg=tuple(options.vgg_cfg),
            feedback=feedback,
            neuron_dropout=options.neuron_dropout,
            fc_dropout=options.fc_dropout,
            **common,
        )

    return build


def _nfresnet(ctor: Callable[..., Any]) -> Callable[..., Any]:
    def build(*, options: NFResNetOptions, **common: Any) -> Any:
        return ctor(
            stochastic_depth=options.stochastic_depth, fc_dropout=options.fc_dropout, **common
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

    hidden: tuple[int, ...] = _opt(
        (128,), "widths of the LIF layers, each with its own recurrence."
    )
    recurrent: bool = _opt(True, "give each LIF layer a recurrent weight R_l fed by s_l[t−1].")
    weight_standardization: bool = _opt(True, "use sWS on the input weights W_l.")


def _rsnn(*, options: RSNNOptions, **common: Any) -> Any:
    from ottt_jax.models.rsnn import SpikingRSNN

    return SpikingRSNN(
        hidden=tuple(options.hidden),
        recurrent=options.recurrent,
        weight_standardization=options.weight_standardization,
        **common,
    )


register_model("rsnn", _rsnn, RSNNOptions)
