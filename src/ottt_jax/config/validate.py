"""Validation of a whole :class:`~ottt_jax.config.Config`: types, names, ranges, cross-field rules.

Every public constructor path (``get_config``, ``apply_overrides``, ``from_dict``) ends in
:func:`validate`, which rejects invalid values with a ``ValueError`` naming each key and what it
accepts. The dataset facts (classes, image size, the frames rule) are read from
:mod:`ottt_jax.data.catalog`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

from ottt_jax import rules
from ottt_jax.config.schema import (
    COMPUTE_DTYPES,
    MODEL_COMMON,
    OPTIMIZERS,
    SCHEDULES,
    SECTIONS,
    SURROGATES,
    TOP_KEYS,
    Config,
    ModelConfig,
    RuleConfig,
    close_match,
    coerce,
    error_text,
    field_names,
    field_type,
    surrogate_kwargs,
)
from ottt_jax.data import catalog
from ottt_jax.data.pipeline import check_batch_size
from ottt_jax.losses import check_beta
from ottt_jax.models import registry as model_registry
from ottt_jax.neuron import LIF
from ottt_jax.online import check_k
from ottt_jax.surrogate import get_surrogate

__all__ = ["validate"]


def _choice(errors: list[str], key: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        hint = close_match(value, choices) if isinstance(value, str) else ""
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


def _owned(errors: list[str], key: str, check: Callable[[], Any]) -> None:
    """Run the owning object's own check and report its ValueError under the config ``key``."""
    try:
        check()
    except ValueError as e:
        errors.append(f"{key}: {e}")


def _surrogate_spec(m: ModelConfig) -> dict[str, Any]:
    return {"spec": m.surrogate, **surrogate_kwargs(m)}


def _text(errors: list[str], key: str, value: str | None) -> None:
    if value is not None and not value.strip():
        errors.append(f"{key} must be a non-empty string; got {value!r}")


def _normalize(cfg: Config) -> Config:
    """Check every field's type and return the config with normalized values (int→float etc.)."""
    errors: list[str] = []

    def norm(obj: Any, cls: type, prefix: str, names: Iterable[str]) -> dict[str, Any]:
        out = {}
        for name in names:
            key = prefix + name
            try:
                out[name] = coerce(key, getattr(obj, name), field_type(cls, name))
            except ValueError as e:
                errors.append(str(e))
        return out

    top = {}
    for name in TOP_KEYS:
        try:
            top[name] = coerce(name, getattr(cfg, name), field_type(Config, name))
        except ValueError as e:
            errors.append(str(e))
    for section, cls in SECTIONS.items():
        sub = getattr(cfg, section)
        if not isinstance(sub, cls):
            errors.append(f"{section} must be a {cls.__name__}; got {type(sub).__name__}")
        elif section == "model":
            common = norm(sub, cls, "model.", MODEL_COMMON)
            options = sub.options
            if dataclasses.is_dataclass(options):  # the arch's options, typed by their class
                ocls = type(options)
                options = ocls(**norm(options, ocls, "model.", field_names(ocls)))
            top[section] = ModelConfig(**common, options=options)
        else:
            top[section] = cls(**norm(sub, cls, section + ".", field_names(cls)))
    if errors:
        raise ValueError(error_text(cfg, errors))
    return Config(**top)


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
    _choice(errors, "method", cfg.method, rules.rule_names())
    _number(errors, "num_steps", cfg.num_steps, lo=1)
    _number(errors, "eval_num_steps", cfg.eval_num_steps, lo=1)
    _owned(errors, "loss_beta", lambda: check_beta(cfg.loss_beta))  # the loss's own rule
    _number(errors, "seed", cfg.seed, lo=0)
    _choice(errors, "compute_dtype", cfg.compute_dtype, COMPUTE_DTYPES)
    _text(errors, "workdir", cfg.workdir)
    _number(errors, "log_every", cfg.log_every, lo=1)
    _number(errors, "eval_every_epochs", cfg.eval_every_epochs, lo=1)
    _number(errors, "checkpoint_every_steps", cfg.checkpoint_every_steps, lo=1)
    _number(errors, "max_checkpoints", cfg.max_checkpoints, lo=1)
    _number(errors, "max_train_steps", cfg.max_train_steps, lo=1)
    _check_rule_options(errors, cfg)

    # Model.
    _choice(errors, "model.arch", m.arch, model_registry.model_names())
    _number(errors, "model.num_classes", m.num_classes, lo=1)
    # Single-object rules are the objects' own: the neuron, the surrogate (the model below).
    _owned(errors, "model.decay", lambda: LIF(decay=m.decay))
    _owned(errors, "model.v_th", lambda: LIF(v_th=m.v_th))
    _choice(errors, "model.surrogate", m.surrogate, SURROGATES)
    if m.surrogate in SURROGATES and m.surrogate_param is not None:
        _owned(errors, "model.surrogate_param", lambda: get_surrogate(**_surrogate_spec(m)))

    # Data.
    _choice(errors, "data.dataset", d.dataset, catalog.dataset_names())
    _text(errors, "data.data_dir", d.data_dir)
    _owned(errors, "data.batch_size", lambda: check_batch_size(d.batch_size))
    _owned(errors, "data.eval_batch_size", lambda: check_batch_size(d.eval_batch_size))
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

    # Consistency with the dataset (its facts and the frames rule live in the catalog).
    names = catalog.dataset_names()
    spec = catalog.get_dataset(d.dataset) if d.dataset in names else None
    if spec is not None:
        if m.num_classes != spec.num_classes:
            counts = ", ".join(f"{k} {catalog.get_dataset(k).num_classes}" for k in names)
            errors.append(
                f"model.num_classes must be {spec.num_classes} for data.dataset "
                f"{d.dataset!r}; got {m.num_classes} (class counts: {counts})"
            )
        try:
            frames = catalog.resolve_num_frames(spec, d.num_frames, num_steps=cfg.num_steps)
        except ValueError as e:  # its messages start with 'num_frames'
            errors.append(f"data.{e}")
        else:
            if spec.is_sequence and cfg.eval_num_steps not in (None, frames):
                errors.append(
                    f"eval_num_steps must be none or equal to the number of frames ({frames}) "
                    f"for {d.dataset!r}; got {cfg.eval_num_steps}"
                )
    # The model's own rules (its options, its layer shapes on these frames), run by building it.
    arch_ok = m.arch in model_registry.model_names() and dataclasses.is_dataclass(m.options)
    if arch_ok and isinstance(m.num_classes, int) and m.num_classes >= 1:
        _check_model(errors, m, spec)

    if errors:
        raise ValueError(error_text(cfg, errors))
    return cfg


