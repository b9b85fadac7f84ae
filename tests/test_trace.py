"""Spike forward, trace gradient: every backward path against jax.vjp."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ottt_jax import trace as tr
from ottt_jax.layers import standardize_weight

CONV_CASES = [  # (kernel, stride, padding, H): the layouts used by VGG, VGG-F and NF-ResNet
    (3, 1, "SAME", 8),
    (3, 2, 1, 9),
    (7, 2, 3, 16),
    (1, 2, 0, 8),
]


def _rand(key, shape, binary=False):
    x = jax.random.normal(jax.random.PRNGKey(key), shape)
    return (x > 0.3).astype(jnp.float32) if binary else x


@pytest.mark.parametrize("k, stride, pad, h", CONV_CASES)
def test_forward_conv_backward_equals_autodiff(k, stride, pad, h):
    x, w = _rand(0, (2, h, h, 3)), _rand(1, (k, k, 3, 5))
    p = tr.normalize_padding(pad, (k, k))
    y, vjp = jax.vjp(lambda x, w: tr._conv(x, w, (stride, stride), p), x, w)
    g = _rand(2, y.shape)
    dx, dw = vjp(g)
    np.testing.assert_allclose(
        tr.conv_input_grad(g, w, (h, h), (stride, stride), p), dx, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        tr.conv_weight_grad(x, g, (k, k), (stride, stride), p), dw, rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize("k, stride, pad, h", CONV_CASES[:2])
def test_conv_spike_trace_rule(k, stride, pad, h):
    s = _rand(3, (2, h, h, 3), binary=True)
    a = 0.5 * _rand(4, (2, h, h, 3), binary=True) + s  # a trace-like tensor ≠ s
    w = _rand(5, (k, k, 3, 4))
    p = tr.normalize_padding(pad, (k, k))
    conv = lambda x, w: tr._conv(x, w, (stride, stride), p)
    y, vjp = jax.vjp(lambda w, s, a: tr.conv_spike_trace(w, s, a, (stride, stride), pad), w, s, a)
    np.testing.assert_allclose(y, conv(s, w), rtol=1e-6)
    g = _rand(6, y.shape)
    dw, ds, da = vjp(g)
    _, vjp_at_trace = jax.vjp(conv, a, w)
    dx_ref, dw_ref = vjp_at_trace(g)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-5, atol=1e-4)  # weight gradient at the trace
    np.testing.assert_allclose(ds, dx_ref, rtol=1e-5, atol=1e-5)  # input gradient to the spikes
    np.testing.assert_array_equal(da, 0.0)  # nothing to the trace


def test_gradient_flows_through_weight_standardization_at_the_trace():
    s = _rand(7, (2, 6, 6, 3), binary=True)
    a = s + 0.25
    kernel, gain = _rand(8, (3, 3, 3, 4)), 1.0 + 0.1 * _rand(9, (4,))
    g = _rand(10, (2, 6, 6, 4))

    def ours(kernel, gain):
        return jnp.vdot(tr.conv_spike_trace(standardize_weight(kernel, gain), s, a), g)

    def at_trace(kernel, gain):
        w = standardize_weight(kernel, gain)
        return jnp.vdot(tr._conv(a, w, (1, 1), ((1, 1), (1, 1))), g)

    for got, want in zip(
        jax.grad(ours, (0, 1))(kernel, gain), jax.grad(at_trace, (0, 1))(kernel, gain)
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_general_spike_trace_with_bias_and_dense():
    s = _rand(11, (4, 5), binary=True)
    a = 0.5 * s + 1.0
    params = {"w": _rand(12, (5, 3)), "b": _rand(13, (3,))}
    f = lambda p, x: x @ p["w"] + p["b"]
    g = _rand(14, (4, 3))
    y, vjp = jax.vjp(lambda p, s, a: tr.spike_trace(f, p, s, a), params, s, a)
    np.testing.assert_allclose(y, f(params, s), rtol=1e-6)
    dp, ds, da = vjp(g)
    np.testing.assert_allclose(dp["w"], a.T @ g, rtol=1e-5)  # ∇W = âᵀ g (Eq. (5))
    np.testing.assert_allclose(dp["b"], g.sum(0), rtol=1e-5)  # bias: plain g
    np.testing.assert_allclose(ds, g @ params["w"].T, rtol=1e-5)
    np.testing.assert_array_equal(da, 0.0)
    dw, ds2, _ = jax.vjp(tr.dense_spike_trace, params["w"], s, a)[1](g)
    np.testing.assert_allclose(dw, a.T @ g, rtol=1e-5)
    np.testing.assert_allclose(ds2, ds, rtol=1e-6)


def test_update_trace():
    a = tr.update_trace(jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0]), 0.5)
    np.testing.assert_allclose(a, [1.5, 1.0])
    g = jax.grad(lambda s: tr.update_trace(jnp.zeros(2), s, 0.5).sum())(jnp.ones(2))
    np.testing.assert_array_equal(g, 0.0)


def test_errors():
    with pytest.raises(ValueError, match="spikes and trace must have the same shape"):
        tr.dense_spike_trace(jnp.ones((3, 2)), jnp.ones((1, 3)), jnp.ones((2, 3)))
    with pytest.raises(
        ValueError, match=r"expects spikes \[B, H, W, Ci\] and w \[kh, kw, Ci, Co\]"
    ):
        tr.conv_spike_trace(jnp.ones((3, 3, 2, 4)), jnp.ones((1, 4, 4, 3)), jnp.ones((1, 4, 4, 3)))
    with pytest.raises(ValueError, match="padding must be 'SAME', 'VALID'"):
        tr.conv_spike_trace(
            jnp.ones((3, 3, 3, 4)), jnp.ones((1, 4, 4, 3)), jnp.ones((1, 4, 4, 3)), padding="FULL"
        )
