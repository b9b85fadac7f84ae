"""Serialization, comparison and summaries of a :class:`~ottt_jax.config.Config`.

``to_dict`` / ``from_dict`` round-trip exactly (also through JSON). The saved format is the
nested dict of sections and fields; ``model`` holds the common fields and then the options of its
architecture, flat as before (``model.vgg_cfg``, ...). Configs saved by version 0.1, whose
``model`` held every architecture's fields, still load: a field the architecture does not have is
dropped when it holds that option's default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ottt_jax import rules
from ottt_jax.config.schema import (
    MODEL_COMMON,
    SECTIONS,
    TOP_KEYS,
    Config,
    ModelConfig,
    all_keys,
    field_names,
    model_entry,
    option_archs,
    option_error,
    section_keys,
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
                name: _jsonable(getattr(value, name)) for name in section_keys(fld.name, cfg)
            }
        else:
            out[fld.name] = _jsonable(value)
    return out


def _option_default(name: str, value: Any) -> bool:
    """Return whether ``value`` is the default of the option ``name`` in an arch that has it."""
    value = tuple(value) if isinstance(value, list) else value
    for arch in option_archs(name):
        options = model_entry(arch).options
        fld = {f.name: f for f in dataclasses.fields(options)}[name]
        if fld.default is not dataclasses.MISSING and fld.default == value:
            return True
    return False


def _check_section_keys(section: str, value: Mapping[str, Any], valid: list[str]) -> None:
    bad = [k for k in value if k not in valid]
    if bad:
        raise ValueError(
            f"from_dict: unknown key(s) {', '.join(repr(f'{section}.{b}') for b in bad)}; "
            f"valid keys in {section}: {', '.join(valid)}"
        )


def _model_from_dict(value: Mapping[str, Any]) -> ModelConfig:
    arch = value.get("arch", ModelConfig().arch)
    entry = model_entry(arch) if isinstance(arch, str) else None
    _check_section_keys("model", value, section_keys("model"))
    kwargs = {}
    for key, item in value.items():
        if key in MODEL_COMMON or entry is None or key in field_names(entry.options):
            kwargs[key] = item
        elif not _option_default(key, item):  # a 0.1 config's unused field is dropped
            raise ValueError(f"from_dict: {option_error(arch, key)}; got {item!r}")
    return ModelConfig(**kwargs)


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
            if key == "model":
                kwargs[key] = _model_from_dict(value)
                continue
            _check_section_keys(key, value, field_names(cls))
            kwargs[key] = cls(**value)
        else:
            kwargs[key] = value
    return validate(Config(**kwargs))


def _flat(cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in TOP_KEYS:
        out[key] = getattr(cfg, key)
    for section in SECTIONS:
        sub = getattr(cfg, section)
        for name in section_keys(section, cfg):
            out[f"{section}.{name}"] = getattr(sub, name)
    return out


class _Absent:
    def __repr__(self) -> str:
        return "(not an option)"


_ABSENT = _Absent()


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
      empty when the two agree. A model option only one architecture has shows as
      ``(not an option)`` on the other side.
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
    keys = [*a, *(k for k in b if k not in a)]
    out = []
    for key in keys:
        va, vb = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if va != vb and key not in skip and key.partition(".")[0] not in skip:
            out.append(f"{key}: {va!r} != {vb!r}")
    return out


def field_docs() -> dict[str, str]:
    """Return the documentation of every key, ``{'optim.lr': 'peak learning rate ...', ...}``.

    Model options come from the model registry, each prefixed by the architectures that have it,
    e.g. ``'model.stochastic_depth': '(nfresnet18, nfresnet34, nfresnet50) drop probability...'``.
    """
    docs = {f.name: f.metadata["doc"] for f in dataclasses.fields(Config) if f.name in TOP_KEYS}
    for section, cls in SECTIONS.items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in section_keys(section):
            if name in fields:
                docs[f"{section}.{name}"] = fields[name].metadata["doc"]
                continue
            archs = option_archs(name)
            fld = {f.name: f for f in dataclasses.fields(model_entry(archs[0]).options)}[name]
            docs[f"{section}.{name}"] = f"({', '.join(archs)}) {fld.metadata['doc']}"
    return docs


def _fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
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
    options = m.option_names()
    arch = m.arch + (f" {_fmt(m.vgg_cfg)}" if "vgg_cfg" in options else "")
    opts = " ".join(f"{k}={_fmt(getattr(m, k))}" for k in options if k != "vgg_cfg")
    method = cfg.method in rules.rule_names()
    summary = rules.get_rule(cfg.method).summary if method else "unknown method"
    rule_options = rules.get_rule(cfg.method).options if method else None
    if rule_options is not None:  # the rule.* keys this method reads, with their values
        names = [f.name for f in dataclasses.fields(rule_options)]
        read = [f"rule.{n}={getattr(cfg.rule, n)}" for n in names]
        summary += f" ({', '.join(read)})"
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
        f"  method  {cfg.method}: {summary}",
        f"  time    T={cfg.num_steps} train, T={cfg.effective_eval_num_steps} eval; "
        f"loss β={cfg.loss_beta:g}; compute {cfg.compute_dtype}; seed {cfg.seed}",
        f"  model   {arch} -> {m.num_classes} classes",
        f"  neuron  LIF decay={m.decay:g} v_th={m.v_th:g}; surrogate {m.surrogate}({surr})",
        f"  options {opts or 'none'}",
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
