"""Tests of ottt_jax.rules: the registry, each built-in entry against the online transform it names,
a user rule added with one entry, and the refusal of a model built for another mode."""

import dataclasses
import functools
import re

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

from ottt_jax import rules
from ottt_jax.losses import instantaneous_loss
from ottt_jax.mode import BPTT, OTTT, SLTT
from ottt_jax.models import SpikingVGG, make_step
from ottt_jax.neuron import LIF
from ottt_jax.online import OnlineResult, bptt_grad, ottt_grad, ottt_update
from ottt_jax.trace import dense_spike_trace

B, D, H, K, T = 3, 5, 6, 4, 3
X = jax.random.uniform(jax.random.PRNGKey(0), (B, D)) * 2.0
Y = jnp.array([0, 1, 3])
LOSS = functools.partial(instantaneous_loss, beta=0.1, num_steps=T)
OPT = optax.sgd(0.5)


def _params():
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    return {"w1": jax.random.normal(k1, (D, H)), "w2": jax.random.normal(k2, (H, K)) * 0.5}


def _net(mode):
    """A dense SNN step (real input → LIF → trace-rule readout) and its initial state."""
    lif = LIF(mode=mode)

    def step(p, st, x):
        s, n = lif(st, x @ p["w1"] + 0.3)
        out = dense_spike_trace(p["w2"], s, n.trace) if mode.trace_rule else s @ p["w2"]
        return out, n

    return step, lif.init_state((B, H))


def test_registry_lists_the_builtin_rules_and_names_them_on_error():
    assert rules.rule_names()[:3] == ("ottt_a", "ottt_o", "bptt")
    assert [rules.get_rule(n).mode for n in ("ottt_a", "ottt_o", "bptt")] == [OTTT, OTTT, BPTT]
    assert [rules.get_rule(n).updates_per_batch(6) for n in ("ottt_a", "ottt_o", "bptt")] == [
        1,
        6,
        1,
    ]
    with pytest.raises(ValueError, match=r"unknown rule 'rtrl'.*ottt_a.*ottt_o.*bptt"):
        rules.get_rule("rtrl")
    with pytest.raises(ValueError, match="already registered"):
        rules.register_rule(rules.get_rule("bptt"))
    with pytest.raises(ValueError, match=r"Rule\.mode"):
        rules.GradRule(name="x", mode="trace", grad_fn=ottt_grad)
    with pytest.raises(TypeError, match="GradRule"):
        rules.Rule(name="x", mode=OTTT)
    with pytest.raises(TypeError):
        rules.GradRule("x", OTTT, "", ottt_grad)  # keyword-only fields
    with pytest.raises(ValueError, match="no batch gradient"):
        step, st = _net(OTTT)
        rules.get_rule("ottt_o").grad(step, LOSS, _params(), st, X, Y, num_steps=T)


def test_builtin_entries_run_their_online_transform():
    p = _params()
    step, st = _net(OTTT)
    step_b, _ = _net(BPTT)
    g = rules.get_rule("ottt_a").grad(step, LOSS, p, st, X, Y, num_steps=T)
    chex.assert_trees_all_close(g, ottt_grad(step, LOSS, p, st, X, Y, num_steps=T))
    gb = rules.get_rule("bptt").grad(step_b, LOSS, p, st, X, Y, num_steps=T)
    chex.assert_trees_all_close(gb, bptt_grad(step_b, LOSS, p, st, X, Y, num_steps=T))
    assert not jnp.allclose(g.grads["w1"], gb.grads["w1"])  # the two rules differ here
    # apply: one update for the grad rule, T for OTTT_O
    o = OPT.init(p)
    a = rules.get_rule("ottt_a").apply(step, LOSS, OPT, p, o, st, X, Y, num_steps=T)
    want = jax.tree.map(lambda w, d: w - 0.5 * d, p, g.grads)
    chex.assert_trees_all_close(a.params, want, rtol=1e-6)
    assert float(a.loss) == pytest.approx(float(g.loss))
    u = rules.get_rule("ottt_o").apply(step, LOSS, OPT, p, o, st, X, Y, num_steps=T)
    chex.assert_trees_all_close(u, ottt_update(step, LOSS, OPT, p, o, st, X, Y, num_steps=T))


@dataclasses.dataclass(frozen=True)
class ScaleOptions:
    scale: float = dataclasses.field(default=1.0, metadata={"doc": "gradient scale"})


def _scaled_ottt_a(
    step, loss_fn, params, state, inputs, targets, *, num_steps, key, options, rule_state
):
    res = ottt_grad(step, loss_fn, params, state, inputs, targets, num_steps=num_steps)
    return res._replace(grads=jax.tree.map(lambda g: options.scale * g, res.grads)), rule_state


