"""Training and evaluation: ``ottt_jax.train(cfg)``, ``ottt-train`` and ``ottt-eval``.

This module is the trunk: it wires config, data, models, the online transform, optax and the
checkpointer together. Nothing in the library imports it (the package exposes ``train`` lazily).

Data parallelism uses ``jit`` with a ``NamedSharding`` over a 1-D ``('data',)`` mesh of every
device: the batch is split along its batch axis and parameters are replicated, so XLA inserts the
cross-device mean of the gradients — for OTTT_O inside the scan, before every per-step update.
Multi-host runs call :func:`initialize_distributed` first (``ottt-train --multihost``); each host
loads its own shard of every global batch.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ottt_jax import config as config_lib
from ottt_jax import data as data_lib
from ottt_jax import mode as mode_lib
from ottt_jax.checkpoint import (
    Checkpointer,
    IncompatibleCheckpointError,
    decode_iterator_state,
    encode_iterator_state,
)
from ottt_jax.errors import UserError
from ottt_jax.losses import instantaneous_loss
from ottt_jax.models import make_step
from ottt_jax.neuron import LIF
from ottt_jax.online import bptt_grad, forward, ottt_grad, ottt_update
from ottt_jax.surrogate import get_surrogate

__all__ = [
    "TrainState",
    "TrainingDivergedError",
    "build_model",
    "evaluate",
    "evaluate_checkpoint",
    "initialize_distributed",
    "make_optimizer",
    "train",
]

PyTree = Any


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree, checkpointed as one item)."""

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    rng: jax.Array


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------


def _compute_dtype(cfg: config_lib.Config):
    return jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else jnp.float32


def build_model(cfg: config_lib.Config, *, online: bool | None = None):
    """Build the configured model.

    Args:
      cfg: a validated config.
      online: OTTT mode (default: ``cfg.method != 'bptt'``).

    Returns:
      A Flax module with ``init_state`` and a one-step ``__call__``.
    """
    from ottt_jax import models

    m = cfg.model
    online = cfg.method != "bptt" if online is None else online
    surrogate = get_surrogate(m.surrogate, **config_lib.surrogate_kwargs(m))
    neuron = LIF(decay=m.decay, v_th=m.v_th, surrogate=surrogate)
    mode = mode_lib.OTTT if online else mode_lib.BPTT
    common = dict(num_classes=m.num_classes, neuron=neuron, mode=mode)
    common["dtype"] = _compute_dtype(cfg)
    if m.arch in ("vgg", "vggf"):
        return models.SpikingVGG(
            cfg=tuple(m.vgg_cfg),
            feedback=m.arch == "vggf",
            neuron_dropout=m.neuron_dropout,
            fc_dropout=m.fc_dropout,
            **common,
        )
    ctor = {"nfresnet18": models.nfresnet18, "nfresnet34": models.nfresnet34}
    ctor["nfresnet50"] = models.nfresnet50
    return ctor[m.arch](
        stochastic_depth=m.stochastic_depth,
        fc_dropout=m.fc_dropout,
        **common,
    )


def make_optimizer(
    cfg: config_lib.Config, steps_per_epoch: int
) -> tuple[optax.GradientTransformation, Callable[[Any], Any]]:
    """Return the optimizer and its learning-rate schedule (a function of the update count).

    The cosine schedule is stepped per epoch, as the authors' ``CosineAnnealingLR``; warmup is
    linear per update. OTTT_O makes ``T`` updates per batch, so its schedule counts ``T``× as many
    updates per epoch (see performance_notes: the per-update scale differs from OTTT_A).

    Args:
      cfg: the config (``optim`` section, ``method``, ``num_steps``).
      steps_per_epoch: batches per epoch.

    Returns:
      ``(optimizer, schedule)``.
    """
    o = cfg.optim
    per_batch = cfg.num_steps if cfg.method == "ottt_o" else 1
    per_epoch = max(1, steps_per_epoch * per_batch)
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


