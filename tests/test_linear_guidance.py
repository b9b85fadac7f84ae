"""layers.Linear's degenerate case is an error, and its documented guidance holds: a hidden Linear
built like the convs (sWS, Kaiming fan-out) makes the next LIF fire on real inputs; the default
readout init N(0, 0.01²) does not."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ottt_jax import data, layers
from ottt_jax.neuron import LIF

T = 6


@pytest.fixture(scope="module")
def digits_pixels():
    """128 digits images flattened to ``[128, 64]`` pixels in [0, 1], as a spiking MLP sees them."""
    batch = next(iter(data.make_loader("digits", "train", batch_size=128, seed=0)))
    x = np.asarray(batch["image"]).reshape(128, -1)
    assert x.min() >= 0.0 and x.max() <= 1.0
    return jnp.asarray(x)


def _firing_rate(linear: layers.Linear, x, seed: int) -> float:
    """Mean spikes per neuron and step of a LIF fed ``linear(x)`` for T steps (direct input)."""
    params = linear.init(jax.random.PRNGKey(seed), x)
    current = linear.apply(params, x)
    lif = LIF()
    state = lif.init_state(current.shape)
    total = 0.0
    for _ in range(T):
        spikes, state = lif(state, current)
        total += float(jnp.mean(spikes))
    return total / T


HIDDEN = dict(weight_standardization=True, kernel_init=layers.kaiming_normal_fan_out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_hidden_linear_as_documented_fires_the_next_lif_and_the_readout_init_does_not(
    digits_pixels, seed
):
    assert _firing_rate(layers.Linear(128, **HIDDEN), digits_pixels, seed) > 0.01
    # sWS alone rescues even the tiny init: it removes the weights' scale (Σ_i W_ij² ≈ 1).
    sws_only = layers.Linear(128, weight_standardization=True)
    assert _firing_rate(sws_only, digits_pixels, seed) > 0.01
    assert _firing_rate(layers.Linear(128), digits_pixels, seed) == 0.0


def test_sws_with_one_input_feature_is_a_clear_error():
    x = jnp.ones((2, 1))
    with pytest.raises(
        ValueError, match=r"weight_standardization=True needs a fan-in of at least 2"
    ):
        layers.Linear(4, weight_standardization=True).init(jax.random.PRNGKey(0), x)
    params = layers.Linear(4).init(jax.random.PRNGKey(0), x)  # without sWS one input is fine
    assert np.isfinite(np.asarray(layers.Linear(4).apply(params, x))).all()
    with pytest.raises(ValueError, match=r"fan-in 1"):  # the same for a 1×1 conv on one channel
        layers.Conv(4, kernel_size=1, padding=0).init(jax.random.PRNGKey(0), jnp.ones((1, 3, 3, 1)))
    two = layers.Linear(4, weight_standardization=True)
    out = two.apply(two.init(jax.random.PRNGKey(0), jnp.ones((2, 2))), jnp.ones((2, 2)))
    assert np.isfinite(np.asarray(out)).all()  # fan-in 2 is the smallest that works
