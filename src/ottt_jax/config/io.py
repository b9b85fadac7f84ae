"""Serialization, comparison and summaries of a :class:`~ottt_jax.config.Config`.

``to_dict`` / ``from_dict`` round-trip exactly (also through JSON): sections are dicts, options
flat in theirs (``model.vgg_cfg``, ``rule.k``). ``from_dict`` imports the config's ``imports``
first. Configs saved by 0.1 still load: an option the entry lacks is dropped if it is a default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ottt_jax import rules
from ottt_jax.config import schema as S
from ottt_jax.config.validate import validate
from ottt_jax.data import catalog

__all__ = ["describe", "diff", "field_docs", "from_dict", "to_dict", "to_flat_dict"]
_ABSENT = type("_Absent", (), {"__repr__": lambda self: "(not an option)"})()


def _flat(cfg: S.Config) -> dict[str, Any]:
    if not isinstance(cfg, S.Config):
        raise ValueError(f"cfg must be a Config, got {type(cfg).__name__}")
    return {key: S.get_key(cfg, key) for key in S.all_keys(cfg)}


def to_flat_dict(cfg: S.Config) -> dict[str, Any]:
    """Return ``cfg`` as a flat JSON-serializable dict keyed by dotted names (for hparam logs)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in _flat(cfg).items()}


def to_dict(cfg: S.Config) -> dict[str, Any]:
    """Return ``cfg`` as a nested JSON-serializable dict in field order; from_dict inverts it."""
    flat = to_flat_dict(cfg)
    out = {name: flat.get(name, {}) for name in S.field_names(S.Config)}  # a section: a dict
    for (section, _, name), value in ((k.partition("."), v) for k, v in flat.items() if "." in k):
        out[section][name] = value
    return out


def _check_keys(where: str, keys: Iterable[str], valid: list[str]) -> None:
    if bad := ", ".join(repr(f"{where}.{k}" if where else k) for k in keys if k not in valid):
        scope = f" in {where}" if where else ""
        raise ValueError(f"from_dict: unknown key(s) {bad}; valid keys{scope}: {', '.join(valid)}")


def _options_from_dict(section: str, value: Mapping[str, Any], cfg: S.Config) -> Any:
    """Return the options of ``section`` from the saved ``value`` (0.1 leftovers dropped)."""
    if S.get_key(cfg, S.SELECTORS[section]) not in S.option_types(section):
        return None  # an unknown model.arch / method: validate names it
    cls, common = S.options_type(section, cfg), S.MODEL_COMMON if section == "model" else ()
    names = S.field_names(cls)
    for key, item in value.items():
        saved = tuple(item) if isinstance(item, list) else item
        owners = S.option_fields(section, key).values()
        if key not in (*common, *names) and all(f.default != saved for f in owners):
            raise ValueError(f"from_dict: {S.option_error(section, cfg, key)}; got {item!r}")
    return cls and cls(**{k: v for k, v in value.items() if k in names})  # 0.1's defaults dropped