def initialize_distributed(**kwargs: Any) -> None:
    """Initialize multi-host JAX (``jax.distributed.initialize``) once, before any computation.

    On SLURM / TPU pods / with ``JAX_COORDINATOR_ADDRESS`` set, JAX detects the cluster itself;
    otherwise pass ``coordinator_address``, ``num_processes`` and ``process_id``.
    """
    jax.distributed.initialize(**kwargs)


# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------


class _Setup(NamedTuple):
    cfg: config_lib.Config
    info: Any
    model: Any
    mesh: jax.sharding.Mesh
    batch_sharding: NamedSharding
    replicated: NamedSharding


def _frame_shape(info) -> tuple[int, int, int]:
    return tuple(info.frame_shape)


def _to_inputs(images: jax.Array, info, num_steps: int):
    """Return ``(inputs, num_steps_arg)``: static images, or time-major frames ``[T, B, ...]``."""
    if info.is_sequence:
        return jnp.swapaxes(images, 0, 1), None
    return images, num_steps


def _make_train_step(s: _Setup, tx: optax.GradientTransformation):
    cfg, model, info = s.cfg, s.model, s.info
    t = cfg.num_steps
    step_fn = make_step(model)
    loss_fn = functools.partial(instantaneous_loss, beta=cfg.loss_beta, num_steps=t)

    def train_step(ts: TrainState, images, labels):
        b = labels.shape[0]
        key = jax.random.fold_in(ts.rng, ts.step)
        state0 = model.init_state(b, _frame_shape(info), key=key, train=True)
        inputs, n = _to_inputs(images, info, t)
        if cfg.method == "ottt_o":
            res = ottt_update(
                step_fn, loss_fn, tx, ts.params, ts.opt_state, state0, inputs, labels, num_steps=n
            )
            params, opt_state = res.params, res.opt_state
        else:
            grad_fn = ottt_grad if cfg.method == "ottt_a" else bptt_grad
            res = grad_fn(step_fn, loss_fn, ts.params, state0, inputs, labels, num_steps=n)
            updates, opt_state = tx.update(res.grads, ts.opt_state, ts.params)
            params = optax.apply_updates(ts.params, updates)
        logits_sum = res.outputs.astype(jnp.float32).sum(0)  # the paper predicts argmax Σ_t out_t
        correct = jnp.sum(jnp.argmax(logits_sum, -1) == labels)
        finite = jnp.isfinite(res.loss) & jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)])
        )
        metrics = {"loss": res.loss, "correct": correct, "finite": finite}
        return TrainState(ts.step + 1, params, opt_state, ts.rng), metrics

    return jax.jit(
        train_step,
        in_shardings=(s.replicated, s.batch_sharding, s.batch_sharding),
        out_shardings=(s.replicated, s.replicated),
        donate_argnums=(0,),
    )


def _make_eval_step(s: _Setup, num_steps: int):
    model, info = s.model, s.info
    step_fn = make_step(model)

    def eval_step(params, images, labels, mask):
        b = labels.shape[0]
        state0 = model.init_state(b, _frame_shape(info), train=False)
        inputs, n = _to_inputs(images, info, num_steps)
        if info.is_sequence and images.shape[1] != num_steps:
            raise ValueError(
                f"eval_num_steps={num_steps} but the data has {images.shape[1]} frames per sample"
            )
        outs, _ = forward(step_fn, params, state0, inputs, num_steps=n)
        logits_sum = outs.astype(jnp.float32).sum(0)
        correct = jnp.sum((jnp.argmax(logits_sum, -1) == labels) * mask)
        per_step = jax.vmap(lambda o: _per_example_ce(o, labels))(outs.astype(jnp.float32))
        loss = jnp.sum(per_step.mean(0) * mask)
        return {"correct": correct, "loss": loss, "count": jnp.sum(mask)}

    return jax.jit(
        eval_step,
        in_shardings=(s.replicated, s.batch_sharding, s.batch_sharding, s.batch_sharding),
        out_shardings=s.replicated,
    )


