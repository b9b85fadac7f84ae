"""Speed of a plain ``nn.Conv`` through ``layers.traced`` against ``layers.Conv`` (issue 15).

Two copies of a small spiking conv net (conv on the image → LIF → conv on spikes → LIF → conv on
spikes → LIF → pool → readout), one with :class:`ottt_jax.layers.Conv`, one with
``layers.traced(nn.Conv(...))``, trained by the same rule (one ``rule.apply`` per iteration,
jitted). Iterations are timed in alternating rounds after a warm-up so both see the same machine
load; the median per-iteration time of each and their ratio are printed.

Run: ``python -m benchmarks.traced_conv [--rule ottt_a] [--rounds 20]``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ottt_jax import layers, rules
from ottt_jax.losses import instantaneous_loss
from ottt_jax.models import make_step
from ottt_jax.neuron import LIF

B, HW, C, K, T = 16, 16, (16, 32, 32), 10, 4


def _pool(z):
    return layers.SPIKE_SCALE * z.mean((1, 2))


class Net(nn.Module):
    """The benchmark net; ``plain=True`` builds every conv as ``layers.traced(nn.Conv)``."""

    plain: bool = False

    @nn.compact
    def __call__(self, state, x):
        new, h = {}, x
        tr = None
        for i, c in enumerate(C):
            if self.plain:
                conv = layers.traced(nn.Conv(c, (3, 3)), name=f"c{i}")
            else:
                conv = layers.Conv(c, weight_standardization=False, name=f"c{i}")
            h, new[f"n{i}"] = LIF()(state[f"n{i}"], conv(h, tr))
            tr = new[f"n{i}"].trace
        return layers.Linear(K, name="fc")(_pool(h), _pool(tr)), new

    def init_state(self, batch):
        return {f"n{i}": LIF().init_state((batch, HW, HW, c)) for i, c in enumerate(C)}


def _iteration(model, rule):
    step, opt = make_step(model), optax.sgd(0.1)
    loss = functools.partial(instantaneous_loss, num_steps=T)
    x = jax.random.uniform(jax.random.PRNGKey(0), (B, HW, HW, 3)) * 2.0
    y = jnp.arange(B, dtype=jnp.int32) % K
    params = model.init(jax.random.PRNGKey(1), model.init_state(B), x)["params"]

    @jax.jit
    def it(p, o):
        st, key = model.init_state(B), jax.random.PRNGKey(2)  # the key: for sltt_k
        res = rule.apply(step, loss, opt, p, o, st, x, y, num_steps=T, key=key)
        return res.params, res.opt_state

    return it, (params, opt.init(params))


def measure(rule_name: str = "ottt_a", rounds: int = 20) -> dict[str, float]:
    """Return the median seconds per iteration of each net and ``ratio = traced / layers``."""
    rule = rules.get_rule(rule_name)
    runs = {"layers.Conv": _iteration(Net(), rule), "traced(nn.Conv)": _iteration(Net(True), rule)}
    for f, args in runs.values():
        jax.block_until_ready(f(*args))  # compile and warm up
    times = {k: [] for k in runs}
    for _ in range(rounds):
        for name, (f, args) in runs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args))
            times[name].append(time.perf_counter() - t0)
    out = {k: statistics.median(v) for k, v in times.items()}
    out["ratio"] = out["traced(nn.Conv)"] / out["layers.Conv"]
    return out


def main(argv=None) -> None:
    """Print the timings."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rule", default="ottt_a")
    ap.add_argument("--rounds", type=int, default=20)
    a = ap.parse_args(argv)
    r = measure(a.rule, a.rounds)
    print(
        f"{a.rule}, B={B}, {HW}x{HW}, convs {C}, T={T}, median of {a.rounds} alternated rounds: "
        f"layers.Conv {r['layers.Conv'] * 1e3:.1f} ms, traced(nn.Conv) "
        f"{r['traced(nn.Conv)'] * 1e3:.1f} ms, ratio {r['ratio']:.3f}"
    )


if __name__ == "__main__":
    main()