def _check_rule_options(errors: list[str], cfg: Config) -> None:
    """``rule.*``: the keys the method's options read are checked against T; others stay unset."""
    if cfg.method not in rules.rule_names():
        return
    options = rules.get_rule(cfg.method).options
    read = field_names(type(options)) if options is not None else []
    for name in field_names(RuleConfig):
        value = getattr(cfg.rule, name)
        if name not in read and value != getattr(RuleConfig(), name):
            errors.append(
                f"rule.{name} is not an option of method {cfg.method!r} (its options: "
                f"{', '.join(read) or 'none'}); got {value!r}"
            )
    if "k" in read and isinstance(cfg.num_steps, int) and cfg.num_steps >= 1:
        try:
            check_k(cfg.rule.k, cfg.num_steps, field="rule.k")
        except ValueError as e:  # the message names rule.k and T
            errors.append(str(e))


def _check_model(errors: list[str], m: ModelConfig, spec: catalog.DatasetSpec | None) -> None:
    """Run the model's own checks: build it from its registry entry, then its layer shapes.

    A failure is reported under the first option key that fails on its own (the others at their
    defaults), else under ``model.arch``; a shape failure also names the dataset's frames.
    """
    options = {name: getattr(m, name) for name in m.option_names()}

    def build(opts: dict[str, Any]) -> Any:
        return model_registry.build_model(m.arch, num_classes=m.num_classes, options=opts)

    def blame(fails: Callable[[dict[str, Any]], Any]) -> str:
        for name, value in options.items():
            try:
                fails({name: value})
            except ValueError:
                return f"model.{name}"
        return "model.arch"

    try:
        model = build(options)
    except ValueError as e:
        errors.append(f"{blame(build)}: {e}")
        return
    if spec is None or not hasattr(model, "layer_sizes"):
        return
    try:
        model.layer_sizes(spec.frame_shape)
    except ValueError as e:
        key = blame(lambda opts: build(opts).layer_sizes(spec.frame_shape))
        h, w, c = spec.frame_shape
        errors.append(f"{key} does not fit data.dataset {spec.name!r} ({h}×{w}×{c} frames): {e}")
