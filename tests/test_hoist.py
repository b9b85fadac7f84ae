"""The sWS hoisted out of the time loop (``online.Hoist``, ``layers.split_standardized``).

``make_step`` of a package model carries ``step.hoist``; the grad rules then standardize every
kernel once per sequence, take each step's gradient w.r.t. the standardized kernels and apply
the sWS backward once, after the scan. By linearity of the VJP this is the same gradient as
differentiating through the sWS at every step; these tests compare the two on VGG (sWS convs, a
plain readout) and NF-ResNet (sWS convs, a scalar skip gain), for every rule that hoists.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ottt_jax import instantaneous_loss, online
from ottt_jax.layers import STANDARDIZED, Conv, split_standardized, standardize_weight
from ottt_jax.mode import BPTT, OTTT, SLTT
from ottt_jax.models import NFResNet, SpikingVGG, make_step

B, HW, T, K = 2, 8, 3, 4
LABELS = jnp.array([1, 3])


def _vgg(mode):
    return SpikingVGG(cfg=(8, "M", 16), num_classes=K, mode=mode)


def _setup(model):
    x = jax.random.normal(jax.random.PRNGKey(1), (B, HW, HW, 3)) * 1.5
    st = model.init_state(B, (HW, HW, 3), train=False)
    params = model.init(jax.random.PRNGKey(0), st, x)["params"]
    # move the gains off 1 so that a dropped gain gradient or gain factor shows
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: v * 1.3 if path[-1].key == "gain" else v, params
    )
    return params, st, x


def _plain(step):
    """The same step without its hoist: the sWS is differentiated at every step."""
    return lambda p, st, x: step(p, st, x)


def test_split_standardized_moves_exactly_the_sws_kernels():
    params, _, _ = _setup(_vgg(OTTT))
    v = split_standardized(params)
    assert set(v) == {"params", STANDARDIZED}
    for name in ("features_0", "features_4"):  # the two sWS convs
        assert set(v["params"][name]) == {"bias"}
        want = standardize_weight(params[name]["kernel"], params[name]["gain"])
        np.testing.assert_array_equal(v[STANDARDIZED][name]["kernel"], want)
    # the plain readout keeps its kernel and is not standardized
    assert set(v["params"]["classifier_0"]) == {"kernel", "bias"}
    assert "classifier_0" not in v[STANDARDIZED]


def test_forward_with_hoisted_kernels_is_bit_identical():
    model = _vgg(OTTT)
    params, st, x = _setup(model)
    a, _ = model.apply({"params": params}, st, x)
    b, _ = model.apply(split_standardized(params), st, x)
    np.testing.assert_array_equal(a, b)


def test_make_step_hoists_only_for_models_that_declare_it():
    step = make_step(_vgg(OTTT))
    assert isinstance(step.hoist, online.Hoist) and step.hoist.prepare is split_standardized

    class Plain(SpikingVGG):
        hoists_standardization = False

    assert make_step(Plain(cfg=(8,), num_classes=K)).hoist is None


@pytest.mark.parametrize(
    "fn, mode",
    [
        (online.ottt_grad, OTTT),
        (online.bptt_grad, BPTT),
        (functools.partial(online.sltt_k_grad, key=jax.random.PRNGKey(3), k=2), SLTT),
    ],
    ids=["ottt_a", "bptt", "sltt_k"],
)
def test_hoisted_gradient_equals_per_step_sws_gradient(fn, mode):
    model = _vgg(mode)
    params, st, x = _setup(model)
    step = make_step(model)
    loss_fn = functools.partial(instantaneous_loss, beta=0.05, num_steps=T)
    run = lambda s: fn(s, loss_fn, params, st, x, LABELS, num_steps=T)
    got, want = run(step), run(_plain(step))
    np.testing.assert_allclose(got.loss, want.loss, rtol=1e-6)
    flat_g = jax.tree_util.tree_leaves_with_path(got.grads)
    flat_w = dict(jax.tree_util.tree_leaves_with_path(want.grads))
    assert [p for p, _ in flat_g] == list(flat_w)  # same tree as params
    for path, g in flat_g:
        w = flat_w[path]
        assert float(jnp.max(jnp.abs(w))) > 0, path  # every parameter takes a gradient
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=1e-6 * float(jnp.max(jnp.abs(w))))


def test_hoisted_gradient_equals_per_step_on_nfresnet():
    model = NFResNet(stage_sizes=(1, 1), num_classes=K, base_planes=8, mode=OTTT)
    x = jax.random.normal(jax.random.PRNGKey(1), (B, 16, 16, 3))
    st = model.init_state(B, (16, 16, 3), train=False)
    params = model.init(jax.random.PRNGKey(0), st, x)["params"]
    # a non-zero skip gain, gains off 1, a readout that is not zero (its init), inputs that spike
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    params = jax.tree.unflatten(
        tree, [v + 0.3 * jax.random.normal(k, v.shape) for v, k in zip(leaves, keys)]
    )
    x = x * 3.0
    step = make_step(model)
    assert isinstance(step.hoist, online.Hoist)
    loss_fn = functools.partial(instantaneous_loss, beta=0.05, num_steps=T)
    got = online.ottt_grad(step, loss_fn, params, st, x, LABELS, num_steps=T)
    want = online.ottt_grad(_plain(step), loss_fn, params, st, x, LABELS, num_steps=T)
    for g, w in zip(jax.tree.leaves(got.grads), jax.tree.leaves(want.grads), strict=True):
        assert float(jnp.max(jnp.abs(w))) > 0
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=1e-6 * float(jnp.max(jnp.abs(w))))


def test_forward_uses_the_hoist():
    model = _vgg(OTTT)
    params, st, x = _setup(model)
    step = make_step(model)
    prepared = []

    def prepare(p):  # the real split, recording that forward went through the hoist
        prepared.append(True)
        return split_standardized(p)

    step = step._replace(hoist=online.Hoist(prepare=prepare, inner=step.hoist.inner))
    a, _ = online.forward(step, params, st, x, num_steps=T)
    assert prepared == [True]  # the hoist ran, once for the sequence
    b, _ = online.forward(_plain(step), params, st, x, num_steps=T)
    np.testing.assert_array_equal(a, b)


def test_bad_hoist_and_bad_standardized_kernel_are_clear_errors():
    model = _vgg(OTTT)
    params, st, x = _setup(model)
    step = online.Step(_plain(make_step(model)), OTTT, (split_standardized, None))
    with pytest.raises(ValueError, match=r"Step.hoist must be an ottt_jax.online.Hoist"):
        online.ottt_grad(step, lambda o, y: jnp.sum(o), params, st, x, LABELS, num_steps=T)
    conv = Conv(4)
    v = conv.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 3)))
    bad = {
        "params": {"bias": v["params"]["bias"]},
        STANDARDIZED: {"kernel": jnp.zeros((3, 3, 2, 4))},
    }
    with pytest.raises(ValueError, match=r"standardized kernel has shape \(3, 3, 2, 4\)"):
        conv.apply(bad, jnp.zeros((1, 4, 4, 3)))


def _counted(step):
    """``step`` with a hoist that records each time it runs, and a fn that records its calls."""
    calls = {"prepare": 0, "fn": 0}

    def prepare(p):
        calls["prepare"] += 1
        return split_standardized(p)

    def fn(p, st, x):
        calls["fn"] += 1
        return step.fn(p, st, x)

    return online.Step(fn, step.mode, online.Hoist(prepare, step.hoist.inner)), calls


def _logged(f):
    """A user's decorator (functools.wraps): it may change what the step computes."""

    @functools.wraps(f)
    def run(p, st, x):
        return f(p, st, x)

    return run


