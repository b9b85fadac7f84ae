"""Pins generated from the config schema: every key, today's and tomorrow's.

The keys come from :func:`ottt_jax.config.field_docs` (what ``ottt-train --list-keys`` prints:
the run-level keys, every section's, every architecture's model options and the rule options
such as ``rule.k``), so a key added later is covered without editing this file, and each test id
is the key it checks.

* Every key refuses ``inf``, ``-inf`` and ``nan`` with a one-line error naming it (a float key
  that lost its finiteness check would train with ``optim.adam_eps=inf`` making zero updates, or
  ``optim.grad_clip=inf`` silently turning clipping off).
* :data:`~ottt_jax.config.RESUMABLE_KEYS` is pinned with the reason each key cannot change the
  training trajectory; every other key, changed on resume, is refused by the trainer with an
  error naming it (a run resumed with another ``rule.k`` would silently mix two settings).
"""

import functools

import pytest

from ottt_jax import config as config_lib
from ottt_jax import data, models, rules, surrogate, training
from ottt_jax.checkpoint import IncompatibleCheckpointError
from ottt_jax.training.cli import list_keys

KEYS = sorted(config_lib.field_docs())

#: Why each resumable key cannot change the training trajectory. Adding a key to
#: RESUMABLE_KEYS fails test_resumable_keys_are_pinned until it gets its reason here.
RESUMABLE_REASONS = {
    "name": "paths: names the run (and its default workdir) only",
    "workdir": "paths: where the run is written, not what it computes",
    "data.data_dir": "paths: where the same dataset is read from",
    "data.eval_batch_size": "evaluation: batches the test split; no effect on results",
    "data.worker_count": "loading: processes that load the same batches in the same order",
    "eval_num_steps": "evaluation: T of the test evaluation, not of training",
    "eval_every_epochs": "evaluation: when the test split is evaluated; training is unchanged",
    "log_every": "logging: how often metrics are written",
    "progress": "logging: progress bars",
    "checkpoint_every_steps": "checkpointing: when the (exact) state is saved",
    "keep_best": "checkpointing: whether the best checkpoint is also kept",
    "max_checkpoints": "checkpointing: how many periodic checkpoints stay on disk",
    "resume": "checkpointing: whether to continue from a checkpoint at all",
    "max_train_steps": "run length: where the same trajectory stops (the schedule spans epochs)",
    "imports": "loading: modules that register extensions; the keys selecting them are compared",
}
REASON_KINDS = ("paths", "evaluation", "loading", "logging", "checkpointing", "run length")

#: Configs a key can be changed in: the tiny SLTT-K digits run the resume test trains (first),
#: then every preset (their datasets, architectures and options: data.num_frames of event data,
#: the NF-ResNets' options), each also with every registered rule (rule options such as rule.k).
TINY = [
    "progress=false",
    "method=sltt_k",  # so that its option rule.k is checked through the trainer too
    "num_steps=3",
    "model.vgg_cfg=[4,M,8]",
    "data.batch_size=8",
    "max_train_steps=3",
    "checkpoint_every_steps=1",
    "max_checkpoints=2",
    "eval_every_epochs=1000",
]


def _names() -> list:
    """Every name a string key may take, from the registries and the schema's lists."""
    pool = [*rules.rule_names(), *models.model_names(), *surrogate.surrogate_names()]
    pool += [*data.dataset_names(), *config_lib.OPTIMIZERS, *config_lib.SCHEDULES]
    return [*pool, *config_lib.COMPUTE_DTYPES, "other"]


@functools.cache
def _bases() -> list:
    tiny = config_lib.get_config("digits", TINY)
    bases = [tiny, *(config_lib.apply_overrides(tiny, [f"method={m}"]) for m in rules.rule_names())]
    for preset in config_lib.list_presets():
        cfg = config_lib.get_config(preset)
        bases += [
            cfg,
            *(config_lib.apply_overrides(cfg, [f"method={m}"]) for m in rules.rule_names()),
        ]
    return bases


