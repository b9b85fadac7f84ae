"""Validation of a whole :class:`~ottt_jax.config.Config`: types, field checks, consistency.

Each field's check is declared with it (:mod:`~ottt_jax.config.schema`); the model's options are
checked by building the model, the rule's by their type's ``check(num_steps)`` if it has one
(its message starts with the option's name); dataset facts come from :mod:`ottt_jax.data.catalog`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ottt_jax.config import schema as S
from ottt_jax.data import catalog
from ottt_jax.models import registry as model_registry
from ottt_jax.registry import close_match
from ottt_jax.surrogate import get_surrogate, surrogate_names

__all__ = ["validate"]


def _check_field(key: str, value: Any, meta: Any, obj: Any) -> str | None:
    """Return the problem of ``value`` under its field's declared check, or None."""
    if value is None:
        return None
    choices = tuple(meta["choices"]()) if "choices" in meta else ()
    if choices and value not in choices:
        hint = close_match(value, choices) if isinstance(value, str) else ""
        return f"{key} must be one of {', '.join(map(repr, choices))}; got {value!r}{hint}"
    if meta.get("nonempty") and not value.strip():
        return f"{key} must be a non-empty string; got {value!r}"
    try:
        meta.get("check", lambda v: None)(value)
    except ValueError as e:
        return f"{key}: {e}"
    if "lo" not in meta:
        return None
    lo, hi, lo_open, hi_open = (meta.get(k) for k in ("lo", "hi", "lo_open", "hi_open"))
    if isinstance(hi, str):  # a sibling field bounds this one where it is itself valid
        hi = getattr(obj, hi) if math.isfinite(getattr(obj, hi)) and getattr(obj, hi) >= 0 else None
    above = value > lo if lo_open else value >= lo
    if math.isfinite(value) and above and (hi is None or (value < hi if hi_open else value <= hi)):
        return None
    where = f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        where = f"in {'[('[bool(lo_open)]}{lo:g}, {hi:g}{'])'[bool(hi_open)]}"
    kind = "an int" if isinstance(value, int) else "a finite number"
    return f"{key} must be {kind} {where}; got {value!r}"


def _typed(obj: Any, prefix: str, errors: list[str], skip: tuple[str, ...] = ()) -> Any:
    """Return ``obj`` with each field converted to its declared type (errors name the keys)."""
    changes = {}
    for name in (f.name for f in dataclasses.fields(obj) if f.name not in skip):
        try:
            changes[name] = S.convert(prefix + name, getattr(obj, name), type(obj))
        except ValueError as e:
            errors.append(str(e))
    return dataclasses.replace(obj, **changes)


def _normalize(cfg: S.Config) -> S.Config:
    """Return ``cfg`` with every value of its declared type, or raise naming each bad key."""
    errors: list[str] = []
    for name, cls in S.SECTIONS.items():
        got = type(getattr(cfg, name))
        errors += [f"{name} must be a {cls.__name__}; got {got.__name__}"] if got is not cls else []
    if not errors:
        cfg = _typed(cfg, "", errors, skip=S.ALL_SECTIONS)
        for name in ("data", "optim", "model"):
            typed = _typed(getattr(cfg, name), name + ".", errors, skip=("options",))
            cfg = dataclasses.replace(cfg, **{name: typed})
        for section, selector in S.SELECTORS.items():  # options: of their entry's type
            selected, at = S.get_key(cfg, selector), S.OPTIONS_AT[section]
            given, cls = S.get_key(cfg, at), S.options_type(section, cfg)
            if not isinstance(selected, str) or selected not in S.option_types(section):
                continue  # the selector's own check reports it
            if type(given) is not (cls or type(None)):
                want = f"a {cls.__name__}" if cls else "None"
                errors.append(
                    f"{'.'.join(at)} must be {want} for {selector} {selected!r}; "
                    f"got {type(given).__name__}"
                )
            elif cls is not None:
                cfg = S.replace_at(cfg, at, _typed(given, section + ".", errors))
    if errors:
        raise ValueError(S.error_text(cfg, errors))
    return cfg


