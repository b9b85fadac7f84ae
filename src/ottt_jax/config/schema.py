"""The configuration schema: the frozen dataclasses of a run and their field types.

A run is one immutable :class:`Config` holding four sections, :class:`ModelConfig`
(``model.*``), :class:`DataConfig` (``data.*``), :class:`OptimConfig` (``optim.*``) and
:class:`RuleConfig` (``rule.*``), plus run-level fields (method, time steps, loss, seed, logging
and checkpointing). Each field carries
its documentation in ``metadata['doc']``. The names a field accepts come from the registries that
own them: datasets from :mod:`ottt_jax.data.catalog`, surrogates from :mod:`ottt_jax.surrogate`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import numbers
import types
import typing
from collections.abc import Iterable
from typing import Any

from ottt_jax import rules
from ottt_jax import surrogate as surrogate_lib
from ottt_jax.data import catalog
from ottt_jax.models import registry as model_registry

__all__ = [
    "ARCHS",
    "COMPUTE_DTYPES",
    "METHODS",
    "MODEL_COMMON",
    "OPTIMIZERS",
    "RESUMABLE_KEYS",
    "SCHEDULES",
    "SECTIONS",
    "SURROGATES",
    "TOP_KEYS",
    "VGG_ARCHS",
    "Config",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RuleConfig",
    "all_keys",
    "all_option_names",
    "close_match",
    "coerce",
    "error_text",
    "field_names",
    "field_type",
    "is_tuple",
    "model_entry",
    "option_archs",
    "option_error",
    "optional_inner",
    "section_keys",
    "surrogate_kwargs",
    "type_name",
]


#: Training methods: OTTT_A (gradients accumulated over T, one update per batch), OTTT_O (an
#: update after every time step) and the BPTT baseline.
METHODS = rules.rule_names()
#: Network architectures.
ARCHS = model_registry.model_names()
#: Surrogate names understood by :func:`ottt_jax.surrogate.get_surrogate`.
SURROGATES = surrogate_lib.surrogate_names()
#: Optimizers.
OPTIMIZERS = ("sgd", "adamw")
#: Learning-rate schedules.
SCHEDULES = ("cosine", "constant")
#: Compute dtypes of the forward/backward pass.
COMPUTE_DTYPES = ("float32", "bfloat16")


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


def model_entry(arch: str) -> Any:
    """Return the model-registry entry of ``arch``, or None when no model has that name."""
    if arch not in model_registry.model_names():
        return None
    return model_registry.get_model_entry(arch)


def option_archs(name: str) -> list[str]:
    """Return the registered architectures that have the option ``name``."""
    return [
        arch
        for arch in model_registry.model_names()
        if name in field_names(model_registry.get_model_entry(arch).options)
    ]


def option_error(arch: str, name: str) -> str:
    """Return the message for ``model.<name>``, which the architecture ``arch`` does not have."""
    entry = model_entry(arch)
    have = ", ".join(field_names(entry.options)) if entry is not None else "none"
    owners = option_archs(name)
    where = f"; it applies only to {', '.join(map(repr, owners))}" if owners else ""
    return f"model.{name} is not an option of model.arch {arch!r} (its options: {have}){where}"


def _tuples(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value  # keep the config hashable


@_document
@dataclasses.dataclass(frozen=True, init=False)
class ModelConfig:
    """The spiking network: architecture, LIF neuron, surrogate, the arch's options (``model.*``).

    Construct it with the common fields and any option of the architecture as keywords,
    ``ModelConfig(arch="vgg", vgg_cfg=(32, "M", 64), neuron_dropout=0.1)``; the options are kept
    as the registry entry's options dataclass in ``options`` and read as attributes
    (``cfg.model.vgg_cfg``). An option the architecture does not have is a ``ValueError`` naming
    the architecture and its options. Given an ``options`` object of another architecture (as
    ``dataclasses.replace(m, arch=...)`` does), the options both architectures have carry over.
    """

    arch: str = _f(
        "vgg",
        doc="network, a name of the model registry (ottt_jax.models.registry): 'vgg' (spiking "
        "VGG of 3×3 sWS convs laid out by vgg_cfg, then global average pooling and a linear "
        "classifier), 'vggf' (the same with VGG-F's feedback connection from the last block to "
        "the first conv), or 'nfresnet18' | 'nfresnet34' | 'nfresnet50' (normalizer-free "
        "pre-activation ResNets, real-valued residual stream).",
    )
    num_classes: int = _f(
        10,
        doc="classifier outputs K; must equal the dataset's class count (ottt_jax.data.catalog).",
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
    options: Any = dataclasses.field(
        default=None,
        metadata={
            "doc": "the architecture's own settings: an instance of its registry entry's options "
            "dataclass (ottt_jax.models.registry.get_model_entry(arch).options), set through their "
            "keys: model.vgg_cfg, model.neuron_dropout, model.fc_dropout for 'vgg'/'vggf'; "
            "model.stochastic_depth, model.fc_dropout for the NF-ResNets. None gives its defaults."
        },
    )

    def __init__(self, **kwargs: Any):
        for fld in dataclasses.fields(ModelConfig):
            object.__setattr__(self, fld.name, kwargs.pop(fld.name, fld.default))
        entry = model_entry(self.arch) if isinstance(self.arch, str) else None
        if entry is None:  # an unknown arch: validate() reports it
            if kwargs:
                object.__setattr__(self, "options", {**(self.options or {}), **kwargs})
            return
        names = field_names(entry.options)
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            raise ValueError(option_error(self.arch, unknown[0]))
        given = self.options
        if given is None:
            values: dict[str, Any] = {}
        elif isinstance(given, dict):
            values = dict(given)
            bad = [k for k in values if k not in names]
            if bad:
                raise ValueError(option_error(self.arch, bad[0]))
        elif dataclasses.is_dataclass(given) and not isinstance(given, type):
            values = {k: getattr(given, k) for k in field_names(type(given)) if k in names}
        else:
            raise ValueError(
                f"model.options must be a {entry.options.__name__} (or None); got "
                f"{type(given).__name__}"
            )
        values.update(kwargs)
        values = {k: _tuples(v) for k, v in values.items()}
        object.__setattr__(self, "options", entry.options(**values))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "options":
            raise AttributeError(name)
        options = self.__dict__.get("options")
        if dataclasses.is_dataclass(options) and name in field_names(type(options)):
            return getattr(options, name)
        if isinstance(options, dict) and name in options:
            return options[name]
        raise AttributeError(option_error(self.arch, name))

    def option_names(self) -> list[str]:
        """Return the option keys of this architecture (``vgg_cfg``, ... for 'vgg')."""
        if dataclasses.is_dataclass(self.options):
            return field_names(type(self.options))
        return list(self.options or {})

    def replace(self, **changes: Any) -> ModelConfig:
        """Return a copy with common fields and/or options changed (like ``dataclasses.replace``).

        Changing ``arch`` keeps the options the new architecture shares with the old one.
        """
        kwargs = {name: getattr(self, name) for name in field_names(ModelConfig)}
        kwargs.update(changes)
        return ModelConfig(**kwargs)


@_document
@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The dataset and its input pipeline (``data.*``)."""

    dataset: str = _f(
        "digits",
        doc="'digits' (scikit-learn 8×8 digits, embedded, no download), 'cifar10', 'cifar100', "
        "'cifar10_dvs' (event frames, 2×48×48) or 'imagenet2012'. The input channels follow "
        "from the dataset (see ottt_jax.data.catalog).",
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
class RuleConfig:
    """Options of the gradient rule (``rule.*``): each is read by the rules that declare it.

    ``ottt_jax.training.build.build_rule`` passes the rule the keys its options dataclass has
    (``rules.get_rule(method).options``); setting one the method does not read is an error.
    """

    k: int = _f(
        2,
        doc="method=sltt_k only: the K time steps (of the T, 1 <= K <= num_steps) that take a "
        "gradient, drawn uniformly without replacement each iteration; the others run forward "
        "only (Meng et al., ICCV 2023; the authors' default is 2).",
    )


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
        "batch), 'ottt_o' (an update after every time step), 'bptt' (the baseline), 'sltt' "
        "(gradients at the instantaneous spikes, no trace; Meng et al., ICCV 2023) or 'sltt_k' "
        "(SLTT at rule.k random steps of the T), or any rule registered in ottt_jax.rules.",
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
    rule: RuleConfig = dataclasses.field(
        default_factory=RuleConfig, metadata={"doc": "the gradient rule's options (rule.* keys)."}
    )
    workdir: str | None = _f(
        None,
        doc="directory for checkpoints, metrics and the saved config.json; None uses "
        "runs/<name>-<method>[-<hash of the non-resumable overrides>] (one per config).",
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
        """Return the frames per sample of event data (``data.num_frames`` or T), else None.

        The rule is the catalog's :func:`ottt_jax.data.catalog.resolve_num_frames`; pass this
        value (not ``data.num_frames``) to the data layer. Raises ``ValueError`` where that rule
        refuses the config.
        """
        return catalog.resolve_num_frames(
            self.data.dataset, self.data.num_frames, num_steps=self.num_steps
        )


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "rule": RuleConfig,
}
#: The model keys every architecture has (the rest are its options).
MODEL_COMMON = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name != "options")
TOP_KEYS = tuple(f.name for f in dataclasses.fields(Config) if f.name not in SECTIONS)

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
# Field types: checking and normalizing values.


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_type(cls: type, name: str) -> Any:
    """Return the resolved type annotation of field ``name`` of the dataclass ``cls``."""
    return _hints(cls)[name]


