"""The compiled steps of a run: ``init_train_state``, ``make_train_step``, ``make_eval_step``.

Data parallelism uses ``jit`` with a ``NamedSharding`` over a 1-D ``('data',)`` mesh: the batch is
split along its batch axis and parameters are replicated, so XLA inserts the cross-device mean of
the gradients (for OTTT_O inside the scan, before every per-step update).

Randomness: the run key ``TrainState.rng`` is folded with the step for the model's per-sequence
dropout masks, and with the step and :data:`RULE_KEY_STREAM` for the rule (e.g. a rule sampling
time steps), so both are reproducible and checkpoint/resume keeps them exact.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ottt_jax import metrics as metrics_lib
from ottt_jax.diagnose import check_rule
from ottt_jax.losses import instantaneous_loss
from ottt_jax.models import make_step
from ottt_jax.online import forward
from ottt_jax.training.build import Setup, compute_dtype

__all__ = [
    "RULE_KEY_STREAM",
    "TrainState",
    "check_user_model",
    "init_params",
    "init_train_state",
    "make_eval_step",
    "make_loss_fn",
    "make_train_step",
    "step_keys",
    "to_inputs",
]

PyTree = Any

#: The constant folded into a step's key to get the rule's key (the dropout key folds none).
RULE_KEY_STREAM = 1


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree, checkpointed as one item).

    Attributes:
      step: the number of batches trained on (int32 scalar).
      params: the model parameters.
      opt_state: the optimizer state.
      rng: the run key; per-step keys are folded from it (:func:`step_keys`).
      rule_state: the rule's state carried across batches (``rule.init_rule_state(params)``;
        None for a stateless rule).
    """

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    rng: jax.Array
    rule_state: PyTree = None


def step_keys(rng: jax.Array, step: Any) -> tuple[jax.Array, jax.Array]:
    """Return ``(dropout_key, rule_key)`` of training step ``step``.

    Args:
      rng: the run key (``TrainState.rng``).
      step: the step index (the state's ``step`` before the update).

    Returns:
      ``dropout_key = fold_in(rng, step)`` (the model's per-sequence masks) and
      ``rule_key = fold_in(dropout_key, RULE_KEY_STREAM)`` (passed to ``rule.apply``).
    """
    dropout_key = jax.random.fold_in(rng, step)
    return dropout_key, jax.random.fold_in(dropout_key, RULE_KEY_STREAM)


def to_inputs(images: jax.Array, info: Any, num_steps: int) -> tuple[jax.Array, int | None]:
    """Return ``(inputs, num_steps_arg)`` for :mod:`ottt_jax.online`.

    Args:
      images: a batch, ``[B, H, W, C]`` (static) or ``[B, T, H, W, C]`` (sequence dataset).
      info: the dataset's facts (``is_sequence``).
      num_steps: ``T`` for a static image.

    Returns:
      A static image with ``num_steps``, or time-major frames ``[T, B, H, W, C]`` with None.
    """
    if info.is_sequence:
        return jnp.swapaxes(images, 0, 1), None
    return images, num_steps


