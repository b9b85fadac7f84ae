"""Named presets: the authors' recipes (OTTT_A) and the quick ``digits`` run; ``get_config``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ottt_jax.config.io import from_dict
from ottt_jax.config.overrides import apply_overrides
from ottt_jax.config.schema import Config, DataConfig, ModelConfig, OptimConfig
from ottt_jax.models.registry import VGGOptions
from ottt_jax.registry import Registry, close_match

__all__ = ["get_config", "list_presets", "register_preset", "unregister_preset"]


def _preset_digits() -> Config:
    return Config(
        name="digits",
        method="ottt_a",
        num_steps=4,
        loss_beta=0.05,
        model=ModelConfig(arch="vgg", options=VGGOptions(vgg_cfg=(32, "M", 64)), num_classes=10),
        data=DataConfig(dataset="digits", batch_size=32, eval_batch_size=360, augment=False),
        optim=OptimConfig(name="sgd", lr=0.1, momentum=0.9, schedule="cosine", epochs=30),
        eval_every_epochs=5,  # evaluating 360 images costs as much as an epoch of training
        log_every=44,  # once per epoch
    )


def _cifar(name: str, dataset: str, num_classes: int, arch: str = "vgg") -> Config:
    return Config(
        name=name,
        method="ottt_a",
        num_steps=6,
        loss_beta=0.05,
        model=ModelConfig(arch=arch, num_classes=num_classes),
        data=DataConfig(dataset=dataset, batch_size=128, augment=True),
        optim=OptimConfig(
            name="sgd", lr=0.1, momentum=0.9, weight_decay=0.0, schedule="cosine", epochs=300
        ),
    )


def _preset_cifar10dvs_vgg() -> Config:
    return Config(
        name="cifar10dvs_vgg",
        method="ottt_a",
        num_steps=10,
        loss_beta=0.001,
        model=ModelConfig(arch="vgg", num_classes=10, options=VGGOptions(neuron_dropout=0.1)),
        data=DataConfig(dataset="cifar10_dvs", batch_size=128, augment=True, num_frames=10),
        optim=OptimConfig(
            name="sgd", lr=0.1, momentum=0.9, weight_decay=0.0, schedule="cosine", epochs=300
        ),
    )


def _preset_imagenet_nfresnet34() -> Config:
    return Config(
        name="imagenet_nfresnet34",
        method="ottt_a",
        num_steps=6,
        loss_beta=0.0,
        model=ModelConfig(arch="nfresnet34", num_classes=1000),
        data=DataConfig(dataset="imagenet2012", batch_size=256, augment=True),
        optim=OptimConfig(
            name="sgd", lr=0.1, momentum=0.9, weight_decay=2e-5, schedule="cosine", epochs=100
        ),
    )


def _check_factory(factory: Any) -> None:
    if not callable(factory):
        raise ValueError(f"factory must be callable; got {type(factory).__name__}")


_PRESETS: Registry[Callable[[], Config]] = Registry("preset", check=_check_factory)
# Trains in about a minute on 2 CPU cores (sklearn digits, no download).
_PRESETS.register("digits", _preset_digits)
# The paper's recipes (official code): OTTT_A, SGD, cosine schedule.
_PRESETS.register("cifar10_vgg", lambda: _cifar("cifar10_vgg", "cifar10", 10))
_PRESETS.register("cifar100_vgg", lambda: _cifar("cifar100_vgg", "cifar100", 100))
_PRESETS.register("cifar100_vggf", lambda: _cifar("cifar100_vggf", "cifar100", 100, arch="vggf"))
_PRESETS.register("cifar10dvs_vgg", _preset_cifar10dvs_vgg)
# Evaluating with more time steps than training helps here: eval_num_steps=...
_PRESETS.register("imagenet_nfresnet34", _preset_imagenet_nfresnet34)


def list_presets() -> list[str]:
    """Return the names of the available presets, sorted."""
    return sorted(_PRESETS)


def register_preset(name: str, factory: Callable[[], Config], overwrite: bool = False) -> None:
    """Add a named preset for :func:`get_config`.

    Args:
      name: the preset name (non-empty, not ending in '.json').
      factory: a zero-argument function returning a :class:`Config`; it is validated when used.
      overwrite: allow replacing an existing preset.
    """
    if not isinstance(name, str) or not name.strip() or name.endswith(".json"):
        raise ValueError(
            f"preset name must be a non-empty string not ending in .json; got {name!r}"
        )
    _PRESETS.register(name, factory, overwrite=overwrite)


def _unknown(name: str) -> ValueError:
    return ValueError(
        f"unknown preset {name!r}; valid presets: {', '.join(list_presets())} (or the path of a "
        f".json config){close_match(name, _PRESETS)}"
    )


def unregister_preset(name: str) -> None:
    """Remove a preset added by :func:`register_preset` (an unknown name is a ValueError)."""
    if name not in _PRESETS:
        raise _unknown(name)
    _PRESETS.unregister(name)


def get_config(name: str, overrides: Sequence[str] | Mapping[str, Any] | str = ()) -> Config:
    """Return a validated preset, or a saved config file, with overrides applied.

    Args:
      name: a preset name (see :func:`list_presets`) or the path of a ``.json`` file holding
        :func:`to_dict` output (e.g. the config saved in a run's workdir).
      overrides: as for :func:`apply_overrides`.

    Returns:
      The validated :class:`Config`.

    Raises:
      ValueError: for an unknown preset (listing the presets), a missing file, or bad overrides.
    """
    if not isinstance(name, str):
        raise ValueError(f"config name must be a string; got {type(name).__name__}")
    if name.endswith(".json"):
        if not os.path.isfile(name):
            raise ValueError(f"config file {name!r} does not exist")
        with open(name, encoding="utf-8") as fh:
            cfg = from_dict(json.load(fh))
    elif name in _PRESETS:
        cfg = _PRESETS.get(name)()
        if not isinstance(cfg, Config):
            raise ValueError(f"preset {name!r} returned {type(cfg).__name__}, not a Config")
    else:
        raise _unknown(name)
    return apply_overrides(cfg, overrides)
