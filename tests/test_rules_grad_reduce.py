"""``rule.apply(..., grad_reduce=...)`` reduces the gradient of every registered rule.

A user who composes a rule in their own data-parallel step (``shard_map`` over the batch, with
``grad_reduce=lambda g: lax.pmean(g, 'data')``) must get the update of the whole batch on every
device. For a grad rule the reduction applies to the gradient summed over the sequence, for
OTTT_O to each step's; a rule that ignored it would leave every device with its own shard's
update and the replicas would drift apart silently.

``shard_map`` runs with its default ``check_vma=True``: the rules differentiate at parameters
typed as varying over the batch's axes, so each device's gradient is that of its own shard (what
``grad_reduce`` expects), and their scan carries are typed as the body leaves them.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ottt_jax import online, rules
from ottt_jax.losses import instantaneous_loss
from ottt_jax.mode import OTTT
from ottt_jax.neuron import LIF
from ottt_jax.trace import dense_spike_trace

DEVICES = 4
B, D, H, K, T = 8, 5, 6, 3, 3  # 2 samples per device
LOSS = functools.partial(instantaneous_loss, beta=0.1, num_steps=T)
OPT = optax.sgd(0.5, momentum=0.9)  # momentum: OTTT_O's later steps see the earlier updates


def _problem(mode):
    """A dense SNN (real input → LIF → readout at the presynaptic trace or spikes) of ``mode``."""
    lif = LIF(mode=mode)

    def step(p, st, x):
        s, n = lif(st, x @ p["w1"] + 0.3)
        out = dense_spike_trace(p["w2"], s, n.trace) if mode.trace_rule else s @ p["w2"]
        return out, n

    step.mode = mode  # as models.make_step sets it: the rule checks it
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
    params = {"w1": jax.random.normal(k1, (D, H)), "w2": jax.random.normal(k2, (H, K)) * 0.5}
    x = jax.random.uniform(k3, (B, D)) * 2.0
    y = jnp.arange(B) % K
    return step, params, lif.init_state((B, H)), x, y


@pytest.mark.parametrize("name", rules.rule_names())
def test_pmean_in_shard_map_equals_the_whole_batch_update(name):
    """Catches: a rule that drops ``grad_reduce`` (each device keeps its own shard's update)."""
    assert len(jax.devices()) >= DEVICES  # tests/conftest.py simulates four CPU devices
    rule = rules.get_rule(name)
    step, params, st, x, y = _problem(rule.mode)
    opt_state = OPT.init(params)
    key = jax.random.PRNGKey(2)  # the same draw on every device (SLTT-K's steps)

    def one(p, o, st, x, y, reduce):
        r = rule.apply(step, LOSS, OPT, p, o, st, x, y, num_steps=T, key=key, grad_reduce=reduce)
        return r.params, r.opt_state

    whole = jax.jit(functools.partial(one, reduce=None))(params, opt_state, st, x, y)
    mesh = Mesh(np.array(jax.devices()[:DEVICES]), ("data",))
    sharded = jax.jit(
        jax.shard_map(
            functools.partial(one, reduce=lambda g: jax.lax.pmean(g, "data")),
            mesh=mesh,
            in_specs=(P(), P(), P("data"), P("data"), P("data")),
            out_specs=(P(), P()),
            # check_vma is left at its default (True): out_specs P() is then also a type check
            # that the reduced parameters are replicated.
        )
    )(params, opt_state, st, x, y)
    chex.assert_trees_all_close(sharded, whole, rtol=2e-5, atol=1e-6)
    # out_specs P() returns device 0's copy; every device must hold the same parameters.
    for leaf in jax.tree.leaves(sharded[0]):
        copies = [np.asarray(s.data) for s in leaf.addressable_shards]
        assert len(copies) == DEVICES and all(np.array_equal(c, copies[0]) for c in copies)

    # The check has power: one device's shard alone gives another update.
    shard = jax.tree.map(lambda a: a[: B // DEVICES], (st, x, y))
    alone = jax.jit(functools.partial(one, reduce=None))(params, opt_state, *shard)
    diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), alone[0], whole[0])
    assert max(jax.tree.leaves(diff)) > 1e-3, diff


def _per_device(name, reduce):
    """Run ``rule.apply`` in ``shard_map`` with ``grad_reduce=reduce``, the state built inside."""
    rule = rules.get_rule(name)
    step, params, _, x, y = _problem(rule.mode)
    opt_state = OPT.init(params)
    key = jax.random.PRNGKey(2)

    def one(p, o, x, y):
        st = LIF(mode=rule.mode).init_state((x.shape[0], H))  # replicated zeros, typed so
        r = rule.apply(step, LOSS, OPT, p, o, st, x, y, num_steps=T, key=key, grad_reduce=reduce)
        return r.params

    mesh = Mesh(np.array(jax.devices()[:DEVICES]), ("data",))
    data = P("data")
    mapped = jax.shard_map(one, mesh=mesh, in_specs=(P(), P(), data, data), out_specs=data)
    return one, (params, opt_state, x, y), jax.jit(mapped)


@pytest.mark.parametrize("name", rules.rule_names())
def test_without_grad_reduce_each_device_takes_its_own_shards_update(name):
    """Catches: gradients taken at the replicated parameters (JAX then sums them over devices)."""
    one, args, mapped = _per_device(name, None)
    stacked = mapped(*args)  # each device's parameters, stacked on axis 0
    params, opt_state, x, y = args
    for d, (xd, yd) in enumerate(zip(np.split(x, DEVICES), np.split(y, DEVICES), strict=True)):
        alone = jax.jit(one)(params, opt_state, xd, yd)
        mine = {k: np.split(v, DEVICES)[d] for k, v in stacked.items()}
        chex.assert_trees_all_close(mine, alone, rtol=2e-5, atol=1e-6)


def test_ottt_o_refuses_a_grad_reduce_that_leaves_the_gradient_varying():
    """Catches: a per-step update from an unreduced gradient, met as a scan type error."""
    _, args, mapped = _per_device("ottt_o", lambda g: g)
    with pytest.raises(ValueError, match=r"grad_reduce returned a gradient that still varies"):
        mapped(*args)


@pytest.mark.parametrize("name", ["ottt_a", "ottt_o"])
def test_jit_over_a_named_sharding_needs_no_reduce(name):
    """Catches: a vma cast that is not a no-op outside shard_map (jit with sharded inputs)."""
    rule = rules.get_rule(name)
    step, params, st, x, y = _problem(rule.mode)
    opt_state = OPT.init(params)

    def one(p, o, st, x, y):
        r = rule.apply(step, LOSS, OPT, p, o, st, x, y, num_steps=T)
        return r.params, r.opt_state

    batch = NamedSharding(Mesh(np.array(jax.devices()[:DEVICES]), ("data",)), P("data"))
    sharded = jax.device_put((st, x, y), batch)
    chex.assert_trees_all_close(
        jax.jit(one)(params, opt_state, *sharded),
        jax.jit(one)(params, opt_state, st, x, y),
        rtol=2e-5,
        atol=1e-6,
    )


def test_forward_in_shard_map_with_a_state_built_inside():
    """Catches: forward's scan carry typed replicated while the body makes it per-device."""
    step, params, _, x, _ = _problem(OTTT)

    def run(p, x):
        st = LIF(mode=OTTT).init_state((x.shape[0], H))  # replicated zeros
        return online.forward(step, p, st, x, num_steps=T)[0]

    mesh = Mesh(np.array(jax.devices()[:DEVICES]), ("data",))
    out_specs = P(None, "data")  # [T, B, K]
    mapped = jax.jit(jax.shard_map(run, mesh=mesh, in_specs=(P(), P("data")), out_specs=out_specs))
    np.testing.assert_allclose(mapped(params, x), jax.jit(run)(params, x), rtol=1e-6, atol=1e-6)
