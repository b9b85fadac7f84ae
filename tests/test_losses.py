"""The paper's instantaneous loss against a numpy hand computation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ottt_jax.losses import instantaneous_loss


def _np_loss(logits, labels, beta, t):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    ce = -logp[np.arange(len(labels)), labels].mean()
    onehot = np.eye(logits.shape[1])[labels]
    mse = ((logits - onehot) ** 2).mean()
    return ((1 - beta) * ce + beta * mse) / t


def test_matches_hand_formula_and_gradient():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    labels = np.array([0, 3, 1, 1, 2])
    for beta in (0.0, 0.05, 1.0):
        got = instantaneous_loss(logits, labels, beta=beta, num_steps=6)
        np.testing.assert_allclose(got, _np_loss(logits, labels, beta, 6), rtol=1e-5)
    # gradient: ((1-β)(softmax - onehot)/B + β·2(out - onehot)/(B·K)) / T
    g = jax.grad(lambda o: instantaneous_loss(o, labels, beta=0.05, num_steps=6))(logits)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    onehot = np.eye(4)[labels]
    want = (0.95 * (p - onehot) / 5 + 0.05 * 2 * (logits - onehot) / 20) / 6
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)


def test_bfloat16_logits_are_computed_in_float32():
    logits = jnp.ones((2, 3), jnp.bfloat16)
    assert instantaneous_loss(logits, jnp.array([0, 1]), num_steps=1).dtype == jnp.float32


def test_errors():
    x = jnp.zeros((2, 3))
    loss = functools.partial(instantaneous_loss, num_steps=1)
    with pytest.raises(ValueError, match=r"labels must be \[batch\]"):
        loss(x, jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match="integer class indices"):
        loss(x, jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"logits must be \[batch, classes\]"):
        loss(jnp.zeros(3), jnp.array([0]))
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\]"):
        loss(x, jnp.array([0, 1]), beta=1.5)
    with pytest.raises(ValueError, match="num_steps must be a positive int"):
        instantaneous_loss(x, jnp.array([0, 1]), num_steps=0)


def test_num_steps_is_required_and_takes_numpy_and_jax_integers():
    x, y = jnp.ones((2, 3)), jnp.array([0, 1])
    with pytest.raises(TypeError, match="num_steps"):
        instantaneous_loss(x, y)  # a forgotten T would scale the loss by T
    want = instantaneous_loss(x, y, num_steps=4)
    for t in (np.int64(4), np.int32(4), jnp.asarray(4)):
        assert float(instantaneous_loss(x, y, num_steps=t)) == float(want)
    with pytest.raises(ValueError, match="num_steps must be a positive int"):
        instantaneous_loss(x, y, num_steps=4.0)


@pytest.mark.parametrize("bad", [3, -1])
def test_labels_outside_the_classes_are_refused(bad):
    x, y = jnp.ones((2, 3)), jnp.array([0, bad])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes\) = \[0, 3\)"):
        instantaneous_loss(x, y, num_steps=2)
    # under jit the labels are traced: the loss is NaN, never a silent finite value
    got = jax.jit(lambda y: instantaneous_loss(x, y, num_steps=2))(y)
    assert np.isnan(float(got))
    ok = jax.jit(lambda y: instantaneous_loss(x, y, num_steps=2))(jnp.array([0, 2]))
    assert np.isfinite(float(ok))
