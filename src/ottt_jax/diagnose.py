"""Which rule does each kernel's gradient follow? A perturbation diagnostic for user models.

:func:`check_rule` answers it per parameter for a step function, without knowing the model: it
runs two time steps and compares three gradients of a fixed random projection of the second
step's output,

* ``g_full``: through both steps (autodiff into the first step through the state),
* ``g_one``: of the second step alone, from the (gradient-stopped) state after the first,
* ``g_pert``: the same with every presynaptic trace in that state perturbed
  (``â → 1.7·â + 0.3``; the trace never enters the forward pass of a package layer).

A kernel whose ``g_full`` differs from ``g_one`` follows a gradient **through time** (BPTT); else
one whose ``g_pert`` differs from ``g_one`` follows the **trace** rule (OTTT, Eq. (5)); else its
gradient is **instantaneous** (SLTT's rule, or any layer on a non-spiking input). Under OTTT,
every kernel fed by spikes should read ``"trace"``: a plain ``nn.Dense`` fed by spikes reads
``"instantaneous"`` (wrap it with :func:`ottt_jax.layers.traced`); only a layer on the raw input
legitimately reads ``"instantaneous"`` there.

Cost: one jitted function (a warm-up step and three gradients of at most two steps): about one
compilation of a training step plus two training steps at ``T = 3``; run it once per model.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ottt_jax import mode as mode_lib
from ottt_jax.mode import OTTT, Mode
from ottt_jax.step import as_step

PyTree = Any

__all__ = ["FOLLOWS", "check_rule"]

#: The answers of :func:`check_rule`, per kernel.
FOLLOWS = ("trace", "instantaneous", "through time")


def _perturb_traces(state: PyTree) -> PyTree:
    def is_neuron(n):
        return hasattr(n, "_replace") and hasattr(n, "trace")

    def bump(n):
        if not is_neuron(n) or n.trace is None:
            return n
        return n._replace(trace=1.7 * n.trace + 0.3)

    return jax.tree.map(bump, state, is_leaf=is_neuron)


def _differs(a: jax.Array, b: jax.Array, rtol: float) -> bool:
    scale = max(float(jnp.max(jnp.abs(a))), float(jnp.max(jnp.abs(b))), 1e-30)
    return float(jnp.max(jnp.abs(a - b))) > rtol * scale


def check_rule(
    step: Any,
    params: PyTree,
    state: PyTree,
    x: PyTree,
    *,
    mode: Mode | None = None,
    sequence: bool = False,
    strict: bool = False,
    rtol: float = 1e-4,
) -> dict[str, str]:
    """Report, per kernel (every parameter with 2 or more axes), which rule its gradient follows.

    Args:
      step: an :class:`~ottt_jax.online.Step` or a step function.
      params: its parameters.
      state: the initial state (zeros).
      x: a static input ``[B, ...]``, or with ``sequence=True`` a time-major ``[T >= 3, B, ...]``
        (its first three frames are used).
      mode: the mode to trace the step in (default: the Step's, else OTTT), as a rule would.
      sequence: whether ``x`` is a sequence.
      strict: raise on a kernel whose rule the mode forbids (through time under a detached
        mode; the trace rule under SLTT or BPTT).
      rtol: the relative difference that counts as a dependence.

    Returns:
      ``{parameter path: "trace" | "instantaneous" | "through time"}`` (see the module doc).

    Raises:
      ValueError: with ``strict``, naming every parameter path whose rule the mode forbids.
    """
    s = as_step(step)
    fn = step if s is None else s.fn
    mode = mode or (None if s is None else s.mode) or OTTT
    xw, x0, x1 = [jax.tree.map(lambda v, i=i: v[i], x) if sequence else x for i in range(3)]
    with mode_lib.active(mode, "check_rule"):
        out_shape = jax.eval_shape(lambda: fn(params, state, xw)[0])
    keys = jax.random.split(jax.random.PRNGKey(0), len(jax.tree.leaves(out_shape)))
    proj = [jax.random.normal(k, v.shape) for k, v in zip(keys, jax.tree.leaves(out_shape))]

    def score(out):
        leaves = jax.tree.leaves(out)
        return sum(jnp.sum(a.astype(jnp.float32) * r) for a, r in zip(leaves, proj, strict=True))

    @jax.jit  # one compilation (a new closure per call: nothing cached across modes)
    def grads(p, st0):
        _, st0 = fn(p, st0, xw)  # warm-up: spikes and traces in the state
        st0 = jax.lax.stop_gradient(st0)
        st1 = jax.lax.stop_gradient(fn(p, st0, x0)[1])

        def two(q):
            return score(fn(q, fn(q, st0, x0)[1], x1)[0])

        def one(q, st):
            return score(fn(q, st, x1)[0])

        g_pert = jax.grad(one)(p, _perturb_traces(st1))
        return jax.grad(two)(p), jax.grad(one)(p, st1), g_pert

    with mode_lib.active(mode, "check_rule"):
        g_full, g_one, g_pert = grads(params, state)
    report, bad = _classify(g_full, g_one, g_pert, mode, rtol)
    if strict and bad:
        raise ValueError(
            f"under mode={mode}, these kernels follow a rule the mode forbids: {', '.join(bad)}"
        )
    return report


def _classify(
    g_full: PyTree, g_one: PyTree, g_pert: PyTree, mode: Mode, rtol: float
) -> tuple[dict[str, str], list[str]]:
    """Name each kernel's rule from its three gradients; list those the mode forbids.

    Args:
      g_full: the gradient through two steps.
      g_one: the gradient of the second step alone.
      g_pert: the second step's gradient with the carried traces perturbed.
      mode: the mode the step ran in.
      rtol: the relative difference that counts as a dependence.

    Returns:
      ``({path: rule}, ["path (rule)" for every forbidden one])``.
    """
    report, bad = {}, []
    flat = jax.tree_util.tree_leaves_with_path(g_one)
    for (path, g1), gf, gp in zip(
        flat, jax.tree.leaves(g_full), jax.tree.leaves(g_pert), strict=True
    ):
        if jnp.ndim(g1) < 2:
            continue
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        follows = (
            "through time"
            if _differs(gf, g1, rtol)
            else "trace"
            if _differs(gp, g1, rtol)
            else "instantaneous"
        )
        report[name] = follows
        forbidden = (follows == "through time" and mode.detach_membrane) or (
            follows == "trace" and not mode.trace_rule
        )
        if forbidden:
            bad.append(f"{name} ({follows})")
    return report, bad
