"""The online-gradient transform: OTTT_A, OTTT_O and the BPTT baseline over any step function.

A *step function* advances a model by one time step::

    step(params, state, x_t) -> (out_t, new_state)

and a *per-step loss* scores one step's output: ``loss_fn(out_t, targets) -> scalar`` (use
:func:`ottt_jax.losses.instantaneous_loss`, which already divides by ``T``). Nothing here knows
about models: any Flax module or plain function with that signature works.

Time axis: sequences are **time-major**, ``[T, B, ...]`` for every leaf, and are scanned over
their leading axis. A static input (an image shown at every step) is passed with ``num_steps=T``.

* :func:`ottt_grad` (OTTT_A) takes ``jax.value_and_grad`` of each step's loss inside the scan body
  and sums the gradients in the carry (Eq. (5)): memory is that of one step, constant in T.
* :func:`ottt_update` (OTTT_O) applies an optax update after every step (Sec. 4.1, online).
* :func:`bptt_grad` differentiates through the whole scan (memory linear in T).
* :func:`sltt_k_grad` (SLTT-K, Meng et al., ICCV 2023) takes the per-step gradient at K sampled
  steps only (:func:`sample_time_steps`); the others run forward only. SLTT itself is
  :func:`ottt_grad` over a step built with ``mode.SLTT``.

The result types, time-axis checks, float32 gradient sums and SLTT-K's sampling live in
:mod:`ottt_jax.online_base` and are re-exported here.

For OTTT, build the step function with ``mode=ottt_jax.mode.OTTT`` (detached membrane and the
spike/trace ops, so no gradient crosses time steps). For the BPTT baseline build it with
``mode.BPTT``. :mod:`ottt_jax.rules` names these pairings (rule + mode) and checks them.

**The step contract.** The rules take a :class:`Step`, ``Step(fn, mode, hoist=None)``: the
function, the :class:`~ottt_jax.mode.Mode` it was built for, and an optional loop-invariant
parameter transform (a :class:`Hoist`; ``models.make_step`` sets one for the package's models:
the sWS of every kernel). It is data, not attributes on a function, so wrapping survives:
:func:`as_step` finds the Step under ``jax.jit`` (same function: mode and hoist kept) and under
``functools.partial``, ``jax.vmap`` or a ``functools.wraps`` decorator (mode kept; the hoist is
dropped because the wrapper may change what the function computes: use :meth:`Step.map` to
apply a transform to the function *and* the hoist's inner step). The rules whose parameters are
fixed over the sequence (everything but :func:`ottt_update`) evaluate the hoist once, take every
step's gradient w.r.t. its output, and pull the sum back through its VJP once after the scan.

Under ``jax.shard_map`` every gradient here is the device's own (the parameters are cast to
varying over the batch's mesh axes before differentiation; :mod:`ottt_jax.vma`): reduce it with
``grad_reduce``.

The functions here also accept a bare callable (no mode known: layers inside run in their own
mode, else OTTT). Given a :class:`Step`, they trace it with its mode active
(:func:`ottt_jax.mode.active`), so every layer and neuron inside inherits it or is refused.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

from ottt_jax.online_base import (
    Array,
    LossFn,
    OnlineResult,
    OnlineUpdateResult,
    PyTree,
    StepFn,
    acc_add,
    acc_cast,
    acc_zeros,
    check_k,
    check_time_major,
    sample_time_steps,
    scan_inputs,
    step_loss,
    three_factor_grad,
)
from ottt_jax.step import (
    Hoist,
    Step,
    as_step,
    check_num_steps,
    hoisted,
    step_parts,
    with_step_mode,
)
from ottt_jax.vma import cast_varying, varying_axes

__all__ = [
    "Hoist",
    "OnlineResult",
    "OnlineUpdateResult",
    "Step",
    "as_step",
    "bptt_grad",
    "check_k",
    "check_num_steps",
    "check_time_major",
    "forward",
    "hoisted",
    "ottt_grad",
    "ottt_update",
    "sample_time_steps",
    "sltt_k_grad",
    "step_loss",
    "three_factor_grad",
]


@with_step_mode
def forward(
    step: StepFn,
    params: PyTree,
    state: PyTree,
    inputs: PyTree,
    *,
    num_steps: int | None = None,
) -> tuple[PyTree, PyTree]:
    """Run the step function over T steps without gradients (evaluation).

    Args:
      step: ``step(params, state, x_t) -> (out_t, state)``.
      params: model parameters.
      state: the initial state (zeros for a new sequence).
      inputs: time-major ``[T, B, ...]``, or static ``[B, ...]`` with ``num_steps``.
      num_steps: ``T`` for a static input.

    Returns:
      ``(outputs, state)``; outputs stacked ``[T, ...]``. The paper predicts ``argmax Σ_t out_t``.
    """
    t = check_time_major(inputs, num_steps)
    xs, get = scan_inputs(inputs, num_steps)
    step, hoist, _ = step_parts(step)
    if hoist is not None:  # no gradient here: prepare once, without its VJP
        step, params = hoist.inner, hoist.prepare(params)

    def body(st, x_t):
        out, st = step(params, st, get(x_t))
        return st, out

    state = cast_varying(state, varying_axes(params, state, inputs))  # as the body returns it
    state, outs = lax.scan(body, state, xs, length=t)
    return outs, state


@with_step_mode
def ottt_grad(
    step: StepFn,
    loss_fn: LossFn,
    params: PyTree,
    state: PyTree,
    inputs: PyTree,
    targets: PyTree,
    *,
    num_steps: int | None = None,
) -> OnlineResult:
    """OTTT_A: per-step gradients taken online, summed over the T steps.

    Args:
      step: the model's one-step function, built in online mode.
      loss_fn: ``loss_fn(out_t, targets) -> scalar`` per-step loss ``L[t]``.
      params: parameters (any pytree).
      state: initial model state.
      inputs: time-major ``[T, B, ...]``, or static ``[B, ...]`` with ``num_steps``.
      targets: passed unchanged to ``loss_fn`` at every step.
      num_steps: ``T`` for a static input.

    Returns:
      :class:`OnlineResult` with ``grads = Σ_t ∇_params L[t]`` (float32 accumulation): Eq. (5),
      ``∇W = Σ_t g_u[t] â[t]ᵀ``. Memory does not grow with T. A ``step.hoist`` is evaluated once
      and its VJP applied to the sum (:class:`Hoist`).
    """
    t = check_time_major(inputs, num_steps, targets)
    xs, get = scan_inputs(inputs, num_steps)
    axes = varying_axes(params, state, inputs, targets)
    inner, q, pullback = hoisted(step, cast_varying(params, axes))  # per-device gradients
    vg = jax.value_and_grad(step_loss(inner, loss_fn, targets), has_aux=True)

    def body(carry, x_t):
        st, loss_sum, g_sum = carry
        (loss, (out, st)), g = vg(q, st, get(x_t))
        g_sum = acc_add(g_sum, g)
        return (st, loss_sum + loss.astype(jnp.float32), g_sum), out

    carry = cast_varying((state, jnp.float32(0), acc_zeros(q)), axes)
    (state, loss, grads), outs = lax.scan(body, carry, xs, length=t)
    grads = acc_cast(pullback(grads), params)
    return OnlineResult(loss=loss, grads=grads, outputs=outs, state=state)


@with_step_mode
def ottt_update(
    step: StepFn,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: PyTree,
    opt_state: PyTree,
    state: PyTree,
    inputs: PyTree,
    targets: PyTree,
    *,
    num_steps: int | None = None,
    grad_reduce: Callable[[PyTree], PyTree] | None = None,
) -> OnlineUpdateResult:
    """OTTT_O: an optimizer update after every time step; the neuron state carries on.

    Args:
      step, loss_fn, params, state, inputs, targets, num_steps: as in :func:`ottt_grad`.
      optimizer: an optax transformation; it sees T updates per sequence.
      opt_state: its state.
      grad_reduce: optional function applied to each step's gradient before the update, e.g.
        ``lambda g: jax.lax.pmean(g, 'data')`` inside ``shard_map``. Under ``jit`` with sharded
        inputs the mean over the global batch is already exact and none is needed.

    Returns:
      :class:`OnlineUpdateResult`. Step ``t+1`` runs with the parameters updated at step ``t``.

    Raises:
      ValueError: naming ``grad_reduce`` when, under ``shard_map``, its gradient still varies
        over a mesh axis the parameters are replicated over.
    """
    t = check_time_major(inputs, num_steps, targets)
    xs, get = scan_inputs(inputs, num_steps)
    fn, _, _ = step_parts(step)  # the parameters change every step: no hoist
    vg = jax.value_and_grad(step_loss(fn, loss_fn, targets), has_aux=True)
    axes = varying_axes(params, opt_state, state, inputs, targets)
    if grad_reduce is None:  # under shard_map each device then trains its own copy
        params, opt_state = cast_varying((params, opt_state), axes)

    def body(carry, x_t):
        p, o, st, loss_sum = carry
        (loss, (out, st)), g = vg(cast_varying(p, axes), st, get(x_t))  # per-device gradient
        if grad_reduce is not None:
            g = _check_reduced(grad_reduce(g), p)
        updates, o = optimizer.update(g, o, p)
        p = optax.apply_updates(p, updates)
        return (p, o, st, loss_sum + loss.astype(jnp.float32)), out

    carry = (params, opt_state, *cast_varying((state, jnp.float32(0)), axes))
    (params, opt_state, state, loss), outs = lax.scan(body, carry, xs, length=t)
    return OnlineUpdateResult(
        loss=loss, params=params, opt_state=opt_state, outputs=outs, state=state
    )


def _check_reduced(g: PyTree, params: PyTree) -> PyTree:
    """Refuse a reduced gradient that still varies over a mesh axis its parameter does not."""
    extra = set()
    for gl, pl in zip(jax.tree.leaves(g), jax.tree.leaves(params), strict=True):
        extra |= varying_axes(gl) - varying_axes(pl)
    if extra:
        raise ValueError(
            f"grad_reduce returned a gradient that still varies over the shard_map axes "
            f"{sorted(extra, key=str)}, over which the parameters are replicated: reduce over "
            f"every axis the batch is split on, e.g. lambda g: jax.lax.pmean(g, "
            f"{tuple(sorted(extra, key=str))})"
        )
    return g


@with_step_mode
def bptt_grad(
    step: StepFn,
    loss_fn: LossFn,
    params: PyTree,
    state: PyTree,
    inputs: PyTree,
    targets: PyTree,
    *,
    num_steps: int | None = None,
) -> OnlineResult:
    """BPTT baseline: ``jax.grad`` of ``Σ_t L[t]`` through the whole scan.

    Args: as in :func:`ottt_grad`; build ``step`` with ``mode.BPTT`` for true BPTT.

    Returns:
      :class:`OnlineResult`. Memory grows linearly with T (every step's residuals are kept).
    """
    t = check_time_major(inputs, num_steps, targets)
    xs, get = scan_inputs(inputs, num_steps)
    axes = varying_axes(params, state, inputs, targets)
    inner, q, pullback = hoisted(step, cast_varying(params, axes))  # per-device gradients
    f = step_loss(inner, loss_fn, targets)

    def total_loss(p):
        def body(carry, x_t):
            st, loss_sum = carry
            loss, (out, st) = f(p, st, get(x_t))
            return (st, loss_sum + loss.astype(jnp.float32)), out

        carry = cast_varying((state, jnp.float32(0)), axes)
        (st, loss), outs = lax.scan(body, carry, xs, length=t)
        return loss, (outs, st)

    (loss, (outs, st)), grads = jax.value_and_grad(total_loss, has_aux=True)(q)
    return OnlineResult(loss=loss, grads=pullback(grads), outputs=outs, state=st)


# ---------------------------------------------------------------------------------------------
# SLTT-K (Meng et al., ICCV 2023): backpropagation at K sampled steps of the T.
# ---------------------------------------------------------------------------------------------


@with_step_mode
def sltt_k_grad(
    step: StepFn,
    loss_fn: LossFn,
    params: PyTree,
    state: PyTree,
    inputs: PyTree,
    targets: PyTree,
    *,
    key: Array,
    k: int,
    num_steps: int | None = None,
) -> OnlineResult:
    """SLTT-K: the SLTT gradient taken at K of the T steps; the others run forward only.

    Run the step function built with ``mode.SLTT`` (membrane detached, ``∇W`` at the
    instantaneous input spikes). At each step a ``lax.cond`` picks either ``value_and_grad`` of
    the step's loss (the K sampled steps) or the plain forward step (the others), so the backward
    pass of an unsampled step is never computed. Both branches return the same carry.

    Sampling and scale follow Meng et al., "Towards Memory- and Time-Efficient Backpropagation
    for Training Spiking Neural Networks", ICCV 2023 (Sec. 4.3, SLTT-K), and the authors' code
    (github.com/qymeng94/SLTT, ``train_SLTTK.py``): the K steps are drawn uniformly without
    replacement, once per iteration, from ``key`` (:func:`sample_time_steps`), and the gradient is
    **not rescaled**: each ``L[t]`` keeps its ``1/T``, so the estimate is ``Σ_{t∈S} ∇L[t]``,
    whose expectation is ``K/T`` times SLTT's gradient.

    Args:
      step, loss_fn, params, state, inputs, targets, num_steps: as in :func:`ottt_grad`.
      key: the PRNG key of this iteration (a run is reproducible and resumable from it).
      k: ``K``, the number of steps that take a gradient, ``1 <= K <= T``.

    Returns:
      :class:`OnlineResult` with ``grads = Σ_{t∈S} ∇_params L[t]`` over the sampled set ``S``
      (float32 accumulation) and ``loss = Σ_t L[t]`` over all T steps (every step's loss is
      computed forward, so the logged loss compares with the other rules'). Memory does not grow
      with T.
    """
    t = check_time_major(inputs, num_steps, targets)
    if key is None:
        raise ValueError("SLTT-K (sltt_k) needs a PRNG key (key=...) to draw its time steps")
    sampled = sample_time_steps(key, t, k)
    xs, get = scan_inputs(inputs, num_steps)
    axes = varying_axes(params, state, inputs, targets, sampled)
    inner, q, pullback = hoisted(step, cast_varying(params, axes))  # per-device gradients
    f = step_loss(inner, loss_fn, targets)
    vg = jax.value_and_grad(f, has_aux=True)

    def learn(x, st, g_sum):
        (loss, (out, st)), g = vg(q, st, x)
        g_sum = acc_add(g_sum, g)
        return loss.astype(jnp.float32), out, st, g_sum

    def skip(x, st, g_sum):
        loss, (out, st) = f(q, st, x)
        return loss.astype(jnp.float32), out, st, g_sum

    def body(carry, xm):
        x_t, take = xm
        st, loss_sum, g_sum = carry
        loss, out, st, g_sum = lax.cond(take, learn, skip, get(x_t), st, g_sum)
        return (st, loss_sum + loss, g_sum), out

    carry = cast_varying((state, jnp.float32(0), acc_zeros(q)), axes)
    (state, loss, grads), outs = lax.scan(body, carry, (xs, sampled), length=t)
    grads = acc_cast(pullback(grads), params)
    return OnlineResult(loss=loss, grads=grads, outputs=outs, state=state)
