"""Experiment configuration: schema, overrides, cross-field validation, presets, io.

A run is described by one immutable :class:`Config`: run-level fields (method, time steps, loss,
seed, logging, checkpointing, plugin ``imports``) and the sections :class:`ModelConfig`
(``model.*``: common fields, then the options of ``model.arch``'s registry entry),
:class:`DataConfig` (``data.*``), :class:`OptimConfig` (``optim.*``) and ``rule`` (``rule.*``:
the options dataclass of the rule ``method`` names, e.g. SLTT-K's ``rule.k``). The keys of the
two options sections, their types and docs come from the registries at use time, so a model or
rule registered by a plugin has its keys like the built-in ones.

The package is split by concern: :mod:`~ottt_jax.config.schema` (the dataclasses, field types
and checks), :mod:`~ottt_jax.config.overrides`, :mod:`~ottt_jax.config.validate`,
:mod:`~ottt_jax.config.presets` and :mod:`~ottt_jax.config.io` (dict/JSON, diff, describe).

Typical use::

    from ottt_jax import config

    cfg = config.get_config("cifar10_vgg", ["optim.lr=0.05", "method=sltt_k", "rule.k=3"])
    print(config.describe(cfg))
    saved = config.to_dict(cfg)                # JSON-serializable
    assert config.from_dict(saved) == cfg      # exact round trip
    config.diff(cfg, config.get_config("cifar10_vgg"))  # ['method: ...', 'optim.lr: ...', ...]

Presets (:func:`list_presets`) follow the authors' recipes (OTTT_A); ``method=ottt_o`` or
``method=bptt`` changes only the rule. Overrides are ``'key=value'`` strings or a mapping, parsed
by the target field's type (:func:`~ottt_jax.config.schema.convert`); every constructor path ends
in :func:`validate`, whose ``ValueError`` names each bad key and what it accepts.
"""

from ottt_jax.config.io import describe, diff, field_docs, from_dict, to_dict, to_flat_dict
from ottt_jax.config.overrides import apply_overrides
from ottt_jax.config.presets import get_config, list_presets, register_preset, unregister_preset
from ottt_jax.config.schema import (
    COMPUTE_DTYPES,
    OPTIMIZERS,
    RESUMABLE_KEYS,
    SCHEDULES,
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    import_plugins,
    surrogate_kwargs,
)
from ottt_jax.config.validate import validate

__all__ = [
    "COMPUTE_DTYPES",
    "OPTIMIZERS",
    "RESUMABLE_KEYS",
    "SCHEDULES",
    "Config",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "apply_overrides",
    "describe",
    "diff",
    "field_docs",
    "from_dict",
    "get_config",
    "import_plugins",
    "list_presets",
    "register_preset",
    "surrogate_kwargs",
    "to_dict",
    "to_flat_dict",
    "unregister_preset",
    "validate",
]
