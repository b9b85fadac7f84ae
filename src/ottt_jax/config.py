"""Experiment configuration: frozen dataclasses, named presets, dotted overrides, validation.

A run is described by one immutable :class:`Config` holding three sections, :class:`ModelConfig`
(``model.*``), :class:`DataConfig` (``data.*``) and :class:`OptimConfig` (``optim.*``), plus
run-level fields (method, time steps, loss, seed, logging and checkpointing). This module imports
no JAX, so reading, checking and printing a configuration is instant.

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

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import numbers
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "ARCHS",
    "COMPUTE_DTYPES",
    "DATASETS",
    "METHODS",
    "OPTIMIZERS",
    "RESUMABLE_KEYS",
    "SCHEDULES",
    "SURROGATES",
    "VGG_ARCHS",
    "Config",
    "DataConfig",
    "DatasetInfo",
    "ModelConfig",
    "OptimConfig",
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
    "validate",
]

#: Training methods: OTTT_A (gradients accumulated over T, one update per batch), OTTT_O (an
#: update after every time step) and the BPTT baseline.
METHODS = ("ottt_a", "ottt_o", "bptt")
#: Network architectures.
ARCHS = ("vgg", "vggf", "nfresnet18", "nfresnet34", "nfresnet50")
#: The architectures built from ``model.vgg_cfg``.
VGG_ARCHS = ("vgg", "vggf")
#: Surrogate names understood by :func:`ottt_jax.surrogate.get_surrogate`.
SURROGATES = ("sigmoid", "rectangular", "clamp", "atan")
#: Optimizers.
OPTIMIZERS = ("sgd", "adamw")
#: Learning-rate schedules.
SCHEDULES = ("cosine", "constant")
#: Compute dtypes of the forward/backward pass.
COMPUTE_DTYPES = ("float32", "bfloat16")

_METHOD_SUMMARY = {
    "ottt_a": "OTTT_A, gradients summed over the T steps, one optimizer update per batch",
    "ottt_o": "OTTT_O, one optimizer update after every time step (T per batch)",
    "bptt": "BPTT baseline, gradients through time (memory grows with T)",
}

# The default of each surrogate's parameter (see ottt_jax.surrogate); 'clamp' defaults to v_th.
_SURROGATE_PARAM = {"sigmoid": ("alpha", 4.0), "atan": ("alpha", 2.0), "rectangular": ("a", 1.0)}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a supported dataset.

    Attributes:
      name: the dataset key used in ``data.dataset``.
      num_classes: number of classes K (``model.num_classes`` must equal it).
      image_shape: one model input (one frame for event data) as ``(H, W, C)``, NHWC.
      num_train: number of training samples.
      num_eval: number of evaluation (test) samples.
      event_based: the samples are sequences of event frames (one frame per time step) rather
        than a static image repeated at every step.
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    num_train: int
    num_eval: int
    event_based: bool = False


#: The supported datasets. 'digits' is scikit-learn's 8×8 digits with the stratified 1437/360
#: split; CIFAR10-DVS frames are 2×48×48 with samples 0–899 of each class for training.
DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("digits", 10, (8, 8, 1), 1437, 360),
    "cifar10": DatasetInfo("cifar10", 10, (32, 32, 3), 50_000, 10_000),
    "cifar100": DatasetInfo("cifar100", 100, (32, 32, 3), 50_000, 10_000),
    "cifar10_dvs": DatasetInfo("cifar10_dvs", 10, (48, 48, 2), 9_000, 1_000, event_based=True),
    "imagenet2012": DatasetInfo("imagenet2012", 1000, (224, 224, 3), 1_281_167, 50_000),
}


def _f(default: Any = dataclasses.MISSING, *, doc: str) -> Any:
    """Declare a dataclass field with its documentation in ``metadata['doc']``."""
    return dataclasses.field(default=default, metadata={"doc": doc})


def _document(cls: type) -> type:
    """Append an ``Attributes:`` section built from the fields' ``doc`` metadata to ``__doc__``."""
    lines = ["", "Attributes:"]
    for fld in dataclasses.fields(cls):
        lines.append(f"  {fld.name}: {fld.metadata['doc']}")
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + "\n".join(lines) + "\n"
    return cls


