"""Dotted-key overrides: ``'optim.lr=0.05'`` strings or mappings, parsed by each field's type.

Values are parsed by the type of the target field:

* ``int`` and ``float``: Python literals (``128``, ``0.05``, ``2e-5``);
* ``bool``: ``true``/``false``/``1``/``0`` (case-insensitive);
* ``str``: the text as given, surrounding whitespace removed;
* optional fields: ``none`` or ``null`` gives ``None``;
* ``model.vgg_cfg``: ``[32,M,64]``, ``(32, M, 64)`` or ``32,M,64`` (ints are conv widths, ``M``
  is a pool).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import is_dataclass
from typing import Any

from ottt_jax.config.schema import (
    MODEL_COMMON,
    SECTIONS,
    TOP_KEYS,
    Config,
    all_keys,
    all_option_names,
    close_match,
    coerce,
    error_text,
    field_type,
    is_tuple,
    option_error,
    optional_inner,
    section_keys,
    type_name,
)
from ottt_jax.config.validate import validate

__all__ = ["apply_overrides"]


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
                f"{key} expects {type_name(tuple[int | str, ...])}; got item {item!r} in {text!r}"
            ) from None
    return tuple(items)


def _parse(key: str, text: str, tp: Any) -> Any:
    """Parse override text into a value of the field type ``tp``."""
    optional, inner = optional_inner(tp)
    stripped = text.strip()
    if optional and stripped.lower() in ("none", "null"):
        return None
    if inner is str:
        return stripped
    if is_tuple(inner):
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
    raise ValueError(f"{key} expects {type_name(tp)}; got {text!r}")


def _resolve(key: str, cfg: Config) -> tuple[str | None, str, Any]:
    """Map a dotted key to ``(section or None, field, type)``; raise on unknown keys.

    ``model.*`` keys are the common model fields and the options of ``cfg.model.arch``, typed by
    its options dataclass; an option of another architecture is an error naming this one's.
    """
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"override keys must be non-empty strings; got {key!r}")
    key = key.strip()
    section, dot, name = key.partition(".")
    if dot:
        if section not in SECTIONS:
            raise ValueError(
                f"unknown key {key!r}; valid sections: {', '.join(SECTIONS)}; valid top-level "
                f"keys: {', '.join(TOP_KEYS)}{close_match(key, all_keys())}"
            )
        cls = SECTIONS[section]
        names = section_keys(section, cfg)
        if name not in names:
            if section == "model" and name in all_option_names():
                raise ValueError(error_text(cfg, [option_error(cfg.model.arch, name)]))
            raise ValueError(
                f"unknown key {key!r}; valid keys in {section}: {', '.join(names)}"
                f"{close_match(key, all_keys(cfg))}"
            )
        if section == "model" and name not in MODEL_COMMON:
            options = type(cfg.model.options)
            return section, name, field_type(options, name) if is_dataclass(options) else Any
        return section, name, field_type(cls, name)
    if key in SECTIONS:
        names = section_keys(key, cfg)
        raise ValueError(
            f"key {key!r} is a section; set its fields as '{key}.<field>=value' (valid keys in "
            f"{key}: {', '.join(names)})"
        )
    if key not in TOP_KEYS:
        # A bare section field ('lr') most likely meant that section's key ('optim.lr').
        owners = [f"{s}.{key}" for s in SECTIONS if key in section_keys(s)]
        hint = f" (did you mean {owners[0]!r}?)" if owners else close_match(key, all_keys())
        raise ValueError(
            f"unknown key {key!r}; valid top-level keys: {', '.join(TOP_KEYS)}; sections: "
            f"{', '.join(s + '.*' for s in SECTIONS)}{hint}"
        )
    return None, key, field_type(Config, key)


def _override_items(overrides: Sequence[str] | Mapping[str, Any] | str) -> list[tuple[str, Any]]:
    """Turn the accepted override forms into ``(key, value)`` pairs; string values stay text."""
    if isinstance(overrides, str):
        overrides = [overrides]
    items: list[tuple[str, Any]] = []
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            if key in SECTIONS and isinstance(value, Mapping):
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
        section, name, tp = _resolve(key, cfg)
        full = key.strip()
        if isinstance(value, str):
            value = _parse(full, value, tp)
        value = coerce(full, value, tp)
        if section is None:
            cfg = dataclasses.replace(cfg, **{name: value})
        elif section == "model":  # a new arch keeps the options both archs have
            cfg = dataclasses.replace(cfg, model=cfg.model.replace(**{name: value}))
        else:
            sub = dataclasses.replace(getattr(cfg, section), **{name: value})
            cfg = dataclasses.replace(cfg, **{section: sub})
    return validate(cfg)
