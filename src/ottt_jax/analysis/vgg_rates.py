"""The rate version of :class:`~ottt_jax.models.SpikingVGG` / VGG-F and its ``(∇L_sr)_sr``.

See :mod:`ottt_jax.analysis` for the closed-form maps and the feedback path in rates.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ottt_jax.analysis.implicit import implicit_sr_grad
from ottt_jax.analysis.rates import check_steps_decay, feedback_input_scale, sr_map, weighted_rate
from ottt_jax.layers import SPIKE_SCALE, Conv, Linear, avg_pool
from ottt_jax.losses import instantaneous_loss
from ottt_jax.models import SpikingVGG, VGGState, make_step
from ottt_jax.online import forward

Array = jax.Array
PyTree = Any

__all__ = [
    "SRResult",
    "check_image_batch",
    "check_vgg",
    "vgg_preactivations",
    "vgg_rate_forward",
    "vgg_rate_map",
    "vgg_rates",
    "vgg_readout",
    "vgg_sr_grad",
]


def check_vgg(model: Any) -> None:
    """Raise ``ValueError`` unless ``model`` is a :class:`~ottt_jax.models.SpikingVGG`."""
    if not isinstance(model, SpikingVGG):
        raise ValueError(f"model must be an ottt_jax.models.SpikingVGG, got {type(model).__name__}")


def _check_rates(model: SpikingVGG, rates: Any) -> None:
    if not isinstance(rates, dict) or set(rates) != set(model.neuron_names):
        got = sorted(rates) if isinstance(rates, dict) else type(rates).__name__
        raise ValueError(f"rates must be a dict over {list(model.neuron_names)}, got {got}")


def _check_state(state: Any) -> None:
    if not isinstance(state, VGGState):
        raise ValueError(
            f"state must be the VGGState from the model's init_state, got {type(state).__name__}"
        )


def _masks(state: VGGState | None) -> tuple[dict, Array | None]:
    if state is None:
        return {}, None
    _check_state(state)
    return state.neuron_mask or {}, state.fc_mask


def vgg_rates(model: SpikingVGG, state: VGGState, num_steps: int) -> dict[str, Array]:
    """Return every LIF layer's weighted firing rate after a run of ``num_steps`` steps.

    Args:
      model: the :class:`~ottt_jax.models.SpikingVGG` that produced ``state``.
      state: the :class:`~ottt_jax.models.VGGState` after the last step
        (``state.neurons[name].trace`` is ``â[T]``).
      num_steps: ``T``.

    Returns:
      ``{lif_name: a[T]}``, each ``[B, H_l, W_l, C_l]``: the rate of the neuron's own spikes
      (before any neuron-dropout mask).
    """
    check_vgg(model)
    _check_state(state)
    decay = model.neuron.decay
    return {n: weighted_rate(state.neurons[n].trace, num_steps, decay) for n in model.neuron_names}


def _pool(h: Array, n: int) -> Array:
    for _ in range(n):
        h = avg_pool(h)
    return h


def _scaled(model: SpikingVGG, lif: str, a: Array, masks: dict) -> Array:
    """Block output in rates: ``2.74 · m · a`` (the linear maps applied to the spikes)."""
    if lif in masks:
        a = a * masks[lif].astype(a.dtype)
    return a * SPIKE_SCALE


def _conv(params: dict, name: str, features: int, h: Array, **kw) -> Array:
    return Conv(features, **kw).apply({"params": params[name]}, h)


def _last_block(model: SpikingVGG, a_last: Array, masks: dict) -> Array:
    """``pool_tail(2.74 · m · a^L)``: what feeds GAP and the feedback."""
    return _pool(_scaled(model, model.neuron_names[-1], a_last, masks), model.num_tail_pools)


def vgg_readout(
    model: SpikingVGG, params: PyTree, rates: dict[str, Array], *, state: VGGState | None = None
) -> Array:
    """Return the readout ``o = W_fc · GAP(pool_tail(2.74 · a^L)) + b`` of the rates.

    Args:
      model: a :class:`~ottt_jax.models.SpikingVGG` (with or without feedback).
      params: its parameters.
      rates: ``{lif_name: [B, H_l, W_l, C_l]}`` (only the last layer's is read).
      state: optional state whose dropout masks (``neuron_mask``, ``fc_mask``) are applied.

    Returns:
      ``[B, K]`` logits (float32).
    """
    check_vgg(model)
    _check_rates(model, rates)
    masks, fc_mask = _masks(state)
    h = _last_block(model, rates[model.neuron_names[-1]], masks)
    z = jnp.mean(h, axis=(1, 2))
    if fc_mask is not None:
        z = z * fc_mask.astype(z.dtype)
    return Linear(model.num_classes).apply({"params": params["classifier_0"]}, z)


def _vgg_layers(
    model: SpikingVGG,
    params: PyTree,
    inputs: dict[str, Array],
    anchor: dict[str, Array] | None,
    x: Array,
    *,
    chain: bool,
    kappa: float,
    masks: dict,
) -> dict[str, Array]:
    """Apply every block's closed-form map, each ``sr_map``-anchored at ``anchor``.

    ``chain=True``: block l+1 reads block l's (sr-mapped) output (feedforward rate forward).
    ``chain=False``: block l+1 reads ``inputs[l]`` and block 1 the feedback of ``inputs[L]``
    (the equilibrium map ``F(a)``). ``anchor=None`` returns the pre-activations ``z^l``
    instead (only with ``chain=False``).
    """
    v_th = model.neuron.v_th
    convs = model.conv_specs()  # (param name, lif name, features, pools before), network order
    x = jnp.asarray(x, jnp.float32)
    out: dict[str, Array] = {}
    prev = None
    for i, (name, lif, feat, pools) in enumerate(convs):
        if i == 0:
            pre = _conv(params, name, feat, x)
            if model.feedback:
                fb = _last_block(model, inputs[model.neuron_names[-1]], masks)
                fb = jnp.repeat(jnp.repeat(fb, 2**model.num_pools, 1), 2**model.num_pools, 2)
                y = _conv(params, "fb_conv", feat, fb, weight_standardization=False)
                pre = pre + kappa * y
        else:
            src = out[prev] if chain else inputs[prev]
            h = _pool(_scaled(model, prev, src, masks), pools)
            pre = _conv(params, name, feat, h)
        z = pre / v_th
        out[lif] = z if anchor is None else sr_map(z, anchor[lif].astype(z.dtype))
        prev = lif
    return out


def vgg_rate_forward(
    model: SpikingVGG,
    params: PyTree,
    rates: dict[str, Array],
    x: Array,
    *,
    state: VGGState | None = None,
) -> Array:
    """Return the readout of the rate version of a feedforward SpikingVGG.

    Block by block ``a^l = sr_map(conv_l(pool(2.74·a^{l−1}))/V_th, a^l[T])`` (the first conv
    reads the image), then :func:`vgg_readout`. The value is the readout of the actual rates and
    ``jax.grad`` of a loss of it w.r.t. ``params`` is ``(∇L_sr)_sr`` (Eq. (6)).

    Args:
      model: a :class:`~ottt_jax.models.SpikingVGG` with ``feedback=False``.
      params: its parameters (read by the model's Flax names).
      rates: the actual rates ``{lif_name: [B, H_l, W_l, C_l]}`` (:func:`vgg_rates`).
      x: the static image ``[B, H, W, C]`` (its rate is itself).
      state: optional state whose dropout masks are applied (as in the SNN run).

    Returns:
      ``o``, ``[B, K]``.
    """
    check_vgg(model)
    if model.feedback:
        raise ValueError(
            "vgg_rate_forward needs model.feedback=False; a VGG-F's rates are an equilibrium: "
            "use vgg_rate_map with implicit_sr_grad (or vgg_sr_grad)"
        )
    _check_rates(model, rates)
    masks, _ = _masks(state)
    a = _vgg_layers(model, params, rates, rates, x, chain=True, kappa=0.0, masks=masks)
    return vgg_readout(model, params, a, state=state)


def vgg_rate_map(
    model: SpikingVGG,
    params: PyTree,
    rates: dict[str, Array],
    x: Array,
    *,
    num_steps: int,
    anchor: dict[str, Array] | None = None,
    state: VGGState | None = None,
) -> dict[str, Array]:
    """Return ``F(a)``: every block's closed-form rate from the rates it reads (equilibrium map).

    Block 1 reads the image and, for VGG-F, ``κ_T · fb_conv(up(pool_tail(2.74·a^L)))``; block
    l+1 reads ``pool(2.74·a^l)``. Each output is ``sr_map(pre/V_th, anchor^l)``: its value is
    ``anchor`` and its Jacobian ``σ'`` of the pre-activation computed from ``rates``.

    Args:
      model: a :class:`~ottt_jax.models.SpikingVGG` (feedback or not).
      params: its parameters.
      rates: ``a``, ``{lif_name: [B, H_l, W_l, C_l]}``.
      x: the static image ``[B, H, W, C]``.
      num_steps: ``T`` (sets ``κ_T`` of the feedback, :func:`feedback_input_scale`).
      anchor: the actual rates where ``σ'`` is evaluated; default ``rates``. Linearize at
        ``rates == anchor`` (as :func:`vgg_sr_grad` does).
      state: optional state whose dropout masks are applied.

    Returns:
      ``{lif_name: [B, H_l, W_l, C_l]}``.
    """
    check_vgg(model)
    _check_rates(model, rates)
    anchor = rates if anchor is None else anchor
    _check_rates(model, anchor)
    kappa = feedback_input_scale(num_steps, model.neuron.decay) if model.feedback else 0.0
    masks, _ = _masks(state)
    return _vgg_layers(model, params, rates, anchor, x, chain=False, kappa=kappa, masks=masks)


def vgg_preactivations(
    model: SpikingVGG,
    params: PyTree,
    rates: dict[str, Array],
    x: Array,
    *,
    num_steps: int,
    state: VGGState | None = None,
) -> dict[str, Array]:
    """Return every block's closed-form pre-activation ``z^l = (W^l a^{l−1} + b^l)/V_th``.

    ``z`` is computed from the given ``rates`` exactly as :func:`vgg_rate_map` does (VGG-F: with
    ``κ_T`` and the last block's rate as feedback); ``clamp(z)`` is the closed-form rate and
    ``1[0 < z < 1]`` the Jacobian mask of Eq. (6). ``z^l`` is also the weighted average input
    ``ū^l[T]/V_th`` of the SNN when ``rates`` are the layers' actual rates (for VGG-F, with the
    last block's rate over the first T−1 steps).

    Args:
      model, params, rates, x, num_steps, state: as in :func:`vgg_rate_map`.

    Returns:
      ``{lif_name: z^l [B, H_l, W_l, C_l]}``.
    """
    check_vgg(model)
    _check_rates(model, rates)
    kappa = feedback_input_scale(num_steps, model.neuron.decay) if model.feedback else 0.0
    masks, _ = _masks(state)
    return _vgg_layers(model, params, rates, None, x, chain=False, kappa=kappa, masks=masks)


class SRResult(NamedTuple):
    """What :func:`vgg_sr_grad` returns.

    Attributes:
      loss: ``L_sr`` of the readout of the actual rates (scalar).
      grads: ``(∇L_sr)_sr``, the tree of ``params``.
      rates: the actual rates ``{lif_name: a[T]}``.
      outputs: the SNN's per-step logits ``[T, B, K]``.
      residual: the fixed-point residual (VGG-F; 0 for feedforward nets).
      converged: ``residual < tol`` (True for feedforward nets).
    """

    loss: Array
    grads: PyTree
    rates: dict
    outputs: Array
    residual: Array
    converged: Array


def check_image_batch(x: Any, labels: Any) -> tuple[Array, Array]:
    """Return ``(x, labels)`` as arrays after checking a float ``[B, H, W, C]`` / int ``[B]`` pair.

    Raises:
      ValueError: naming ``x`` or ``labels`` when its dtype or shape is wrong.
    """
    x, labels = jnp.asarray(x), jnp.asarray(labels)
    if x.ndim != 4 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be a float image batch [B, H, W, C], got {x.dtype} {x.shape}")
    if labels.shape != x.shape[:1] or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"labels must be int [B] = {x.shape[:1]}, got {labels.dtype} {labels.shape}"
        )
    return x, labels


def vgg_sr_grad(
    model: SpikingVGG,
    params: PyTree,
    x: Array,
    labels: Array,
    *,
    num_steps: int,
    beta: float = 0.05,
    state: VGGState | None = None,
    num_iters: int = 50,
    tol: float = 1e-4,
    solver: str = "fixed_point",
) -> SRResult:
    """Run the SNN on a static image for T steps and return ``(∇L_sr)_sr`` at its rates.

    Args:
      model: a :class:`~ottt_jax.models.SpikingVGG` (``feedback`` True or False).
      params: its parameters.
      x: the static image ``[B, H, W, C]``, shown at every step.
      labels: int ``[B]``.
      num_steps: ``T``.
      beta: the MSE weight β of the loss.
      state: the initial state (default ``model.init_state(B, (H, W, C), train=False)``); its
        dropout masks, if any, are used in the rate version too.
      num_iters, tol, solver: of :func:`implicit_sr_grad` (VGG-F only; GMRES runs per
        example, ``restart=50``; its float32 residual levels off near 1e-4 when ``I − ∂F/∂a``
        is ill-conditioned, so pass a looser ``tol`` with it).

    Returns:
      :class:`SRResult`. Feedforward: ``jax.grad`` through :func:`vgg_rate_forward`. VGG-F:
      :func:`implicit_sr_grad` of :func:`vgg_rate_map` at the actual rates.
    """
    check_vgg(model)
    x, labels = check_image_batch(x, labels)
    check_steps_decay(num_steps, model.neuron.decay)
    if state is None:
        state = model.init_state(x.shape[0], tuple(x.shape[1:]), train=False)
    outs, final = forward(make_step(model), params, state, x, num_steps=num_steps)
    rates = jax.lax.stop_gradient(vgg_rates(model, final, num_steps))

    def loss_fn(o):
        return instantaneous_loss(o, labels, beta=beta, num_steps=1)

    if not model.feedback:
        loss, grads = jax.value_and_grad(
            lambda p: loss_fn(vgg_rate_forward(model, p, rates, x, state=state))
        )(params)
        zero = jnp.zeros((), jnp.float32)
        return SRResult(loss, grads, rates, outs, zero, jnp.array(True))
    res = implicit_sr_grad(
        lambda p, a: vgg_rate_map(model, p, a, x, num_steps=num_steps, anchor=rates, state=state),
        lambda p, a: vgg_readout(model, p, a, state=state),
        loss_fn,
        params,
        rates,
        num_iters=num_iters,
        tol=tol,
        solver=solver,
        per_example=True,
    )
    return SRResult(res.loss, res.grads, rates, outs, res.residual, res.converged)