@_document
@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The spiking network: architecture, LIF neuron, surrogate and regularization (``model.*``)."""

    arch: str = _f(
        "vgg",
        doc="network: 'vgg' (spiking VGG of 3×3 sWS convs laid out by vgg_cfg, then global "
        "average pooling and a linear classifier), 'vggf' (the same with VGG-F's feedback "
        "connection from the last block to the first conv), or 'nfresnet18' | 'nfresnet34' | "
        "'nfresnet50' (normalizer-free pre-activation ResNets, real-valued residual stream).",
    )
    vgg_cfg: tuple[int | str, ...] = _f(
        (64, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
        doc="feature layout of 'vgg'/'vggf': an int is a 3×3 sWS conv of that width followed "
        "by a LIF neuron and Scale(2.74); 'M' is a 2×2 average pool. Must start with a conv. "
        "The default is the paper's VGG-11. Ignored by the NF-ResNets.",
    )
    num_classes: int = _f(
        10, doc="classifier outputs K; must equal the dataset's class count (see DATASETS)."
    )
    decay: float = _f(
        0.5,
        doc="LIF leak λ in (0, 1]; λ = 1 − 1/τ, so the paper's τ = 2 gives 0.5; λ = 1 is the "
        "non-leaky IF neuron.",
    )
    v_th: float = _f(1.0, doc="firing threshold V_th > 0 (paper: 1.0).")
    surrogate: str = _f(
        "sigmoid",
        doc="surrogate derivative of the spike: 'sigmoid' (paper default, "
        "α·σ(αx)·(1−σ(αx))), 'rectangular' ((1/a)·1[|x|<a/2]), 'clamp' (1[|x|<V_th], paper "
        "Sec. 4.2) or 'atan'; x = v − V_th.",
    )
    surrogate_param: float | None = _f(
        None,
        doc="the surrogate's parameter: α for 'sigmoid' (default 4) and 'atan' (default 2), the "
        "window width a for 'rectangular' (default 1), the half-width for 'clamp' (default "
        "v_th). None selects that default. Must be > 0.",
    )
    neuron_dropout: float = _f(
        0.0,
        doc="dropout rate on the spiking neurons' outputs, with one mask per sample sequence "
        "held for all T steps (official CIFAR10-DVS recipe: 0.1). In [0, 1).",
    )
    fc_dropout: float = _f(
        0.0,
        doc="dropout rate on the classifier's input, mask fixed over the T steps. In [0, 1).",
    )
    stochastic_depth: float = _f(
        0.0,
        doc="NF-ResNets only: drop probability of the residual branches, drawn once per block "
        "and sequence at t = 0 and held for all steps. In [0, 1).",
    )

    def __post_init__(self):
        if isinstance(self.vgg_cfg, list):  # keep the config hashable
            object.__setattr__(self, "vgg_cfg", tuple(self.vgg_cfg))


@_document
@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The dataset and its input pipeline (``data.*``)."""

    dataset: str = _f(
        "digits",
        doc="'digits' (scikit-learn 8×8 digits, embedded, no download), 'cifar10', 'cifar100', "
        "'cifar10_dvs' (event frames, 2×48×48) or 'imagenet2012'. The input channels follow "
        "from the dataset (see DATASETS).",
    )
    data_dir: str | None = _f(
        None,
        doc="directory of the prepared dataset; None uses the loader's default location (the "
        "TFDS data directory; unused for 'digits').",
    )
    batch_size: int = _f(32, doc="training batch size (>= 1).")
    eval_batch_size: int = _f(256, doc="evaluation batch size (>= 1); no effect on results.")
    augment: bool = _f(
        True,
        doc="apply the dataset's training augmentation from the official recipes: CIFAR random "
        "crop 32 with padding 4, Cutout and horizontal flip; CIFAR10-DVS a padding-4 random "
        "crop shared by all frames; ImageNet random-resized crop 224 and flip. Evaluation is "
        "never augmented.",
    )
    worker_count: int = _f(
        0, doc="data-loading worker processes (>= 0); 0 loads in the main process."
    )
    num_frames: int | None = _f(
        None,
        doc="event datasets only (cifar10_dvs): frames per sample, events split by count; one "
        "frame is fed per time step, so it must equal num_steps. None means num_steps. Must be "
        "None for static-image datasets.",
    )