def make_loss_fn(cfg: Any) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Return the per-step loss ``L[t](out_t, y)``: ``instantaneous_loss`` with ``cfg.loss_beta``.

    Args:
      cfg: the config (``loss_beta``, ``num_steps``).

    Returns:
      ``loss_fn(out_t [B, K], labels [B]) -> scalar``, the paper's Eq. (4) term divided by T.
    """
    return functools.partial(instantaneous_loss, beta=cfg.loss_beta, num_steps=cfg.num_steps)


def init_params(model: Any, frame_shape: tuple[int, ...], key: jax.Array) -> PyTree:
    """Return ``model``'s initial parameters for frames of ``frame_shape`` (jitted Flax init).

    Args:
      model: a model following the model protocol.
      frame_shape: one frame's shape ``(H, W, C)``.
      key: the PRNG key of the initializers.

    Returns:
      The ``params`` collection.
    """
    x = jnp.zeros((1, *frame_shape), jnp.float32)
    st = model.init_state(1, tuple(frame_shape), train=False)
    return jax.jit(lambda k: model.init(k, st, x)["params"])(key)


def init_train_state(s: Setup, tx: optax.GradientTransformation) -> TrainState:
    """Initialize parameters, optimizer state and the run key from ``cfg.seed``.

    Args:
      s: the run's setup.
      tx: the optimizer.

    Returns:
      A replicated :class:`TrainState` at step 0.
    """
    key = jax.random.PRNGKey(s.cfg.seed)
    init_key, rng = jax.random.split(key)
    params = init_params(s.model, tuple(s.info.frame_shape), init_key)
    rule_state = s.rule.init_rule_state(params)
    ts = TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params), rng, rule_state)
    return jax.device_put(ts, s.replicated)


def make_train_step(s: Setup, tx: optax.GradientTransformation):
    """Build the jitted training step: one batch through ``s.rule`` and the optimizer.

    Args:
      s: the run's setup (its rule and model share one mode).
      tx: the optimizer.

    Returns:
      ``train_step(ts, images [B, ...], labels [B]) -> (ts', metrics)`` with ``metrics``
      ``{'loss': Σ_t L[t], 'accuracy': of argmax Σ_t out_t, 'finite': loss and params finite}``;
      ``ts`` is donated. Parameters and optimizer state stay float32; the forward/backward and
      the carried neuron state (membrane, trace, masks) use ``cfg.compute_dtype``.
    """
    cfg, model, info, rule = s.cfg, s.model, s.info, s.rule
    t, dt = cfg.num_steps, compute_dtype(cfg)
    step_fn = make_step(model)
    loss_fn = make_loss_fn(cfg)
    shape = tuple(info.frame_shape)

    def train_step(ts: TrainState, images, labels):
        dropout_key, rule_key = step_keys(ts.rng, ts.step)
        # membrane, trace and masks in the compute dtype: bfloat16 halves the carried state
        state0 = model.init_state(labels.shape[0], shape, key=dropout_key, train=True, dtype=dt)
        inputs, n = to_inputs(images, info, t)
        res = rule.apply(
            step_fn,
            loss_fn,
            tx,
            ts.params,
            ts.opt_state,
            state0,
            inputs,
            labels,
            num_steps=n,
            key=rule_key,
            rule_state=ts.rule_state,
            time_axis=None if n is not None else 0,
        )
        acc = metrics_lib.accuracy(res.outputs.astype(jnp.float32), labels)
        finite = jnp.isfinite(res.loss) & jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(res.params)])
        )
        out = {"loss": res.loss, "accuracy": acc, "finite": finite}
        return TrainState(ts.step + 1, res.params, res.opt_state, ts.rng, res.rule_state), out

    return jax.jit(
        train_step,
        in_shardings=(s.replicated, s.batch_sharding, s.batch_sharding),
        out_shardings=(s.replicated, s.replicated),
        donate_argnums=(0,),
    )


def check_user_model(s: Setup, params: PyTree) -> dict[str, str]:
    """Check which rule each kernel of a user's model follows, before it trains.

    Runs :func:`ottt_jax.diagnose.check_rule` in the rule's mode on two examples of the dataset's
    frame shape (uniform in [0, 1), a fixed key; three frames of a sequence dataset).

    Args:
      s: the run's setup (``s.model`` the user's model).
      params: its initial parameters.

    Returns:
      ``{parameter path: "trace" | "instantaneous" | "through time"}``.

    Raises:
      ValueError: naming every kernel whose gradient follows a rule the mode forbids (e.g. a
        gradient through time under OTTT, or the trace rule under BPTT).
    """
    shape, batch = tuple(s.info.frame_shape), 2
    lead = (3, batch) if s.info.is_sequence else (batch,)
    x = jax.random.uniform(jax.random.PRNGKey(0), (*lead, *shape), jnp.float32)
    state = s.model.init_state(batch, shape, train=False)
    step = make_step(s.model)
    return check_rule(
        step, params, state, x, mode=s.rule.mode, sequence=s.info.is_sequence, strict=True
    )


def make_eval_step(s: Setup, num_steps: int):
    """Build the jitted evaluation step at ``num_steps`` time steps (no dropout).

    Args:
      s: the run's setup.
      num_steps: ``T_eval``; a sequence dataset must have that many frames per sample.

    Returns:
      ``eval_step(params, images [B, ...], labels [B], mask [B]) -> {'correct', 'loss',
      'count'}``, sums over the examples with ``mask = 1`` (padding has 0): ``correct`` of
      ``argmax Σ_t out_t``, ``loss`` the per-example cross-entropy averaged over steps.
    """
    model, info = s.model, s.info
    step_fn = make_step(model)
    shape = tuple(info.frame_shape)

    def eval_step(params, images, labels, mask):
        state0 = model.init_state(labels.shape[0], shape, train=False, dtype=compute_dtype(s.cfg))
        inputs, n = to_inputs(images, info, num_steps)
        if info.is_sequence and images.shape[1] != num_steps:
            raise ValueError(
                f"eval_num_steps={num_steps} but the data has {images.shape[1]} frames per sample"
            )
        outs, _ = forward(step_fn, params, state0, inputs, num_steps=n)
        outs = outs.astype(jnp.float32)
        hit = jax.vmap(metrics_lib.accuracy)(outs.sum(0)[:, None], labels[:, None])
        per_step = jax.vmap(lambda o: optax.softmax_cross_entropy_with_integer_labels(o, labels))(
            outs
        )
        return {
            "correct": jnp.sum(hit * mask),
            "loss": jnp.sum(per_step.mean(0) * mask),
            "count": jnp.sum(mask),
        }

    return jax.jit(
        eval_step,
        in_shardings=(s.replicated, s.batch_sharding, s.batch_sharding, s.batch_sharding),
        out_shardings=s.replicated,
    )
