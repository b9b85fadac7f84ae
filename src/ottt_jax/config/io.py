"""Serialization, comparison and summaries of a :class:`~ottt_jax.config.Config`.

``to_dict`` / ``from_dict`` round-trip exactly (also through JSON); the saved format is the nested
dict of sections and fields, unchanged since version 0.1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ottt_jax.config.schema import (
    METHOD_SUMMARY,
    SECTIONS,
    TOP_KEYS,
    VGG_ARCHS,
    Config,
    all_keys,
    field_names,
    surrogate_kwargs,
)
from ottt_jax.config.validate import validate
from ottt_jax.data import catalog

__all__ = ["describe", "diff", "field_docs", "from_dict", "to_dict", "to_flat_dict"]


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
        if fld.name in SECTIONS:
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
    valid_top = field_names(Config)
    unknown = [k for k in d if k not in valid_top]
    if unknown:
        raise ValueError(
            f"from_dict: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: "
            f"{', '.join(valid_top)}"
        )
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        if key in SECTIONS:
            cls = SECTIONS[key]
            if not isinstance(value, Mapping):
                raise ValueError(f"from_dict: {key} must be a mapping; got {type(value).__name__}")
            names = field_names(cls)
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
    for key in TOP_KEYS:
        out[key] = getattr(cfg, key)
    for section, cls in SECTIONS.items():
        sub = getattr(cfg, section)
        for name in field_names(cls):
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
    valid = set(all_keys()) | set(SECTIONS)
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
    docs = {f.name: f.metadata["doc"] for f in dataclasses.fields(Config) if f.name in TOP_KEYS}
    for section, cls in SECTIONS.items():
        docs.update({f"{section}.{f.name}": f.metadata["doc"] for f in dataclasses.fields(cls)})
    return docs


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
    spec = catalog.get_dataset(d.dataset) if d.dataset in catalog.dataset_names() else None
    arch = m.arch + (f" {_fmt(m.vgg_cfg)}" if m.arch in VGG_ARCHS else "")
    try:
        surr = ", ".join(f"{k}={v:g}" for k, v in surrogate_kwargs(m).items())
    except (ValueError, TypeError):
        surr = f"param={_fmt(m.surrogate_param)}"
    if spec is not None:
        h, w, c = spec.frame_shape
        shape = f"{h}×{w}×{c}, {spec.num_train} train / {spec.num_test} test"
    else:
        shape = "unknown dataset"
    try:
        frames = f", {cfg.effective_num_frames} frames" if cfg.effective_num_frames else ""
    except ValueError:
        frames = f", {_fmt(d.num_frames)} frames (invalid)"
    if o.name == "sgd":
        opt = f"sgd lr={o.lr:g} momentum={o.momentum:g}" + (" nesterov" if o.nesterov else "")
    else:
        opt = f"{o.name} lr={o.lr:g} b1={o.adam_b1:g} b2={o.adam_b2:g} eps={o.adam_eps:g}"
    sched = o.schedule + (f" to {o.min_lr:g}" if o.schedule == "cosine" else "")
    lines = [
        f"config {cfg.name!r}",
        f"  method  {cfg.method}: {METHOD_SUMMARY.get(cfg.method, 'unknown method')}",
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
