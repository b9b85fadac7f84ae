"""Named presets (a :class:`~ottt_jax.registry.Registry` of ``Config`` factories); ``get_config``.

The built-in ones, the authors' recipes (OTTT_A) and the quick ``digits`` run, are their
overrides of the defaults.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ottt_jax.config.io import from_dict
from ottt_jax.config.overrides import apply_overrides
from ottt_jax.config.schema import Config
from ottt_jax.registry import Registry, close_match

__all__ = ["get_config", "list_presets", "register_preset", "unregister_preset"]


_PRESETS: Registry[Callable[[], Config]] = Registry("preset")
_CIFAR = {"data.batch_size": 128, "optim.epochs": 300}  # official: SGD 0.1, cosine, T = 6
_BUILTIN = {
    # Trains in about a minute on 2 CPU cores (sklearn digits, no download); evaluating the
    # 360 test images costs an epoch of training, so every 5 epochs; logs once per epoch.
    "digits": {"num_steps": 4, "model.vgg_cfg": "32,M,64", "data.eval_batch_size": 360,
               "data.augment": False, "eval_every_epochs": 5, "log_every": 44},
    "cifar10_vgg": {**_CIFAR, "data.dataset": "cifar10"},
    "cifar100_vgg": {**_CIFAR, "data.dataset": "cifar100", "model.num_classes": 100},
    "cifar100_vggf": {**_CIFAR, "data.dataset": "cifar100", "model.num_classes": 100,
                      "model.arch": "vggf"},
    "cifar10dvs_vgg": {**_CIFAR, "data.dataset": "cifar10_dvs", "num_steps": 10,
                       "loss_beta": 0.001, "model.neuron_dropout": 0.1, "data.num_frames": 10},
    # Evaluating with more time steps than training helps here: eval_num_steps=...
    "imagenet_nfresnet34": {"model.arch": "nfresnet34", "model.num_classes": 1000, "loss_beta": 0.0,
                            "data.dataset": "imagenet2012", "data.batch_size": 256,
                            "optim.weight_decay": 2e-5, "optim.epochs": 100},
    # Event data (ottt_jax.data.events), each with its literature's T.
    # SHD: one recurrent layer of 128 LIF neurons, T = 100 bins (network size of Cramer et al.,
    # "The Heidelberg Spiking Data Sets ...", IEEE TNNLS 2022; the 100-step binning of Zenke &
    # Vogels, Neural Computation 2021; online rules vs BPTT on SHD: Summe et al., OTPE, 2023);
    # Adam(W) with lr 1e-3 as in both (no weight decay, cosine: the defaults).
    "shd_rsnn": {"num_steps": 100, "loss_beta": 0.0, "model.arch": "rsnn", "model.num_classes": 20,
                 "model.hidden": [128], "data.dataset": "shd", "data.batch_size": 128,
                 "data.augment": False, "optim.name": "adamw", "optim.lr": 1e-3,
                 "optim.epochs": 100},
    # N-MNIST: T = 10 count-split frames (Fang et al., "Incorporating Learnable Membrane Time
    # Constant ...", ICCV 2021), a small sWS conv net, SGD + cosine (defaults) as in OTTT.
    "nmnist_vgg": {"num_steps": 10, "model.vgg_cfg": [32, "M", 64, "M", 128, "M"],
                   "data.dataset": "nmnist", "data.batch_size": 128, "data.augment": False,
                   "optim.epochs": 100},
    # DVS128 Gesture: T = 20 count-split 128×128 frames, five conv blocks of 128 channels each
    # followed by a 2×2 pool (Fang et al., ICCV 2021); SGD + cosine and the neuron dropout of
    # the OTTT CIFAR10-DVS recipe.
    "dvsgesture_vgg": {"num_steps": 20, "loss_beta": 0.001, "model.num_classes": 11,
                       "model.vgg_cfg": [128, "M"] * 5, "model.neuron_dropout": 0.1,
                       "data.dataset": "dvs_gesture", "data.batch_size": 16, "data.augment": False,
                       "optim.epochs": 200},
}  # fmt: skip


for _name, _overrides in _BUILTIN.items():
    _PRESETS.register(_name, lambda n=_name, o=_overrides: apply_overrides(Config(name=n), o))


def list_presets() -> list[str]:
    """Return the names of the available presets, sorted."""
    return sorted(_PRESETS)


def register_preset(name: str, factory: Callable[[], Config], overwrite: bool = False) -> None:
    """Add the preset ``name`` (not ending in '.json'): ``factory()`` returns its :class:`Config`.

    ``overwrite=True`` replaces a preset of that name; the config is validated when used.
    """
    if not isinstance(name, str) or not name.strip() or name.endswith(".json"):
        raise ValueError(
            f"preset name must be a non-empty string not ending in .json; got {name!r}"
        )
    if not callable(factory):
        raise ValueError(f"factory must be callable; got {type(factory).__name__}")
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
    """Return a preset (:func:`list_presets`) or a saved ``.json`` config with ``overrides``.

    Raises:
      ValueError: an unknown preset (listing the presets), a missing file or bad overrides.
    """
    if not isinstance(name, str):
        raise ValueError(f"config name must be a string; got {type(name).__name__}")
    if name.endswith(".json"):
        if not os.path.isfile(name):
            raise ValueError(f"config file {name!r} does not exist")
        with open(name, encoding="utf-8") as fh:
            cfg = from_dict(json.load(fh))
    elif name not in _PRESETS:
        raise _unknown(name)
    elif not isinstance(cfg := _PRESETS.get(name)(), Config):
        raise ValueError(f"preset {name!r} returned {type(cfg).__name__}, not a Config")
    return apply_overrides(cfg, overrides)
