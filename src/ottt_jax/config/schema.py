"""The configuration schema: the frozen dataclasses of a run, their field types, checks and keys.

A field's ``metadata`` holds its ``doc`` and its own check: ``choices`` (names listed from a
registry at use time), a range ``lo`` [``hi``] (``hi`` may name a sibling), ``check`` (its
owner's) or ``nonempty``. :data:`SELECTORS` name the keys that pick the options dataclasses.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import numbers
import os
import re
import sys
import types
import typing
from collections.abc import Iterable
from typing import Any

from ottt_jax import rules
from ottt_jax import surrogate as surrogate_lib
from ottt_jax.data import catalog
from ottt_jax.data.pipeline import check_batch_size
from ottt_jax.losses import check_beta
from ottt_jax.models import registry as model_registry
from ottt_jax.models.registry import model_names
from ottt_jax.neuron import LIF

#: Optimizers, learning-rate schedules and compute dtypes of the forward/backward pass.
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant")
COMPUTE_DTYPES = ("float32", "bfloat16")


def _f(default: Any = dataclasses.MISSING, doc: str = "", **meta: Any) -> Any:
    """Declare a field with its documentation and checks in ``metadata`` (a section: its class)."""
    init = {"default_factory": default} if isinstance(default, type) else {"default": default}
    return dataclasses.field(**init, metadata={"doc": doc, **meta})


def _document(cls: type) -> type:
    """Append an ``Attributes:`` section built from the fields' ``doc`` metadata to ``__doc__``."""
    lines = [f"  {f.name}: {f.metadata['doc']}" for f in dataclasses.fields(cls)]
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n\nAttributes:\n" + "\n".join(lines) + "\n"
    return cls


@_document
@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The spiking network (``model.*``): the common fields and the arch's ``options``."""

    arch: str = _f("vgg", "network, a model of ottt_jax.models.registry.", choices=model_names)
    num_classes: int = _f(10, "classifier outputs K; the dataset's class count.", lo=1)
    decay: float = _f(0.5, "LIF leak λ = 1 − 1/τ in (0, 1] (paper: 0.5).", check=LIF)  # LIF(decay)
    v_th: float = _f(1.0, "firing threshold V_th > 0 (paper: 1.0).", check=lambda v: LIF(v_th=v))
    surrogate: str = _f("sigmoid", "spike surrogate.", choices=surrogate_lib.surrogate_names)
    surrogate_param: float | None = _f(None, "its parameter (> 0; None: its default).")
    options: Any = _f(None, "the arch's options dataclass (model.<option> keys).")  # noqa: RUF009

    def __post_init__(self):
        if self.options is None:  # the registered arch's defaults
            object.__setattr__(self, "options", _default_options("model", self.arch))


@_document
@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The dataset and its input pipeline (``data.*``)."""

    dataset: str = _f("digits", "dataset of ottt_jax.data.catalog.", choices=catalog.dataset_names)
    data_dir: str | None = _f(None, "prepared dataset directory; None: the default.", nonempty=1)
    batch_size: int = _f(32, "training batch size (>= 1).", check=check_batch_size)
    eval_batch_size: int = _f(256, "evaluation batch size (>= 1).", check=check_batch_size)
    augment: bool = _f(True, "the official recipes' training augmentation (never in eval).")
    worker_count: int = _f(0, "data-loading worker processes (>= 0; 0: in process).", lo=0)
    num_frames: int | None = _f(None, "event data: frames per sample (= T; None: T).", lo=1)


_UNIT, _POSITIVE = {"lo": 0, "hi": 1, "hi_open": True}, {"lo": 0, "lo_open": True}


@_document
@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The optimizer and learning-rate schedule (``optim.*``)."""

    name: str = _f("sgd", "optimizer: SGD with momentum or AdamW.", choices=lambda: OPTIMIZERS)
    lr: float = _f(0.1, "peak learning rate (>= 0).", lo=0)
    momentum: float = _f(0.9, "SGD momentum in [0, 1).", **_UNIT)
    nesterov: bool = _f(False, "SGD: Nesterov momentum (needs momentum > 0).")
    weight_decay: float = _f(0.0, "weight decay (>= 0): SGD's L2 term, AdamW's decoupled.", lo=0)
    schedule: str = _f("cosine", "lr schedule (cosine: lr to min_lr).", choices=lambda: SCHEDULES)
    warmup_epochs: float = _f(0.0, "linear warmup epochs in [0, epochs].", lo=0, hi="epochs")
    epochs: int = _f(30, "training epochs (>= 1); the schedule spans them.", lo=1)
    grad_clip: float | None = _f(None, "gradient global-norm clip (> 0; None: off).", **_POSITIVE)
    min_lr: float = _f(0.0, "final cosine learning rate, in [0, lr].", lo=0, hi="lr")
    adam_b1: float = _f(0.9, "AdamW first-moment decay β1 in [0, 1).", **_UNIT)
    adam_b2: float = _f(0.999, "AdamW second-moment decay β2 in [0, 1).", **_UNIT)
    adam_eps: float = _f(1e-8, "AdamW denominator epsilon (> 0).", **_POSITIVE)