def _candidates(value) -> list:
    """Values to try instead of ``value``, by its type."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [2 * value, value + 1, value - 1, *range(1, 33)]
    if isinstance(value, float):
        return [value / 2, 2 * value, value + 0.1, 0.1, 0.5, 0.01]
    if isinstance(value, str):
        return [n for n in _names() if n != value]
    if isinstance(value, (list, tuple)):  # a layout such as model.vgg_cfg, or the imports
        # an empty list is ``imports``: a stdlib module is a valid plugin with no side effects
        return [value[:-1], [2 * value[0], *value[1:]]] if value else [["json"]]
    assert value is None, value
    return [*range(1, 33), 0.5, 0.1, "other"]


@functools.cache
def changed(key: str, skip_tiny: bool = False):
    """Return ``(base, cfg)``: two valid configs with different values of ``key``.

    ``cfg`` differs from ``base`` only in ``key`` where some base allows that (the tiny digits
    run first, unless ``skip_tiny``); a key that cannot change alone (``model.num_classes``
    follows the dataset) gives the first two bases that differ in it. None when none do.
    """
    bases = _bases()[1:] if skip_tiny else _bases()
    for base in bases:
        flat = config_lib.to_flat_dict(base)
        if key not in flat:
            continue
        for value in _candidates(flat[key]):
            try:
                cfg = config_lib.apply_overrides(base, {key: value})
            except ValueError:
                continue
            if config_lib.to_flat_dict(cfg)[key] != flat[key]:
                return base, cfg
    having = [b for b in bases if key in config_lib.to_flat_dict(b)]
    for other in having[1:]:
        if config_lib.to_flat_dict(other)[key] != config_lib.to_flat_dict(having[0])[key]:
            return having[0], other
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_numeric(key: str) -> bool:
    """Whether ``key`` holds a number: in some base, or in the changed value found for it."""
    values = [config_lib.to_flat_dict(b).get(key) for b in _bases()]
    found = changed(key)
    if found is not None:
        values.append(config_lib.to_flat_dict(found[1])[key])
    return any(map(_is_number, values))


def _one_line(e) -> str:
    message = str(e.value)
    assert "\n" not in message, message
    return message


def test_the_keys_are_what_list_keys_prints():
    printed = [line.split()[0] for line in list_keys().splitlines()]
    assert printed == KEYS
    for key in ("rule.k", "model.vgg_cfg", "model.stochastic_depth", "optim.adam_eps"):
        assert key in KEYS  # rule options and every architecture's options are keys too


# --------------------------------------------------------------------------- non-finite values


@pytest.mark.parametrize("key", KEYS)
def test_every_key_refuses_non_finite_values_naming_it(key):
    """Catches: a number key that lost its finiteness check (or its type check)."""
    found = changed(key)
    assert found is not None, f"{key}: no config takes another value of it; extend _candidates"
    base = found[0]
    for text in ("inf", "-inf", "nan"):
        overrides = [{key: float(text)}]  # a mapping: refused by every key's type or range
        if is_numeric(key):
            overrides.append([f"{key}={text}"])  # what a user types (a string key takes it)
        for override in overrides:
            with pytest.raises(ValueError) as e:
                config_lib.apply_overrides(base, override)
            message = _one_line(e)
            assert key in message, (override, message)


def test_the_number_keys_include_the_float_keys_that_matter():
    numeric = [k for k in KEYS if is_numeric(k)]
    for key in ("optim.adam_eps", "optim.grad_clip", "optim.lr", "model.surrogate_param"):
        assert key in numeric
    assert "name" not in numeric and "model.vgg_cfg" not in numeric


# --------------------------------------------------------------------------- resume


def test_resumable_keys_are_pinned_with_their_reasons():
    assert set(config_lib.RESUMABLE_KEYS) == set(RESUMABLE_REASONS)
    for key, reason in RESUMABLE_REASONS.items():
        assert key in KEYS and reason.split(":")[0] in REASON_KINDS, key


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """The tiny digits run of the first base, trained and checkpointed once (3 steps)."""
    workdir = tmp_path_factory.mktemp("saved") / "run"
    r = training.train(_bases()[0], workdir=str(workdir))
    assert r["steps"] == 3
    return workdir


def test_a_run_keeps_its_newest_max_checkpoints_and_one_best(saved_run):
    """Catches: the trainer not passing max_checkpoints on (every step kept, a disk filling up)."""
    assert sorted((saved_run / "checkpoints").iterdir()) == [
        saved_run / "checkpoints" / s for s in ("2", "3")
    ]
    assert len(list((saved_run / "best").iterdir())) == 1


NON_RESUMABLE = [k for k in KEYS if k not in RESUMABLE_REASONS]


@pytest.mark.parametrize("key", NON_RESUMABLE)
def test_resuming_with_another_value_is_refused_naming_the_key(key, saved_run):
    """Catches: a trajectory key resumable (in RESUMABLE_KEYS, or skipped by the trainer's check).

    Where the tiny digits run can take another value of the key, that run is re-invoked with it
    and the trainer must refuse, naming the key. A key no digits run can change (the dataset,
    its class count, event frames, another architecture's options, an augmentation digits does
    not have) is checked on two configs that differ in it, through the trainer's check,
    ``config.diff(saved, requested, ignore=RESUMABLE_KEYS)``.
    """
    found = changed(key)
    assert found is not None, f"{key}: no config takes another value of it; extend _candidates"
    base, cfg = found
    message = None
    only_key = [d.split(":")[0] for d in config_lib.diff(base, cfg)] == [key]
    if base is _bases()[0] and only_key:  # the trainer: the saved run re-invoked, key changed
        try:
            training.train(cfg, workdir=str(saved_run))
        except IncompatibleCheckpointError as e:
            message = str(e)
        except (ValueError, OSError) as e:  # refused before the check: digits cannot take it
            assert key.split(".")[-1] in str(e), str(e)
            found = changed(key, skip_tiny=True)
            assert found is not None, f"{key}: only the digits run has it, which cannot train it"
            base, cfg = found
        else:
            pytest.fail(f"resumed with {key} changed: {config_lib.diff(base, cfg)}")
    if message is None:
        message = "\n".join(config_lib.diff(base, cfg, ignore=config_lib.RESUMABLE_KEYS))
    (line,) = [ln for ln in message.splitlines() if ln.strip().startswith(f"{key}: ")]
    assert "!=" in line, line
