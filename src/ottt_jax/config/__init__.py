"""Experiment configuration: schema, overrides, cross-field validation, presets, io.

A run is described by one immutable :class:`Config` holding four sections, :class:`ModelConfig`
(``model.*``), :class:`DataConfig` (``data.*``), :class:`OptimConfig` (``optim.*``) and
:class:`RuleConfig` (``rule.*``, the gradient rule's options such as SLTT-K's ``rule.k``), plus
run-level fields (method, time steps, loss, seed, logging and checkpointing).

The package is split by concern: :mod:`~ottt_jax.config.schema` (the dataclasses and field
types), :mod:`~ottt_jax.config.overrides` (dotted-key overrides), :mod:`~ottt_jax.config.validate`
(names, ranges and cross-field rules; dataset facts from :mod:`ottt_jax.data.catalog`),
:mod:`~ottt_jax.config.presets` and :mod:`~ottt_jax.config.io` (dict/JSON, diff, describe).

Typical use::

    from ottt_jax import config

    cfg = config.get_config("cifar10_vgg", ["optim.lr=0.05", "method=ottt_o"])
    print(config.describe(cfg))
    cfg = config.apply_overrides(cfg, {"data.batch_size": 64})
    saved = config.to_dict(cfg)                # JSON-serializable
    assert config.from_dict(saved) == cfg      # exact round trip
    config.diff(cfg, config.get_config("cifar10_vgg"))  # ['method: ...', 'optim.lr: ...', ...]

Presets (:func:`list_presets`) follow the authors' recipes (OTTT_A). The training method is an
ordinary override: ``method=ottt_o`` gives OTTT_O (one update per time step) and ``method=bptt``
the BPTT baseline, with every other hyperparameter unchanged.

Overrides are ``'key=value'`` strings or a mapping. Keys are dotted (``optim.lr``,
``model.vgg_cfg``); values are parsed by the type of the target field:

* ``int`` and ``float``: Python literals (``128``, ``0.05``, ``2e-5``);
* ``bool``: ``true``/``false``/``1``/``0`` (case-insensitive);
* ``str``: the text as given, surrounding whitespace removed;
* optional fields: ``none`` or ``null`` gives ``None``;
* ``model.vgg_cfg``: ``[32,M,64]``, ``(32, M, 64)`` or ``32,M,64`` (ints are conv widths, ``M``
  is a pool).

Every public constructor path (:func:`get_config`, :func:`apply_overrides`, :func:`from_dict`)
ends in :func:`validate`, which rejects unknown keys and invalid values with a ``ValueError`` that
names the key and lists what is accepted.

Mixed precision: ``compute_dtype='float32'`` is the default everywhere and reproduces the
authors' numbers; ``compute_dtype=bfloat16`` is recommended on GPU/TPU for speed and memory (on a
CPU without bfloat16 units it is slower).
"""

from ottt_jax.config.io import describe, diff, field_docs, from_dict, to_dict, to_flat_dict
from ottt_jax.config.overrides import apply_overrides
from ottt_jax.config.presets import get_config, list_presets, register_preset, unregister_preset
from ottt_jax.config.schema import (
    ARCHS,
    COMPUTE_DTYPES,
    METHODS,
    OPTIMIZERS,
    RESUMABLE_KEYS,
    SCHEDULES,
    SURROGATES,
    VGG_ARCHS,
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RuleConfig,
    surrogate_kwargs,
)
from ottt_jax.config.validate import validate

__all__ = [
    "ARCHS",
    "COMPUTE_DTYPES",
    "METHODS",
    "OPTIMIZERS",
    "RESUMABLE_KEYS",
    "SCHEDULES",
    "SURROGATES",
    "VGG_ARCHS",
    "Config",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RuleConfig",
    "apply_overrides",
    "describe",
    "diff",
    "field_docs",
    "from_dict",
    "get_config",
    "list_presets",
    "register_preset",
    "surrogate_kwargs",
    "to_dict",
    "to_flat_dict",
    "unregister_preset",
    "validate",
]
