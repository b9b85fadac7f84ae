"""Plain Flax layers (``nn.Conv``, ``nn.Dense``) in a spiking network, trained by OTTT_A.

A plain Flax layer fed by spikes knows nothing of the rule: under OTTT its weight gradient would
be taken at the instantaneous spikes (SLTT's gradient), silently. Wrapping it with
:func:`ottt_jax.layers.traced` makes it a synaptic layer of the rule: the trace rule under OTTT
(Eq. (5)), the instantaneous rule under SLTT, plain autodiff under BPTT. The wrapper clones the
layer with ``parent=None`` (no Flax ``NameInUseError``) and keeps its parameters under its own
names. :func:`ottt_jax.diagnose.check_rule` then confirms, per kernel, the rule each follows.

Run: ``python examples/flax_layers.py`` (random images, a few seconds on a CPU).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ottt_jax import layers, rules
from ottt_jax.diagnose import check_rule
from ottt_jax.losses import instantaneous_loss
from ottt_jax.models import make_step
from ottt_jax.neuron import LIF

HW, K, T = 8, 4, 4


class FlaxSNN(nn.Module):
    """nn.Conv (image) → LIF → traced nn.Conv → LIF → pool → traced nn.Dense."""

    wrap: bool = True  # False: the pitfall, plain layers fed by spikes

    @nn.compact
    def __call__(self, state, x):
        lif = LIF()  # no mode: the rule's, at trace time
        pool = lambda z: layers.SPIKE_SCALE * z.mean((1, 2))
        s1, n1 = lif(state["n1"], nn.Conv(8, (3, 3), name="conv1")(x))  # on the image: plain
        if self.wrap:  # layers fed by spikes: through the rule, given the trace of their input
            s2, n2 = lif(
                state["n2"], layers.traced(nn.Conv(16, (3, 3)), name="conv2")(s1, n1.trace)
            )
            out = layers.traced(nn.Dense(K), name="fc")(pool(s2), pool(n2.trace))
        else:
            s2, n2 = lif(state["n2"], nn.Conv(16, (3, 3), name="conv2")(s1))
            out = nn.Dense(K, name="fc")(pool(s2))
        return out, {"n1": n1, "n2": n2}

    def init_state(self, batch: int):
        lif = LIF()
        return {"n1": lif.init_state((batch, HW, HW, 8)), "n2": lif.init_state((batch, HW, HW, 16))}


def main(steps: int = 20, batch: int = 16, wrap: bool = True) -> dict[str, Any]:
    """Train on random images; return the losses and the per-kernel rule report."""
    rule = rules.get_rule("ottt_a")
    model = FlaxSNN(wrap=wrap)
    step = make_step(model)
    x = jax.random.uniform(jax.random.PRNGKey(0), (batch, HW, HW, 3)) * 2.0
    y = jnp.arange(batch, dtype=jnp.int32) % K
    x = x.at[..., 0].add(y[:, None, None] * 0.5)  # the class is in the first channel's brightness
    params = model.init(jax.random.PRNGKey(1), model.init_state(batch), x)["params"]
    loss_fn = functools.partial(instantaneous_loss, beta=0.05, num_steps=T)
    opt = optax.adam(3e-3)

    @jax.jit
    def train_step(p, o):
        res = rule.apply(step, loss_fn, opt, p, o, model.init_state(batch), x, y, num_steps=T)
        return res.params, res.opt_state, res.loss

    o, losses = opt.init(params), []
    for _ in range(steps):
        params, o, loss = train_step(params, o)
        losses.append(float(loss))
    report = check_rule(step, params, model.init_state(batch), x, mode=rule.mode)
    return {"losses": losses, "report": report}


if __name__ == "__main__":
    r = main()
    print(f"loss {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}")
    print("rule per kernel:", r["report"])
