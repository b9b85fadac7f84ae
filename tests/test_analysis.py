"""Proof tests of the spike-representation analysis (Sec. 4.2): rates, sr_map, (∇L_sr)_sr.

* ``weighted_rate`` against the trace recursion and the explicit weighted sum;
* ``sr_map`` / ``clamp``: exact value, derivative ``1[0 < z < 1]``;
* ``(∇L_sr)_sr`` of a tiny SpikingVGG ``(4, 'M', 8)`` on 4×4 inputs, derived by hand in float64
  NumPy (own LIF simulation, im2col convs, sWS forward and backward, clamp derivative at the
  actual rates) and compared with ``vgg_sr_grad``;
* the implicit solver against ``numpy.linalg.solve`` of ``(I − Jᵀ) v = g`` on a tiny dense
  feedback net (J by hand) and on a tiny VGG-F (J by ``jax.jacrev``);
* VGG-F's feedback in rates: the weighted average input of layer 1 observed in the SNN equals
  ``conv1(x) + κ_T · fb_conv(up(a_F[T−1]))``;
* ``descent_report`` on known vectors; ``compare_gradients`` at T = 1 (readout grads coincide).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ottt_jax import analysis as A
from ottt_jax.losses import instantaneous_loss
from ottt_jax.models import SpikingVGG, make_step

LAM, VTH, SC, BETA = 0.5, 1.0, 2.74, 0.05
B, HW, K, T = 2, 4, 3, 4
CFG = (4, "M", 8)
LABELS = np.array([1, 2])


def _loss(o):
    return instantaneous_loss(o, jnp.asarray(LABELS), beta=BETA, num_steps=1)


@functools.lru_cache
def jit_sr_grad(feedback, num_steps, **kw):
    """``vgg_sr_grad`` of the small VGG, jitted once per configuration (compiling beats eager)."""
    model = vgg(feedback)
    return jax.jit(
        lambda p, x, y: A.vgg_sr_grad(model, p, x, y, num_steps=num_steps, beta=BETA, **kw)
    )


def rkey(seed):
    return jax.random.key(seed, impl="rbg")


def vgg(feedback=False):
    return SpikingVGG(cfg=CFG, num_classes=K, feedback=feedback)


def image():
    return np.random.default_rng(0).uniform(0.0, 1.0, (B, HW, HW, 1)).astype(np.float32)


@functools.lru_cache
def vgg_params(feedback=False):
    """Init, then perturb gains and biases (and a small feedback conv): every parameter matters."""
    model = vgg(feedback)
    st = model.init_state(B, (HW, HW, 1), train=False)
    p = model.init(rkey(1), st, jnp.zeros((B, HW, HW, 1)))["params"]
    rng = np.random.default_rng(7)
    out = {}
    for name, layer in p.items():
        layer = {k: np.asarray(v, np.float32) for k, v in layer.items()}
        if "gain" in layer:  # first conv x2.5, second x1.5: both layers fire, about half linear
            base = 2.5 if name in ("features_0", "conv1") else 1.5
            gain = base * (1.0 + 0.3 * rng.standard_normal(layer["gain"].shape))
            layer["gain"] = gain.astype(np.float32)
        if name == "classifier_0":
            layer["kernel"] = (0.5 * rng.standard_normal(layer["kernel"].shape)).astype(np.float32)
        if name == "fb_conv":
            layer["kernel"] = (0.03 * rng.standard_normal(layer["kernel"].shape)).astype(np.float32)
        shift = 0.3 if "gain" in layer else 0.0
        layer["bias"] = (shift + 0.2 * rng.standard_normal(layer["bias"].shape)).astype(np.float32)
        out[name] = layer
    return jax.tree.map(jnp.asarray, out)


# ---------------------------------------------------------------------------------------------
# Rates, clamp, sr_map
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [0.5, 1.0])
def test_weighted_rate_matches_trace_recursion(lam):
    rng = np.random.default_rng(3)
    steps = 6
    s = (rng.uniform(size=(steps, 3, 5)) < 0.4).astype(np.float32)
    tr = np.zeros((3, 5), np.float32)
    for t in range(steps):
        tr = lam * tr + s[t]
        rate = A.weighted_rate(jnp.asarray(tr), t + 1, lam)
        w = lam ** np.arange(t, -1, -1.0)  # λ^{T−τ}, τ = 1..T
        expect = np.tensordot(w, s[: t + 1], axes=1) / w.sum()
        np.testing.assert_allclose(np.asarray(rate), expect, rtol=1e-6, atol=1e-7)
        assert A.rate_normalizer(t + 1, lam) == pytest.approx(w.sum(), rel=1e-12)
    assert np.all((np.asarray(rate) >= 0) & (np.asarray(rate) <= 1))
    assert A.rate_normalizer(0, lam) == 0.0
    assert A.feedback_input_scale(1, lam) == 0.0
    expect_kappa = sum(lam**k for k in range(3)) / sum(lam**k for k in range(4))
    assert A.feedback_input_scale(4, lam) == pytest.approx(expect_kappa, rel=1e-12)


def test_rate_arguments_are_validated():
    with pytest.raises(ValueError, match="num_steps"):
        A.weighted_rate(jnp.ones(3), 0, 0.5)
    with pytest.raises(ValueError, match="decay"):
        A.weighted_rate(jnp.ones(3), 2, 1.5)
    with pytest.raises(ValueError, match="same shape"):
        A.sr_map(jnp.ones(3), jnp.ones(4))
    with pytest.raises(ValueError, match="num_iters"):
        A.implicit_sr_grad(lambda p, a: a, lambda p, a: a, jnp.sum, {}, jnp.ones(2), num_iters=-1)
    with pytest.raises(ValueError, match="solver"):
        A.implicit_sr_grad(lambda p, a: a, lambda p, a: a, jnp.sum, {}, jnp.ones(2), solver="cg")
    with pytest.raises(ValueError, match="feedback=False"):
        A.vgg_rate_forward(vgg(True), {}, {"lif01": 0, "lif02": 0}, jnp.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="rates must be a dict"):
        A.vgg_rate_forward(vgg(), {}, {"lif01": 0}, jnp.zeros((1, 4, 4, 1)))


def test_sr_map_value_and_derivative():
    z = jnp.array([-0.5, 0.0, 0.25, 0.75, 1.0, 1.5], jnp.float32)
    a = jnp.array([0.1, 0.7, 0.3, 0.9, 1.0, 0.0], jnp.float32)
    w = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], jnp.float32)
    out = A.sr_map(z, a)
    chex.assert_trees_all_equal(out, a)  # exact value, no a + σ − σ rounding
    gz, ga = jax.grad(lambda z, a: jnp.sum(w * A.sr_map(z, a)), argnums=(0, 1))(z, a)
    mask = np.array([0, 0, 1, 1, 0, 0], np.float32)  # 1[0 < z < 1], 0 at the kinks
    np.testing.assert_array_equal(np.asarray(gz), np.asarray(w) * mask)
    np.testing.assert_array_equal(np.asarray(ga), np.zeros(6))
    _, jz = jax.jvp(lambda z: A.sr_map(z, a), (z,), (w,))
    np.testing.assert_array_equal(np.asarray(jz), np.asarray(w) * mask)
    # The clamp itself: value clip(z, 0, 1), derivative the same mask.
    np.testing.assert_array_equal(np.asarray(A.clamp(z)), np.clip(np.asarray(z), 0, 1))
    gc = jax.grad(lambda z: jnp.sum(w * A.clamp(z)))(z)
    np.testing.assert_array_equal(np.asarray(gc), np.asarray(w) * mask)
    np.testing.assert_array_equal(np.asarray(A.clamp_grad(z)), mask)


# ---------------------------------------------------------------------------------------------
# (∇L_sr)_sr of a feedforward SpikingVGG, by hand
# ---------------------------------------------------------------------------------------------


def np_ws(k, g):
    n = k.shape[0] * k.shape[1] * k.shape[2]
    c = k - k.mean(axis=(0, 1, 2), keepdims=True)
    r = 1.0 / np.sqrt(k.var(axis=(0, 1, 2), ddof=1, keepdims=True) * n + 1e-4)
    return g * c * r, (c, r, n)


def np_ws_back(g, aux, dw_hat):
    """∂L/∂k and ∂L/∂gain of ŵ = g·(k − μ)·(n·var + ε)^{-1/2} given ∂L/∂ŵ, by hand."""
    c, r, n = aux
    gc = np.sum(dw_hat * c, axis=(0, 1, 2), keepdims=True)
    dk = g * r * (dw_hat - dw_hat.mean(axis=(0, 1, 2), keepdims=True))
    dk -= g * r**3 * n / (n - 1) * c * gc
    return dk, (gc * r).reshape(-1)


def im2col(x):
    h, w = x.shape[1:3]
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = [xp[:, dy : dy + h, dx : dx + w, :] for dy in range(3) for dx in range(3)]
    return np.concatenate(cols, axis=-1)  # [B, H, W, 9C], (dy, dx, c) order = HWIO rows


def col2im(dcols, c):
    b, h, w, _ = dcols.shape
    dxp = np.zeros((b, h + 2, w + 2, c))
    d = dcols.reshape(b, h, w, 9, c)
    for i, (dy, dx) in enumerate((dy, dx) for dy in range(3) for dx in range(3)):
        dxp[:, dy : dy + h, dx : dx + w, :] += d[:, :, :, i, :]
    return dxp[:, 1:-1, 1:-1, :]


def conv(x, w):
    return im2col(x) @ w.reshape(-1, w.shape[-1])


def pool(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def unpool(g):
    return np.repeat(np.repeat(g, 2, 1), 2, 2) / 4.0


def np_loss_grad(o, y):
    onehot = np.eye(K)[y]
    p = np.exp(o - o.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (1 - BETA) * (p - onehot) / B + BETA * 2 * (o - onehot) / (B * K)


def test_vgg_readout_applies_the_state_masks_and_checks_the_state():
    model = SpikingVGG(cfg=CFG, num_classes=K, neuron_dropout=0.5, fc_dropout=0.5)
    params, st = vgg_params(False), model.init_state(B, (HW, HW, 1), key=rkey(3))
    rng = np.random.default_rng(3)
    rates = {n: rng.uniform(size=(B, *s)).astype(np.float32) for n, s in (
        ("lif01", (HW, HW, 4)), ("lif02", (HW // 2, HW // 2, 8)))}  # fmt: skip
    # by hand: o = W_fc · (mean_hw(2.74 · m · a^L) · m_fc) + b (no pool after the last conv)
    h = SC * rates["lif02"] * np.asarray(st.neuron_mask["lif02"])
    z = h.mean(axis=(1, 2)) * np.asarray(st.fc_mask)
    expect = z @ np.asarray(params["classifier_0"]["kernel"]) + params["classifier_0"]["bias"]
    got = A.vgg_readout(model, params, rates, state=st)
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)
    assert not np.allclose(A.vgg_readout(model, params, rates), expect, rtol=1e-3)
    with pytest.raises(ValueError, match="VGGState from the model's init_state, got dict"):
        A.vgg_readout(model, params, rates, state={"fc_mask": st.fc_mask})
    with pytest.raises(ValueError, match="VGGState from the model's init_state, got dict"):
        A.vgg_rates(model, {"lif": st.neurons}, T)


def test_vgg_sr_grad_by_hand():
    model, params, x = vgg(), vgg_params(False), image()
    p = jax.tree.map(lambda v: np.asarray(v, np.float64), params)
    w1, aux1 = np_ws(p["features_0"]["kernel"], p["features_0"]["gain"])
    w2, aux2 = np_ws(p["features_4"]["kernel"], p["features_4"]["gain"])
    xd = x.astype(np.float64)
    # The SNN, simulated step by step: static input current of layer 1, LIF with soft reset.
    i1 = conv(xd, w1) + p["features_0"]["bias"]
    v1, tr1 = np.zeros_like(i1), np.zeros_like(i1)
    v2 = tr2 = np.zeros((B, 2, 2, 8))
    for _ in range(T):
        v1 = LAM * v1 + i1
        s1 = (v1 >= VTH).astype(np.float64)
        v1, tr1 = v1 - VTH * s1, LAM * tr1 + s1
        i2 = conv(pool(SC * s1), w2) + p["features_4"]["bias"]
        v2 = LAM * v2 + i2
        s2 = (v2 >= VTH).astype(np.float64)
        v2, tr2 = v2 - VTH * s2, LAM * tr2 + s2
    lam_t = sum(LAM**k for k in range(T))
    a1, a2 = tr1 / lam_t, tr2 / lam_t
    # Closed-form mappings evaluated at the actual rates, readout, loss gradient.
    z1 = i1 / VTH
    h1 = pool(SC * a1)
    z2 = (conv(h1, w2) + p["features_4"]["bias"]) / VTH
    feat = (SC * a2).mean(axis=(1, 2))
    o = feat @ p["classifier_0"]["kernel"] + p["classifier_0"]["bias"]
    do = np_loss_grad(o, LABELS)
    # Backward by the chain rule, clamp derivative 1[0 < z < 1] at the actual rates.
    g = {"classifier_0": {"kernel": feat.T @ do, "bias": do.sum(0)}}
    da2 = np.broadcast_to((do @ p["classifier_0"]["kernel"].T)[:, None, None, :], a2.shape)
    da2 = SC * da2 / 4.0
    dpre2 = da2 * ((z2 > 0) & (z2 < 1)) / VTH
    dw2 = (im2col(h1).reshape(-1, 36).T @ dpre2.reshape(-1, 8)).reshape(3, 3, 4, 8)
    dk2, dg2 = np_ws_back(p["features_4"]["gain"], aux2, dw2)
    g["features_4"] = {"kernel": dk2, "gain": dg2, "bias": dpre2.sum((0, 1, 2))}
    dh1 = col2im(dpre2 @ w2.reshape(36, 8).T, 4)
    da1 = SC * unpool(dh1)
    dpre1 = da1 * ((z1 > 0) & (z1 < 1)) / VTH
    dw1 = (im2col(xd).reshape(-1, 9).T @ dpre1.reshape(-1, 4)).reshape(3, 3, 1, 4)
    dk1, dg1 = np_ws_back(p["features_0"]["gain"], aux1, dw1)
    g["features_0"] = {"kernel": dk1, "gain": dg1, "bias": dpre1.sum((0, 1, 2))}
    # The test is meaningful only with neurons on both sides of the clamp's kinks.
    for z in (z1, z2):
        inside = np.mean((z > 0) & (z < 1))
        assert 0.2 < inside < 0.8, inside

    res = jit_sr_grad(False, T)(params, x, LABELS)
    np.testing.assert_allclose(np.asarray(res.rates["lif01"]), a1, atol=1e-6)
    np.testing.assert_allclose(np.asarray(res.rates["lif02"]), a2, atol=1e-6)
    onehot = np.eye(K)[LABELS]
    logp = o - o.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    loss = (1 - BETA) * -(logp * onehot).sum(-1).mean() + BETA * np.mean((o - onehot) ** 2)
    assert float(res.loss) == pytest.approx(loss, rel=1e-5)
    chex.assert_trees_all_close(jax.tree.map(np.asarray, res.grads), g, rtol=2e-4, atol=1e-6)
    assert float(res.residual) == 0.0 and bool(res.converged)
    # The closed-form pre-activations are those of the hand derivation.
    z = A.vgg_preactivations(model, params, res.rates, x, num_steps=T)
    np.testing.assert_allclose(np.asarray(z["lif01"]), z1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(z["lif02"]), z2, rtol=1e-5, atol=1e-5)
    # The equilibrium (implicit) route on this acyclic map is exact after L − 1 = 1 iteration.
    imp = jax.jit(
        lambda q, r: A.implicit_sr_grad(
            lambda q, a: A.vgg_rate_map(model, q, a, x, num_steps=T, anchor=r),
            lambda q, a: A.vgg_readout(model, q, a),
            _loss,
            q,
            r,
            num_iters=1,
        )
    )(params, res.rates)
    chex.assert_trees_all_close(imp.grads, res.grads, rtol=1e-5, atol=1e-7)
    assert float(imp.residual) == 0.0


# ---------------------------------------------------------------------------------------------
# Implicit differentiation (feedback)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("u_scale", [0.12, 0.5])
def test_implicit_solver_matches_linear_solve_dense_feedback(u_scale):
    """a1 = σ((x W1 + 2.74 a2 U + b1)/V), a2 = σ((2.74 a1 W2 + b2)/V), o = 2.74 a2 W3 + b3.

    ``u_scale`` 0.12: a contracting loop (spectral radius < 1), both solvers converge;
    0.5: radius > 1, the fixed-point iteration diverges (and says so), GMRES still solves.
    """
    rng = np.random.default_rng(11)
    n0, n1, n2 = 3, 5, 4
    p = {
        "w1": rng.standard_normal((n0, n1)),
        "u": u_scale * rng.standard_normal((n2, n1)),
        "b1": 0.3 + 0.2 * rng.standard_normal(n1),
        "w2": 0.25 * rng.standard_normal((n1, n2)),
        "b2": 0.4 + 0.2 * rng.standard_normal(n2),
        "w3": rng.standard_normal((n2, K)),
        "b3": rng.standard_normal(K),
    }
    x = rng.uniform(size=(B, n0))
    r = {"a1": rng.uniform(size=(B, n1)), "a2": rng.uniform(size=(B, n2))}  # "actual" rates
    pj = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), p)
    rj = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), r)
    xj = jnp.asarray(x, jnp.float32)

    def fixed_point(q, a):
        z1 = (xj @ q["w1"] + SC * a["a2"] @ q["u"] + q["b1"]) / VTH
        z2 = (SC * a["a1"] @ q["w2"] + q["b2"]) / VTH
        return {"a1": A.sr_map(z1, rj["a1"]), "a2": A.sr_map(z2, rj["a2"])}

    def readout(q, a):
        return SC * a["a2"] @ q["w3"] + q["b3"]

    # By hand: J = ∂F/∂a at the actual rates, per sample (F does not mix samples).
    z1 = (x @ p["w1"] + SC * r["a2"] @ p["u"] + p["b1"]) / VTH
    z2 = (SC * r["a1"] @ p["w2"] + p["b2"]) / VTH
    d1, d2 = ((z1 > 0) & (z1 < 1)).astype(float), ((z2 > 0) & (z2 < 1)).astype(float)
    assert 0 < d1.mean() < 1 and 0 < d2.mean() < 1
    o = readout(p, r)
    do = np_loss_grad(o, LABELS)
    v1, v2 = np.zeros((B, n1)), np.zeros((B, n2))
    radius = 0.0
    for b in range(B):
        jac = np.zeros((n1 + n2, n1 + n2))
        jac[:n1, n1:] = (d1[b][:, None] * SC * p["u"].T) / VTH  # ∂a1/∂a2
        jac[n1:, :n1] = (d2[b][:, None] * SC * p["w2"].T) / VTH  # ∂a2/∂a1
        radius = max(radius, np.max(np.abs(np.linalg.eigvals(jac))))
        g = np.concatenate([np.zeros(n1), SC * do[b] @ p["w3"].T])
        v = np.linalg.solve(np.eye(n1 + n2) - jac.T, g)
        v1[b], v2[b] = v[:n1], v[n1:]
    e1, e2 = d1 * v1 / VTH, d2 * v2 / VTH  # cotangents of the pre-activations
    expect = {
        "w1": x.T @ e1,
        "u": (SC * r["a2"]).T @ e1,
        "b1": e1.sum(0),
        "w2": (SC * r["a1"]).T @ e2,
        "b2": e2.sum(0),
        "w3": (SC * r["a2"]).T @ do,
        "b3": do.sum(0),
    }

    def check(res):
        chex.assert_trees_all_close(
            jax.tree.map(np.asarray, res.grads), expect, rtol=1e-4, atol=1e-6
        )
        np.testing.assert_allclose(np.asarray(res.adjoint["a1"]), v1, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(np.asarray(res.adjoint["a2"]), v2, rtol=1e-4, atol=1e-6)
        assert float(res.residual) < 1e-5 and bool(res.converged)

    def solve(**kw):
        return jax.jit(lambda q: A.implicit_sr_grad(fixed_point, readout, _loss, q, rj, **kw))(pj)

    fp = solve(num_iters=60)
    for per_example in (False, True):
        check(solve(solver="gmres", per_example=per_example))
    if u_scale < 0.2:
        assert radius < 0.9
        check(fp)
        # Too few iterations: the residual says so.
        short = solve(num_iters=1)
        assert float(short.residual) > 1e-3 and not bool(short.converged)
    else:
        assert radius > 1.1
        assert not bool(fp.converged) and float(fp.residual) > 0.1


def test_vggf_implicit_matches_dense_solve():
    model, params, x = vgg(True), vgg_params(True), image()
    res = jit_sr_grad(True, T, num_iters=60)(params, x, LABELS)
    rates = res.rates
    flat, unravel = ravel_pytree(rates)

    def fmap(q, f):
        out = A.vgg_rate_map(model, q, unravel(f), x, num_steps=T, anchor=rates)
        return ravel_pytree(out)[0]

    jac = np.asarray(jax.jit(jax.jacrev(fmap, argnums=1))(params, flat), np.float64)
    assert 0.1 < np.max(np.abs(np.linalg.eigvals(jac))) < 0.9  # a real, contracting loop
    g_theta, g_a = jax.grad(
        lambda q, f: _loss(A.vgg_readout(model, q, unravel(f))), argnums=(0, 1)
    )(params, flat)
    v = np.linalg.solve(np.eye(flat.size) - jac.T, np.asarray(g_a, np.float64))
    _, vjp = jax.vjp(lambda q: fmap(q, flat), params)
    expect = jax.tree.map(jnp.add, g_theta, vjp(jnp.asarray(v, jnp.float32))[0])
    chex.assert_trees_all_close(res.grads, expect, rtol=1e-4, atol=1e-6)
    assert float(res.residual) < 1e-5 and bool(res.converged)
    assert float(jnp.sum(jnp.abs(res.grads["fb_conv"]["kernel"]))) > 0
    # Per-example GMRES (what vgg_sr_grad uses for non-contracting loops) agrees.
    gm = jit_sr_grad(True, T, solver="gmres")(params, x, LABELS)
    chex.assert_trees_all_close(gm.grads, expect, rtol=1e-3, atol=1e-5)
    assert float(gm.residual) < 1e-4


def test_vggf_feedback_in_rates_is_exact_weighted_average_input():
    """ū¹[T] observed in the SNN = conv1(x) + κ_T·fb_conv(up(a_F[T−1])) (module docstring)."""
    model, params, x = vgg(True), vgg_params(True), image()
    step = jax.jit(make_step(model))
    st = model.init_state(B, (HW, HW, 1), train=False)
    states = [st]
    for _ in range(T):
        _, st = step(params, st, jnp.asarray(x))
        states.append(st)
    # Layer 1's input current from its membrane: u[t] = v[t] + V_th·s[t] − λ·v[t−1].
    ubar = 0.0
    for t in range(1, T + 1):
        prev, cur = states[t - 1].neurons["lif01"], states[t].neurons["lif01"]
        s = np.asarray(cur.trace) - LAM * np.asarray(prev.trace)
        u = np.asarray(cur.v) + VTH * s - LAM * np.asarray(prev.v)
        ubar = ubar + LAM ** (T - t) * u
    ubar /= A.rate_normalizer(T, LAM)
    # The closed form: rates of the SNN, with the last block's rate over the first T − 1 steps.
    rates = A.vgg_rates(model, states[T], T)
    rates["lif02"] = A.weighted_rate(states[T - 1].neurons["lif02"].trace, T - 1, LAM)
    z = A.vgg_preactivations(model, params, rates, x, num_steps=T)
    np.testing.assert_allclose(np.asarray(z["lif01"]) * VTH, ubar, rtol=1e-5, atol=1e-5)
    assert np.abs(ubar).max() > 0.1


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------


def test_descent_report_known_vectors():
    ot = {"l1": {"kernel": jnp.array([3.0, 4.0]), "bias": jnp.array([1.0])}, "l2": jnp.ones(2)}
    sr = {"l1": {"kernel": jnp.array([4.0, 3.0]), "bias": jnp.array([-1.0])}, "l2": jnp.zeros(2)}
    bp = {"l1": {"kernel": jnp.array([-3.0, -4.0]), "bias": jnp.array([2.0])}, "l2": jnp.ones(2)}
    rep = A.descent_report(ot, sr, bp)
    assert set(rep["leaves"]) == {"l1/kernel", "l1/bias", "l2"}
    assert set(rep["layers"]) == {"l1", "l2"}
    k = rep["leaves"]["l1/kernel"]
    assert float(k["inner_ottt_sr"]) == pytest.approx(24.0)
    assert float(k["cos_ottt_sr"]) == pytest.approx(24.0 / 25.0)
    assert float(k["cos_ottt_bptt"]) == pytest.approx(-1.0)
    assert float(k["cos_sr_bptt"]) == pytest.approx(-24.0 / 25.0)
    assert float(rep["leaves"]["l1/bias"]["cos_ottt_sr"]) == pytest.approx(-1.0)
    assert float(rep["leaves"]["l2"]["cos_ottt_sr"]) == 0.0  # zero norm -> cosine 0
    lay = rep["layers"]["l1"]  # [3, 4, 1] vs [4, 3, -1]
    assert float(lay["inner_ottt_sr"]) == pytest.approx(23.0)
    assert float(lay["cos_ottt_sr"]) == pytest.approx(23.0 / 26.0)
    tot = rep["total"]  # [3, 4, 1, 1, 1] vs [4, 3, -1, 0, 0]; bptt [-3, -4, 2, 1, 1]
    assert float(tot["norm_ottt"]) == pytest.approx(np.sqrt(28.0))
    assert float(tot["cos_ottt_sr"]) == pytest.approx(23.0 / np.sqrt(28.0 * 26.0))
    assert float(tot["inner_ottt_bptt"]) == pytest.approx(-9 - 16 + 2 + 1 + 1)
    assert "cos_ottt_bptt" not in A.descent_report(ot, sr)["total"]
    with pytest.raises(ValueError, match="sr_grads"):
        A.descent_report(ot, {"l1": sr["l1"]})
    with pytest.raises(ValueError, match="shape"):
        A.descent_report(ot, dict(sr, l2=jnp.zeros(3)))


def test_compare_gradients_single_step():
    """At T = 1: OTTT = BPTT, and the readout sees rate = spikes, so its SR gradient is OTTT's."""
    model, params, x = vgg(), vgg_params(False), image()
    out = A.compare_gradients(model, params, x, LABELS, num_steps=1, beta=BETA)
    chex.assert_trees_all_close(out["ottt"], out["bptt"], rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(
        out["sr"]["classifier_0"], out["ottt"]["classifier_0"], rtol=1e-5, atol=1e-7
    )
    rep = out["report"]
    assert float(rep["layers"]["classifier_0"]["cos_ottt_sr"]) == pytest.approx(1.0, abs=1e-6)
    assert float(rep["total"]["cos_ottt_bptt"]) == pytest.approx(1.0, abs=1e-6)
    assert float(out["loss_sr"]) == pytest.approx(float(out["loss_ottt"]), rel=1e-6)
    # The report's all-weights cosine is that of the flattened gradients.
    cos = float(rep["total"]["cos_ottt_sr"])
    a, b = (ravel_pytree(out[k])[0] for k in ("ottt", "sr"))
    assert cos == pytest.approx(float(a @ b / jnp.linalg.norm(a) / jnp.linalg.norm(b)), rel=1e-5)
