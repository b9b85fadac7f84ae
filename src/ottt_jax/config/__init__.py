"""Experiment configuration: one immutable :class:`Config` per run, its presets, overrides and io.

A run's :class:`Config` holds run-level fields and the sections ``model.*`` (:class:`ModelConfig`:
common fields, then the options dataclass of ``model.arch``'s registry entry), ``data.*``,
``optim.*`` and ``rule.*`` (the options dataclass of the rule ``method`` names). Option keys,
types and docs come from the registries at use time, so a plugin's model or rule (``imports``)
has keys like the built-in ones. Modules: ``schema`` (dataclasses, field types and checks),
``overrides``, ``validate``, ``presets`` and ``io`` (dict/JSON, diff, describe)::

    cfg = config.get_config("digits", ["method=sltt_k", "rule.k=3", "optim.lr=0.05"])
    assert config.from_dict(config.to_dict(cfg)) == cfg  # exact, also through JSON

Every constructor path ends in :func:`validate`, whose ``ValueError`` names each bad key.
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
    "COMPUTE_DTYPES", "OPTIMIZERS", "RESUMABLE_KEYS", "SCHEDULES", "Config", "DataConfig",
    "ModelConfig", "OptimConfig", "apply_overrides", "describe", "diff", "field_docs", "from_dict",
    "get_config", "import_plugins", "list_presets", "register_preset", "surrogate_kwargs",
    "to_dict", "to_flat_dict", "unregister_preset", "validate",
]  # fmt: skip
