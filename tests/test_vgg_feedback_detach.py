"""VGG-F's feedback path is detached, also under BPTT.

The feedback ``F_{t−1}`` (the previous step's scaled last-block output) enters the first conv at
step ``t`` as a constant: BPTT differentiates through the neurons' membranes over time, not
through the feedback carried from one step to the next (the authors' ``.detach()``). A model that
carried the gradient through it would change BPTT's gradient with every test of the feedback
conv's forward still green.
"""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ottt_jax import rules
from ottt_jax.losses import instantaneous_loss
from ottt_jax.mode import BPTT
from ottt_jax.models import SpikingVGGF, make_step

B, T, K = 2, 2, 3  # T = 2: the feedback written at t = 0 is read at t = 1 (none at t = 0)
LOSS = functools.partial(instantaneous_loss, beta=0.1, num_steps=T)


def _grads(step, params, st, x, y):
    grad = rules.get_rule("bptt").grad
    return jax.jit(lambda p: grad(step, LOSS, p, st, x, y, num_steps=T).grads)(params)


def test_bptt_does_not_differentiate_through_the_carried_feedback():
    """Catches: the ``stop_gradient`` on VGG-F's new feedback removed (or lost in a rewrite)."""
    # 4×4 input, two pools: the last block is 1×1, so the feedback equals the classifier input.
    model = SpikingVGGF(cfg=(2, "M", 3, "M"), num_classes=K, mode=BPTT)
    x = jax.random.uniform(jax.random.PRNGKey(0), (B, 4, 4, 1)) * 3.0
    y = jnp.arange(B) % K
    st = model.init_state(B, (4, 4, 1))
    params = model.init(jax.random.PRNGKey(1), st, x)["params"]
    kernel = params["fb_conv"]["kernel"]
    assert not np.any(kernel)  # zero at init: give the feedback conv weights
    params = {**params, "fb_conv": {**params["fb_conv"], "kernel": jnp.ones_like(kernel) * 0.3}}
    model_step = make_step(model)

    def explicit(p, st, x):  # the documented behaviour: the carried feedback is a constant
        fb = jax.tree.map(jax.lax.stop_gradient, st.feedback)
        return model_step(p, st._replace(feedback=fb), x)

    def attached(p, st, x):  # the bug: the carried feedback keeps its gradient path
        seen = []

        def capture(next_fun, args, kwargs, context):
            if context.module.name == "classifier_0" and context.method_name == "__call__":
                seen.append(args[0])  # the classifier input z = the 1×1 last-block output
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(capture):
            out, new = model_step(p, st, x)
        (z,) = seen
        spikes = z[:, None, None, :].astype(new.feedback.spikes.dtype)
        return out, new._replace(feedback=new.feedback._replace(spikes=spikes))

    got = _grads(model_step, params, st, x, y)
    want = _grads(explicit, params, st, x, y)
    without = _grads(attached, params, st, x, y)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-7)
    # The check has power: a feedback that kept its gradient gives other BPTT gradients.
    diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), without, got)
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(got))
    assert max(jax.tree.leaves(diff)) > 1e-3 * scale, diff
