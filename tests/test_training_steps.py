"""The public parts of the trainer: the LR schedule, the train step's loss and keys, evaluation.

Each test states the bug it catches. Everything runs on the ``digits`` preset's small conv net
(one compiled train step per test at most).
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ottt_jax import config as config_lib
from ottt_jax import data as data_lib
from ottt_jax import mode, rules, training
from ottt_jax.losses import instantaneous_loss
from ottt_jax.models import make_step
from ottt_jax.online import forward, ottt_grad

QUIET = ["progress=false"]


def _digits(*overrides):
    return config_lib.get_config("digits", [*QUIET, *overrides])


def _first_batch(cfg, n):
    loader = data_lib.make_loader(
        "digits", "train", batch_size=n, seed=cfg.seed, shuffle=False, num_epochs=1
    )
    b = next(iter(loader))
    return np.asarray(b["image"], np.float32), np.asarray(b["label"], np.int32)


def _one_device(cfg):
    return training.make_setup(cfg, jax.devices()[:1])


def _cosine(o, epoch):
    return o.min_lr + (o.lr - o.min_lr) * 0.5 * (1 + math.cos(math.pi * epoch / o.epochs))


@pytest.mark.parametrize("method, per_batch", [("ottt_a", 1), ("ottt_o", 4)])
def test_lr_schedule_at_epoch_boundaries(method, per_batch):
    """Catches: OTTT_O's epoch counted in batches instead of T·batches; the cosine stepped per
    update instead of per epoch; min_lr or warmup dropped."""
    s = 7  # batches per epoch
    cfg = _digits(f"method={method}", "optim.epochs=5", "optim.min_lr=0.01")
    _, schedule = training.make_optimizer(cfg, s)
    o = cfg.optim
    u = s * per_batch  # optimizer updates per epoch, counted by hand
    for epoch in range(o.epochs):
        first, last = epoch * u, (epoch + 1) * u - 1
        assert training.update_count(cfg, epoch * s) == first
        for c in (first, first + 1, last):  # constant within the epoch
            assert float(schedule(c)) == pytest.approx(_cosine(o, epoch), rel=1e-6), (epoch, c)
    assert float(schedule(o.epochs * u)) == pytest.approx(o.min_lr, rel=1e-6)

    warm = _digits(f"method={method}", "optim.warmup_epochs=2", "optim.schedule=constant")
    _, schedule = training.make_optimizer(warm, s)
    for c in (0, 3, u, 2 * u - 1, 2 * u, 5 * u):  # linear per update over 2 epochs of updates
        want = warm.optim.lr * min(1.0, (c + 1) / (2 * u))
        assert float(schedule(c)) == pytest.approx(want, rel=1e-6), c


def test_logged_lr_counts_ottt_o_updates(tmp_path):
    """Catches: the logged lr (or the optimizer's count) ignoring OTTT_O's T updates per batch."""
    cfg = _digits("method=ottt_o", "optim.warmup_epochs=1", "max_train_steps=3", "log_every=1")
    r = training.train(cfg, workdir=str(tmp_path), devices=jax.devices()[:1])
    with open(r["metrics"]) as f:
        recs = [rec for rec in map(json.loads, f) if rec["kind"] == "train"]
    t, spe = cfg.num_steps, 44  # 1437 digits // batch 32 batches per epoch
    got = [rec["lr"] for rec in recs]
    want = [cfg.optim.lr * (k * t + 1) / (spe * t) for k in (1, 2, 3)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_train_step_loss_is_the_configured_instantaneous_loss(beta):
    """Catches: the trainer ignoring ``cfg.loss_beta`` (at β = 0 pure CE, at β = 1 pure MSE)."""
    cfg = _digits(f"loss_beta={beta}")
    s = _one_device(cfg)
    tx, _ = training.make_optimizer(cfg, 44)
    ts = training.init_train_state(s, tx)
    params = jax.tree.map(jnp.copy, ts.params)
    x, y = _first_batch(cfg, 8)
    _, m = training.make_train_step(s, tx)(ts, jnp.asarray(x), jnp.asarray(y))
    t = cfg.num_steps
    state = s.model.init_state(8, x.shape[1:], train=False)  # digits: no dropout
    outs, _ = forward(make_step(s.model), params, state, jnp.asarray(x), num_steps=t)
    want = sum(instantaneous_loss(outs[i], y, beta=beta, num_steps=t) for i in range(t))
    np.testing.assert_allclose(float(m["loss"]), float(want), rtol=1e-5)
    assert float(m["accuracy"]) == pytest.approx(float(np.mean(np.argmax(outs.sum(0), -1) == y)))


def test_dropout_masks_differ_per_step_and_are_reproducible():
    """Catches: the per-batch dropout key not folded with the step (the same masks every step)."""
    cfg = _digits("model.neuron_dropout=0.5", "optim.lr=0")  # lr 0: params stay put
    s = _one_device(cfg)
    tx, _ = training.make_optimizer(cfg, 44)
    step = training.make_train_step(s, tx)
    x, y = _first_batch(cfg, 8)
    x, y = jnp.asarray(x), jnp.asarray(y)

    def losses(n):
        ts, out = training.init_train_state(s, tx), []
        for _ in range(n):
            ts, m = step(ts, x, y)
            out.append(float(m["loss"]))
        return out

    a = losses(3)
    assert len(set(a)) == 3, a  # same batch and params: only the masks change between steps
    assert losses(3) == a  # and they are a function of (seed, step)
    d0, r0 = training.step_keys(jax.random.PRNGKey(0), 0)
    d1, _ = training.step_keys(jax.random.PRNGKey(0), 1)
    keys = [np.asarray(jax.random.key_data(k)).tobytes() for k in (d0, r0, d1)]
    assert len(set(keys)) == 3  # the rule's key is not the dropout key


def test_eval_padding_does_not_count():
    """Catches: eval accuracy, loss or count including the padding of the last batch."""
    out = {}
    for bs in (360, 100):  # 360 test digits: one full batch, or 3 x 100 + 60 padded to 100
        cfg = _digits(f"data.eval_batch_size={bs}")
        s = training.make_setup(cfg)
        tx, _ = training.make_optimizer(cfg, 44)
        params = training.init_train_state(s, tx).params
        out[bs] = training.evaluate(s, params, num_steps=cfg.num_steps)
    assert out[100]["count"] == out[360]["count"] == 360
    assert out[100]["accuracy"] == pytest.approx(out[360]["accuracy"], abs=1e-9)
    assert out[100]["loss"] == pytest.approx(out[360]["loss"], rel=1e-5)
    assert 0 < out[360]["accuracy"] < 1


def test_rule_receives_the_step_key():
    """Catches: the rule's key not passed, not folded with the step, or the dropout key reused."""

    def keyed(
        step, loss_fn, params, state, inputs, targets, *, num_steps, key, options, rule_state
    ):
        r = ottt_grad(step, loss_fn, params, state, inputs, targets, num_steps=num_steps)
        return r._replace(loss=jax.random.uniform(key)), rule_state  # the key, made visible

    rule = rules.GradRule(
        name="keyed", mode=mode.OTTT, summary="test rule: loss = U(key)", grad_fn=keyed
    )
    cfg = _digits("optim.lr=0")
    s = _one_device(cfg)._replace(rule=rule)
    tx, _ = training.make_optimizer(cfg, 44)
    ts = training.init_train_state(s, tx)
    rng = jnp.copy(ts.rng)
    step = training.make_train_step(s, tx)
    x, y = _first_batch(cfg, 8)
    got = []
    for i in range(2):
        ts, m = step(ts, jnp.asarray(x), jnp.asarray(y))
        got.append(float(m["loss"]))
        dropout_key, rule_key = training.step_keys(rng, i)
        assert got[-1] == float(jax.random.uniform(rule_key))
        assert got[-1] != float(jax.random.uniform(dropout_key))
    assert got[0] != got[1]


def test_rule_state_is_initialised_from_the_rule_and_carried_across_batches():
    """Catches: rule_state not initialised from rule.init_rule_state, not passed to the rule, or
    the rule's new state dropped (it would stay at its initial value)."""

    def counting(
        step, loss_fn, params, state, inputs, targets, *, num_steps, key, options, rule_state
    ):
        r = ottt_grad(step, loss_fn, params, state, inputs, targets, num_steps=num_steps)
        new = {"batches": rule_state["batches"] + 1, "loss_sum": rule_state["loss_sum"] + r.loss}
        return r, new

    rule = rules.GradRule(
        name="counting",
        mode=mode.OTTT,
        grad_fn=counting,
        init_state=lambda p: {"batches": jnp.int32(7), "loss_sum": jnp.float32(0)},
    )
    cfg = _digits("optim.lr=0")
    s = _one_device(cfg)._replace(rule=rule)
    tx, _ = training.make_optimizer(cfg, 44)
    ts = training.init_train_state(s, tx)
    assert int(ts.rule_state["batches"]) == 7
    step = training.make_train_step(s, tx)
    x, y = _first_batch(cfg, 8)
    losses = []
    for _ in range(3):
        ts, m = step(ts, jnp.asarray(x), jnp.asarray(y))
        losses.append(float(m["loss"]))
    assert int(ts.rule_state["batches"]) == 10
    assert float(ts.rule_state["loss_sum"]) == pytest.approx(sum(losses), rel=1e-6)