def validate(cfg: S.Config) -> S.Config:
    """Return ``cfg`` with values of their declared types (ints for floats become floats, ...).

    Checks types, each field's own check (names, ranges, its owner's), the options by their
    owners, and consistency (classes and frames against the dataset, the model's layer shapes).

    Raises:
      ValueError: naming each invalid key and what it accepts (all problems at once).
    """
    if not isinstance(cfg, S.Config):
        raise ValueError(f"validate expects a Config, got {type(cfg).__name__}")
    cfg = _normalize(cfg)
    m, o = cfg.model, cfg.optim
    errors: list[str] = []
    for obj, prefix in ((cfg, ""), (m, "model."), (m.options, "model."), (cfg.data, "data."),
                        (o, "optim."), (cfg.rule, "rule.")):  # fmt: skip
        for fld in dataclasses.fields(obj) if dataclasses.is_dataclass(obj) else ():
            problem = _check_field(prefix + fld.name, getattr(obj, fld.name), fld.metadata, obj)
            errors += [problem] if problem else []
    if m.surrogate_param is not None and m.surrogate in surrogate_names():
        try:
            get_surrogate(m.surrogate, **S.surrogate_kwargs(m))
        except ValueError as e:
            errors.append(f"model.surrogate_param: {e}")
    if o.name == "sgd" and o.nesterov and o.momentum == 0:
        errors.append("optim.nesterov=true needs optim.momentum > 0; got momentum 0.0")
    spec = _check_dataset(errors, cfg)
    if m.arch in model_registry.model_names() and m.num_classes >= 1:
        _check_model(errors, m, spec)
    if callable(check := getattr(cfg.rule, "check", None)) and cfg.num_steps >= 1:
        try:  # the rule options' own check against T
            check(num_steps=cfg.num_steps)
        except ValueError as e:  # its message starts with the option's name
            errors.append(f"rule.{e}")
    if errors:
        raise ValueError(S.error_text(cfg, errors))
    return cfg


def _check_dataset(errors: list[str], cfg: S.Config) -> catalog.DatasetSpec | None:
    """Check num_classes and the frames against the dataset; return its spec (None: unknown)."""
    m, d, names = cfg.model, cfg.data, catalog.dataset_names()
    spec = catalog.get_dataset(d.dataset) if d.dataset in names else None
    if spec is not None and m.num_classes != spec.num_classes:
        counts = ", ".join(f"{k} {catalog.get_dataset(k).num_classes}" for k in names)
        errors.append(
            f"model.num_classes must be {spec.num_classes} for data.dataset {d.dataset!r}; got "
            f"{m.num_classes} (class counts: {counts})"
        )
    try:  # None for a static (or unknown) dataset
        frames = spec and catalog.resolve_num_frames(spec, d.num_frames, num_steps=cfg.num_steps)
    except ValueError as e:  # its messages start with 'num_frames'
        errors.append(f"data.{e}")
    else:
        if frames is not None and cfg.eval_num_steps not in (None, frames):
            errors.append(
                f"eval_num_steps must be none or equal to the number of frames ({frames}) for "
                f"{d.dataset!r}; got {cfg.eval_num_steps}"
            )
    return spec


def _check_model(errors: list[str], m: S.ModelConfig, spec: catalog.DatasetSpec | None) -> None:
    """Run the model's own checks: build it from its registry entry, then its layer shapes.

    A failure is reported under the first option key that fails on its own (the others at their
    defaults), else under ``model.arch``; a shape failure also names the dataset's frames.
    """
    options = {f.name: getattr(m.options, f.name) for f in dataclasses.fields(m.options)}

    def fails(opts: dict[str, Any], fit: bool) -> ValueError | None:
        try:  # build it with ``opts`` (the rest at their defaults), then fit it to the frames
            model = model_registry.build_model(m.arch, num_classes=m.num_classes, options=opts)
            if fit and spec is not None and hasattr(model, "layer_sizes"):
                model.layer_sizes(spec.frame_shape)
        except ValueError as e:
            return e
        return None

    for fit in (False, True):
        if (e := fails(options, fit)) is not None:
            alone = (f"model.{k}" for k, v in options.items() if fails({k: v}, fit) is not None)
            key = next(alone, "model.arch")
            if fit:
                h, w, c = spec.frame_shape
                key += f" does not fit data.dataset {spec.name!r} ({h}×{w}×{c} frames)"
            errors.append(f"{key}: {e}")
            return
