"""One benchmark training iteration of any ottt_jax model under any gradient rule.

An *iteration* is what one batch costs in training: the T steps of the network on a static
image, the gradients of the rule (OTTT_A, OTTT_O or BPTT), and the SGD-momentum update(s). The
peer benchmark (:mod:`benchmarks.peers`) and the GPU benchmark (:mod:`benchmarks.gpu`) time and
measure exactly this function.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

#: The rules the benchmarks compare by default, by their registry names.
METHODS = ("ottt_a", "ottt_o", "bptt")


def split_method(spec: str) -> tuple[str, dict[str, int]]:
    """Split a method spec ``'name'`` or ``'name:option=int,...'`` into the rule and its options.

    ``'sltt_k:k=2'`` is SLTT-K with ``k = 2`` (the rule's options, :mod:`ottt_jax.rules`).
    """
    name, _, opts = spec.partition(":")
    options = {}
    for item in filter(None, opts.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise ValueError(f"method option {item!r} in {spec!r} must look like 'key=int'")
        options[key.strip()] = int(value)
    return name, options


def label(method: str) -> str:
    """Return the display name of a method spec (``'ottt_a'`` -> ``'OTTT_A'``,
    ``'sltt_k:k=2'`` -> ``'SLTT-K (K=2)'``)."""
    name, options = split_method(method)
    text = "SLTT-K" if name == "sltt_k" else name.upper()
    if options:
        text += " (" + ", ".join(f"{k.upper()}={v}" for k, v in options.items()) + ")"
    return text


@dataclasses.dataclass(frozen=True)
class Iteration:
    """A training iteration and what it needs.

    Attributes:
      fn: ``fn(params, opt_state, x, y) -> (params, opt_state, loss)``; ``x`` is the static image
        batch ``[B, H, W, C]`` shown at each of the T steps, ``y`` the labels ``[B]`` int32.
      model: the Flax model (built with the rule's mode).
      optimizer: the optax optimizer.
      num_steps: T.
    """

    fn: Callable[..., Any]
    model: Any
    optimizer: Any
    num_steps: int


def check_method(method: str) -> str:
    """Return ``method`` if it names a registered rule and its options; else raise ValueError."""
    from ottt_jax import rules

    name, options = split_method(method)
    rules.get_rule(name).with_options(**options)
    return method


def make_iteration(
    build: Callable[..., Any],
    method: str,
    num_steps: int,
    batch: int,
    input_shape: tuple[int, int, int],
    *,
    lr: float = 0.1,
    momentum: float = 0.9,
    beta: float = 0.05,
) -> Iteration:
    """Build one training iteration: ``rules.get_rule(method).apply`` on a static image.

    For OTTT_A this is Eq. (5) (``∇W = Σ_t g_u[t]·â[t]ᵀ``, one update), for OTTT_O one update per
    step (Sec. 4.1), for BPTT the baseline's gradient through time; the loss is the paper's
    ``L[t] = ((1−β)·CE(out_t, y) + β·MSE(out_t, onehot(y))) / T`` summed over t.

    Args:
      build: ``build(mode) -> model``; called once with the rule's :class:`ottt_jax.mode.Mode`.
      method: a registered rule name ('ottt_a', 'ottt_o', 'bptt', 'sltt', ...), optionally with
        the rule's options, ``'sltt_k:k=2'`` (:func:`split_method`).
      num_steps: T (int >= 1).
      batch: B, the batch size the state is built for.
      input_shape: ``(H, W, C)`` of one frame.
      lr: SGD learning rate.
      momentum: SGD momentum.
      beta: the loss's MSE weight β.

    Returns:
      An :class:`Iteration`; its ``fn`` starts every batch from the zero state, carried in the
      model's compute dtype (``model.dtype``, as the trainer does).
    """
    import jax
    import jax.numpy as jnp
    import optax

    from ottt_jax import rules
    from ottt_jax.losses import instantaneous_loss
    from ottt_jax.models import make_step

    name, options = split_method(method)
    rule = rules.get_rule(name).with_options(**options)
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    model = build(rule.mode)
    step = make_step(model)
    loss_fn = functools.partial(instantaneous_loss, beta=beta, num_steps=num_steps)
    opt = optax.sgd(lr, momentum=momentum)
    shape = tuple(input_shape)

    # The trainer's convention (training/steps.py): the neuron state is carried in the model's
    # compute dtype (bfloat16 halves it); parameters and optimizer state stay float32.
    state_dtype = getattr(model, "dtype", jnp.float32)

    def fn(params, opt_state, x, y):
        st = model.init_state(batch, shape, train=False, dtype=state_dtype)
        # For stochastic rules (SLTT-K draws its K steps from it): one fixed draw; the cost of an
        # iteration does not depend on which K steps are drawn.
        key = jax.random.PRNGKey(0)
        r = rule.apply(
            step, loss_fn, opt, params, opt_state, st, x, y, num_steps=num_steps, key=key
        )
        return r.params, r.opt_state, r.loss

    return Iteration(fn=fn, model=model, optimizer=opt, num_steps=num_steps)


def init_params(model: Any, input_shape: tuple[int, int, int], seed: int = 0) -> Any:
    """Return ``model``'s parameters for frames of ``input_shape``: the trainer's
    :func:`ottt_jax.training.init_params` with the key ``PRNGKey(seed)``."""
    import jax

    from ottt_jax import training

    return training.init_params(model, tuple(input_shape), jax.random.PRNGKey(seed))


def count_params(params: Any) -> int:
    """Return the number of scalars in a parameter pytree."""
    import jax

    return int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)))


def synthetic_batch(batch: int, input_shape: tuple[int, int, int], num_classes: int, seed: int):
    """Return the benchmark's inputs, the same on every framework: numpy arrays.

    Args:
      batch: B.
      input_shape: ``(H, W, C)``.
      num_classes: K.
      seed: numpy seed.

    Returns:
      ``(x, y)``: ``x`` float32 ``[B, H, W, C]`` uniform in [-1, 1) (NHWC; transpose for NCHW),
      ``y`` int64 ``[B]`` uniform labels in ``[0, K)``.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(batch, *input_shape)).astype(np.float32)
    y = rng.integers(0, num_classes, size=(batch,))
    return x, y


def iteration_flops(flops: float, num_steps: int) -> float:
    """Return the FLOPs of one iteration from XLA's cost analysis of its compiled program.

    XLA's ``cost_analysis()['flops']`` counts the body of a ``while`` loop once, whatever its trip
    count; for T >= 2 every rule's time loop is such a loop, so the count is one time step's
    FLOPs (plus the optimizer update outside the loop, < 0.1% here) and an iteration is T times
    it. T = 1 compiles without a loop: the count is the whole iteration.

    Args:
      flops: ``compiled.cost_analysis()['flops']``.
      num_steps: T.

    Returns:
      FLOPs of one iteration.
    """
    return float(flops) * (num_steps if num_steps >= 2 else 1)


def cost_flops(compiled: Any) -> float | None:
    """Return ``compiled.cost_analysis()['flops']`` (None when the backend reports none)."""
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):  # older jax: one dict per program
        ca = ca[0] if ca else None
    if not ca or "flops" not in ca:
        return None
    return float(ca["flops"])