@_document
@dataclasses.dataclass(frozen=True)
class Config:
    """A complete, immutable description of one training run.

    Build it with :func:`get_config` and change it with :func:`apply_overrides`; both validate.
    ``dataclasses.replace`` does not: call :func:`validate` on its result.
    """

    name: str = _f(doc="run name (the preset's unless overridden); non-empty.", nonempty=True)
    method: str = _f("ottt_a", "training rule of ottt_jax.rules.", choices=rules.rule_names)
    num_steps: int = _f(6, "time steps T per training sample (>= 1).", lo=1)
    eval_num_steps: int | None = _f(None, "time steps T of evaluation (>= 1); None: T.", lo=1)
    loss_beta: float = _f(0.05, "β of the loss ((1−β)·CE + β·MSE)/T, in [0, 1].", check=check_beta)
    seed: int = _f(0, "seed (>= 0) of every random draw.", lo=0)
    compute_dtype: str = _f("float32", "forward/backward dtype.", choices=lambda: COMPUTE_DTYPES)
    model: ModelConfig = _f(ModelConfig, "the network (model.* keys).")  # noqa: RUF009
    data: DataConfig = _f(DataConfig, "the dataset and pipeline (data.* keys).")  # noqa: RUF009
    optim: OptimConfig = _f(OptimConfig, "optimizer and schedule (optim.* keys).")  # noqa: RUF009
    rule: Any = _f(None, "the rule's options dataclass, None if it has none (rule.* keys).")  # noqa: RUF009
    workdir: str | None = _f(
        None, "run directory (None: runs/<name>-<method>[-<hash>]).", nonempty=1
    )
    log_every: int = _f(50, "log training metrics every this many iterations (>= 1).", lo=1)
    eval_every_epochs: int = _f(1, "evaluate every this many epochs (>= 1), and last.", lo=1)
    checkpoint_every_steps: int = _f(1000, "checkpoint every this many iterations (>= 1).", lo=1)
    keep_best: bool = _f(True, "also keep the checkpoint of the best evaluation accuracy.")
    max_checkpoints: int = _f(3, "number of recent periodic checkpoints kept (>= 1).", lo=1)
    resume: bool = _f(True, "continue from workdir's checkpoint (saved config must agree).")
    progress: bool = _f(True, "show progress bars during training and evaluation.")
    max_train_steps: int | None = _f(None, "stop after this many iterations (>= 1).", lo=1)
    imports: tuple[str, ...] = _f((), "plugin modules or .py files imported before the config.")

    def __post_init__(self):
        if self.rule is None:  # the registered rule's defaults (None: it has no options)
            object.__setattr__(self, "rule", _default_options("rule", self.method))

    @property
    def effective_eval_num_steps(self) -> int:
        """Return the number of time steps used for evaluation (``eval_num_steps`` or T)."""
        return self.num_steps if self.eval_num_steps is None else self.eval_num_steps

    @property
    def effective_num_frames(self) -> int | None:
        """Return event data's frames per sample (``data.num_frames`` or T; the catalog's rule)."""
        return catalog.resolve_num_frames(
            self.data.dataset, self.data.num_frames, num_steps=self.num_steps
        )