def field_names(cls: type) -> list[str]:
    """Return the field names of the dataclass ``cls``, in declaration order."""
    return [f.name for f in dataclasses.fields(cls)]


def optional_inner(tp: Any) -> tuple[bool, Any]:
    """Split ``X | None`` into ``(True, X)``; other types give ``(False, tp)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args:
            inner = [a for a in args if a is not type(None)]
            if len(inner) == 1:
                return True, inner[0]
    return False, tp


def is_tuple(tp: Any) -> bool:
    """Return whether the field type ``tp`` is a tuple (``tuple`` or ``tuple[...]``)."""
    return tp is tuple or typing.get_origin(tp) is tuple


def type_name(tp: Any) -> str:
    """Return how a value of field type ``tp`` is written, for error messages."""
    optional, tp = optional_inner(tp)
    if tp is bool:
        name = "a bool (true/false/1/0)"
    elif tp is int:
        name = "an int"
    elif tp is float:
        name = "a float"
    elif tp is str:
        name = "a string"
    elif is_tuple(tp):
        name = "a list of conv widths (ints) and 'M' (pools), e.g. [32,M,64]"
    else:  # pragma: no cover - every field has one of the types above
        name = str(tp)
    return name + (" or none" if optional else "")


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Check that ``value`` fits the field type ``tp`` and return it normalized.

    Ints are accepted for floats (converted), lists for tuples (converted); bools are never
    accepted as numbers.
    """
    optional, inner = optional_inner(tp)
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
    if inner not in (bool, int, float, str) and not is_tuple(inner):
        return value  # a type this module does not parse (a user option): kept as given
    if is_tuple(inner) and isinstance(value, (list, tuple)):
        items: list[int | str] = []
        for item in value:
            if isinstance(item, numbers.Integral) and not isinstance(item, bool):
                items.append(int(item))
            elif isinstance(item, str) and item.upper() == "M":
                items.append("M")
            else:
                raise ValueError(f"{key} expects {type_name(tp)}; got item {item!r} in {value!r}")
        return tuple(items)
    raise ValueError(f"{key} expects {type_name(tp)}; got {value!r}")


