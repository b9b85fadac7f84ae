"""A recurrent spiking network trained online (OTTT_A), with the rule checked per kernel.

The hidden LIF population receives its input through ``inp`` and its own spikes of the previous
step through the recurrent weight ``rec``::

    u[t] = λ·u[t−1] + W_in x[t] + W_rec s[t−1] + b,    s[t] = H(u[t] − V_th)

**Which trace feeds a recurrent weight.** The presynaptic spike train of ``W_rec`` is the
population's own train delayed by one step, ``s[t−1]``; its trace at step ``t`` is therefore the
trace the state carries into the step, ``â[t−1] = λ·â[t−2] + s[t−1]`` (Eq. (4) applied to the
delayed train). So the layer gets ``(state.spikes, state.trace)`` and OTTT takes
``∇W_rec = Σ_t g_u[t]·â[t−1]ᵀ`` (Eq. (5)). Under a detached mode (OTTT, SLTT) the carried
spikes must not carry gradient into the previous step either — that is a path through time the
membrane detach does not cut — so the model stops it unless the mode keeps the temporal path
(BPTT), reading the rule's mode with :func:`ottt_jax.mode.resolve_mode`.

Run: ``python examples/recurrent_snn.py`` (a toy task: tell which half of a sequence has more
input spikes; a few seconds on a CPU).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ottt_jax import layers, rules
from ottt_jax.diagnose import check_rule
from ottt_jax.losses import instantaneous_loss
from ottt_jax.mode import Mode, resolve_mode
from ottt_jax.models import make_step
from ottt_jax.neuron import LIF, LIFState

D, H, K, T = 8, 32, 2, 8


class RecState(NamedTuple):
    """The hidden population's LIF state and its spikes of the previous step."""

    neuron: LIFState
    spikes: jax.Array


class RecurrentSNN(nn.Module):
    """input → (W_in x[t] + W_rec s[t−1]) → LIF → readout at the trace."""

    mode: Mode | None = None  # None: the rule's mode, inherited at trace time

    @nn.compact
    def __call__(self, state: RecState, x: jax.Array):
        mode = resolve_mode(self.mode, "RecurrentSNN")
        s_prev = state.spikes if not mode.detach_membrane else jax.lax.stop_gradient(state.spikes)
        hidden = LIF(mode=self.mode)
        kw = {"weight_standardization": True, "kernel_init": layers.kaiming_normal_fan_out}
        current = layers.Linear(H, name="inp", **kw)(x)  # a real-valued input: no trace
        # the recurrent weight reads s[t−1]; its trace is the one the state carries in, â[t−1]
        current = current + layers.Linear(H, use_bias=False, name="rec")(s_prev, state.neuron.trace)
        s, n = hidden(state.neuron, current)
        out = layers.Linear(K, name="out")(s, n.trace)
        return out, RecState(n, s)

    def init_state(self, batch: int) -> RecState:
        z = jnp.zeros((batch, H))
        return RecState(LIF(mode=self.mode).init_state((batch, H)), z)


def toy_data(key: jax.Array, batch: int) -> tuple[jax.Array, jax.Array]:
    """Return time-major inputs ``[T, B, D]`` and labels ``[B]``: 1 iff the 2nd half is denser."""
    k1, k2 = jax.random.split(key)
    y = jax.random.bernoulli(k1, 0.5, (batch,)).astype(jnp.int32)
    rate = jnp.where(jnp.arange(T)[:, None] < T // 2, 0.6 - 0.4 * y, 0.2 + 0.4 * y)  # [T, B]
    x = jax.random.bernoulli(k2, rate[:, :, None], (T, batch, D)).astype(jnp.float32)
    return x * 2.0, y


def main(steps: int = 60, batch: int = 32, rule_name: str = "ottt_a") -> dict[str, Any]:
    """Train for ``steps`` iterations; return the losses and the per-kernel rule report."""
    rule = rules.get_rule(rule_name)
    model = RecurrentSNN()  # no mode: it trains under whichever rule it is given
    step = make_step(model)
    loss_fn = functools.partial(instantaneous_loss, beta=0.05, num_steps=T)
    x, _ = toy_data(jax.random.PRNGKey(0), batch)
    params = model.init(jax.random.PRNGKey(1), model.init_state(batch), x[0])["params"]
    opt = optax.adam(3e-3)

    @jax.jit
    def train_step(p, o, key):
        xb, yb = toy_data(key, batch)
        st = model.init_state(batch)
        res = rule.apply(step, loss_fn, opt, p, o, st, xb, yb, time_axis=0)
        return res.params, res.opt_state, res.loss

    o, losses = opt.init(params), []
    for i in range(steps):
        params, o, loss = train_step(params, o, jax.random.PRNGKey(100 + i))
        losses.append(float(loss))
    report = check_rule(step, params, model.init_state(batch), x, mode=rule.mode, sequence=True)
    return {"losses": losses, "report": report, "params": params}


if __name__ == "__main__":
    r = main()
    print(f"loss {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}")
    print("rule per kernel:", r["report"])
