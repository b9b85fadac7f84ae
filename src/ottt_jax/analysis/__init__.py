"""Spike-representation gradients and the descent-direction analysis (Sec. 4.2, Theorems 1 and 2).

The package: :mod:`~ottt_jax.analysis.rates` (weighted rates, the clamp, ``sr_map``),
``implicit`` (the model-free equilibrium solver), ``vgg_rates`` (the rate model of SpikingVGG /
VGG-F) and ``descent`` (the descent-direction report). Every public name is re-exported here.

Spike representation
--------------------
For a LIF layer with leak λ run for T steps, the **weighted firing rate** and the **weighted
average input** are ::

    a[T] = Σ_{τ=1..T} λ^{T−τ} s[τ] / Σ_{τ=1..T} λ^{T−τ} = â[T] / Λ[T],
    ū[T] = Σ_{τ=1..T} λ^{T−τ} u[τ] / Λ[T],            Λ[T] = Σ_{k=0..T−1} λ^k,

where ``â[T] = λ·â[T−1] + s[T]`` is the neuron's presynaptic trace (``LIFState.trace``) and
``u[τ]`` its input current. :func:`weighted_rate` computes ``a[T]`` from the trace. As T grows
(and exactly at an equilibrium) the rates satisfy the closed-form mapping ::

    a^{l+1} = σ((W^l a^l + b^l) / V_th),     σ(x) = clamp(x, 0, 1),     σ'(x) = 1[0 < x < 1].

In the networks of this package ``Scale(2.74)`` and average pooling are linear maps applied to the
spikes, so they apply to the rates unchanged (so do per-sequence dropout masks); the first layer
reads the static image, whose "rate" is the image itself; the readout is the affine
``o = W a + b`` of the last (scaled, pooled) rate.

The gradient (∇_W L_sr)_sr (Eq. (6))
------------------------------------
``L_sr`` is a loss of the readout ``o`` computed from the rates through the closed-form mappings.
``(∇_W L_sr)_sr`` is its gradient by the chain rule with **every mapping's Jacobian evaluated at
the actual SNN rates** ``a^l[T]`` (not at the closed-form values): ::

    ∂L/∂W^l = (1/V_th) · [σ'(z^l) ⊙ δ^{l+1}] (a^l)ᵀ,    z^l = (W^l a^l + b^l)/V_th,
    δ^l = (W^l)ᵀ [σ'(z^l) ⊙ δ^{l+1}] / V_th,          with every a^l the actual rate.

:func:`sr_map` makes this generic: ``sr_map(z, a_actual)`` has the value ``a_actual`` and the
derivative ``σ'(z)`` w.r.t. ``z`` (and none w.r.t. ``a_actual``), i.e. it equals
``stop_gradient(a_actual) + σ(z) − stop_gradient(σ(z))`` with an exact value. Write the *rate
version* of a model once, with ``a^{l+1} = sr_map(pre^l / V_th, actual_rate^{l+1})`` at each
neuron, and ``jax.grad`` of the loss of its readout is ``(∇L_sr)_sr``. :func:`vgg_rate_forward`
is that rate version for :class:`~ottt_jax.models.SpikingVGG`.

**Loss.** ``L_sr = (1−β)·CE(o, y) + β·mean((o − onehot(y))²)``, the paper's loss (with its MSE
term) applied once to the readout ``o`` of the rates: :func:`ottt_jax.losses.instantaneous_loss`
with ``num_steps=1``. (The OTTT gradient is ``Σ_t ∇L[t]`` with ``L[t]`` the same loss of ``out_t``
divided by T, so both are on the scale of one loss; cosines and signs do not depend on it.)

Feedback networks (VGG-F) and implicit differentiation
------------------------------------------------------
With feedback the rates of all layers, ``a = (a^1, …, a^L)``, form an equilibrium ``a* = F(a*,
x; θ)``. Its gradient is taken by implicit differentiation, with the Jacobians of ``F`` evaluated
at the actual rates: ::

    ∇_θ L = ∂L/∂θ|_readout + (∂F/∂θ)ᵀ v,     v = g + (∂F/∂a)ᵀ v,     g = ∂L/∂a.

:func:`implicit_sr_grad` solves for ``v`` with a fixed number ``num_iters`` (default 50) of
fixed-point iterations ``v_0 = g``, ``v_{k+1} = g + (∂F/∂a)ᵀ v_k`` (one ``jax.vjp`` each; after
K iterations ``v_K = Σ_{j≤K} ((∂F/∂a)ᵀ)^j g``, which converges when the spectral radius of
``∂F/∂a`` is below 1; for a feedforward ``F`` it is exact after L−1 iterations). Convergence is
checked, not assumed: the result carries the relative residual
``‖g + (∂F/∂a)ᵀ v − v‖ / ‖v‖`` of the returned ``v`` (``converged`` = residual < ``tol``,
default 1e-4). When the loop gain exceeds 1 (the iteration diverges; seen after training a
VGG-F) ``solver='gmres'`` solves the same linear system with restarted GMRES instead (per
example for a batch, ``per_example=True``).

**Our VGG-F's feedback path in rates.** At step ``t`` (0-based) layer 1 receives
``u¹[t] = conv1(x) + 1[t ≥ 1]·fb_conv(up(F[t−1]))``, ``F`` being the last block's scaled,
pooled spikes and ``fb_conv`` affine (bias included in the ``1[t ≥ 1]`` term). Its weighted
average input over T steps is therefore exactly ::

    ū¹[T] = conv1(x) + κ_T · fb_conv(up(a_F[T−1])),      κ_T = Λ[T−1] / Λ[T],

with ``a_F[T−1]`` the weighted rate of ``F`` over the first T−1 steps (the feedback lags one
step and is absent at the first). The equilibrium map takes ``a_F[T−1] ≈ a_F[T]`` (the fixed
point assumption) and keeps the exact factor κ_T (:func:`feedback_input_scale`; κ_T → 1 as
T → ∞), so ::

    F¹(a) = σ((conv1(x) + κ_T · fb_conv(up(2.74 · pool_tail(a^L)))) / V_th),
    F^{l+1}(a) = σ(conv_{l+1}(pool(2.74 · a^l)) / V_th),
    o = W_fc · GAP(2.74 · pool_tail(a^L)) + b.

Descent directions
------------------
The paper proves that, under its conditions, OTTT gradients are descent directions for
``L_sr``: ``⟨(∇L)_OTTT, (∇L_sr)_sr⟩ > 0`` — Theorem 1 for feedforward networks and Theorem 2 for
feedback ones (its analysis uses the clamp surrogate ``1[|v − V_th| < V_th]``, whose derivative
matches σ' of the closed form; ``surrogate='clamp'``). :func:`descent_report`
measures the inner products and cosines per parameter leaf, per layer and over all parameters;
:func:`compare_gradients` runs OTTT, BPTT and the spike-representation gradient of a
:class:`~ottt_jax.models.SpikingVGG` on one batch.
"""

from ottt_jax.analysis.descent import compare_gradients, descent_report, gradient_comparison_fn
from ottt_jax.analysis.implicit import ImplicitResult, implicit_sr_grad
from ottt_jax.analysis.rates import (
    clamp,
    clamp_grad,
    feedback_input_scale,
    rate_normalizer,
    sr_map,
    weighted_rate,
)
from ottt_jax.analysis.vgg_rates import (
    SRResult,
    vgg_preactivations,
    vgg_rate_forward,
    vgg_rate_map,
    vgg_rates,
    vgg_readout,
    vgg_sr_grad,
)

__all__ = [
    "ImplicitResult",
    "SRResult",
    "clamp",
    "clamp_grad",
    "compare_gradients",
    "descent_report",
    "feedback_input_scale",
    "gradient_comparison_fn",
    "implicit_sr_grad",
    "rate_normalizer",
    "sr_map",
    "vgg_preactivations",
    "vgg_rate_forward",
    "vgg_rate_map",
    "vgg_rates",
    "vgg_readout",
    "vgg_sr_grad",
    "weighted_rate",
]