def close_match(word: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or an empty string."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def all_option_names() -> list[str]:
    """Return the option names of every registered architecture, in registry order, once each."""
    names: list[str] = []
    for arch in model_registry.model_names():
        for name in field_names(model_registry.get_model_entry(arch).options):
            if name not in names:
                names.append(name)
    return names


def section_keys(section: str, cfg: Config | None = None) -> list[str]:
    """Return the keys of a section: for ``model`` the common fields then the arch's options.

    Args:
      section: ``'model'``, ``'data'`` or ``'optim'``.
      cfg: the config whose ``model.arch`` decides the options; None lists every arch's.
    """
    if section != "model":
        return field_names(SECTIONS[section])
    options = cfg.model.option_names() if cfg is not None else all_option_names()
    return [*MODEL_COMMON, *options]


def all_keys(cfg: Config | None = None) -> list[str]:
    """Return every dotted key (of ``cfg``'s architecture, or of any when None), in field order."""
    keys = list(TOP_KEYS)
    for section in SECTIONS:
        keys += [f"{section}.{name}" for name in section_keys(section, cfg)]
    return keys


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
    if model.surrogate not in SURROGATES:
        raise ValueError(
            f"model.surrogate must be one of {', '.join(map(repr, SURROGATES))}; "
            f"got {model.surrogate!r}"
        )
    name, default = surrogate_lib.default_param(model.surrogate)
    if model.surrogate == "clamp":  # the paper's 1[|v - V_th| < V_th]: the half-width is V_th
        default = model.v_th
    return {name: default if model.surrogate_param is None else model.surrogate_param}


#: The architectures laid out by ``model.vgg_cfg`` (those whose options have it).
VGG_ARCHS = tuple(option_archs("vgg_cfg"))


def error_text(cfg: Any, errors: list[str]) -> str:
    """Return the ``invalid config 'name': ...`` message of one or more problems."""
    name = getattr(cfg, "name", "?")
    if len(errors) == 1:
        return f"invalid config {name!r}: {errors[0]}"
    body = "\n".join(f"  - {e}" for e in errors)
    return f"invalid config {name!r} ({len(errors)} problems):\n{body}"
