"""Surrogate spikes: exact Heaviside forward, derivative equal to the primitive's derivative."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ottt_jax import surrogate as sg

ALL = [sg.Sigmoid(4.0), sg.Rectangular(1.0), sg.Clamp(1.0), sg.Atan(2.0)]
# points away from the kinks of the piecewise primitives (|x| = a/2, |x| = V_th)
XS = jnp.array([-2.3, -1.2, -0.7, -0.3, -0.1, 0.05, 0.2, 0.45, 0.8, 1.3, 2.1])


@pytest.mark.parametrize("s", ALL, ids=lambda s: s.name)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_forward_is_exact_heaviside_including_threshold(s, dtype):
    x = jnp.array([-1.0, -1e-3, 0.0, 1e-3, 1.0], dtype)
    y = s(x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(np.asarray(y, np.float32), [0, 0, 1, 1, 1])


@pytest.mark.parametrize("s", ALL, ids=lambda s: s.name)
def test_grad_is_derivative_and_equals_grad_of_primitive(s):
    g = jax.vmap(jax.grad(lambda x: s(x)))(XS)
    g_prim = jax.vmap(jax.grad(s.primitive))(XS)
    np.testing.assert_allclose(g, s.derivative(XS), rtol=1e-6)
    np.testing.assert_allclose(g, g_prim, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("s", ALL, ids=lambda s: s.name)
def test_derivative_matches_finite_differences_of_primitive(s):
    x = np.asarray(XS, np.float64)
    h = 1e-5
    fd = np.asarray(s.primitive(jnp.asarray(x + h))) - np.asarray(s.primitive(jnp.asarray(x - h)))
    fd = fd / (2 * h)
    np.testing.assert_allclose(s.derivative(XS), fd, rtol=2e-2, atol=2e-3)


def test_closed_forms():
    x = XS
    sig = 1 / (1 + np.exp(-4 * np.asarray(x)))
    np.testing.assert_allclose(sg.Sigmoid(4.0).derivative(x), 4 * sig * (1 - sig), rtol=1e-5)
    np.testing.assert_allclose(
        sg.Rectangular(0.5).derivative(x), (np.abs(x) < 0.25) / 0.5, rtol=1e-6
    )
    np.testing.assert_allclose(sg.Clamp(1.0).derivative(x), np.abs(x) < 1.0)
    np.testing.assert_allclose(
        sg.Atan(2.0).derivative(x), 1.0 / (1 + (np.pi * np.asarray(x)) ** 2), rtol=1e-5
    )


def test_jit_vmap_grad_and_bfloat16():
    s = sg.Sigmoid(4.0)
    x = jnp.linspace(-2, 2, 12, dtype=jnp.bfloat16).reshape(3, 4)
    f = jax.jit(jax.vmap(jax.grad(lambda r: s(r).sum())))
    g = f(x)
    chex.assert_shape(g, (3, 4))
    assert g.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        np.asarray(g, np.float32), np.asarray(s.derivative(x.astype(jnp.float32))), rtol=2e-2
    )


def test_surrogates_are_hashable_values_and_do_not_retrace():
    assert sg.Sigmoid(4.0) == sg.Sigmoid(4.0) and hash(sg.Sigmoid(4.0)) == hash(sg.Sigmoid(4.0))
    f = jax.jit(lambda s, x: s(x), static_argnums=0)
    x = jnp.ones(3)
    f(sg.Sigmoid(4.0), x)
    f(sg.Sigmoid(4.0), x)
    assert f._cache_size() == 1


def test_custom_factory():
    deriv = lambda x: jnp.exp(-(x**2))
    s = sg.custom(deriv, name="gauss")
    np.testing.assert_array_equal(s(jnp.array([-0.5, 0.0, 0.5])), [0, 1, 1])
    np.testing.assert_allclose(jax.vmap(jax.grad(s))(XS), np.exp(-(np.asarray(XS) ** 2)), rtol=1e-6)
    with pytest.raises(ValueError, match="without a primitive"):
        s.primitive(XS)
    with pytest.raises(ValueError, match="derivative must be callable"):
        sg.custom(3.0)


def test_get_surrogate_and_errors():
    assert sg.get_surrogate("sigmoid") == sg.Sigmoid(4.0)
    assert sg.get_surrogate("atan", alpha=3.0) == sg.Atan(3.0)
    s = sg.Clamp(2.0)
    assert sg.get_surrogate(s) is s
    with pytest.raises(
        ValueError,
        match=r"unknown surrogate 'relu'; registered .*sigmoid.*rectangular.*clamp.*atan",
    ):
        sg.get_surrogate("relu")
    with pytest.raises(ValueError, match="accepts parameters"):
        sg.get_surrogate("sigmoid", a=1.0)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        sg.Sigmoid(-1.0)
    with pytest.raises(ValueError, match="must be floating point"):
        sg.Sigmoid()(jnp.array([1, 2]))


@pytest.mark.parametrize(
    "cls, field",
    [(sg.Sigmoid, "alpha"), (sg.Rectangular, "a"), (sg.Clamp, "v_th"), (sg.Atan, "alpha")],
)
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "2"])
def test_builtin_surrogates_refuse_a_bad_parameter_by_name(cls, field, bad):
    with pytest.raises(
        ValueError, match=f"surrogate parameter {field} must be a finite number > 0"
    ):
        cls(bad)
    assert getattr(cls(0.5), field) == 0.5
