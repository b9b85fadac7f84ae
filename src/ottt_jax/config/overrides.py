"""Dotted-key overrides: ``'optim.lr=0.05'`` strings or mappings, parsed by each field's type.

Text is parsed by :func:`~ottt_jax.config.schema.convert` (a field with a ``parse`` of its own,
such as ``model.vgg_cfg=[32,M,64]``, parses itself). ``imports``, ``method`` and ``model.arch``
apply first, so the other keys may name what a plugin registers or what they select.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ottt_jax.config import schema as S
from ottt_jax.config.validate import validate
from ottt_jax.registry import close_match

__all__ = ["apply_overrides"]

_FIRST = {"imports": 0, "method": 1, "model.arch": 1}  # plugins, then the entries they register


def _unknown(key: str, cfg: S.Config) -> str:
    """Return the message of an unknown dotted ``key``, listing what is valid there."""
    section, dot, name = key.partition(".")
    if dot and section not in S.ALL_SECTIONS:
        return (
            f"unknown key {key!r}; valid sections: {', '.join(S.ALL_SECTIONS)}; valid "
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
    if key in S.ALL_SECTIONS:
        return (
            f"key {key!r} is a section; set its fields as '{key}.<field>=value' (valid keys in "
            f"{key}: {', '.join(S.section_keys(key, cfg))})"
        )
    # A bare section field ('lr') most likely meant that section's key ('optim.lr').
    owners = [f"{s}.{key}" for s in S.SECTIONS if key in S.section_keys(s)]
    hint = f" (did you mean {owners[0]!r}?)" if owners else close_match(key, S.all_keys())
    return (
        f"unknown key {key!r}; valid top-level keys: {', '.join(S.TOP_KEYS)}; sections: "
        f"{', '.join(s + '.*' for s in S.ALL_SECTIONS)}{hint}"
    )


def _owner(key: str, cfg: S.Config) -> Any:
    """Return the dataclass holding the dotted ``key``; an unknown key is a ValueError."""
    *path, name = S.key_path(key)
    known = path[0] in S.ALL_SECTIONS and key.count(".") == 1 if path else key in S.TOP_KEYS
    owner = S.get_key(cfg, path) if known else None
    if owner is None or name not in S.field_names(type(owner)):
        raise ValueError(_unknown(key, cfg))
    return owner


def apply_overrides(cfg: S.Config, overrides: Sequence[str] | Mapping[str, Any] | str) -> S.Config:
    """Return ``cfg`` with dotted-key overrides applied, validated (``cfg`` is unchanged).

    Args:
      cfg: the base configuration.
      overrides: ``'key=value'`` strings (or one), or a mapping from dotted keys to values (text
        is parsed like the strings, other values must have the field's type), which may nest a
        section: ``{'optim': {'lr': 0.05}}``. Later entries win.

    Raises:
      ValueError: an unknown key (listing the valid ones), a bad value or an invalid result.
    """
    if not isinstance(cfg, S.Config):
        raise ValueError(f"cfg must be a Config, got {type(cfg).__name__}")
    overrides = [overrides] if isinstance(overrides, str) else overrides
    if isinstance(overrides, Mapping):  # a nested section's keys become dotted ones
        nested = [k for k, v in overrides.items() if k in S.ALL_SECTIONS and isinstance(v, Mapping)]
        items = [(f"{k}.{n}", v) for k in nested for n, v in overrides[k].items()]
        items += [(k, v) for k, v in overrides.items() if k not in nested]
    elif not isinstance(overrides, Sequence):
        raise ValueError(
            "overrides must be 'key=value' strings or a mapping of keys to values; got "
            f"{type(overrides).__name__}"
        )
    else:  # 'key=value' strings: the values stay text
        for entry in overrides:
            if not isinstance(entry, str) or "=" not in entry:
                raise ValueError(
                    f"override {entry!r} must look like 'key=value' (e.g. 'optim.lr=0.05')"
                )
            if not entry.partition("=")[0].strip():
                raise ValueError(f"override {entry!r} has an empty key")
        items = [tuple(entry.partition("=")[::2]) for entry in overrides]
    for key in (k for k, _ in items if not isinstance(k, str) or not k.strip()):
        raise ValueError(f"override keys must be non-empty strings; got {key!r}")
    for key, value in sorted(((k.strip(), v) for k, v in items), key=lambda i: _FIRST.get(i[0], 2)):
        value = S.convert(key, value, type(_owner(key, cfg)), text=isinstance(value, str))
        value = S.import_plugins(value) if key == "imports" else value
        cfg = S.replace_at(cfg, S.key_path(key), value)
        for section in (s for s, selector in S.SELECTORS.items() if selector == key):
            old, cls = S.get_key(cfg, S.OPTIONS_AT[section]), S.options_type(section, cfg)
            if type(old) is not (cls or type(None)):  # the new entry keeps the options both have
                names = S.field_names(type(old))
                new = cls and cls(**{k: getattr(old, k) for k in S.field_names(cls) if k in names})
                cfg = S.replace_at(cfg, S.OPTIONS_AT[section], new)
    return validate(cfg)