@_document
@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The optimizer and learning-rate schedule (``optim.*``)."""

    name: str = _f("sgd", doc="optimizer: 'sgd' (with momentum) or 'adamw'.")
    lr: float = _f(0.1, doc="peak learning rate (>= 0).")
    momentum: float = _f(0.9, doc="SGD momentum in [0, 1); unused by 'adamw' (see adam_b1).")
    nesterov: bool = _f(False, doc="SGD: use Nesterov momentum (needs momentum > 0).")
    weight_decay: float = _f(
        0.0,
        doc="weight decay (>= 0). 'sgd': L2 term wd·w added to the gradient before momentum, "
        "as PyTorch's SGD (official ImageNet recipe: 2e-5); 'adamw': decoupled decay.",
    )
    schedule: str = _f(
        "cosine",
        doc="learning-rate schedule over the run: 'cosine' (from lr down to min_lr at the end "
        "of the last epoch, as the official recipes) or 'constant'.",
    )
    warmup_epochs: float = _f(
        0.0,
        doc="linear warmup from 0 to lr over this many (possibly fractional) epochs, before "
        "the schedule; in [0, epochs].",
    )
    epochs: int = _f(30, doc="number of training epochs (>= 1); the schedule spans them.")
    grad_clip: float | None = _f(
        None, doc="clip gradients to this global L2 norm before the update (> 0); None = off."
    )
    min_lr: float = _f(
        0.0, doc="final learning rate of the cosine schedule, in [0, lr] (official: 0)."
    )
    adam_b1: float = _f(0.9, doc="'adamw': first-moment decay β1 in [0, 1).")
    adam_b2: float = _f(0.999, doc="'adamw': second-moment decay β2 in [0, 1).")
    adam_eps: float = _f(1e-8, doc="'adamw': denominator epsilon (> 0).")


@_document
@dataclasses.dataclass(frozen=True)
class Config:
    """A complete, immutable description of one training run.

    Build it with :func:`get_config` (a preset plus overrides) and change it with
    :func:`apply_overrides`; both validate. ``dataclasses.replace`` also works but does not
    validate: call :func:`validate` on the result.
    """

    name: str = _f(doc="run name (the preset's name unless overridden); non-empty.")
    method: str = _f(
        "ottt_a",
        doc="training method: 'ottt_a' (gradients accumulated over the T steps, one update per "
        "batch), 'ottt_o' (an update after every time step) or 'bptt' (the baseline).",
    )
    num_steps: int = _f(6, doc="time steps T per training sample (>= 1).")
    eval_num_steps: int | None = _f(
        None,
        doc="time steps T for evaluation (>= 1); None = num_steps. More steps than in training "
        "can raise accuracy (paper Fig. 3, ImageNet). Event data requires None or num_steps.",
    )
    loss_beta: float = _f(
        0.05,
        doc="β of the instantaneous loss ((1−β)·CE + β·MSE)/T, in [0, 1] (official: 0.05 "
        "CIFAR, 0.001 CIFAR10-DVS, 0 ImageNet).",
    )
    seed: int = _f(
        0,
        doc="seed (>= 0) of every random draw: initialization, shuffling, augmentation, "
        "dropout masks and stochastic depth.",
    )
    compute_dtype: str = _f(
        "float32",
        doc="dtype of the forward/backward computation: 'float32' (default, matches the "
        "official numbers) or 'bfloat16' (recommended on GPU/TPU). Parameters and optimizer "
        "state stay float32.",
    )
    model: ModelConfig = dataclasses.field(
        default_factory=ModelConfig, metadata={"doc": "the network (model.* keys)."}
    )
    data: DataConfig = dataclasses.field(
        default_factory=DataConfig,
        metadata={"doc": "the dataset and input pipeline (data.* keys)."},
    )
    optim: OptimConfig = dataclasses.field(
        default_factory=OptimConfig, metadata={"doc": "optimizer and schedule (optim.* keys)."}
    )
    workdir: str | None = _f(
        None,
        doc="directory for checkpoints, metrics and the saved config; None keeps nothing on "
        "disk (no checkpoints).",
    )
    log_every: int = _f(50, doc="log training metrics every this many iterations (>= 1).")
    eval_every_epochs: int = _f(
        1, doc="evaluate on the test split every this many epochs (>= 1) and after the last."
    )
    checkpoint_every_steps: int = _f(
        1000,
        doc="save a checkpoint to workdir every this many training iterations (batches, >= 1).",
    )
    keep_best: bool = _f(
        True, doc="also keep the checkpoint with the best evaluation accuracy in workdir."
    )
    max_checkpoints: int = _f(
        3, doc="number of most recent periodic checkpoints kept in workdir (>= 1)."
    )
    resume: bool = _f(
        True,
        doc="if workdir holds a checkpoint, continue from the latest one; its saved config must "
        "agree with this one except for RESUMABLE_KEYS (see diff). With False an existing "
        "checkpoint is an error, never silently overwritten.",
    )
    progress: bool = _f(True, doc="show progress bars during training and evaluation.")
    max_train_steps: int | None = _f(
        None,
        doc="stop after this many training iterations in total (>= 1), e.g. for tests and "
        "smoke runs; the schedule still spans optim.epochs. None = train all epochs.",
    )

    @property
    def effective_eval_num_steps(self) -> int:
        """Return the number of time steps used for evaluation (``eval_num_steps`` or T)."""
        return self.num_steps if self.eval_num_steps is None else self.eval_num_steps

    @property
    def effective_num_frames(self) -> int | None:
        """Return the frames per sample of event data (``data.num_frames`` or T), else None."""
        info = DATASETS.get(self.data.dataset)
        if info is None or not info.event_based:
            return None
        return self.num_steps if self.data.num_frames is None else self.data.num_frames


_SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig}
_TOP_KEYS = tuple(f.name for f in dataclasses.fields(Config) if f.name not in _SECTIONS)

#: Keys that may differ between the config saved with a checkpoint and the config that resumes
#: from it: they change logging, evaluation, checkpointing or paths, not the training trajectory.
#: Pass them to ``diff(saved, cfg, ignore=RESUMABLE_KEYS)``.
RESUMABLE_KEYS = frozenset(
    {
        "name",
        "eval_num_steps",
        "workdir",
        "log_every",
        "eval_every_epochs",
        "checkpoint_every_steps",
        "keep_best",
        "max_checkpoints",
        "resume",
        "progress",
        "max_train_steps",
        "data.data_dir",
        "data.eval_batch_size",
        "data.worker_count",
    }
)


# ----------------------------------------------------------------------------------------------
# Types: parsing override text and checking/normalizing values.


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _optional_inner(tp: Any) -> tuple[bool, Any]:
    """Split ``X | None`` into ``(True, X)``; other types give ``(False, tp)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args:
            inner = [a for a in args if a is not type(None)]
            if len(inner) == 1:
                return True, inner[0]
    return False, tp


def _type_name(tp: Any) -> str:
    optional, tp = _optional_inner(tp)
    if tp is bool:
        name = "a bool (true/false/1/0)"
    elif tp is int:
        name = "an int"
    elif tp is float:
        name = "a float"
    elif tp is str:
        name = "a string"
    elif typing.get_origin(tp) is tuple:
        name = "a list of conv widths (ints) and 'M' (pools), e.g. [32,M,64]"
    else:  # pragma: no cover - every field has one of the types above
        name = str(tp)
    return name + (" or none" if optional else "")