def from_dict(d: Mapping[str, Any]) -> S.Config:
    """Build and validate a :class:`Config` from :func:`to_dict`'s output (possibly via JSON).

    Missing keys take their defaults (except ``name``); unknown keys are a ValueError listing the
    valid ones. The ``imports`` are imported first, so their entries' keys are known.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"from_dict expects a mapping, got {type(d).__name__}")
    if "name" not in d:
        raise ValueError("from_dict: missing required key 'name'")
    _check_keys("", d, [f.name for f in dataclasses.fields(S.Config)])
    imports = S.import_plugins(d.get("imports", ()))  # first: they register entries and keys
    for key in S.ALL_SECTIONS:
        if key in d and not isinstance(d[key], Mapping):
            raise ValueError(f"from_dict: {key} must be a mapping; got {type(d[key]).__name__}")
        _check_keys(key, d.get(key, {}), S.section_keys(key))
    top = {k: v for k, v in d.items() if k not in (*S.SECTIONS, "rule", "imports")}
    model = {k: v for k, v in d.get("model", {}).items() if k in S.MODEL_COMMON}
    sections = {s: S.SECTIONS[s](**d.get(s, {})) for s in ("data", "optim")}
    cfg = S.Config(**top, **sections, model=S.ModelConfig(**model), imports=imports)
    for s in S.SELECTORS:
        cfg = S.replace_at(cfg, S.OPTIONS_AT[s], _options_from_dict(s, d.get(s, {}), cfg))
    return validate(cfg)


def diff(cfg_a: S.Config, cfg_b: S.Config, ignore: Iterable[str] = ()) -> list[str]:
    """List the keys whose values differ between two configurations.

    Args:
      cfg_a: the first configuration (e.g. the one saved with a checkpoint).
      cfg_b: the second one (e.g. the one asking to resume).
      ignore: dotted keys or whole sections (``'data'``) to skip, e.g. :data:`RESUMABLE_KEYS`.

    Returns:
      One ``'key: a != b'`` line per differing key (Python reprs), in field order; an option
      only one side's entry has shows as ``(not an option)`` on the other side.
    """
    if not isinstance(cfg_a, S.Config) or not isinstance(cfg_b, S.Config):
        raise ValueError(f"diff expects two Configs, got {type(cfg_b).__name__}")
    skip = set(ignore)
    if unknown := sorted(skip - set(S.all_keys()) - set(S.ALL_SECTIONS)):
        raise ValueError(f"diff: unknown key(s) in ignore: {', '.join(map(repr, unknown))}")
    a, b = _flat(cfg_a), _flat(cfg_b)
    keys = [k for k in {**a, **b} if {k, k.partition(".")[0]}.isdisjoint(skip)]
    va, vb = ({k: x.get(k, _ABSENT) for k in keys} for x in (a, b))
    return [f"{k}: {va[k]!r} != {vb[k]!r}" for k in keys if va[k] != vb[k]]


def field_docs() -> dict[str, str]:
    """Return every key's documentation, ``{'optim.lr': 'peak learning rate ...', ...}``.

    Accepted names are listed from their registry now; an option's doc is prefixed by the entries
    that have it: ``'model.stochastic_depth': '(nfresnet18, nfresnet34, nfresnet50) drop ...'``.
    """
    docs = {}
    for key in S.all_keys():
        section, dot, name = key.partition(".")
        if section in S.SELECTORS and name not in S.MODEL_COMMON:
            owners = S.option_fields(section, name)
            doc = next(iter(owners.values())).metadata.get("doc", "(no doc)")
            docs[key] = f"({', '.join(owners)}) {doc}"
        else:
            cls = S.SECTIONS[section] if dot else S.Config
            meta = next(f.metadata for f in dataclasses.fields(cls) if f.name == (name or key))
            names = meta["choices"]() if "choices" in meta else ()
            docs[key] = meta["doc"] + (f" One of: {', '.join(map(repr, names))}." if names else "")
    return docs


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "on", False: "off", None: "none"}[value]
    if isinstance(value, tuple):
        return "[" + ",".join(map(str, value)) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe(cfg: S.Config) -> str:
    """Return a readable multi-line summary of ``cfg`` (need not be valid), one line per topic."""
    m, d, o = cfg.model, cfg.data, cfg.optim
    opts = {k: getattr(m.options, k) for k in S.field_names(S.options_type("model", cfg))}
    arch = m.arch + (f" {_fmt(opts.pop('vgg_cfg'))}" if "vgg_cfg" in opts else "")
    known = cfg.method in rules.rule_names()
    method = rules.get_rule(cfg.method).summary if known else "unknown method"
    read = [f"rule.{k}={getattr(cfg.rule, k)}" for k in S.field_names(S.options_type("rule", cfg))]
    method += f" ({', '.join(read)})" if read else ""
    try:
        surr = ", ".join(f"{k}={v:g}" for k, v in S.surrogate_kwargs(m).items())
    except (ValueError, TypeError):
        surr = f"param={_fmt(m.surrogate_param)}"
    shape = "unknown dataset"
    if d.dataset in catalog.dataset_names():
        spec = catalog.get_dataset(d.dataset)
        shape = "×".join(map(str, spec.frame_shape))
        shape += f", {spec.num_train} train / {spec.num_test} test"
    try:
        shape += f", {cfg.effective_num_frames} frames" if cfg.effective_num_frames else ""
    except ValueError:
        shape += f", {_fmt(d.num_frames)} frames (invalid)"
    if o.name == "sgd":
        opt = f"sgd lr={o.lr:g} momentum={o.momentum:g}" + (" nesterov" if o.nesterov else "")
    else:
        opt = f"{o.name} lr={o.lr:g} b1={o.adam_b1:g} b2={o.adam_b2:g} eps={o.adam_eps:g}"
    sched = o.schedule + (f" to {o.min_lr:g}" if o.schedule == "cosine" else "")
    return "\n".join([
        f"config {cfg.name!r}",
        f"  method  {cfg.method}: {method}",
        f"  time    T={cfg.num_steps} train, T={cfg.effective_eval_num_steps} eval; "
        f"loss β={cfg.loss_beta:g}; compute {cfg.compute_dtype}; seed {cfg.seed}",
        f"  model   {arch} -> {m.num_classes} classes",
        f"  neuron  LIF decay={m.decay:g} v_th={m.v_th:g}; surrogate {m.surrogate}({surr})",
        "  options " + (" ".join(f"{k}={_fmt(v)}" for k, v in opts.items()) or "none"),
        f"  data    {d.dataset} ({shape}); batch {d.batch_size}, eval batch {d.eval_batch_size}; "
        f"augment {_fmt(d.augment)}; workers {d.worker_count}; dir {_fmt(d.data_dir)}",
        f"  optim   {opt} wd={o.weight_decay:g}; {sched}, warmup {o.warmup_epochs:g} of "
        f"{o.epochs} epochs; grad_clip {_fmt(o.grad_clip)}",
        f"  run     workdir {_fmt(cfg.workdir)}; resume {_fmt(cfg.resume)}; max_train_steps "
        f"{_fmt(cfg.max_train_steps)}; progress {_fmt(cfg.progress)}",
        f"  every   log {cfg.log_every} it; eval {cfg.eval_every_epochs} epoch(s); checkpoint "
        f"{cfg.checkpoint_every_steps} it, keep {cfg.max_checkpoints} + best {_fmt(cfg.keep_best)}",
    ])  # fmt: skip
