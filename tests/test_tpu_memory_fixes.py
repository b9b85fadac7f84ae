"""The two changes that take OTTT_A's v5e temporaries from 1,016 to 721 MiB (BENCHMARKS §9).

Each test checks the program structure the TPU compiler was given (what it reads, not its memory,
which needs libtpu and minutes per compile) and that the gradient is bit-for-bit the one before.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ottt_jax import mode
from ottt_jax.layers import avg_pool
from ottt_jax.neuron import LIF


def _eqns(jaxpr) -> list:
    """Return the equations of a jaxpr, those of sub-jaxprs (cond, custom_vjp) included."""
    out = []
    for eqn in jaxpr.eqns:
        out.append(eqn)
        todo = list(eqn.params.values())
        while todo:
            p = todo.pop()
            if isinstance(p, (tuple, list)):
                todo.extend(p)
            elif hasattr(p, "eqns"):
                out += _eqns(p)
            elif hasattr(getattr(p, "jaxpr", None), "eqns"):
                out += _eqns(p.jaxpr)
    return out


def _interior_pads(fn, x) -> int:
    """Count the zero-interleaving pads (interior padding > 0) in the jaxpr of ``fn(x)``."""
    eqns = _eqns(jax.make_jaxpr(fn)(x).jaxpr)
    pads = [e for e in eqns if e.primitive.name == "pad"]
    return sum(any(c[2] for c in e.params["padding_config"]) for e in pads)


def _slice_sum_pool(x, k):
    """The window sum of k² strided slices, as avg_pool's forward computes it."""
    ho, wo = (x.shape[1] - k) // k + 1, (x.shape[2] - k) // k + 1
    total = None
    for i in range(k):
        for j in range(k):
            part = x[:, i : i + k * (ho - 1) + 1 : k, j : j + k * (wo - 1) + 1 : k]
            total = part if total is None else total + part
    return total / (k * k)


@pytest.mark.parametrize(
    "shape, k, dtype",
    [
        ((3, 8, 8, 5), 2, jnp.float32),
        ((2, 9, 7, 3), 2, jnp.float32),  # a last row and column no window reaches
        ((2, 9, 9, 4), 3, jnp.bfloat16),
    ],
)
def test_avg_pool_gradient_is_a_broadcast_and_bit_identical(shape, k, dtype):
    x = jax.random.normal(jax.random.PRNGKey(0), shape, dtype)
    c = jax.random.normal(jax.random.PRNGKey(1), _slice_sum_pool(x, k).shape, dtype)

    def loss(pool):
        return lambda x: jnp.sum((pool(x, k) * c).astype(jnp.float32))

    got = jax.jit(jax.grad(loss(avg_pool)))(x)
    want = jax.jit(jax.grad(loss(_slice_sum_pool)))(x)
    np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))
    np.testing.assert_array_equal(avg_pool(x, k), _slice_sum_pool(x, k))
    # autodiff of the slices transposes each into a zero-interleaved pad of the input's size
    assert _interior_pads(jax.grad(loss(avg_pool)), x) == 0
    assert _interior_pads(jax.grad(loss(_slice_sum_pool)), x) == k * k


def test_avg_pool_overlapping_windows_keep_autodiff():
    x = jnp.arange(2 * 7 * 7 * 2, dtype=jnp.float32).reshape(2, 7, 7, 2)
    g = jax.grad(lambda x: jnp.sum(avg_pool(x, 3, 2, 1) ** 2))(x)
    assert g.shape == x.shape and bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_fire_keeps_the_comparison_not_spikes_ne_zero(dtype):
    """The fired mask is the comparison ``v − V_th ≥ 0``, not ``s != 0``.

    ``s.astype(bool)`` is ``s != 0``; the TPU compiler moved that compare into the backward pass,
    keeping the float spikes and a zero array of the layer's size live across the step.
    """
    neuron = LIF(mode=mode.OTTT)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 6, 6, 3), dtype) * 2
    st = neuron.init_state(x.shape, dtype)

    def f(x):
        s, new = neuron(st, x)
        return jnp.sum(s.astype(jnp.float32) * jnp.arange(s.size).reshape(s.shape)), new

    eqns = _eqns(jax.make_jaxpr(jax.grad(f, has_aux=True))(x).jaxpr)
    float_to_bool = [
        e
        for e in eqns
        if e.primitive.name in ("convert_element_type", "ne")
        and e.outvars[0].aval.dtype == jnp.bool_
        and jnp.issubdtype(e.invars[0].aval.dtype, jnp.floating)
    ]
    assert not float_to_bool, float_to_bool
    assert any(e.primitive.name == "ge" for e in eqns)
    g, new = jax.grad(f, has_aux=True)(x)
    # the surrogate gradient (sigmoid, slope 4) at v = x, the membrane after one step from zero
    v = x.astype(jnp.float32)
    sig = jax.nn.sigmoid(4 * (v - 1.0))
    want = jnp.arange(x.size).reshape(x.shape) * 4 * sig * (1 - sig)
    np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(want), rtol=2e-2, atol=1e-2)
    np.testing.assert_array_equal(new.v, (v - (v >= 1.0)).astype(dtype))