def _parse_layout(key: str, text: str) -> tuple[int | str, ...]:
    body = text.strip()
    if body[:1] + body[-1:] in ("[]", "()"):
        body = body[1:-1]
    if not body.strip():
        return ()
    items: list[int | str] = []
    for raw in body.split(","):
        item = raw.strip().strip("'\"")
        if item.upper() == "M":
            items.append("M")
            continue
        try:
            items.append(int(item))
        except ValueError:
            raise ValueError(
                f"{key} expects {_type_name(tuple[int | str, ...])}; got item {item!r} in {text!r}"
            ) from None
    return tuple(items)


def _parse(key: str, text: str, tp: Any) -> Any:
    """Parse override text into a value of the field type ``tp``."""
    optional, inner = _optional_inner(tp)
    stripped = text.strip()
    if optional and stripped.lower() in ("none", "null"):
        return None
    if inner is str:
        return stripped
    if typing.get_origin(inner) is tuple:
        return _parse_layout(key, stripped)
    try:
        if inner is bool:
            table = {"true": True, "1": True, "false": False, "0": False}
            return table[stripped.lower()]
        if inner is int:
            return int(stripped)
        if inner is float:
            return float(stripped)
    except (KeyError, ValueError):
        pass
    raise ValueError(f"{key} expects {_type_name(tp)}; got {text!r}")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check that ``value`` fits the field type ``tp`` and return it normalized.

    Ints are accepted for floats (converted), lists for tuples (converted); bools are never
    accepted as numbers.
    """
    optional, inner = _optional_inner(tp)
    if value is None and optional:
        return None
    is_bool = isinstance(value, bool)
    if inner is bool and is_bool:
        return value
    if inner is int and isinstance(value, numbers.Integral) and not is_bool:
        return int(value)
    if inner is float and isinstance(value, numbers.Real) and not is_bool:
        return float(value)
    if inner is str and isinstance(value, str):
        return value
    if typing.get_origin(inner) is tuple and isinstance(value, (list, tuple)):
        items: list[int | str] = []
        for item in value:
            if isinstance(item, numbers.Integral) and not isinstance(item, bool):
                items.append(int(item))
            elif isinstance(item, str) and item.upper() == "M":
                items.append("M")
            else:
                raise ValueError(f"{key} expects {_type_name(tp)}; got item {item!r} in {value!r}")
        return tuple(items)
    raise ValueError(f"{key} expects {_type_name(tp)}; got {value!r}")


# ----------------------------------------------------------------------------------------------
# Keys.


def _close(word: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _all_keys() -> list[str]:
    keys = list(_TOP_KEYS)
    for section, cls in _SECTIONS.items():
        keys += [f"{section}.{name}" for name in _field_names(cls)]
    return keys


def _resolve(key: str) -> tuple[str | None, str, Any]:
    """Map a dotted key to ``(section or None, field, type)``; raise on unknown keys."""
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"override keys must be non-empty strings; got {key!r}")
    key = key.strip()
    section, dot, name = key.partition(".")
    if dot:
        if section not in _SECTIONS:
            raise ValueError(
                f"unknown key {key!r}; valid sections: {', '.join(_SECTIONS)}; valid top-level "
                f"keys: {', '.join(_TOP_KEYS)}{_close(key, _all_keys())}"
            )
        cls = _SECTIONS[section]
        names = _field_names(cls)
        if name not in names:
            raise ValueError(
                f"unknown key {key!r}; valid keys in {section}: {', '.join(names)}"
                f"{_close(key, _all_keys())}"
            )
        return section, name, _hints(cls)[name]
    if key in _SECTIONS:
        names = _field_names(_SECTIONS[key])
        raise ValueError(
            f"key {key!r} is a section; set its fields as '{key}.<field>=value' (valid keys in "
            f"{key}: {', '.join(names)})"
        )
    if key not in _TOP_KEYS:
        # A bare section field ('lr') most likely meant that section's key ('optim.lr').
        owners = [f"{s}.{key}" for s, c in _SECTIONS.items() if key in _field_names(c)]
        hint = f" (did you mean {owners[0]!r}?)" if owners else _close(key, _all_keys())
        raise ValueError(
            f"unknown key {key!r}; valid top-level keys: {', '.join(_TOP_KEYS)}; sections: "
            f"{', '.join(s + '.*' for s in _SECTIONS)}{hint}"
        )
    return None, key, _hints(Config)[key]


def _override_items(overrides: Sequence[str] | Mapping[str, Any] | str) -> list[tuple[str, Any]]:
    """Turn the accepted override forms into ``(key, value)`` pairs; string values stay text."""
    if isinstance(overrides, str):
        overrides = [overrides]
    items: list[tuple[str, Any]] = []
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            if key in _SECTIONS and isinstance(value, Mapping):
                items += [(f"{key}.{k}", v) for k, v in value.items()]
            else:
                items.append((key, value))
        return items
    if not isinstance(overrides, Sequence):
        raise ValueError(
            "overrides must be 'key=value' strings or a mapping of keys to values; got "
            f"{type(overrides).__name__}"
        )
    for entry in overrides:
        if not isinstance(entry, str) or "=" not in entry:
            raise ValueError(
                f"override {entry!r} must look like 'key=value' (e.g. 'optim.lr=0.05')"
            )
        key, _, text = entry.partition("=")
        if not key.strip():
            raise ValueError(f"override {entry!r} has an empty key")
        items.append((key.strip(), text))
    return items


def apply_overrides(cfg: Config, overrides: Sequence[str] | Mapping[str, Any] | str) -> Config:
    """Return ``cfg`` with dotted-key overrides applied, validated.

    Args:
      cfg: the base configuration.
      overrides: ``'key=value'`` strings (a single string counts as one override), or a mapping
        from dotted keys to values (text is parsed like the strings; other values must match the
        field's type). A mapping may also nest a section: ``{'optim': {'lr': 0.05}}``. Later
        entries win.

    Returns:
      The new, validated :class:`Config` (``cfg`` itself is unchanged).

    Raises:
      ValueError: for an unknown key (the message lists the valid keys), an unparsable value or
        an invalid result (see :func:`validate`).
    """
    if not isinstance(cfg, Config):
        raise ValueError(f"cfg must be a Config, got {type(cfg).__name__}")
    for key, value in _override_items(overrides):
        section, name, tp = _resolve(key)
        full = key.strip()
        if isinstance(value, str):
            value = _parse(full, value, tp)
        value = _coerce(full, value, tp)
        if section is None:
            cfg = dataclasses.replace(cfg, **{name: value})
        else:
            sub = dataclasses.replace(getattr(cfg, section), **{name: value})
            cfg = dataclasses.replace(cfg, **{section: sub})
    return validate(cfg)


# ----------------------------------------------------------------------------------------------
# Validation.


def _choice(errors: list[str], key: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        hint = _close(value, choices) if isinstance(value, str) else ""
        errors.append(
            f"{key} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}{hint}"
        )


def _number(
    errors: list[str],
    key: str,
    value: float | None,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """Check ``value`` (None passes) lies in the interval given by lo/hi and the open flags."""
    if value is None:
        return
    lo_ok = lo is None or (value > lo if lo_open else value >= lo)
    hi_ok = hi is None or (value < hi if hi_open else value <= hi)
    if math.isfinite(value) and lo_ok and hi_ok:
        return
    if lo is not None and hi is not None:
        interval = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        interval = f"{'>' if lo_open else '>='} {lo:g}"
    else:
        interval = f"{'<' if hi_open else '<='} {hi:g}"
    kind = "an int" if isinstance(value, int) else "a finite number"
    errors.append(f"{key} must be {kind} {interval}; got {value!r}")


def _text(errors: list[str], key: str, value: str | None) -> None:
    if value is not None and not value.strip():
        errors.append(f"{key} must be a non-empty string; got {value!r}")


def _normalize(cfg: Config) -> Config:
    """Check every field's type and return the config with normalized values (int→float etc.)."""
    errors: list[str] = []

    def norm(obj: Any, cls: type, prefix: str) -> dict[str, Any]:
        out = {}
        for name in _field_names(cls):
            key = prefix + name
            try:
                out[name] = _coerce(key, getattr(obj, name), _hints(cls)[name])
            except ValueError as e:
                errors.append(str(e))
        return out

    top = {}
    for name in _TOP_KEYS:
        try:
            top[name] = _coerce(name, getattr(cfg, name), _hints(Config)[name])
        except ValueError as e:
            errors.append(str(e))
    for section, cls in _SECTIONS.items():
        sub = getattr(cfg, section)
        if not isinstance(sub, cls):
            errors.append(f"{section} must be a {cls.__name__}; got {type(sub).__name__}")
        else:
            top[section] = cls(**norm(sub, cls, section + "."))
    if errors:
        raise ValueError(_error_text(cfg, errors))
    return Config(**top)


def _error_text(cfg: Config, errors: list[str]) -> str:
    name = getattr(cfg, "name", "?")
    if len(errors) == 1:
        return f"invalid config {name!r}: {errors[0]}"
    body = "\n".join(f"  - {e}" for e in errors)
    return f"invalid config {name!r} ({len(errors)} problems):\n{body}"


def validate(cfg: Config) -> Config:
    """Check every field of ``cfg`` and return it with normalized values.

    Checks types; allowed names (method, arch, surrogate, dataset, optimizer, schedule, compute
    dtype); ranges (T ≥ 1, batch ≥ 1, λ ∈ (0, 1], V_th > 0, β ∈ [0, 1], dropout rates ∈ [0, 1),
    lr ≥ 0, ...); and consistency (num_classes against the dataset, the VGG layout against
    the arch and the image size, frames of event data against T).

    Args:
      cfg: the configuration.

    Returns:
      An equal :class:`Config` whose values have their declared types (ints given for float
      fields become floats, lists become tuples).

    Raises:
      ValueError: naming each invalid key and what it accepts (all problems at once).
    """
    if not isinstance(cfg, Config):
        raise ValueError(f"validate expects a Config, got {type(cfg).__name__}")
    cfg = _normalize(cfg)
    m, d, o = cfg.model, cfg.data, cfg.optim
    errors: list[str] = []

    # Run level.
    _text(errors, "name", cfg.name)
    _choice(errors, "method", cfg.method, METHODS)
    _number(errors, "num_steps", cfg.num_steps, lo=1)
    _number(errors, "eval_num_steps", cfg.eval_num_steps, lo=1)
    _number(errors, "loss_beta", cfg.loss_beta, lo=0, hi=1)
    _number(errors, "seed", cfg.seed, lo=0)
    _choice(errors, "compute_dtype", cfg.compute_dtype, COMPUTE_DTYPES)
    _text(errors, "workdir", cfg.workdir)
    _number(errors, "log_every", cfg.log_every, lo=1)
    _number(errors, "eval_every_epochs", cfg.eval_every_epochs, lo=1)
    _number(errors, "checkpoint_every_steps", cfg.checkpoint_every_steps, lo=1)
    _number(errors, "max_checkpoints", cfg.max_checkpoints, lo=1)
    _number(errors, "max_train_steps", cfg.max_train_steps, lo=1)

    # Model.
    _choice(errors, "model.arch", m.arch, ARCHS)
    _number(errors, "model.num_classes", m.num_classes, lo=1)
    _number(errors, "model.decay", m.decay, lo=0, hi=1, lo_open=True)
    _number(errors, "model.v_th", m.v_th, lo=0, lo_open=True)
    _choice(errors, "model.surrogate", m.surrogate, SURROGATES)
    _number(errors, "model.surrogate_param", m.surrogate_param, lo=0, lo_open=True)
    for name in ("neuron_dropout", "fc_dropout", "stochastic_depth"):
        _number(errors, f"model.{name}", getattr(m, name), lo=0, hi=1, hi_open=True)
    if any(isinstance(c, int) and c < 1 for c in m.vgg_cfg):
        errors.append(f"model.vgg_cfg conv widths must be >= 1; got {list(m.vgg_cfg)}")
    if m.stochastic_depth > 0 and m.arch in VGG_ARCHS:
        nf = ", ".join(repr(a) for a in ARCHS if a not in VGG_ARCHS)
        errors.append(
            f"model.stochastic_depth applies only to the NF-ResNets ({nf}); got "
            f"{m.stochastic_depth!r} with model.arch {m.arch!r}"
        )

    # Data.
    _choice(errors, "data.dataset", d.dataset, DATASETS)
    _text(errors, "data.data_dir", d.data_dir)
    _number(errors, "data.batch_size", d.batch_size, lo=1)
    _number(errors, "data.eval_batch_size", d.eval_batch_size, lo=1)
    _number(errors, "data.worker_count", d.worker_count, lo=0)
    _number(errors, "data.num_frames", d.num_frames, lo=1)

    # Optimizer.
    _choice(errors, "optim.name", o.name, OPTIMIZERS)
    _number(errors, "optim.lr", o.lr, lo=0)
    _number(errors, "optim.momentum", o.momentum, lo=0, hi=1, hi_open=True)
    _number(errors, "optim.weight_decay", o.weight_decay, lo=0)
    _choice(errors, "optim.schedule", o.schedule, SCHEDULES)
    _number(errors, "optim.epochs", o.epochs, lo=1)
    _number(errors, "optim.warmup_epochs", o.warmup_epochs, lo=0, hi=max(o.epochs, 0))
    _number(errors, "optim.grad_clip", o.grad_clip, lo=0, lo_open=True)
    lr_ok = math.isfinite(o.lr) and o.lr >= 0
    _number(errors, "optim.min_lr", o.min_lr, lo=0, hi=o.lr if lr_ok else None)
    _number(errors, "optim.adam_b1", o.adam_b1, lo=0, hi=1, hi_open=True)
    _number(errors, "optim.adam_b2", o.adam_b2, lo=0, hi=1, hi_open=True)
    _number(errors, "optim.adam_eps", o.adam_eps, lo=0, lo_open=True)
    if o.name == "sgd" and o.nesterov and o.momentum == 0:
        errors.append("optim.nesterov=true needs optim.momentum > 0; got momentum 0.0")

    # Consistency with the dataset.
    info = DATASETS.get(d.dataset)
    if info is not None:
        if m.num_classes != info.num_classes:
            counts = ", ".join(f"{k} {v.num_classes}" for k, v in DATASETS.items())
            errors.append(
                f"model.num_classes must be {info.num_classes} for data.dataset "
                f"{d.dataset!r}; got {m.num_classes} (class counts: {counts})"
            )
        if info.event_based:
            if d.num_frames is not None and d.num_frames != cfg.num_steps:
                errors.append(
                    f"data.num_frames must equal num_steps ({cfg.num_steps}) for "
                    f"{d.dataset!r}, one frame per time step; got {d.num_frames}"
                )
            frames = cfg.effective_num_frames
            if cfg.eval_num_steps is not None and cfg.eval_num_steps != frames:
                errors.append(
                    f"eval_num_steps must be none or equal to the number of frames ({frames}) "
                    f"for {d.dataset!r}; got {cfg.eval_num_steps}"
                )
        elif d.num_frames is not None:
            event = ", ".join(repr(k) for k, v in DATASETS.items() if v.event_based)
            errors.append(
                f"data.num_frames applies only to event datasets ({event}); set it to none for "
                f"{d.dataset!r}, got {d.num_frames}"
            )
    if m.arch in VGG_ARCHS:
        _check_layout(errors, m, info)

    if errors:
        raise ValueError(_error_text(cfg, errors))
    return cfg


def _check_layout(errors: list[str], m: ModelConfig, info: DatasetInfo | None) -> None:
    layout = list(m.vgg_cfg)
    if not layout or not isinstance(layout[0], int):
        errors.append(
            f"model.vgg_cfg must start with a conv width (an int) for model.arch {m.arch!r}, "
            f"e.g. [64,128,M,256]; got {layout}"
        )
        return
    if info is None:
        return
    pools = layout.count("M")
    size = min(info.image_shape[:2])
    if size // 2**pools < 1:
        errors.append(
            f"model.vgg_cfg has {pools} pools, too many for {info.name!r} images of "
            f"{size}×{size} (at most {int(math.log2(size))}); got {layout}"
        )
    elif m.arch == "vggf" and size % 2**pools:
        errors.append(
            f"model.vgg_cfg with model.arch 'vggf' needs the image size ({size}) divisible by "
            f"2**pools = {2**pools} so that the feedback upsampling matches; got {layout}"
        )


# ----------------------------------------------------------------------------------------------
# Serialization and comparison.


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def to_dict(cfg: Config) -> dict[str, Any]:
    """Return ``cfg`` as a nested, JSON-serializable dict (tuples become lists).

    Args:
      cfg: the configuration.

    Returns:
      ``{'name': ..., ..., 'model': {...}, 'data': {...}, 'optim': {...}}`` in field order;
      :func:`from_dict` inverts it exactly, also after a JSON round trip.
    """
    if not isinstance(cfg, Config):
        raise ValueError(f"cfg must be a Config, got {type(cfg).__name__}")
    out: dict[str, Any] = {}
    for fld in dataclasses.fields(Config):
        value = getattr(cfg, fld.name)
        if fld.name in _SECTIONS:
            out[fld.name] = {
                f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
            }
        else:
            out[fld.name] = _jsonable(value)
    return out


def from_dict(d: Mapping[str, Any]) -> Config:
    """Build and validate a :class:`Config` from :func:`to_dict`'s output.

    Missing keys take their defaults (so configs saved by an older version still load, except
    ``name``, which is required); unknown keys are an error.

    Args:
      d: a nested mapping as written by :func:`to_dict` (possibly via JSON).

    Returns:
      The validated configuration.

    Raises:
      ValueError: for a missing name, unknown keys (listing the valid ones) or invalid values.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"from_dict expects a mapping, got {type(d).__name__}")
    if "name" not in d:
        raise ValueError("from_dict: missing required key 'name'")
    valid_top = _field_names(Config)
    unknown = [k for k in d if k not in valid_top]
    if unknown:
        raise ValueError(
            f"from_dict: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: "
            f"{', '.join(valid_top)}"
        )
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        if key in _SECTIONS:
            cls = _SECTIONS[key]
            if not isinstance(value, Mapping):
                raise ValueError(f"from_dict: {key} must be a mapping; got {type(value).__name__}")
            names = _field_names(cls)
            bad = [k for k in value if k not in names]
            if bad:
                raise ValueError(
                    f"from_dict: unknown key(s) {', '.join(repr(f'{key}.{b}') for b in bad)}; "
                    f"valid keys in {key}: {', '.join(names)}"
                )
            kwargs[key] = cls(**value)
        else:
            kwargs[key] = value
    return validate(Config(**kwargs))


def _flat(cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _TOP_KEYS:
        out[key] = getattr(cfg, key)
    for section, cls in _SECTIONS.items():
        sub = getattr(cfg, section)
        for name in _field_names(cls):
            out[f"{section}.{name}"] = getattr(sub, name)
    return out


def to_flat_dict(cfg: Config) -> dict[str, Any]:
    """Return ``cfg`` as a flat JSON-serializable dict keyed by dotted names (for hparam logs)."""
    if not isinstance(cfg, Config):
        raise ValueError(f"cfg must be a Config, got {type(cfg).__name__}")
    return {k: _jsonable(v) for k, v in _flat(cfg).items()}


def diff(cfg_a: Config, cfg_b: Config, ignore: Iterable[str] = ()) -> list[str]:
    """List the keys whose values differ between two configurations.

    Args:
      cfg_a: the first configuration (e.g. the one saved with a checkpoint).
      cfg_b: the second one (e.g. the one asking to resume).
      ignore: dotted keys or whole sections (``'data'``) to skip, e.g. :data:`RESUMABLE_KEYS`.

    Returns:
      One ``'key: a != b'`` line per differing key, values as Python reprs, in field order;
      empty when the two agree.
    """
    for c in (cfg_a, cfg_b):
        if not isinstance(c, Config):
            raise ValueError(f"diff expects two Configs, got {type(c).__name__}")
    skip = set(ignore)
    valid = set(_all_keys()) | set(_SECTIONS)
    unknown = sorted(skip - valid)
    if unknown:
        raise ValueError(f"diff: unknown key(s) in ignore: {', '.join(map(repr, unknown))}")
    a, b = _flat(cfg_a), _flat(cfg_b)
    return [
        f"{key}: {a[key]!r} != {b[key]!r}"
        for key in a
        if a[key] != b[key] and key not in skip and key.partition(".")[0] not in skip
    ]


def field_docs() -> dict[str, str]:
    """Return the documentation of every key, ``{'optim.lr': 'peak learning rate ...', ...}``."""
    docs = {f.name: f.metadata["doc"] for f in dataclasses.fields(Config) if f.name in _TOP_KEYS}
    for section, cls in _SECTIONS.items():
        docs.update({f"{section}.{f.name}": f.metadata["doc"] for f in dataclasses.fields(cls)})
    return docs


def surrogate_kwargs(model: ModelConfig) -> dict[str, float]:
    """Return the keyword parameters of ``model.surrogate`` for ``get_surrogate``.

    ``get_surrogate(model.surrogate, **surrogate_kwargs(model))`` builds the configured
    surrogate. ``surrogate_param=None`` resolves to the surrogate's default (α = 4 for 'sigmoid',
    α = 2 for 'atan', a = 1 for 'rectangular') and, for 'clamp', to ``v_th``: the paper's
    ``1[|v − V_th| < V_th]``.

    Args:
      model: the model section.

    Returns:
      e.g. ``{'alpha': 4.0}``.
    """
    if model.surrogate == "clamp":
        return {"v_th": model.v_th if model.surrogate_param is None else model.surrogate_param}
    if model.surrogate not in _SURROGATE_PARAM:
        raise ValueError(
            f"model.surrogate must be one of {', '.join(map(repr, SURROGATES))}; "
            f"got {model.surrogate!r}"
        )
    name, default = _SURROGATE_PARAM[model.surrogate]
    return {name: default if model.surrogate_param is None else model.surrogate_param}


# ----------------------------------------------------------------------------------------------
# Presets.


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
            f"of a .json config){_close(name, _PRESETS)}"
        )
    return apply_overrides(cfg, overrides)


# ----------------------------------------------------------------------------------------------
# Summary.


def _fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def describe(cfg: Config) -> str:
    """Return a readable multi-line summary of ``cfg``, one line per topic.

    Args:
      cfg: the configuration (need not be valid).

    Returns:
      Lines for the method and time steps, model, neuron, regularization, data, optimizer and
      run control, without a trailing newline.
    """
    m, d, o = cfg.model, cfg.data, cfg.optim
    info = DATASETS.get(d.dataset)
    arch = m.arch + (f" {_fmt(m.vgg_cfg)}" if m.arch in VGG_ARCHS else "")
    try:
        surr = ", ".join(f"{k}={v:g}" for k, v in surrogate_kwargs(m).items())
    except (ValueError, TypeError):
        surr = f"param={_fmt(m.surrogate_param)}"
    if info is not None:
        h, w, c = info.image_shape
        shape = f"{h}×{w}×{c}, {info.num_train} train / {info.num_eval} test"
    else:
        shape = "unknown dataset"
    frames = f", {cfg.effective_num_frames} frames" if cfg.effective_num_frames else ""
    if o.name == "sgd":
        opt = f"sgd lr={o.lr:g} momentum={o.momentum:g}" + (" nesterov" if o.nesterov else "")
    else:
        opt = f"{o.name} lr={o.lr:g} b1={o.adam_b1:g} b2={o.adam_b2:g} eps={o.adam_eps:g}"
    sched = o.schedule + (f" to {o.min_lr:g}" if o.schedule == "cosine" else "")
    lines = [
        f"config {cfg.name!r}",
        f"  method  {cfg.method}: {_METHOD_SUMMARY.get(cfg.method, 'unknown method')}",
        f"  time    T={cfg.num_steps} train, T={cfg.effective_eval_num_steps} eval; "
        f"loss β={cfg.loss_beta:g}; compute {cfg.compute_dtype}; seed {cfg.seed}",
        f"  model   {arch} -> {m.num_classes} classes",
        f"  neuron  LIF decay={m.decay:g} v_th={m.v_th:g}; surrogate {m.surrogate}({surr})",
        f"  regul.  neuron_dropout={m.neuron_dropout:g} fc_dropout={m.fc_dropout:g} "
        f"stochastic_depth={m.stochastic_depth:g}",
        f"  data    {d.dataset} ({shape}{frames}); batch {d.batch_size}, eval batch "
        f"{d.eval_batch_size}; augment {_fmt(d.augment)}; workers {d.worker_count}; "
        f"dir {_fmt(d.data_dir)}",
        f"  optim   {opt} wd={o.weight_decay:g}; {sched}, warmup {o.warmup_epochs:g} of "
        f"{o.epochs} epochs; grad_clip {_fmt(o.grad_clip)}",
        f"  run     workdir {_fmt(cfg.workdir)}; resume {_fmt(cfg.resume)}; max_train_steps "
        f"{_fmt(cfg.max_train_steps)}; progress {_fmt(cfg.progress)}",
        f"  every   log {cfg.log_every} it; eval {cfg.eval_every_epochs} epoch(s); checkpoint "
        f"{cfg.checkpoint_every_steps} it, keep {cfg.max_checkpoints} + best "
        f"{_fmt(cfg.keep_best)}",
    ]
    return "\n".join(lines)
