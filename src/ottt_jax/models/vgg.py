"""Spiking VGG and VGG-F (feedback) with scaled weight standardization, one time step per call.

The authors' VGG-11 (sWS) for CIFAR and CIFAR10-DVS::

    64C3-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3-GAP-FC

Every ``C3`` is a 3×3 sWS conv with padding 1, then a LIF neuron, then ``Scale(2.74)``; ``AP2`` is a
2×2 average pool applied to the spikes and to the trace alike; ``GAP`` averages to 1×1 and ``FC`` is
a plain ``Linear(C, K)`` (N(0, 0.01²) init, no sWS, no neuron). ``out_t`` is step ``t``'s logits and
the prediction is ``argmax Σ_t out_t``.

Gradient rule (``mode=OTTT``): every weighted layer fed by spikes (every conv but the first, the
classifier, VGG-F's feedback conv) runs forward on the scaled spikes and takes its weight gradient
at the scaled (and pooled) presynaptic trace; the first conv sees the image with ordinary gradients.
``mode=BPTT`` gives the BPTT baseline (ordinary layers, membrane gradients through time) with the
same parameter tree. The layers decide from the mode; the model passes every trace.

The state types and the static structure (layout parsing, conv names, shapes, fan-outs) live in
:mod:`ottt_jax.models.vgg_parts`; this module re-exports :data:`VGG11_CFG`, :class:`VGGState` and
:class:`VGGFeedback`.

Parameter paths follow the official PyTorch names (``features.3.op.weight`` ->
``params['features_3']['kernel']``); the neuron layers are named ``lif01, lif02, ...`` in network
order (:attr:`SpikingVGG.neuron_names`; ``VGGState.neurons``, statistics and
:meth:`SpikingVGG.layer_sizes` share these names and sort in network order).

The state of a sequence is a :class:`VGGState` whose fields are always present: the neuron states,
the per-sequence dropout masks and VGG-F's feedback buffer, None for a part the model or the
sequence does not use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ottt_jax.layers import SPIKE_SCALE, STANDARDIZED, Conv, Linear, avg_pool
from ottt_jax.mode import OTTT, Mode
from ottt_jax.models.common import (
    check_mode,
    check_positive_int,
    check_rate,
    dropout_mask,
    map_trace,
    spikes_per_sample,
    upsample,
)
from ottt_jax.models.vgg_parts import (
    VGG11_CFG,
    VGGFeedback,
    VGGState,
    check_cfg,
    conv_specs,
    layer_sizes,
    lif_shapes,
)
from ottt_jax.neuron import LIF, Neuron, check_neuron

Array = jax.Array

__all__ = [
    "VGG11_CFG",
    "SpikingVGG",
    "SpikingVGGF",
    "VGGFeedback",
    "VGGState",
    "vgg11",
    "vgg11f",
]


class SpikingVGG(nn.Module):
    """A spiking VGG (sWS convs, LIF, Scale(2.74), avg pools, GAP, linear), one step per call.

    Attributes:
      cfg: conv widths (ints) and ``'M'`` (2×2 average pool), starting with a conv. Default VGG-11.
      num_classes: ``K``, the classifier's outputs.
      neuron: any :class:`~ottt_jax.neuron.Neuron` (default the paper's LIF); it runs with
        ``neuron.with_mode(mode)``.
      mode: the :class:`~ottt_jax.mode.Mode` of the rule that trains the model: ``OTTT``
        (detached membrane, spike-forward / trace-gradient layers), ``BPTT`` (ordinary layers) or
        ``SLTT``. Same parameters in every mode.
      dtype: compute dtype (parameters stay float32).
      feedback: VGG-F. The first conv becomes ``conv1`` and at ``t ≥ 1`` the network input is
        ``conv1(x_t) + fb_conv(upsample(F_{t−1}))``, ``F`` being the last feature block's scaled
        output (detached), upsampled ×2 per ``'M'``; ``fb_conv`` is a plain 3×3 conv (bias, no
        sWS, zero init) under the trace rule. Needs H and W divisible by ``2**(number of 'M')``.
      neuron_dropout: rate of the per-neuron dropout after every LIF (the authors' DVS setting
        0.1). The mask is drawn once per sequence in :meth:`init_state` and multiplies the spikes
        and the trace (inverted dropout, kept units scaled ``1/(1−p)``).
      fc_dropout: rate of a dropout on the pooled features before the classifier, mask fixed per
        sequence likewise. Not in the authors' VGG (they use 0).
      conv_op: the spike/trace conv every :class:`~ottt_jax.layers.Conv` computes with (None:
        :func:`~ottt_jax.trace.conv_spike_trace`); ``benchmarks/speed.py`` compares others.
    """

    #: Every sWS kernel is a layer of ottt_jax.layers: make_step hoists the sWS (online.Hoist).
    hoists_standardization = True

    cfg: tuple = VGG11_CFG
    num_classes: int = 10
    neuron: Neuron = LIF()
    mode: Mode = OTTT
    dtype: Any = jnp.float32
    feedback: bool = False
    neuron_dropout: float = 0.0
    fc_dropout: float = 0.0
    conv_op: Callable[..., Array] | None = None

    def __post_init__(self):
        object.__setattr__(self, "cfg", check_cfg(self.cfg))
        check_positive_int("num_classes", self.num_classes)
        check_neuron(self.neuron)
        check_mode(self.mode)
        check_rate("neuron_dropout", self.neuron_dropout)
        check_rate("fc_dropout", self.fc_dropout)
        super().__post_init__()

    # -----------------------------------------------------------------------------------------
    # Static structure (no parameters needed).
    # -----------------------------------------------------------------------------------------

    def conv_specs(self) -> list[tuple[str, str, int, int]]:
        """Return ``(param_name, neuron_name, features, pools_before)`` per conv in network order.

        Official indices: a conv entry holds 3 modules (conv, LIF, Scale) and ``'M'`` one; VGG-F
        takes the first conv out as ``conv1``, so its later indices are one less.
        """
        return conv_specs(self.cfg, self.feedback)

    @property
    def num_pools(self) -> int:
        """The number of ``'M'`` entries in ``cfg`` (VGG-F upsamples by ``2**num_pools``)."""
        return sum(v == "M" for v in self.cfg)

    @property
    def num_tail_pools(self) -> int:
        """The number of ``'M'`` after the last conv (applied before GAP and the feedback)."""
        return len(self.cfg) - 1 - max(i for i, v in enumerate(self.cfg) if v != "M")

    @property
    def neuron_names(self) -> tuple[str, ...]:
        """The neuron layer names in network order (keys of the state, stats and layer sizes)."""
        return tuple(c[1] for c in self.conv_specs())

    def _lif_shapes(self, input_shape: tuple[int, int, int]) -> dict[str, tuple[int, int, int]]:
        """Return ``{lif_name: (H, W, C)}`` and validate ``input_shape``."""
        return lif_shapes(self, input_shape)

    def _feature_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Shape ``(h, w, C)`` of the last feature block's output (after trailing pools)."""
        shapes = self._lif_shapes(input_shape)
        h, w, c = shapes[self.neuron_names[-1]]
        n_tail = self.num_tail_pools
        return h // 2**n_tail, w // 2**n_tail, c

    def init_state(
        self,
        batch_size: int,
        input_shape: tuple[int, int, int],
        *,
        key: Array | None = None,
        train: bool = True,
        dtype: Any = jnp.float32,
    ) -> VGGState:
        """Return the zero state of a new sequence (usable on the unbound module).

        Args:
          batch_size: ``B``.
          input_shape: ``(H, W, C)`` of one input frame.
          key: PRNG key for the per-sequence dropout masks; required when ``train`` and a
            dropout rate is > 0.
          train: draw the dropout masks; with False there is no dropout.
          dtype: dtype of the neuron states and masks.

        Returns:
          A :class:`VGGState`: ``neurons`` ``{name: neuron state}`` (zeros, each leaf
          ``[B, H_l, W_l, C_l]``); ``neuron_mask`` ``{name: [B, H_l, W_l, C_l]}`` and ``fc_mask``
          ``[B, C]`` when those dropouts are active (values 0 or ``1/(1−p)``), else None; for
          VGG-F ``feedback`` (zeros ``[B, h, w, C]``) and ``step`` (int32 0), else None.
        """
        check_positive_int("batch_size", batch_size)
        shapes = self._lif_shapes(input_shape)
        neuron = self.neuron.with_mode(self.mode)  # its state has a trace iff the mode keeps one
        neurons = {n: neuron.init_state((batch_size, *s), dtype) for n, s in shapes.items()}
        use_nd = train and self.neuron_dropout > 0
        use_fc = train and self.fc_dropout > 0
        if (use_nd or use_fc) and key is None:
            raise ValueError(
                "key is required by init_state when train=True and neuron_dropout or fc_dropout "
                "> 0 (the per-sequence dropout masks are drawn from it)"
            )
        neuron_mask = fc_mask = feedback = step = None
        if use_nd or use_fc:
            keys = jax.random.split(key, len(shapes) + 1)
        if use_nd:
            p = self.neuron_dropout
            neuron_mask = {
                n: dropout_mask(k, p, (batch_size, *s), dtype)
                for k, (n, s) in zip(keys[:-1], shapes.items())
            }
        if use_fc:
            c = self.conv_specs()[-1][2]
            fc_mask = dropout_mask(keys[-1], self.fc_dropout, (batch_size, c), dtype)
        if self.feedback:
            z = jnp.zeros((batch_size, *self._feature_shape(input_shape)), dtype)
            feedback = VGGFeedback(spikes=z, trace=z if self.mode.keeps_trace else None)
            step = jnp.zeros((), jnp.int32)
        return VGGState(neurons, neuron_mask, fc_mask, feedback, step)

    def layer_sizes(self, input_shape: tuple[int, int, int]) -> dict[str, tuple[int, float]]:
        """Return ``{lif_name: (num_neurons, fan_out)}`` for the SOP count (no parameters needed).

        Args:
          input_shape: ``(H, W, C)`` of one input frame.

        Returns:
          ``num_neurons = H_l·W_l·C_l``; ``fan_out`` is the layer's **mean exact** fan-out: the
          number of synaptic operations one spike triggers in the next weighted layer, averaged
          over the layer's neurons (= total synapses leaving the layer / neurons). Counting rules:

          * next layer a 3×3 pad-1 conv with ``C_out`` channels: ``9·C_out`` for interior
            neurons; border neurons reach only the output positions whose window covers them
            (the zero padding has no synapses);
          * ``'M'`` pools in between: a spike reaches the synapses of its pooled pixel (the 1/4
            weight of the average is folded into them); neurons cropped by a floor pool reach none;
          * the last layer feeds the classifier through global average pooling: ``K`` synapses per
            neuron (weight ``1/(h·w)`` folded in), plus, for VGG-F, the feedback conv: each neuron
            is copied to an ``s×s`` block (``s = 2**num_pools``), each copy with its own 3×3
            synapses into ``C_0`` channels (border-exact). The feedback is counted at every step.

          The first conv reads the image (not spikes) and is not counted. ``sops`` multiplies
          these means by the per-layer spike totals: exact when every neuron of a layer fires
          equally often, else off only by the border/cropping non-uniformity.
        """
        return layer_sizes(self, input_shape)

    # -----------------------------------------------------------------------------------------
    # One time step.
    # -----------------------------------------------------------------------------------------

    def _check_inputs(self, state: VGGState, x: Array) -> None:
        if not isinstance(state, VGGState):
            raise ValueError(
                f"state must be the VGGState returned by init_state, got {type(state).__name__}"
            )
        if not isinstance(state.neurons, Mapping) or set(state.neurons) != set(self.neuron_names):
            n = state.neurons
            got = sorted(n) if isinstance(n, Mapping) else type(n).__name__
            raise ValueError(
                f"state.neurons has layers {got}, expected {list(self.neuron_names)} for cfg "
                f"{self.cfg}"
            )
        if state.neuron_mask is not None and set(state.neuron_mask) != set(self.neuron_names):
            raise ValueError(
                f"state.neuron_mask has layers {sorted(state.neuron_mask)}, expected "
                f"{list(self.neuron_names)} (or None: no neuron dropout)"
            )
        if self.feedback and (state.feedback is None or state.step is None):
            raise ValueError(
                "state.feedback/state.step are None: build the state with this VGG-F's init_state"
            )
        if not self.feedback and (state.feedback is not None or state.step is not None):
            raise ValueError(
                "state.feedback/state.step are set but this VGG has feedback=False: build the "
                "state with this model's init_state"
            )
        if jnp.ndim(x) != 4:
            raise ValueError(f"x must be one frame batch [B, H, W, C] (NHWC), got shape {x.shape}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"x must be floating point, got dtype {x.dtype}")
        v0 = jax.tree.leaves(state.neurons[self.neuron_names[0]])[0]  # any Neuron's state
        if tuple(x.shape[:3]) != tuple(v0.shape[:3]):
            raise ValueError(
                f"x has batch/spatial shape {tuple(x.shape[:3])} but the state was built for "
                f"{tuple(v0.shape[:3])} ([B, H, W]); call init_state with the input's shape"
            )
        first = self.conv_specs()[0][0]
        if not self.is_initializing():
            c_in = None
            for col in ("params", STANDARDIZED):  # the raw kernel, or a hoisted sWS one
                layer = self.variables.get(col, {}).get(first, {})
                if "kernel" in layer:
                    c_in = layer["kernel"].shape[2]
            if c_in is not None and x.shape[-1] != c_in:
                raise ValueError(
                    f"x has {x.shape[-1]} channels but the first conv expects {c_in} "
                    f"(x: [B, H, W, C] NHWC)"
                )

    @nn.compact
    def __call__(self, state: VGGState, x: Array, *, return_stats: bool = False):
        """Advance one time step.

        Args:
          state: the :class:`VGGState` from :meth:`init_state` or the previous step.
          x: the frame ``x_t``, ``[B, H, W, C]`` float (NHWC).
          return_stats: also return ``{lif_name: spikes per sample [B] (float32)}``: the spikes
            each LIF layer emitted this step (after neuron dropout, unscaled: a 0/1 count).

        Returns:
          ``(logits [B, K], new_state)``, or ``((logits, stats), new_state)``; ``new_state`` is a
          :class:`VGGState` with the same masks (and the same None fields).

        Per conv block: ``u = conv(S_in, trace=A_in)``; ``s, (v, â) = LIF(u)``;
        ``S = 2.74·m·s``, ``A = 2.74·m·â`` (``m`` the neuron-dropout mask); ``'M'`` pools ``S`` and
        ``A``; then ``logits = Linear(mean_hw(S)·m_fc, trace=mean_hw(A)·m_fc)``.
        """
        self._check_inputs(state, x)
        neuron = self.neuron.with_mode(self.mode)
        convs = self.conv_specs()
        masks = {} if state.neuron_mask is None else state.neuron_mask
        new_neurons, stats = {}, {}
        s = a = None
        a_scale = 1.0
        ci = 0
        for v in self.cfg:
            if v == "M":
                s, a = avg_pool(s), map_trace(avg_pool, a)
                continue
            name, lif, feat, _ = convs[ci]
            conv = Conv(feat, name=name, dtype=self.dtype, mode=self.mode, op=self.conv_op)
            if ci == 0:
                u = conv(x)
                if self.feedback:
                    u = u + self._feedback(state, feat)
            else:
                u = conv(s, trace=a, trace_scale=a_scale)
            spikes, st = neuron(state.neurons[lif], u)
            new_neurons[lif] = st
            dt = spikes.dtype
            s, a = spikes, map_trace(lambda t, dt=dt: t.astype(dt), st.trace)
            if lif in masks:  # the authors' neuron dropout acts on the emitted spikes
                m = masks[lif].astype(s.dtype)
                s, a = s * m, map_trace(lambda t, m=m: t * m, a)
            if return_stats:
                sent = spikes * (masks[lif] > 0) if lif in masks else spikes
                stats[lif] = spikes_per_sample(sent)
            # Scale(2.74): the spikes are scaled here; the trace's scale is carried as a constant
            # (a_scale) into the trace-rule ops, so their backward keeps the LIF's own trace
            # buffer (already in the scan carry) instead of a scaled copy.
            s, a_scale = s * SPIKE_SCALE, SPIKE_SCALE
            ci += 1
        new_state = state._replace(neurons=new_neurons)
        if self.feedback:
            new_state = new_state._replace(
                feedback=VGGFeedback(
                    spikes=jax.lax.stop_gradient(s).astype(state.feedback.spikes.dtype),
                    trace=map_trace(
                        lambda t: jax.lax.stop_gradient(t * a_scale).astype(t.dtype), a
                    ),
                ),
                step=state.step + 1,
            )
        z, za = jnp.mean(s, axis=(1, 2)), map_trace(lambda t: jnp.mean(t, axis=(1, 2)), a)
        if state.fc_mask is not None:
            m = state.fc_mask.astype(z.dtype)
            z, za = z * m, map_trace(lambda t: t * m, za)
        logits = Linear(self.num_classes, name="classifier_0", dtype=self.dtype, mode=self.mode)(
            z, trace=za, trace_scale=a_scale
        )
        if return_stats:
            return (logits, stats), new_state
        return logits, new_state

    def _feedback(self, state: VGGState, features: int) -> Array:
        """Return ``fb_conv(upsample(F_{t−1}))``, zero at the first step of a sequence."""
        fb = state.feedback
        f = 2**self.num_pools
        up_s = upsample(fb.spikes.astype(self.dtype), f)
        up_a = map_trace(lambda t: upsample(t.astype(self.dtype), f), fb.trace)
        fb_conv = Conv(
            features,
            weight_standardization=False,
            kernel_init=nn.initializers.zeros,
            name="fb_conv",
            dtype=self.dtype,
            mode=self.mode,
            op=self.conv_op,
        )
        y = fb_conv(up_s, trace=up_a)
        return y * (state.step > 0).astype(y.dtype)


class SpikingVGGF(SpikingVGG):
    """VGG-F: :class:`SpikingVGG` with ``feedback=True`` (authors: ``online_spiking_vgg11f_ws``)."""

    feedback: bool = True


def vgg11(num_classes: int = 10, **kwargs: Any) -> SpikingVGG:
    """Build the authors' spiking VGG-11 (sWS): CIFAR-10 (K=10), CIFAR-100, CIFAR10-DVS.

    Args:
      num_classes: ``K``.
      **kwargs: other :class:`SpikingVGG` fields (``neuron``, ``mode``, ``dtype``,
        ``neuron_dropout`` — 0.1 for CIFAR10-DVS —, ``fc_dropout``). The input channels (3 or 2
        for DVS) come from the input at init.

    Returns:
      The module; 9,228,362 parameters for K=10 with RGB input.
    """
    return SpikingVGG(cfg=VGG11_CFG, num_classes=num_classes, **kwargs)


def vgg11f(num_classes: int = 100, **kwargs: Any) -> SpikingVGGF:
    """Build the authors' spiking VGG-11-F (sWS, feedback from the last block to the first conv).

    Args:
      num_classes: ``K`` (the paper uses VGG-F on CIFAR-100).
      **kwargs: other :class:`SpikingVGG` fields.

    Returns:
      The module; 9,569,508 parameters for K=100 with RGB input.
    """
    return SpikingVGGF(cfg=VGG11_CFG, num_classes=num_classes, **kwargs)
