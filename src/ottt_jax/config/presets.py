"""Named presets: the authors' recipes (OTTT_A) and the quick ``digits`` run; ``get_config``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ottt_jax.config.io import from_dict
from ottt_jax.config.overrides import apply_overrides
from ottt_jax.config.schema import Config, DataConfig, ModelConfig, OptimConfig, close_match

__all__ = ["get_config", "list_presets", "register_preset", "unregister_preset"]


def _preset_digits() -> Config:
    return Config(
        name="digits",
        method="ottt_a",
        num_steps=4,
        loss_beta=0.05,
        model=ModelConfig(arch="vgg", vgg_cfg=(32, "M", 64), num_classes=10),
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
        model=ModelConfig(arch="vgg", num_classes=10, neuron_dropout=0.1),
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


_PRESETS: dict[str, Callable[[], Config]] = {
    # Trains in about a minute on 2 CPU cores (sklearn digits, no download).
    "digits": _preset_digits,
    # The paper's recipes (official code): OTTT_A, SGD, cosine schedule.
    "cifar10_vgg": lambda: _cifar("cifar10_vgg", "cifar10", 10),
    "cifar100_vgg": lambda: _cifar("cifar100_vgg", "cifar100", 100),
    "cifar100_vggf": lambda: _cifar("cifar100_vggf", "cifar100", 100, arch="vggf"),
    "cifar10dvs_vgg": _preset_cifar10dvs_vgg,
    # Evaluating with more time steps than training helps here: eval_num_steps=...
    "imagenet_nfresnet34": _preset_imagenet_nfresnet34,
}


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
    if not callable(factory):
        raise ValueError(f"factory must be callable; got {type(factory).__name__}")
    if name in _PRESETS and not overwrite:
        raise ValueError(f"preset {name!r} already exists; pass overwrite=True to replace it")
    _PRESETS[name] = factory


def unregister_preset(name: str) -> None:
    """Remove a preset added by :func:`register_preset`.

    Raises:
      ValueError: ``name`` is not a preset.
    """
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(list_presets())}")
    del _PRESETS[name]


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
        cfg = _PRESETS[name]()
        if not isinstance(cfg, Config):
            raise ValueError(f"preset {name!r} returned {type(cfg).__name__}, not a Config")
    else:
        raise ValueError(
            f"unknown preset {name!r}; valid presets: {', '.join(list_presets())} (or the path "
            f"of a .json config){close_match(name, _PRESETS)}"
        )
    return apply_overrides(cfg, overrides)


# ----------------------------------------------------------------------------------------------
# Event-data presets (ottt_jax.data.events datasets). Each keeps the literature's T.


def _preset_shd_rsnn() -> Config:
    # SHD with one recurrent layer of 128 LIF neurons and T = 100 time bins: the network size of
    # Cramer et al., "The Heidelberg Spiking Data Sets ...", IEEE TNNLS 2022, and the 100-step
    # binning of Zenke & Vogels, Neural Computation 2021 (online rules vs BPTT on SHD: Summe et
    # al., "Estimating post-synaptic effects for online training of feed-forward SNNs" (OTPE),
    # 2023). Adam with lr 1e-3 as in both.
    return Config(
        name="shd_rsnn",
        method="ottt_a",
        num_steps=100,
        loss_beta=0.0,
        model=ModelConfig(arch="rsnn", num_classes=20, hidden=(128,)),
        data=DataConfig(dataset="shd", batch_size=128, augment=False),
        optim=OptimConfig(name="adamw", lr=1e-3, weight_decay=0.0, schedule="cosine", epochs=100),
    )


def _preset_nmnist_vgg() -> Config:
    # N-MNIST, T = 10 count-split frames (Fang et al., "Incorporating Learnable Membrane Time
    # Constant ...", ICCV 2021) on a small sWS conv net, SGD + cosine as the OTTT recipes.
    return Config(
        name="nmnist_vgg",
        method="ottt_a",
        num_steps=10,
        loss_beta=0.05,
        model=ModelConfig(arch="vgg", num_classes=10, vgg_cfg=(32, "M", 64, "M", 128, "M")),
        data=DataConfig(dataset="nmnist", batch_size=128, augment=False),
        optim=OptimConfig(
            name="sgd", lr=0.1, momentum=0.9, weight_decay=0.0, schedule="cosine", epochs=100
        ),
    )


def _preset_dvsgesture_vgg() -> Config:
    # DVS128 Gesture, T = 20 count-split 128×128 frames and five conv blocks of 128 channels,
    # each followed by a 2×2 pool (Fang et al., ICCV 2021, the DVS128 Gesture network); SGD +
    # cosine and the neuron dropout of the OTTT CIFAR10-DVS recipe.
    return Config(
        name="dvsgesture_vgg",
        method="ottt_a",
        num_steps=20,
        loss_beta=0.001,
        model=ModelConfig(
            arch="vgg",
            num_classes=11,
            vgg_cfg=(128, "M", 128, "M", 128, "M", 128, "M", 128, "M"),
            neuron_dropout=0.1,
        ),
        data=DataConfig(dataset="dvs_gesture", batch_size=16, augment=False),
        optim=OptimConfig(
            name="sgd", lr=0.1, momentum=0.9, weight_decay=0.0, schedule="cosine", epochs=200
        ),
    )


_PRESETS["shd_rsnn"] = _preset_shd_rsnn
_PRESETS["nmnist_vgg"] = _preset_nmnist_vgg
_PRESETS["dvsgesture_vgg"] = _preset_dvsgesture_vgg
