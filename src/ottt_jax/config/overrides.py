"""Dotted-key overrides: ``'optim.lr=0.05'`` strings or mappings, parsed by each field's type.

Text is parsed by the type of the target field (:func:`~ottt_jax.config.schema.convert`): int and
float literals (``128``, ``2e-5``), ``true``/``false``/``1``/``0``, strings stripped, ``none`` or
``null`` for optional fields, ``a,b`` lists for tuples; a field with its own ``parse`` (the VGG
layout ``model.vgg_cfg=[32,M,64]``) parses its text itself. ``imports``, ``method`` and
``model.arch`` are applied first, so the other keys may name what they register or select.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ottt_jax.config import schema as S
from ottt_jax.config.validate import validate
from ottt_jax.registry import close_match

__all__ = ["apply_overrides", "rebase"]

_FIRST = ("imports", "method", "model.arch")


def _unknown(key: str, cfg: S.Config) -> str:
    """Return the message of an unknown dotted ``key``, listing what is valid there."""
    section, dot, name = key.partition(".")
    sections = (*S.SECTIONS, *S.SELECTORS)
    if dot and section not in sections:
        return (
            f"unknown key {key!r}; valid sections: {', '.join(dict.fromkeys(sections))}; valid "
            f"top-level keys: {', '.join(S.TOP_KEYS)}{close_match(key, S.all_keys())}"
        )
    selected = S.get_key(cfg, S.SELECTORS[section]) if section in S.SELECTORS else None
    if dot and selected is not None and selected not in S.option_types(section):
        return (
            f"unknown key {key!r}: {S.SELECTORS[section]} {selected!r} is not registered (its "
            "plugin must be imported first: imports=... or ottt-train --import)"
        )
    if dot:
        if section in S.SELECTORS and S.option_fields(section, name):
            return S.error_text(cfg, [S.option_error(section, cfg, name)])
        return (
            f"unknown key {key!r}; valid keys in {section}: "
            f"{', '.join(S.section_keys(section, cfg))}{close_match(key, S.all_keys(cfg))}"
        )
    if key in sections:
        return (
            f"key {key!r} is a section; set its fields as '{key}.<field>=value' (valid keys in "
            f"{key}: {', '.join(S.section_keys(key, cfg))})"
        )
    # A bare section field ('lr') most likely meant that section's key ('optim.lr').
    owners = [f"{s}.{key}" for s in S.SECTIONS if key in S.section_keys(s)]
    hint = f" (did you mean {owners[0]!r}?)" if owners else close_match(key, S.all_keys())
    return (
        f"unknown key {key!r}; valid top-level keys: {', '.join(S.TOP_KEYS)}; sections: "
        f"{', '.join(s + '.*' for s in dict.fromkeys(sections))}{hint}"
    )


def _target(key: str, cfg: S.Config) -> tuple[Any, dataclasses.Field]:
    """Return the object holding ``key`` and its field; an unknown key is a ValueError."""
    section, dot, name = key.partition(".")
    if not dot:
        obj = cfg if key in S.TOP_KEYS else None
    elif section in S.SELECTORS and (section != "model" or name not in S.MODEL_COMMON):
        obj = S.options_of(cfg, section)
        obj = obj if obj is not None else (S.options_type(section, cfg) or (lambda: None))()
    else:
        obj = getattr(cfg, section) if section in S.SECTIONS else None
    fields = {f.name: f for f in dataclasses.fields(obj)} if obj is not None else {}
    if (name if dot else key) not in fields or key.count(".") > 1:
        raise ValueError(_unknown(key, cfg))
    return obj, fields[name if dot else key]


def rebase(options: Any, cls: type | None) -> Any:
    """Return ``cls``'s options keeping the values ``options`` has for its fields (None: none)."""
    if cls is None:
        return None
    if options is None or type(options) is cls:
        return options
    names = [f.name for f in dataclasses.fields(cls)]
    return cls(
        **{f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.name in names}
    )


def _set(cfg: S.Config, key: str, obj: Any, name: str, value: Any) -> S.Config:
    """Return ``cfg`` with ``obj``'s field ``name`` (the dotted ``key``) set to ``value``."""
    section, dot, _ = key.partition(".")
    new = dataclasses.replace(obj, **{name: value})
    if not dot:
        cfg = new
    elif section == "rule":
        cfg = dataclasses.replace(cfg, rule=new)
    elif section == "model" and name not in S.MODEL_COMMON:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, options=new))
    else:
        cfg = dataclasses.replace(cfg, **{section: new})
    if key in ("method", "model.arch"):  # the new entry keeps the options both have
        section = "rule" if key == "method" else "model"
        options = rebase(S.options_of(cfg, section), S.options_type(section, cfg))
        if section == "rule":
            return dataclasses.replace(cfg, rule=options)
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, options=options))
    return cfg


def _override_items(overrides: Sequence[str] | Mapping[str, Any] | str) -> list[tuple[str, Any]]:
    """Turn the accepted override forms into ``(key, value)`` pairs; string values stay text."""
    if isinstance(overrides, str):
        overrides = [overrides]
    items: list[tuple[str, Any]] = []
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            if key in (*S.SECTIONS, *S.SELECTORS) and isinstance(value, Mapping):
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
        items.append((key, text))
    return items


def apply_overrides(cfg: S.Config, overrides: Sequence[str] | Mapping[str, Any] | str) -> S.Config:
    """Return ``cfg`` with dotted-key overrides applied, validated.

    Args:
      cfg: the base configuration.
      overrides: ``'key=value'`` strings (a single string counts as one override), or a mapping
        from dotted keys to values (text is parsed like the strings; other values must match the
        field's type). A mapping may also nest a section: ``{'optim': {'lr': 0.05}}``. Later
        entries win; ``imports``, ``method`` and ``model.arch`` apply first.

    Returns:
      The new, validated :class:`Config` (``cfg`` itself is unchanged).

    Raises:
      ValueError: for an unknown key (the message lists the valid keys), an unparsable value or
        an invalid result (see :func:`validate`).
    """
    if not isinstance(cfg, S.Config):
        raise ValueError(f"cfg must be a Config, got {type(cfg).__name__}")
    items = _override_items(overrides)
    for key, _ in items:
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"override keys must be non-empty strings; got {key!r}")
    items = sorted(((k.strip(), v) for k, v in items), key=lambda kv: kv[0] not in _FIRST)
    for key, value in items:
        obj, fld = _target(key, cfg)
        tp = S.field_types(type(obj))[fld.name]
        value = S.convert(key, value, fld, tp, text=isinstance(value, str))
        if key == "imports":
            value = S.import_plugins(value)
        cfg = _set(cfg, key, obj, fld.name, value)
    return validate(cfg)
