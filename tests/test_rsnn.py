"""The recurrent spiking network: recurrent-weight gradients against hand-written rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ottt_jax import models, rules
from ottt_jax.models.rsnn import RSNNState, SpikingRSNN
from ottt_jax.neuron import LIF
from ottt_jax.surrogate import get_surrogate

T, B, D, N, K = 5, 2, 3, 4, 2
LAM, VTH = 0.5, 1.0


def _setup(rule_name):
    rule = rules.get_rule(rule_name)
    model = SpikingRSNN(num_classes=K, hidden=(N,), weight_standardization=False,
                        neuron=LIF(), mode=rule.mode, dtype=jnp.float64)  # fmt: skip
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0.0, 1.0, (T, B, 1, 1, D)))
    state = model.init_state(B, (1, 1, D), dtype=jnp.float64)
    params = model.init(jax.random.key(0), state, x[0])["params"]
    params = jax.tree.map(lambda p: jnp.asarray(rng.normal(0, 0.5, p.shape)), params)
    params["fc1"]["bias"] = params["fc1"]["bias"] + 0.4  # every neuron fires sometimes
    c = jnp.asarray(rng.normal(size=(B, K)))
    loss_fn = lambda out, targets: jnp.sum(out * targets)  # ∂L[t]/∂out[t] = c
    res = rule.grad(models.make_step(model), loss_fn, params, state, x, c, num_steps=None,
                    key=jax.random.key(0))  # fmt: skip
    p = jax.tree.map(np.asarray, params)
    return np.asarray(x).reshape(T, B, D), p, np.asarray(c), res


def _forward(x, p):
    """The RSNN by hand: currents I[t], pre-reset membranes u[t], spikes s[t], traces â[t]."""
    w, b, r = p["fc1"]["kernel"], p["fc1"]["bias"], p["rec1"]["kernel"]
    v, s, a = np.zeros((B, N)), np.zeros((B, N)), np.zeros((B, N))
    us, ss, traces = [], [], []
    for t in range(T):
        u = LAM * v + x[t] @ w + b + s @ r
        s = (u >= VTH).astype(np.float64)
        v = u - VTH * s
        a = LAM * a + s
        us.append(u), ss.append(s), traces.append(a)
    return np.array(us), np.array(ss), np.array(traces)


def _sg(u):
    return np.asarray(get_surrogate("sigmoid").derivative(jnp.asarray(u - VTH)))


def test_recurrent_gradient_ottt_a_is_the_presynaptic_trace_rule():
    """∇R = Σ_t â[t−1]ᵀ δ[t], δ[t] = (c W_oᵀ) ⊙ σ'(u[t] − V_th): the trace of the layer's own
    previous spikes, no gradient through time."""
    with jax.enable_x64(True):
        x, p, c, res = _setup("ottt_a")
        us, _, traces = _forward(x, p)
        w_o = p["readout"]["kernel"]
        want = np.zeros((N, N))
        for t in range(T):
            delta = (c @ w_o.T) * _sg(us[t])
            prev_trace = traces[t - 1] if t else np.zeros((B, N))
            want += prev_trace.T @ delta
        np.testing.assert_allclose(res.grads["rec1"]["kernel"], want, rtol=1e-10, atol=1e-12)
        assert (np.abs(want).sum(1) > 1e-3).sum() >= 2  # neurons spiked: not a vacuous check


def test_recurrent_gradient_bptt_is_backprop_through_time():
    """BPTT by hand: gs[t] = c W_oᵀ + dI[t+1] Rᵀ; du[t] = gs[t]·σ'(u[t]−V_th) + λ du[t+1]
    (detached reset); ∇R = Σ_t s[t−1]ᵀ du[t]."""
    with jax.enable_x64(True):
        x, p, c, res = _setup("bptt")
        us, ss, _ = _forward(x, p)
        w_o, r = p["readout"]["kernel"], p["rec1"]["kernel"]
        want = np.zeros((N, N))
        du_next = np.zeros((B, N))
        for t in reversed(range(T)):
            gs = c @ w_o.T + du_next @ r.T
            du = gs * _sg(us[t]) + LAM * du_next
            prev = ss[t - 1] if t else np.zeros((B, N))
            want += prev.T @ du
            du_next = du
        np.testing.assert_allclose(res.grads["rec1"]["kernel"], want, rtol=1e-10, atol=1e-12)
        # The recurrent path matters: without it the gradient differs.
        ottt = _setup("ottt_a")[3].grads["rec1"]["kernel"]
        assert np.abs(np.asarray(ottt) - want).max() > 1e-3


def test_state_and_bad_input():
    model = models.build_model("rsnn", num_classes=3, options={"hidden": (5, 4)})
    st = model.init_state(2, (1, 1, 7))
    assert isinstance(st, RSNNState) and model.neuron_names == ("lif01", "lif02")
    assert model.layer_sizes((1, 1, 7)) == {"lif01": (5, 9.0), "lif02": (4, 7.0)}
    with pytest.raises(ValueError, match="hidden width must be a positive int"):
        models.build_model("rsnn", num_classes=3, options={"hidden": (5, 0)})
    with pytest.raises(ValueError, match="RSNNState"):
        model.init(jax.random.key(0), {"lif01": None}, jnp.ones((2, 7)))


@pytest.fixture
def synthetic_shd():
    """A tiny synthetic dataset of SHD's real frame shape (700 channels, 20 classes), T = 2."""
    from ottt_jax.data import catalog

    rng = np.random.default_rng(0)
    x = (rng.random((8, 2, 1, 1, 700)) < 0.05).astype(np.float32)
    y = np.arange(8) % 20
    catalog.numpy_dataset("synthetic_shd", (x, y), (x[:4], y[:4]), num_classes=20)
    yield "synthetic_shd"
    catalog.unregister_dataset("synthetic_shd")


@pytest.mark.parametrize("rule", ["ottt_a", "ottt_o", "bptt", "sltt", "sltt_k"])
def test_shd_rsnn_preset_trains_under_every_rule(synthetic_shd, rule, tmp_path):
    import ottt_jax

    r = ottt_jax.train(
        "shd_rsnn",
        ["progress=false", f"method={rule}", f"data.dataset={synthetic_shd}", "num_steps=2",
         "model.hidden=[8]", "data.batch_size=4", "data.eval_batch_size=4",
         "max_train_steps=2", "optim.epochs=1"],
        workdir=str(tmp_path),
    )  # fmt: skip
    assert r["steps"] == 2 and np.isfinite(r["train_loss"])