#: The dataclass of each fixed section.
SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig}
#: The model keys every architecture has (the rest are its options).
MODEL_COMMON = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name != "options")
TOP_KEYS = tuple(f.name for f in dataclasses.fields(Config) if f.name not in (*SECTIONS, "rule"))
#: Keys that may differ between the config saved with a checkpoint and the one resuming from it:
#: they change logging, evaluation, checkpointing, paths or imports, not the trajectory.
RESUMABLE_KEYS = frozenset({
    "name", "eval_num_steps", "workdir", "log_every", "eval_every_epochs", "imports",
    "checkpoint_every_steps", "keep_best", "max_checkpoints", "resume", "progress",
    "max_train_steps", "data.data_dir", "data.eval_batch_size", "data.worker_count",
})  # fmt: skip
#: The options sections and the key that selects each one's registry entry; all sections.
SELECTORS = {"model": "model.arch", "rule": "method"}
ALL_SECTIONS = (*SECTIONS, "rule")
#: The attribute path of each options section's object: ``cfg.model.options``, ``cfg.rule``.
OPTIONS_AT = {"model": ["model", "options"], "rule": ["rule"]}


def option_types(section: str) -> dict[str, type | None]:
    """Return ``{entry: its options type, or None}`` of the model or rule registry, now."""
    if section == "model":
        return {a: model_registry.get_model_entry(a).options for a in model_names()}
    found = {n: rules.get_rule(n).options for n in rules.rule_names()}
    return {n: None if o is None else type(o) for n, o in found.items()}


def options_type(section: str, cfg: Any) -> type | None:
    """Return the options type ``cfg``'s selector names for ``section`` (None: none/unknown)."""
    return _default_options(section, get_key(cfg, SELECTORS[section]), make=False)


def _default_options(section: str, selected: Any, make: bool = True) -> Any:
    cls = option_types(section).get(selected) if isinstance(selected, str) else None
    return cls() if make and cls is not None else cls


def key_path(key: str) -> list[str]:
    """Return the attribute path of the dotted ``key`` (``model.<option>`` is under options)."""
    section, dot, name = key.partition(".")
    option = dot and section == "model" and name not in MODEL_COMMON
    return [section, "options", name] if option else key.split(".")


def get_key(cfg: Any, key: str | list[str]) -> Any:
    """Return the value of the dotted ``key`` (or at the attribute path ``key``) in ``cfg``."""
    return functools.reduce(getattr, key_path(key) if isinstance(key, str) else key, cfg)


def replace_at(obj: Any, path: list[str], value: Any) -> Any:
    """Return ``obj`` with the attribute at ``path`` set to ``value`` (its owners copied)."""
    head, *rest = path
    value = replace_at(getattr(obj, head), rest, value) if rest else value
    return dataclasses.replace(obj, **{head: value})


def field_names(cls: type | None) -> list[str]:
    """Return the field names of the dataclass ``cls`` (none for None), in declaration order."""
    return [] if cls is None else [f.name for f in dataclasses.fields(cls)]


def option_fields(section: str, name: str) -> dict[str, dataclasses.Field]:
    """Return ``{entry: field}`` for every registered entry whose options have the field."""
    found = option_types(section).items()
    return {e: f for e, cls in found if cls for f in dataclasses.fields(cls) if f.name == name}


def option_error(section: str, cfg: Any, name: str) -> str:
    """Return the message for ``<section>.<name>``, not an option of ``cfg``'s entry."""
    have = ", ".join(field_names(options_type(section, cfg))) or "none"
    owners = ", ".join(map(repr, option_fields(section, name)))
    where = f"; it applies only to {owners}" if owners else ""
    selected = f"{SELECTORS[section]} {get_key(cfg, SELECTORS[section])!r}"
    return f"{section}.{name} is not an option of {selected} (its options: {have}){where}"


def section_keys(section: str, cfg: Any = None) -> list[str]:
    """Return the keys of ``section``; of an options section, ``cfg``'s entry's (None: all)."""
    if section not in SELECTORS:
        return field_names(SECTIONS[section])
    found = [options_type(section, cfg)] if cfg is not None else option_types(section).values()
    every = [f for cls in found for f in field_names(cls)]
    return [*(MODEL_COMMON if section == "model" else ()), *dict.fromkeys(every)]


def all_keys(cfg: Any = None) -> list[str]:
    """Return every dotted key (of ``cfg``'s entries, or of any when None), in field order."""
    return [*TOP_KEYS, *(f"{s}.{k}" for s in ALL_SECTIONS for k in section_keys(s, cfg))]


_KINDS = {bool: "a bool (true/false/1/0)", int: "an int", float: "a float", str: "a string"}
_BOOL = {"true": True, "1": True, "false": False, "0": False}
_hints = functools.cache(typing.get_type_hints)  # a dataclass's resolved field types


