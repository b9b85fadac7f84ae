"""The spike/trace ops' custom VJPs inside ``jax.shard_map`` with the default ``check_vma=True``.

A user differentiating a layer built on :mod:`ottt_jax.trace` inside ``shard_map`` must get what
JAX's autodiff gives the plain layer: a replicated weight receives the sum of the per-device
weight gradients (typed replicated), spikes replicated over an axis the weight is split on
receive the sum of the per-shard input gradients. A custom VJP that returned the per-device
cotangent instead is refused by JAX ("the manual axis types do not match").
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from ottt_jax import trace as tr

DEVICES = 4


def _mesh():
    assert len(jax.devices()) >= DEVICES  # tests/conftest.py simulates four CPU devices
    return Mesh(np.array(jax.devices()[:DEVICES]), ("data",))


def _spikes_and_trace(shape):
    s = (jax.random.normal(jax.random.PRNGKey(0), shape) > 0.3).astype(jnp.float32)
    a = 0.5 * (jax.random.normal(jax.random.PRNGKey(1), shape) > 0.0) + s  # a trace ≠ s
    return s, a


def _vjp_all(op, w, s, a, g):
    """Return ``(dw, ds, da)``: the VJP of ``op(w, s, a)`` with output cotangent ``g``."""
    _, vjp = jax.vjp(op, w, s, a)
    return vjp(g)


def _dense(w, s, a):
    return tr.dense_spike_trace(w, s, a, trace_scale=1.5)


def _conv(w, s, a):
    return tr.conv_spike_trace(w, s, a, (2, 2), 1)


def _general(p, s, a):
    return tr.spike_trace(_affine, p, s, a)


def _affine(p, x):
    return x @ p["w"] + p["b"]


CASES = {  # name: (op, weight, spikes shape)
    "dense": (_dense, jax.random.normal(jax.random.PRNGKey(2), (5, 3)), (8, 5)),
    "conv": (_conv, jax.random.normal(jax.random.PRNGKey(3), (3, 3, 2, 4)), (8, 6, 6, 2)),
    "general": (
        _general,
        {"w": jax.random.normal(jax.random.PRNGKey(4), (5, 3)), "b": jnp.arange(3.0)},
        (8, 5),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_replicated_weight_gets_the_whole_batch_gradient(name):
    """Catches: a bwd rule returning the per-device weight cotangent (JAX refuses the type)."""
    op, w, shape = CASES[name]
    s, a = _spikes_and_trace(shape)
    g = jax.random.normal(jax.random.PRNGKey(5), jax.eval_shape(op, w, s, a).shape)
    whole = _vjp_all(op, w, s, a, g)
    batch = P("data")
    sharded = jax.jit(
        jax.shard_map(
            functools.partial(_vjp_all, op),
            mesh=_mesh(),
            in_specs=(P(), batch, batch, batch),
            out_specs=(P(), batch, batch),
        )
    )(w, s, a, g)
    chex.assert_trees_all_close(sharded, whole, rtol=1e-5, atol=1e-5)
    assert not np.any(np.asarray(sharded[2]))  # nothing to the trace


def test_column_split_weight_sums_the_spike_gradient_over_its_shards():
    """Catches: spikes replicated over the axis the weight is split on keep one shard's part."""
    w = jax.random.normal(jax.random.PRNGKey(6), (5, 8))
    s, a = _spikes_and_trace((3, 5))
    g = jax.random.normal(jax.random.PRNGKey(7), (3, 8))
    whole = _vjp_all(_dense, w, s, a, g)
    cols = P(None, "data")
    sharded = jax.jit(
        jax.shard_map(
            functools.partial(_vjp_all, _dense),
            mesh=_mesh(),
            in_specs=(cols, P(), P(), cols),
            out_specs=(cols, P(), P()),
        )
    )(w, s, a, g)
    chex.assert_trees_all_close(sharded, whole, rtol=1e-5, atol=1e-5)


def test_spikes_and_trace_varying_over_different_axes_are_refused():
    """Catches: a pair whose trace is typed replicated while its spikes vary (or vice versa)."""
    w = jnp.ones((5, 3))
    s, a = _spikes_and_trace((8, 5))

    def f(w, s, a):
        return tr.dense_spike_trace(w, s, a)

    mapped = jax.shard_map(f, mesh=_mesh(), in_specs=(P(), P("data"), P()), out_specs=P("data"))
    with pytest.raises(ValueError, match=r"spikes and trace must vary over the same shard_map"):
        jax.jit(mapped)(w, s, a[:2])