def _per_example_ce(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


# ---------------------------------------------------------------------------------------------
# Data plumbing
# ---------------------------------------------------------------------------------------------


def _global_array(sharding: NamedSharding, local: np.ndarray) -> jax.Array:
    return jax.make_array_from_process_local_data(sharding, local)


def _batch(s: _Setup, batch: dict) -> tuple[jax.Array, jax.Array]:
    images = np.asarray(batch["image"], np.float32)
    labels = np.asarray(batch["label"], np.int32)
    return _global_array(s.batch_sharding, images), _global_array(s.batch_sharding, labels)


def evaluate(
    s: _Setup, params: PyTree, *, num_steps: int, data_dir: str | None = None
) -> dict[str, float]:
    """Evaluate ``params`` on the test split with ``num_steps`` time steps.

    Returns:
      ``{'accuracy', 'loss', 'count'}``; accuracy uses ``argmax Σ_t out_t`` (the paper's rule),
      loss is the per-step cross-entropy averaged over steps and samples.
    """
    cfg = s.cfg
    n_dev = s.mesh.size
    per_host = _per_host(cfg.data.eval_batch_size, n_dev, pad=True)
    loader = data_lib.make_loader(
        cfg.data.dataset,
        "test",
        batch_size=per_host,
        seed=cfg.seed,
        data_dir=data_dir or cfg.data.data_dir,
        drop_remainder=False,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        worker_count=cfg.data.worker_count,
        num_frames=cfg.data.num_frames,
    )
    step = _make_eval_step(s, num_steps)
    tot = {"correct": 0.0, "loss": 0.0, "count": 0.0}
    for batch in loader:
        images = np.asarray(batch["image"], np.float32)
        labels = np.asarray(batch["label"], np.int32)
        mask = np.ones(len(labels), np.float32)
        pad = per_host - len(labels)
        if pad:  # keep one compiled shape: pad the last batch and mask the padding out
            images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), np.float32)])
            labels = np.concatenate([labels, np.zeros(pad, np.int32)])
            mask = np.concatenate([mask, np.zeros(pad, np.float32)])
        out = step(
            params,
            _global_array(s.batch_sharding, images),
            _global_array(s.batch_sharding, labels),
            _global_array(s.batch_sharding, mask),
        )
        for k in tot:
            tot[k] += float(out[k])
    count = max(tot["count"], 1.0)
    return {"accuracy": tot["correct"] / count, "loss": tot["loss"] / count, "count": tot["count"]}


def _per_host(global_batch: int, n_devices: int, *, pad: bool = False) -> int:
    if global_batch % n_devices:
        if not pad:
            raise ValueError(
                f"data.batch_size={global_batch} must be divisible by the number of devices "
                f"({n_devices}); choose a multiple of {n_devices}"
            )
        global_batch = n_devices * math.ceil(global_batch / n_devices)
    return global_batch // jax.process_count()


def _setup(cfg: config_lib.Config, devices: Sequence[jax.Device] | None = None) -> _Setup:
    info = data_lib.get_dataset_info(cfg.data.dataset, num_frames=cfg.data.num_frames)
    model = build_model(cfg)
    devices = list(jax.devices() if devices is None else devices)
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    return _Setup(
        cfg=cfg,
        info=info,
        model=model,
        mesh=mesh,
        batch_sharding=NamedSharding(mesh, P("data")),
        replicated=NamedSharding(mesh, P()),
    )


def _init_state(s: _Setup, tx) -> TrainState:
    cfg, info = s.cfg, s.info
    key = jax.random.PRNGKey(cfg.seed)
    init_key, rng = jax.random.split(key)
    x = jnp.zeros((1, *_frame_shape(info)), jnp.float32)
    st = s.model.init_state(1, _frame_shape(info), train=False)
    params = jax.jit(lambda k: s.model.init(k, st, x)["params"])(init_key)
    ts = TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params), rng)
    return jax.device_put(ts, s.replicated)


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


