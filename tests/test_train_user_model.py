"""``ottt_jax.train(model=...)`` checks which rule each kernel of a user's model follows."""

import flax.linen as nn
import jax
import numpy as np
import pytest

import ottt_jax
from ottt_jax import layers
from ottt_jax.neuron import LIF

SMALL = ["optim.epochs=1", "data.batch_size=8", "max_train_steps=1", "progress=false"]


def _data():
    y = np.arange(24) % 2
    x = np.random.default_rng(0).uniform(size=(24, 6, 6, 1)).astype(np.float32) * 3
    return x[:16], y[:16], x[16:], y[16:]


class _Net(nn.Module):
    """A first layer on the image, then a readout fed by spikes (plain, traced, or recurrent)."""

    readout: str = "traced"

    @nn.compact
    def __call__(self, state, x):
        s, n = LIF()(state["n"], layers.Conv(4)(x))
        flat, tr = s.reshape(s.shape[0], -1), n.trace.reshape(s.shape[0], -1)
        if self.readout == "plain":  # knows nothing of the rule: SLTT's gradient under OTTT
            out = nn.Dense(2)(flat)
        elif self.readout == "through_time":  # carried spikes with their gradient kept
            out = layers.traced(nn.Dense(2))(flat, tr) + nn.Dense(2)(state["s"])
        else:
            out = layers.traced(nn.Dense(2))(flat, tr)
        return out, {"n": n, "s": flat}

    def init_state(self, batch, input_shape, **_):
        h, w, _ = input_shape
        return {"n": LIF().init_state((batch, h, w, 4)), "s": jax.numpy.zeros((batch, h * w * 4))}


def test_a_traced_readout_trains_without_a_warning(tmp_path, capsys):
    ottt_jax.train("digits", SMALL, workdir=str(tmp_path), model=_Net(), data=_data())
    out = capsys.readouterr().out
    assert "check_rule (ottt_a): Conv_0/kernel: instantaneous, Traced_0/" in out
    assert "kernel: trace" in out


def test_a_plain_flax_readout_fed_by_spikes_is_warned_about(tmp_path):
    with pytest.warns(UserWarning, match=r"2 kernels .* instantaneous input under 'ottt_a'.*"):
        ottt_jax.train(
            "digits", SMALL, workdir=str(tmp_path), model=_Net(readout="plain"), data=_data()
        )


def test_a_gradient_through_time_under_ottt_is_refused_naming_the_kernel(tmp_path):
    with pytest.raises(ValueError, match=r"forbids: Conv_0/kernel \(through time\)"):
        ottt_jax.train(
            "digits", SMALL, workdir=str(tmp_path), model=_Net(readout="through_time"), data=_data()
        )