def test_user_rule_with_options_is_one_entry_and_trains_one_step():
    rule = rules.GradRule(
        name="scaled_ottt_a",
        mode=OTTT,
        summary="OTTT_A × scale",
        grad_fn=_scaled_ottt_a,
        options=ScaleOptions(),
    )
    rules.register_rule(rule, overwrite=True)
    got = rules.get_rule("scaled_ottt_a").with_options(scale=0.25)
    assert got.options == ScaleOptions(0.25) and got.updates_per_batch(T) == 1
    p = _params()
    step, st = _net(OTTT)
    res = got.apply(step, LOSS, OPT, p, OPT.init(p), st, X, Y, num_steps=T)
    g = ottt_grad(step, LOSS, p, st, X, Y, num_steps=T).grads
    assert float(jnp.abs(g["w1"]).max()) > 0
    want = jax.tree.map(lambda w, d: w - 0.5 * 0.25 * d, p, g)
    chex.assert_trees_all_close(res.params, want, rtol=1e-6)
    assert isinstance(got.grad(step, LOSS, p, st, X, Y, num_steps=T), OnlineResult)
    with pytest.raises(ValueError, match=r"options \['scale'\]; unknown \['k'\]"):
        got.with_options(k=2)


@pytest.mark.parametrize(
    ("rule", "model_mode"), [("ottt_a", BPTT), ("ottt_o", SLTT), ("bptt", OTTT)]
)
def test_a_model_built_for_another_mode_is_refused(rule, model_mode):
    model = SpikingVGG(cfg=(4,), num_classes=2, mode=model_mode)
    step = make_step(model)
    assert step.mode == model_mode
    r = rules.get_rule(rule)
    st = model.init_state(1, (4, 4, 1))
    x, y = jnp.zeros((1, 4, 4, 1)), jnp.zeros(1, jnp.int32)
    want, got = re.escape(str(r.mode)), re.escape(str(model_mode))
    msg = f"rule '{rule}' needs .*mode={want}.* has mode={got}"
    with pytest.raises(ValueError, match=msg):
        r.apply(step, LOSS, OPT, {}, None, st, x, y, num_steps=2)
    if not r.per_step_update:
        with pytest.raises(ValueError, match="needs a model built with"):
            r.grad(step, LOSS, {}, st, x, y, num_steps=2)


# ---------------------------------------------------------------------------------------------
# A rule's own option is a config key: rule.<option>, from its options dataclass.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GainOptions:
    gain: float = dataclasses.field(default=1.0, metadata={"doc": "factor on OTTT_A's gradient"})

    def check(self, num_steps):  # the config runs it: its message starts with the option's name
        if not self.gain >= 0:
            raise ValueError(f"gain must be >= 0, got {self.gain}")


def _gained_ottt_a(
    step, loss_fn, params, state, inputs, targets, *, num_steps, key, options, rule_state
):
    res = ottt_grad(step, loss_fn, params, state, inputs, targets, num_steps=num_steps)
    return res._replace(grads=jax.tree.map(lambda g: options.gain * g, res.grads)), rule_state


def test_a_rule_option_is_set_by_ottt_train_and_train_and_reaches_the_update(tmp_path):
    """rule.gain=0 makes a zero update: params stay the initial ones (gain 1 moves them)."""
    from ottt_jax import config, training
    from ottt_jax.checkpoint import IncompatibleCheckpointError
    from ottt_jax.training import cli
    from ottt_jax.training.build import build_rule

    rule = rules.GradRule(
        name="gain_ottt_a",
        mode=OTTT,
        summary="OTTT_A × gain",
        grad_fn=_gained_ottt_a,
        options=GainOptions(),
    )
    rules.register_rule(rule, overwrite=True)
    small = ["method=gain_ottt_a", "model.vgg_cfg=[8]", "num_steps=2", "progress=false"]
    cfg = config.get_config("digits", [*small, "rule.gain=0", "max_train_steps=1"])
    assert cfg.rule == GainOptions(0.0) and build_rule(cfg).options == GainOptions(0.0)
    assert "rule.gain" in config.field_docs() and config.to_dict(cfg)["rule"] == {"gain": 0.0}
    frozen = training.train(cfg, workdir=str(tmp_path / "a"))["params"]
    moved = training.train(
        config.apply_overrides(cfg, ["rule.gain=1"]), workdir=str(tmp_path / "b")
    )
    assert not all(jax.tree.leaves(jax.tree.map(jnp.array_equal, moved["params"], frozen)))
    # ottt-train: two steps at gain 0 end at the initial parameters, as one step did
    sets = [f"--set={s}" for s in [*small, "rule.gain=0", "max_train_steps=2"]]
    assert cli.cli_train([*sets, "--workdir", str(tmp_path / "c")]) == 0
    saved = config.get_config(str(tmp_path / "c" / "config.json"))
    assert saved.rule == GainOptions(0.0)
    chex.assert_trees_all_equal(training.train(saved)["params"], frozen)  # the finished run's
    with pytest.raises(IncompatibleCheckpointError, match=r"rule\.gain: 0\.0 != 0\.5"):
        training.train(config.apply_overrides(saved, ["rule.gain=0.5"]))
    with pytest.raises(ValueError, match=r"rule\.gain must be >= 0, got -1\.0"):
        config.apply_overrides(cfg, ["rule.gain=-1"])
    with pytest.raises(ValueError, match=r"rule\.k is not an option of method 'gain_ottt_a' "):
        config.apply_overrides(cfg, ["rule.k=1"])