class _Logger:
    """JSONL metrics (and TensorBoard when ``tensorboardX`` is installed) in the workdir."""

    def __init__(self, workdir: str, enabled: bool):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tb = None
        if enabled:
            try:
                from tensorboardX import SummaryWriter  # optional

                self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
            except ImportError:
                pass

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k not in ("step", "kind") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{record.get('kind', 'train')}/{k}", v, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _default_workdir(cfg: config_lib.Config) -> str:
    return os.path.join("runs", cfg.name)


def _check_compatible(saved: dict, cfg: config_lib.Config) -> None:
    saved_cfg = config_lib.from_dict(saved)
    diffs = config_lib.diff(saved_cfg, cfg, ignore=config_lib.RESUMABLE_KEYS)
    if diffs:
        raise IncompatibleCheckpointError(
            "the checkpoint in the workdir was written with a different config; refusing to "
            "resume. Differences (checkpoint != requested):\n  " + "\n  ".join(diffs)
        )


def train(
    cfg: config_lib.Config | str,
    overrides: Sequence[str] | dict | None = None,
    *,
    workdir: str | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> dict[str, Any]:
    """Train a spiking network with OTTT_A, OTTT_O or BPTT as the config says.

    Args:
      cfg: a :class:`~ottt_jax.config.Config` or a preset name (``'digits'``, ``'cifar10_vgg'``...).
      overrides: dotted ``key=value`` overrides applied to ``cfg``.
      workdir: where checkpoints, ``metrics.jsonl`` and ``curves.png`` go (default
        ``cfg.workdir`` or ``runs/<name>``). A workdir with a checkpoint resumes from it.
      devices: devices to train on (default: all); the global batch must divide by their number.

    Returns:
      ``{'test_accuracy', 'test_loss', 'train_accuracy', 'train_loss', 'steps', 'epochs',
      'workdir', 'checkpoint', 'best_checkpoint', 'metrics', 'curves', 'seconds'}``.

    Raises:
      TrainingDivergedError: the loss became non-finite (the last good checkpoint is kept).
      IncompatibleCheckpointError: the workdir holds a checkpoint of another config.
    """
    if isinstance(cfg, str):
        cfg = config_lib.get_config(cfg, overrides or ())
    elif overrides:
        cfg = config_lib.apply_overrides(cfg, overrides)
    else:
        cfg = config_lib.validate(cfg)
    workdir = os.path.abspath(workdir or cfg.workdir or _default_workdir(cfg))
    os.makedirs(workdir, exist_ok=True)
    is_main = jax.process_index() == 0

    s = _setup(cfg, devices)
    per_host = _per_host(cfg.data.batch_size, s.mesh.size)
    loader = data_lib.make_loader(
        cfg.data.dataset,
        "train",
        batch_size=per_host,
        seed=cfg.seed,
        data_dir=cfg.data.data_dir,
        augment=cfg.data.augment,
        drop_remainder=True,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        worker_count=cfg.data.worker_count,
        num_frames=cfg.data.num_frames,
    )
    steps_per_epoch = loader.steps_per_epoch
    total_steps = cfg.optim.epochs * steps_per_epoch
    if cfg.max_train_steps is not None:
        total_steps = min(total_steps, cfg.max_train_steps)
    tx, schedule = make_optimizer(cfg, steps_per_epoch)
    ts = _init_state(s, tx)
    ckpt = Checkpointer(workdir, max_to_keep=cfg.max_checkpoints)
    it = iter(loader)
    best_acc, history = -1.0, []
    meta_cfg = config_lib.to_dict(cfg)

    if ckpt.latest_step() is not None:
        if not cfg.resume:
            raise ValueError(
                f"workdir {workdir} already holds a checkpoint (step {ckpt.latest_step()}) and "
                "resume=false; pass another --workdir or set resume=true"
            )
        meta = ckpt.read_meta()
        _check_compatible(meta["config"], cfg)
        ts, meta = ckpt.restore(ts)
        ts = jax.device_put(ts, s.replicated)
        it.set_state(decode_iterator_state(meta["data_state"]))
        best_acc = meta.get("best_accuracy", -1.0)
        if is_main:
            print(f"resumed from {ckpt.latest_dir}/{int(ts.step)} (epoch {meta['epoch']})")

    train_step = _make_train_step(s, tx)
    eval_t = cfg.effective_eval_num_steps
    logger = _Logger(workdir, is_main)

    def save(step: int, best: bool = False, eval_acc: float | None = None):
        meta = {
            "config": meta_cfg,
            "step": step,
            "epoch": step // steps_per_epoch,
            "data_state": encode_iterator_state(it.get_state()),
            "best_accuracy": best_acc,
            "eval_accuracy": eval_acc,
        }
        ckpt.save(step, ts, meta, best=best)

    step = int(ts.step)
    bar = _progress(cfg.progress and is_main, total_steps, step)
    run_loss = run_correct = run_count = 0.0
    t0 = t_last = time.perf_counter()
    last_eval: dict[str, float] = {}
    train_acc = train_loss = float("nan")
    pending: list[tuple[int, dict]] = []

    def flush() -> None:
        """Pull pending step metrics to the host; stop on a non-finite loss before any save."""
        nonlocal run_loss, run_correct, run_count
        for at, m in jax.device_get(pending):
            loss = float(m["loss"])
            if not (math.isfinite(loss) and bool(m["finite"])):
                last = ckpt.latest_step()
                where = (
                    f"the last good checkpoint is {ckpt.latest_dir}/{last}"
                    if last is not None
                    else "no checkpoint had been written yet"
                )
                raise TrainingDivergedError(
                    f"non-finite training loss or parameters (loss {loss}) at step {at} (epoch "
                    f"{(at - 1) // steps_per_epoch}); stopped. {where}"
                )
            run_loss += loss
            run_correct += float(m["correct"])
            run_count += cfg.data.batch_size
        pending.clear()

    interrupted = _InterruptFlag()
    try:
        while step < total_steps:
            images, labels = _batch(s, next(it))
            ts, m = train_step(ts, images, labels)
            step += 1
            pending.append((step, m))  # synced lazily: the host keeps feeding the device
            epoch_end = step % steps_per_epoch == 0 or step == total_steps
            epoch = math.ceil(step / steps_per_epoch)
            do_eval = epoch_end and (epoch % cfg.eval_every_epochs == 0 or step == total_steps)
            do_save = do_eval or step % cfg.checkpoint_every_steps == 0
            if step % cfg.log_every == 0 or step == total_steps or do_save:
                flush()
            if step % cfg.log_every == 0 or step == total_steps:
                now = time.perf_counter()
                train_loss = run_loss / max(run_count / cfg.data.batch_size, 1)
                train_acc = run_correct / max(run_count, 1)
                ips = run_count / max(now - t_last, 1e-9)
                rec = {
                    "kind": "train",
                    "step": step,
                    "epoch": step / steps_per_epoch,
                    "loss": train_loss,
                    "accuracy": train_acc,
                    "lr": float(schedule(_update_count(cfg, step))),
                    "images_per_sec": ips,
                }
                logger.write(rec)
                history.append(rec)
                if bar is not None:
                    bar.set_postfix(
                        loss=f"{train_loss:.4f}", acc=f"{train_acc:.3f}", ips=f"{ips:.0f}"
                    )
                run_loss = run_correct = run_count = 0.0
                t_last = now
            if bar is not None:
                bar.update(1)
            if do_eval:
                last_eval = evaluate(s, ts.params, num_steps=eval_t)
                rec = {"kind": "eval", "step": step, "epoch": epoch, **last_eval}
                logger.write(rec)
                history.append(rec)
                improved = last_eval["accuracy"] > best_acc
                best_acc = max(best_acc, last_eval["accuracy"])
                save(step, best=improved and cfg.keep_best, eval_acc=last_eval["accuracy"])
            elif do_save:
                save(step)
            if interrupted.flag:  # Ctrl-C lands here, between two whole steps
                flush()
                save(step)
                if is_main:
                    print(f"\ninterrupted at step {step}; checkpoint saved, rerun to resume")
                raise KeyboardInterrupt
    finally:
        interrupted.restore()
        if bar is not None:
            bar.close()
        logger.close()

    if ckpt.latest_step() != step:
        save(step)
    if not last_eval:
        last_eval = evaluate(s, ts.params, num_steps=eval_t)
    seconds = time.perf_counter() - t0
    curves = _plot_curves(
        os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "curves.png")
    )
    result = {
        "test_accuracy": last_eval["accuracy"],
        "test_loss": last_eval["loss"],
        "best_test_accuracy": max(best_acc, last_eval["accuracy"]),
        "train_accuracy": train_acc,
        "train_loss": train_loss,
        "steps": step,
        "epochs": step / steps_per_epoch,
        "seconds": seconds,
        "workdir": workdir,
        "checkpoint": f"{ckpt.latest_dir}/{ckpt.latest_step()}",
        "best_checkpoint": (
            f"{ckpt.best_dir}/{ckpt.best_step()}" if ckpt.best_step() is not None else None
        ),
        "metrics": os.path.join(workdir, "metrics.jsonl"),
        "curves": curves,
        "params": ts.params,
    }
    ckpt.close()
    if is_main and cfg.progress:
        print(_summary(cfg, result))
    return result


