"""Build what a run needs from its config: the rule, the model, the optimizer and the devices.

Every fact is derived once here: the gradient rule comes from the registry by ``cfg.method``
(:func:`ottt_jax.rules.get_rule`), the model is built with that rule's mode (so a model and a rule
can never disagree), and the learning-rate schedule counts ``rule.updates_per_batch(T)`` optimizer
updates per batch. :func:`make_training` builds all of a run's static parts once (setup, loader,
optimizer, schedule, step counts) into a :class:`Training` that the loop receives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ottt_jax import config as config_lib
from ottt_jax import data as data_lib
from ottt_jax import rules
from ottt_jax.models import registry as model_registry
from ottt_jax.neuron import LIF
from ottt_jax.surrogate import get_surrogate
from ottt_jax.training.loaders import per_host_batch, split_loader

__all__ = [
    "Setup",
    "Training",
    "build_model",
    "build_neuron",
    "build_rule",
    "compute_dtype",
    "default_workdir",
    "make_optimizer",
    "make_schedule",
    "make_setup",
    "make_training",
    "per_host_batch",
    "resolve_workdir",
    "resolved_config_json",
    "split_loader",
    "update_count",
    "user_model",
]


class Setup(NamedTuple):
    """The static parts of a run (nothing here changes while training).

    Attributes:
      cfg: the validated config.
      info: the dataset's facts (``frame_shape``, ``is_sequence``...).
      rule: the gradient rule (:class:`ottt_jax.rules.Rule`) named by ``cfg.method``.
      model: the model, built with ``rule.mode``.
      mesh: a 1-D ``('data',)`` mesh over the devices.
      batch_sharding: batches split along their leading axis over the mesh.
      replicated: parameters and metrics, replicated on every device.
      user_model: the model is the caller's (``train(model=...)``), not built from ``cfg.model``.
    """

    cfg: config_lib.Config
    info: Any
    rule: Any
    model: Any
    mesh: jax.sharding.Mesh
    batch_sharding: NamedSharding
    replicated: NamedSharding
    user_model: bool = False


def compute_dtype(cfg: config_lib.Config) -> Any:
    """Return the dtype ``cfg.compute_dtype`` names (``jnp.bfloat16`` or ``jnp.float32``)."""
    return jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else jnp.float32


def build_rule(cfg: config_lib.Config) -> Any:
    """Return the gradient rule ``cfg.method`` names, its options set from ``cfg.rule``.

    Args:
      cfg: the config (``method``; ``rule``, an instance of the rule's options type or None).

    Returns:
      ``get_rule(cfg.method).with_options(**<the rule.* values>)``.
    """
    fields = dataclasses.fields(cfg.rule) if cfg.rule is not None else ()
    values = {f.name: getattr(cfg.rule, f.name) for f in fields}
    return rules.get_rule(cfg.method).with_options(**values)


def build_neuron(cfg: config_lib.Config) -> LIF:
    """Return the configured LIF neuron (``model.decay``, ``model.v_th``, the surrogate)."""
    m = cfg.model
    surrogate = get_surrogate(m.surrogate, **config_lib.surrogate_kwargs(m))
    return LIF(decay=m.decay, v_th=m.v_th, surrogate=surrogate)


def build_model(cfg: config_lib.Config, *, mode: Any = None) -> Any:
    """Build the configured model through the model registry (``model.arch`` names the entry).

    Args:
      cfg: a validated config.
      mode: the :class:`~ottt_jax.mode.Mode` to build it with (default: that of the rule
        ``cfg.method`` names).

    Returns:
      A Flax module following the model protocol (``init_state``, a one-step ``__call__``).
    """
    m = cfg.model
    mode = build_rule(cfg).mode if mode is None else mode
    return model_registry.build_model(
        m.arch,
        num_classes=m.num_classes,
        neuron=build_neuron(cfg),
        mode=mode,
        dtype=compute_dtype(cfg),
        options=dataclasses.asdict(m.options),
    )


def update_count(cfg: config_lib.Config, batches: int) -> int:
    """Return the optimizer updates made by ``batches`` batches: ``batches · updates_per_batch(T)``.

    Args:
      cfg: the config (``method``, ``num_steps``).
      batches: the number of training batches (the trainer's step).

    Returns:
      The update count the learning-rate schedule reads (OTTT_O: T per batch; others 1).
    """
    return batches * build_rule(cfg).updates_per_batch(cfg.num_steps)


def make_schedule(
    cfg: config_lib.Config, steps_per_epoch: int, *, rule: Any = None
) -> Callable[[Any], jax.Array]:
    """Return the learning-rate schedule, a function of the optimizer's update count.

    The cosine is stepped per epoch, as the authors' ``CosineAnnealingLR``:
    ``lr(e) = min_lr + (lr − min_lr)·(1 + cos(π e / epochs))/2`` with ``e = ⌊count / U⌋`` and
    ``U = steps_per_epoch · updates_per_batch(T)`` updates per epoch; warmup multiplies it by
    ``min(1, (count + 1)/(warmup_epochs · U))``, linear per update.

    Args:
      cfg: the config (``optim`` section, ``method``, ``num_steps``).
      steps_per_epoch: batches per epoch.
      rule: the run's rule (default: the one ``cfg.method`` names, built again).

    Returns:
      ``schedule(count) -> lr`` (float32 scalar).
    """
    o = cfg.optim
    rule = build_rule(cfg) if rule is None else rule
    per_epoch = max(1, steps_per_epoch * rule.updates_per_batch(cfg.num_steps))
    warmup = o.warmup_epochs * per_epoch

    def schedule(count):
        count = jnp.asarray(count, jnp.float32)
        if o.schedule == "cosine":
            epoch = jnp.floor(count / per_epoch)
            lr = o.min_lr + (o.lr - o.min_lr) * 0.5 * (1 + jnp.cos(jnp.pi * epoch / o.epochs))
        else:
            lr = jnp.asarray(o.lr, jnp.float32)
        if warmup > 0:
            lr = lr * jnp.minimum(1.0, (count + 1) / warmup)
        return lr

    return schedule


def make_optimizer(
    cfg: config_lib.Config, steps_per_epoch: int, *, rule: Any = None
) -> tuple[optax.GradientTransformation, Callable[[Any], Any]]:
    """Return the optimizer and its learning-rate schedule (:func:`make_schedule`).

    Args:
      cfg: the config (``optim`` section, ``method``, ``num_steps``).
      steps_per_epoch: batches per epoch.
      rule: the run's rule, as for :func:`make_schedule`.

    Returns:
      ``(optimizer, schedule)``: optional global-norm clipping, then SGD (PyTorch weight decay
      semantics, optional momentum / Nesterov) or AdamW, both driven by ``schedule``.
    """
    o = cfg.optim
    schedule = make_schedule(cfg, steps_per_epoch, rule=rule)
    parts = []
    if o.grad_clip is not None:
        parts.append(optax.clip_by_global_norm(o.grad_clip))
    if o.name == "sgd":
        if o.weight_decay:
            parts.append(optax.add_decayed_weights(o.weight_decay))  # PyTorch SGD semantics
        parts.append(optax.sgd(schedule, momentum=o.momentum or None, nesterov=o.nesterov))
    else:
        parts.append(
            optax.adamw(
                schedule, b1=o.adam_b1, b2=o.adam_b2, eps=o.adam_eps, weight_decay=o.weight_decay
            )
        )
    return optax.chain(*parts), schedule


def user_model(model: Any, rule: Any) -> nn.Module:
    """Return a user's model for ``rule``: ``model`` itself, or ``model(rule.mode)``.

    Args:
      model: a Flax module (called as ``model(state, x_t)``, with ``init_state(batch,
        input_shape, **kw)``) or a callable ``make_model(mode) -> module``.
      rule: the run's rule.

    Returns:
      The module.

    Raises:
      ValueError: ``model`` is neither, or its ``mode`` is not the rule's (naming both).
    """
    if not isinstance(model, nn.Module):
        if not callable(model):
            raise ValueError(
                f"model must be a flax.linen Module or a callable make_model(mode), got "
                f"{type(model).__name__}"
            )
        model = model(rule.mode)
        if not isinstance(model, nn.Module):
            raise ValueError(f"make_model(mode) must return a flax.linen Module, got {model!r}")
    mode = getattr(model, "mode", rule.mode)
    if mode != rule.mode:
        raise ValueError(
            f"model {type(model).__name__} has mode {mode} but method {rule.name!r} needs "
            f"{rule.mode}; build it with mode=ottt_jax.get_rule({rule.name!r}).mode"
        )
    return model


def make_setup(
    cfg: config_lib.Config, devices: Sequence[jax.Device] | None = None, *, model: Any = None
) -> Setup:
    """Return the :class:`Setup` of a run: dataset facts, rule, model, mesh and shardings.

    Args:
      cfg: a validated config.
      devices: the devices to run on (default: all).
      model: a user's model (or ``make_model(mode)``, see :func:`user_model`) used instead of
        building ``cfg.model``.

    Returns:
      The setup.
    """
    info = data_lib.get_dataset_info(cfg.data.dataset, num_frames=cfg.effective_num_frames)
    rule = build_rule(cfg)
    users = model is not None
    model = user_model(model, rule) if users else build_model(cfg, mode=rule.mode)
    devices = list(jax.devices() if devices is None else devices)
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    return Setup(
        cfg=cfg,
        info=info,
        rule=rule,
        model=model,
        mesh=mesh,
        batch_sharding=NamedSharding(mesh, P("data")),
        replicated=NamedSharding(mesh, P()),
        user_model=users,
    )


class Training(NamedTuple):
    """Everything a training run needs, built once from its config (see :func:`make_training`).

    Attributes:
      setup: the :class:`Setup` (config, dataset facts, rule, model, mesh, shardings).
      loader: this host's training loader (checkpointable iterator state).
      tx: the optimizer.
      schedule: ``schedule(update_count) -> lr``.
      steps_per_epoch: batches per epoch.
      total_steps: the batches to train (``optim.epochs`` epochs, capped by
        ``max_train_steps``).
      updates_per_batch: the optimizer updates one batch makes (``rule.updates_per_batch(T)``).
    """

    setup: Setup
    loader: Any
    tx: optax.GradientTransformation
    schedule: Callable[[Any], Any]
    steps_per_epoch: int
    total_steps: int
    updates_per_batch: int

    def lr(self, step: int) -> float:
        """Return the learning rate after ``step`` batches."""
        return float(self.schedule(step * self.updates_per_batch))


def make_training(
    cfg: config_lib.Config, devices: Sequence[jax.Device] | None = None, *, model: Any = None
) -> Training:
    """Build a run's static parts once: setup, training loader, optimizer and schedule.

    Args:
      cfg: a validated config.
      devices: the devices to train on (default: all).
      model: a user's model, as for :func:`make_setup`.

    Returns:
      The :class:`Training`.
    """
    s = make_setup(cfg, devices, model=model)
    loader = split_loader(cfg, "train", per_host_batch(cfg.data.batch_size, s.mesh.size))
    per_epoch = loader.steps_per_epoch
    total = cfg.optim.epochs * per_epoch
    if cfg.max_train_steps is not None:
        total = min(total, cfg.max_train_steps)
    tx, schedule = make_optimizer(cfg, per_epoch, rule=s.rule)
    return Training(
        setup=s,
        loader=loader,
        tx=tx,
        schedule=schedule,
        steps_per_epoch=per_epoch,
        total_steps=total,
        updates_per_batch=s.rule.updates_per_batch(cfg.num_steps),
    )


def default_workdir(cfg: config_lib.Config) -> str:
    """Return the default run directory of ``cfg``: ``runs/<name>-<method>[-<hash>]``.

    ``<hash>`` is the first 8 hex digits of the SHA-256 of the keys that change the training
    trajectory (every key but ``method`` and :data:`~ottt_jax.config.RESUMABLE_KEYS`) and differ
    from the preset ``cfg.name`` (all of them when ``cfg.name`` is not a preset). It is absent when
    no such key differs, so ``ottt-train`` trains in ``runs/digits-ottt_a``. Two configs share a
    default workdir iff a checkpoint of one can resume the other (up to a hash collision).

    Args:
      cfg: a validated config.

    Returns:
      The relative path ``runs/<name>-<method>[-<hash>]``.
    """

    def trajectory(c: config_lib.Config) -> dict[str, Any]:
        return {
            k: v
            for k, v in config_lib.to_flat_dict(c).items()
            if k != "method"
            and k not in config_lib.RESUMABLE_KEYS
            and k.partition(".")[0] not in config_lib.RESUMABLE_KEYS
        }

    mine = trajectory(cfg)
    if cfg.name in config_lib.list_presets():
        # the preset run with this method: its rule.* defaults are not a change (as before 0.2)
        base = trajectory(config_lib.get_config(cfg.name, {"method": cfg.method}))
        absent = object()  # a key of one architecture only (a model option)
        mine = {
            k: mine.get(k, "(absent)")
            for k in sorted(mine.keys() | base.keys())
            if mine.get(k, absent) != base.get(k, absent)
        }
    name = f"{cfg.name}-{cfg.method}"
    if mine:
        text = json.dumps(mine, sort_keys=True, default=repr)
        name += "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return os.path.join("runs", name)


def resolve_workdir(cfg: config_lib.Config, workdir: str | os.PathLike | None = None) -> str:
    """Return the absolute run directory: ``workdir``, else ``cfg.workdir``, else the default.

    Args:
      cfg: a validated config.
      workdir: an explicit directory (``--workdir``), or None.

    Returns:
      The absolute path (nothing is created; see :func:`~ottt_jax.training.workdir.check_workdir`).
    """
    return os.path.abspath(os.fspath(workdir or cfg.workdir or default_workdir(cfg)))


def resolved_config_json(cfg: config_lib.Config, workdir: str | os.PathLike | None = None) -> str:
    """Return the resolved config as JSON: ``cfg`` with ``workdir`` set to the run's directory.

    This is ``<workdir>/config.json`` and what ``ottt-train --print-config`` prints;
    ``ottt-train --config <workdir>/config.json`` reruns (resumes) the same run.

    Args:
      cfg: a validated config.
      workdir: an explicit directory, as for :func:`resolve_workdir`.

    Returns:
      Indented JSON of :func:`ottt_jax.config.to_dict`, without a trailing newline.
    """
    resolved = dataclasses.replace(cfg, workdir=resolve_workdir(cfg, workdir))
    return json.dumps(config_lib.to_dict(resolved), indent=1)