def _from_text(text: str, tp: Any) -> Any:
    """Parse override text as ``tp`` where it reads as one; otherwise return it unchanged."""
    if tp is bool:
        return _BOOL.get(text.lower(), text)
    if typing.get_origin(tp) is tuple or tp is tuple:
        item, parts = (typing.get_args(tp) or (str,))[0], text.strip("[]()").split(",")
        return tuple(_from_text(s.strip(), item) for s in parts if s.strip())
    try:
        return tp(text) if tp in (int, float) else text
    except ValueError:
        return text


def convert(key: str, value: Any, owner: type, *, text: bool = False) -> Any:
    """Return ``value`` as the declared type of the field of ``owner`` that ``key`` ends with.

    Override text (``text=True``) is parsed first: int/float literals, true/false/1/0, ``none``
    or ``null`` for optional fields, comma lists for tuples. Ints are accepted for floats, lists
    for tuples, never bools for numbers. A field's ``metadata['parse']`` (e.g. a VGG layout)
    parses its own values; a type other than these is kept as given. Errors name ``key``.
    """
    name = key.rpartition(".")[2]
    tp, fld = _hints(owner)[name], next(f for f in dataclasses.fields(owner) if f.name == name)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    optional = typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1
    inner, parse = args[0] if optional else tp, fld.metadata.get("parse")
    value = value.strip() if text else value
    if optional and (value is None or (text and value.lower() in ("none", "null"))):
        return None
    try:
        value = parse(value) if parse else _from_text(value, inner) if text else value
    except ValueError as e:
        raise ValueError(f"{key} {e}") from None
    is_tuple = typing.get_origin(inner) is tuple or inner is tuple
    if inner is bool or inner is str:
        good = isinstance(value, inner)
    elif inner in (int, float):
        integral = isinstance(value, numbers.Integral) or inner is float
        good = isinstance(value, numbers.Real) and integral and not isinstance(value, bool)
    elif is_tuple:
        item = (typing.get_args(inner) or (object,))[0]
        good = isinstance(value, (list, tuple)) and all(isinstance(v, item) for v in value)
    else:
        return value
    if not good:
        name = _KINDS.get(inner, "a list") + (" or none" if optional else "")
        raise ValueError(f"{key} expects {name}; got {value!r}")
    return tuple(value) if is_tuple else inner(value)


def import_plugins(specs: Iterable[str]) -> tuple[str, ...]:
    """Import plugins: module names (``mypkg.mod``) or ``.py`` files (once per process each).

    Returns the specs as ``Config.imports`` records them: files as absolute paths.
    """
    done = []
    for spec in specs:
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"imports: expects module names or .py paths; got {spec!r}")
        path = os.path.abspath(spec) if spec.endswith(".py") else None
        name = "ottt_plugin_" + re.sub(r"\W", "_", path or spec)
        try:
            if path is None:
                importlib.import_module(spec)
            elif name not in sys.modules:
                if not os.path.isfile(path):
                    raise ImportError(f"no such file {path}")
                found = importlib.util.spec_from_file_location(name, path)
                sys.modules[name] = module = importlib.util.module_from_spec(found)
                found.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(name, None)
            raise ValueError(f"imports: cannot import {spec!r}: {type(e).__name__}: {e}") from e
        done.append(path or spec)
    return tuple(done)


def surrogate_kwargs(model: ModelConfig) -> dict[str, float]:
    """Return ``get_surrogate``'s parameters of ``model.surrogate``, e.g. ``{'alpha': 4.0}``.

    ``surrogate_param=None`` is the surrogate's default; for 'clamp' it is ``v_th`` (the paper's
    ``1[|v − V_th| < V_th]``).
    """
    if model.surrogate not in (names := surrogate_lib.surrogate_names()):
        raise ValueError(
            f"model.surrogate must be one of {', '.join(map(repr, names))}; got {model.surrogate!r}"
        )
    name, default = surrogate_lib.default_param(model.surrogate)
    default = model.v_th if model.surrogate == "clamp" else default  # the half-width is V_th
    return {name: default if model.surrogate_param is None else model.surrogate_param}


def error_text(cfg: Any, errors: list[str]) -> str:
    """Return the ``invalid config 'name': ...`` message of one or more problems."""
    name, body = getattr(cfg, "name", "?"), "".join(f"\n  - {e}" for e in errors)
    if len(errors) == 1:
        return f"invalid config {name!r}: {errors[0]}"
    return f"invalid config {name!r} ({len(errors)} problems):{body}"