class _InterruptFlag:
    """Defer Ctrl-C (SIGINT) to the next step boundary, so the checkpoint is exact.

    A second Ctrl-C interrupts immediately.
    """

    def __init__(self):
        self.flag = False
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def restore(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


def _update_count(cfg, step: int) -> int:
    return step * (cfg.num_steps if cfg.method == "ottt_o" else 1)


def _progress(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)


def _summary(cfg: config_lib.Config, r: dict) -> str:
    rows = [
        ("config", cfg.name),
        ("method", cfg.method),
        ("T (train / eval)", f"{cfg.num_steps} / {cfg.effective_eval_num_steps}"),
        ("steps / epochs", f"{r['steps']} / {r['epochs']:.2f}"),
        ("train loss / acc", f"{r['train_loss']:.4f} / {100 * r['train_accuracy']:.2f}%"),
        ("test loss", f"{r['test_loss']:.4f}"),
        ("test accuracy", f"{100 * r['test_accuracy']:.2f}%"),
        ("best test accuracy", f"{100 * r['best_test_accuracy']:.2f}%"),
        ("wall time", f"{r['seconds']:.1f} s"),
        ("workdir", r["workdir"]),
    ]
    w = max(len(k) for k, _ in rows)
    line = "-" * (w + 3 + max(len(v) for _, v in rows))
    return "\n".join([line, *(f"{k:<{w}} | {v}" for k, v in rows), line])


def _plot_curves(metrics_path: str, out_path: str) -> str | None:
    if not os.path.exists(metrics_path):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_path) as f:
        recs = [json.loads(line) for line in f]
    tr = [r for r in recs if r["kind"] == "train"]
    ev = [r for r in recs if r["kind"] == "eval"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot([r["epoch"] for r in tr], [r["loss"] for r in tr], label="train loss (Σ_t L[t])")
    if ev:
        ax1.plot([r["epoch"] for r in ev], [r["loss"] for r in ev], "o-", label="test CE")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot([r["epoch"] for r in tr], [100 * r["accuracy"] for r in tr], label="train")
    if ev:
        ax2.plot([r["epoch"] for r in ev], [100 * r["accuracy"] for r in ev], "o-", label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


# ---------------------------------------------------------------------------------------------
# Evaluation of a saved run
# ---------------------------------------------------------------------------------------------


def evaluate_checkpoint(
    workdir: str,
    *,
    num_steps: int | None = None,
    which: str = "best",
    data_dir: str | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint at any number of time steps.

    Args:
      workdir: the training run's directory.
      num_steps: ``T_eval`` (default: the run's ``eval_num_steps``).
      which: 'best' (falls back to 'latest' when there is none) or 'latest'.
      data_dir: override the data directory.

    Returns:
      ``{'accuracy', 'loss', 'count', 'num_steps', 'step', 'checkpoint'}``.
    """
    ckpt = Checkpointer(workdir)
    if which == "best" and ckpt.best_step() is None:
        which = "latest"
    meta = ckpt.read_meta(which)
    if meta is None:
        raise FileNotFoundError(
            f"no checkpoint under {workdir} (expected {ckpt.latest_dir}/<step>)"
        )
    cfg = config_lib.from_dict(meta["config"])
    s = _setup(cfg, devices)
    tx, _ = make_optimizer(cfg, 1)
    ts, meta = ckpt.restore(_init_state(s, tx), which=which)
    ckpt.close()
    t = num_steps or cfg.effective_eval_num_steps
    out = evaluate(s, jax.device_put(ts.params, s.replicated), num_steps=t, data_dir=data_dir)
    return {**out, "num_steps": t, "step": int(ts.step), "checkpoint": which}


# ---------------------------------------------------------------------------------------------
# Console scripts (thin wrappers)
# ---------------------------------------------------------------------------------------------


def cli_train(argv: Sequence[str] | None = None) -> int:
    """``ottt-train [--config NAME] [--set key=value ...] [--workdir DIR]``."""
    import argparse

    p = argparse.ArgumentParser(prog="ottt-train", description=cli_train.__doc__)
    p.add_argument("--config", default="digits", help="preset name or a config .json file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override")
    p.add_argument("--workdir", default=None, help="run directory (default runs/<name>)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--multihost", action="store_true", help="call jax.distributed.initialize()")
    p.add_argument("--list", action="store_true", help="list presets and exit")
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(config_lib.list_presets()))
        return 0
    if args.multihost:
        initialize_distributed()
    overrides = list(args.set)
    if args.resume is not None:
        overrides.append(f"resume={str(args.resume).lower()}")
    try:
        cfg = config_lib.get_config(args.config, overrides)
        r = train(cfg, workdir=args.workdir)
    except (ValueError, FileNotFoundError, TrainingDivergedError, UserError) as e:
        print(f"ottt-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"test accuracy: {100 * r['test_accuracy']:.2f}%")
    return 0


def cli_eval(argv: Sequence[str] | None = None) -> int:
    """``ottt-eval --workdir DIR [--num-steps T] [--which best|latest]``."""
    import argparse

    p = argparse.ArgumentParser(prog="ottt-eval", description=cli_eval.__doc__)
    p.add_argument("--workdir", required=True)
    p.add_argument("--num-steps", type=int, default=None, help="T for evaluation")
    p.add_argument("--which", choices=("best", "latest"), default="best")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    try:
        r = evaluate_checkpoint(
            args.workdir, num_steps=args.num_steps, which=args.which, data_dir=args.data_dir
        )
    except (ValueError, FileNotFoundError, UserError) as e:
        print(f"ottt-eval: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in r.items()}, indent=1))
    print(f"test accuracy at T={r['num_steps']}: {100 * r['accuracy']:.2f}%")
    return 0


class _CallableModule(types.ModuleType):
    """Make ``ottt_jax.train(cfg)`` work even after ``import ottt_jax.train`` bound the module."""

    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