@pytest.mark.parametrize(
    "wrap, hoisted",
    [
        (lambda s: s, True),
        (jax.jit, True),  # the same function: the Step itself runs, with its hoist
        (lambda s: s.map(_logged), True),  # Step.map transforms fn and hoist.inner alike
        (functools.partial, False),  # a wrapper may change the function: fn runs, no hoist
        (_logged, False),
    ],
    ids=["step", "jit", "map", "partial", "decorator"],
)
def test_wrapped_steps_keep_the_mode_and_the_hoist_where_it_is_sound(wrap, hoisted):
    """Catches: jit/partial/decorators dropping the mode (a BPTT rule would then accept this
    OTTT step), the hoist dropped under jit, or a hoist applied beneath a wrapper."""
    from ottt_jax import rules

    model = _vgg(OTTT)
    params, st, x = _setup(model)
    step, calls = _counted(make_step(model))
    wrapped = wrap(step)
    out, _ = wrapped(params, st, x)  # still callable as a step (jax.jit needs a weakref)
    assert out.shape == (B, K)
    calls["fn"] = 0
    loss_fn = functools.partial(instantaneous_loss, beta=0.05, num_steps=T)
    got = rules.get_rule("ottt_a").grad(wrapped, loss_fn, params, st, x, LABELS, num_steps=T)
    assert (calls["prepare"], calls["fn"] == 0) == ((1, True) if hoisted else (0, False))
    want = online.ottt_grad(_plain(step), loss_fn, params, st, x, LABELS, num_steps=T)
    for g, w in zip(jax.tree.leaves(got.grads), jax.tree.leaves(want.grads), strict=True):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=1e-6 * float(jnp.max(jnp.abs(w))))
    with pytest.raises(ValueError, match=r"needs a model built with mode=.*has mode="):
        rules.get_rule("bptt").grad(wrapped, loss_fn, params, st, x, LABELS, num_steps=T)
