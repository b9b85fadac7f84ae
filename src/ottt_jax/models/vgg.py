"""Spiking VGG and VGG-F (feedback) with scaled weight standardization, one time step per call.

The authors' VGG-11 (sWS) for CIFAR and CIFAR10-DVS::

    64C3-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3-GAP-FC

Every ``C3`` is a 3×3 sWS conv with padding 1, then a LIF neuron, then ``Scale(2.74)``; ``AP2`` is a
2×2 average pool applied to the spikes and to the trace alike; ``GAP`` averages to 1×1 and ``FC`` is
a plain ``Linear(C, K)`` (N(0, 0.01²) init, no sWS, no neuron). ``out_t`` is step ``t``'s logits and
the prediction is ``argmax Σ_t out_t``.

Gradient rule (online mode, OTTT): every weighted layer fed by spikes (every conv but the first, the
classifier, VGG-F's feedback conv) runs forward on the scaled spikes and takes its weight gradient
at the scaled (and pooled) presynaptic trace; the first conv sees the image with ordinary gradients.
``online=False`` gives the BPTT baseline (ordinary layers, membrane gradients through time) with the
same parameter tree.

Parameter paths follow the official PyTorch names (``features.3.op.weight`` ->
``params['features_3']['kernel']``); the LIF layers are named ``lif01, lif02, ...`` in network order
(state, statistics and :meth:`SpikingVGG.layer_sizes` share these names and sort in network order).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ottt_jax.layers import SPIKE_SCALE, Conv, Linear, avg_pool
from ottt_jax.neuron import LIF

Array = jax.Array

__all__ = ["VGG11_CFG", "SpikingVGG", "SpikingVGGF", "vgg11", "vgg11f"]

#: The authors' VGG-11 configuration ``'A'``: ints are 3×3 sWS conv widths, ``'M'`` a 2×2 avg pool.
VGG11_CFG: tuple = (64, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512)


def _check_cfg(cfg: Any) -> tuple:
    """Return ``cfg`` as a tuple after checking its entries (ValueError naming the bad entry)."""
    if isinstance(cfg, (str, bytes)) or not isinstance(cfg, (tuple, list)):
        raise ValueError(f"cfg must be a tuple of positive ints and 'M', got {cfg!r}")
    cfg = tuple(cfg)
    if not cfg:
        raise ValueError("cfg must not be empty; expected e.g. (64, 'M', 128)")
    for i, v in enumerate(cfg):
        is_int = isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
        if not (v == "M" if isinstance(v, str) else is_int and v > 0):
            raise ValueError(
                f"cfg[{i}] = {v!r} is invalid: entries must be positive ints (conv widths) or 'M' "
                f"(2x2 average pool)"
            )
    if not isinstance(cfg[0], (int, np.integer)):
        raise ValueError(f"cfg must start with a conv width (int), got cfg[0] = {cfg[0]!r}")
    return tuple(v if isinstance(v, str) else int(v) for v in cfg)


def _check_rate(name: str, p: Any) -> None:
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {p!r}")


def _upsample(x: Array, factor: int) -> Array:
    """Nearest-neighbour upsampling of an NHWC array by an integer factor."""
    if factor == 1:
        return x
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def _conv_coverage(n: int, k: int = 3, pad: int = 1) -> np.ndarray:
    """Per input index, the number of output positions of a stride-1 conv reading it (one axis)."""
    n_out = n + 2 * pad - k + 1
    out = np.arange(n_out)[:, None]
    i = np.arange(n)[None, :]
    return ((i >= out - pad) & (i <= out - pad + k - 1)).sum(0)


def _pool_map(n: int, pools: int) -> tuple[np.ndarray, np.ndarray]:
    """Map each index of an axis of size n through ``pools`` 2×2 floor pools: (index, kept)."""
    idx = np.arange(n)
    kept = np.ones(n, bool)
    for _ in range(pools):
        kept &= idx < 2 * (n // 2)
        idx, n = idx // 2, n // 2
    return idx, kept


class SpikingVGG(nn.Module):
    """A spiking VGG (sWS convs, LIF, Scale(2.74), avg pools, GAP, linear), one step per call.

    Attributes:
      cfg: conv widths (ints) and ``'M'`` (2×2 average pool), starting with a conv. Default VGG-11.
      num_classes: ``K``, the classifier's outputs.
      neuron: the LIF neuron (decay λ, V_th, surrogate); its ``online`` flag is replaced by
        ``online``.
      online: True for OTTT (detached membrane, spike-forward / trace-gradient layers); False for
        the BPTT baseline (ordinary layers). Same parameters either way.
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
    """

    cfg: tuple = VGG11_CFG
    num_classes: int = 10
    neuron: LIF = LIF()
    online: bool = True
    dtype: Any = jnp.float32
    feedback: bool = False
    neuron_dropout: float = 0.0
    fc_dropout: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "cfg", _check_cfg(self.cfg))
        k = self.num_classes
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"num_classes must be a positive int, got {k!r}")
        if not isinstance(self.neuron, LIF):
            raise ValueError(f"neuron must be an ottt_jax.LIF, got {type(self.neuron).__name__}")
        _check_rate("neuron_dropout", self.neuron_dropout)
        _check_rate("fc_dropout", self.fc_dropout)
        super().__post_init__()

    # -----------------------------------------------------------------------------------------
    # Static structure (no parameters needed).
    # -----------------------------------------------------------------------------------------

    def _convs(self) -> list[tuple[str, str, int, int]]:
        """Return ``(param_name, lif_name, features, pools_before)`` per conv in network order.

        Official indices: a conv entry holds 3 modules (conv, LIF, Scale) and ``'M'`` one; VGG-F
        takes the first conv out as ``conv1``, so its later indices are one less.
        """
        convs, idx, pools, n = [], 0, 0, 0
        for v in self.cfg:
            if v == "M":
                idx, pools = idx + 1, pools + 1
                continue
            n += 1
            if self.feedback and n == 1:
                name = "conv1"
            else:
                name = f"features_{idx - 1 if self.feedback else idx}"
            convs.append((name, f"lif{n:02d}", v, pools))
            idx, pools = idx + 3, 0
        return convs

    @property
    def num_pools(self) -> int:
        """The number of ``'M'`` entries in ``cfg`` (VGG-F upsamples by ``2**num_pools``)."""
        return sum(v == "M" for v in self.cfg)

    @property
    def _num_tail_pools(self) -> int:
        """The number of ``'M'`` after the last conv (applied before GAP and the feedback)."""
        return len(self.cfg) - 1 - max(i for i, v in enumerate(self.cfg) if v != "M")

    @property
    def lif_names(self) -> tuple[str, ...]:
        """The LIF layer names in network order (keys of the state, stats and layer sizes)."""
        return tuple(c[1] for c in self._convs())

    def _lif_shapes(self, input_shape: tuple[int, int, int]) -> dict[str, tuple[int, int, int]]:
        """Return ``{lif_name: (H, W, C)}`` and validate ``input_shape``."""
        if (
            not isinstance(input_shape, (tuple, list))
            or len(input_shape) != 3
            or not all(isinstance(d, (int, np.integer)) and d > 0 for d in input_shape)
        ):
            raise ValueError(f"input_shape must be (H, W, C) positive ints, got {input_shape!r}")
        h, w, _ = (int(d) for d in input_shape)
        shapes = {}
        for _, lif, feat, pools in self._convs():
            for _ in range(pools):
                if h < 2 or w < 2:
                    raise ValueError(
                        f"input_shape {tuple(input_shape)} is too small for cfg {self.cfg}: a 2x2 "
                        f"pool would see a {h}x{w} map"
                    )
                h, w = h // 2, w // 2
            shapes[lif] = (h, w, feat)
        for _ in range(self._num_tail_pools):
            if h < 2 or w < 2:
                raise ValueError(
                    f"input_shape {tuple(input_shape)} is too small for cfg {self.cfg}: a 2x2 "
                    f"pool would see a {h}x{w} map"
                )
            h, w = h // 2, w // 2
        if self.feedback:
            f = 2**self.num_pools
            if input_shape[0] % f or input_shape[1] % f:
                raise ValueError(
                    f"feedback=True needs H and W divisible by 2**{self.num_pools} = {f} so the "
                    f"upsampled feedback matches conv1's output; got input_shape {input_shape}"
                )
        return shapes

    def _feature_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Shape ``(h, w, C)`` of the last feature block's output (after trailing pools)."""
        shapes = self._lif_shapes(input_shape)
        h, w, c = shapes[self.lif_names[-1]]
        n_tail = self._num_tail_pools
        return h // 2**n_tail, w // 2**n_tail, c

    def init_state(
        self,
        batch_size: int,
        input_shape: tuple[int, int, int],
        *,
        key: Array | None = None,
        train: bool = True,
        dtype: Any = jnp.float32,
    ) -> dict:
        """Return the zero state of a new sequence (usable on the unbound module).

        Args:
          batch_size: ``B``.
          input_shape: ``(H, W, C)`` of one input frame.
          key: PRNG key for the per-sequence dropout masks; required when ``train`` and a
            dropout rate is > 0.
          train: draw the dropout masks; with False there is no dropout.
          dtype: dtype of the neuron states and masks.

        Returns:
          ``{'lif': {name: LIFState(v, trace)}}`` with each leaf ``[B, H_l, W_l, C_l]``, plus
          ``'neuron_mask': {name: [B, H_l, W_l, C_l]}`` and ``'fc_mask': [B, C]`` when those
          dropouts are active (values 0 or ``1/(1−p)``), and for VGG-F ``'feedback':
          {'spikes', 'trace'}`` (``[B, h, w, C]``, the previous step's scaled last-block output)
          and ``'step'`` (int32 scalar, 0 at the first step: no feedback then).
        """
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        shapes = self._lif_shapes(input_shape)
        state: dict[str, Any] = {
            "lif": {n: self.neuron.init_state((batch_size, *s), dtype) for n, s in shapes.items()}
        }
        use_nd = train and self.neuron_dropout > 0
        use_fc = train and self.fc_dropout > 0
        if (use_nd or use_fc) and key is None:
            raise ValueError(
                "key is required by init_state when train=True and neuron_dropout or fc_dropout "
                "> 0 (the per-sequence dropout masks are drawn from it)"
            )
        if use_nd or use_fc:
            keys = jax.random.split(key, len(shapes) + 1)
        if use_nd:
            p = self.neuron_dropout
            state["neuron_mask"] = {
                n: jax.random.bernoulli(k, 1.0 - p, (batch_size, *s)).astype(dtype) / (1.0 - p)
                for k, (n, s) in zip(keys[:-1], shapes.items())
            }
        if use_fc:
            p, c = self.fc_dropout, self._convs()[-1][2]
            keep = jax.random.bernoulli(keys[-1], 1.0 - p, (batch_size, c))
            state["fc_mask"] = keep.astype(dtype) / (1.0 - p)
        if self.feedback:
            z = jnp.zeros((batch_size, *self._feature_shape(input_shape)), dtype)
            state["feedback"] = {"spikes": z, "trace": z}
            state["step"] = jnp.zeros((), jnp.int32)
        return state

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
        shapes = self._lif_shapes(input_shape)
        convs = self._convs()
        n_tail = self._num_tail_pools
        out = {}
        for j, (_, lif, _, _) in enumerate(convs):
            h, w, c = shapes[lif]
            if j + 1 < len(convs):
                _, nxt_lif, c_next, pools = convs[j + 1]
                h2, w2, _ = shapes[nxt_lif]
                rows = self._axis_fan(h, pools, _conv_coverage(h2))
                cols = self._axis_fan(w, pools, _conv_coverage(w2))
                fan = c_next * rows.sum() * cols.sum() / (h * w)
            else:
                rows = self._axis_fan(h, n_tail, np.ones(h // 2**n_tail, int))
                cols = self._axis_fan(w, n_tail, np.ones(w // 2**n_tail, int))
                fan = self.num_classes * rows.sum() * cols.sum() / (h * w)
                if self.feedback:
                    s = 2**self.num_pools
                    h0, w0 = int(input_shape[0]), int(input_shape[1])
                    cov_r = _conv_coverage(h0).reshape(-1, s).sum(1)  # per F row: its s×s block
                    cov_c = _conv_coverage(w0).reshape(-1, s).sum(1)
                    rows = self._axis_fan(h, n_tail, cov_r)
                    cols = self._axis_fan(w, n_tail, cov_c)
                    fan += convs[0][2] * rows.sum() * cols.sum() / (h * w)
            out[lif] = (h * w * c, float(fan))
        return out

    @staticmethod
    def _axis_fan(n: int, pools: int, target: np.ndarray) -> np.ndarray:
        idx, kept = _pool_map(n, pools)
        return np.where(kept, target[np.minimum(idx, len(target) - 1)], 0)

    # -----------------------------------------------------------------------------------------
    # One time step.
    # -----------------------------------------------------------------------------------------

    def _check_inputs(self, state: dict, x: Array) -> None:
        if not isinstance(state, dict) or "lif" not in state:
            raise ValueError("state must be the dict returned by init_state (missing 'lif')")
        if set(state["lif"]) != set(self.lif_names):
            raise ValueError(
                f"state['lif'] has layers {sorted(state['lif'])}, expected {list(self.lif_names)}"
                f" for cfg {self.cfg}"
            )
        if self.feedback and ("feedback" not in state or "step" not in state):
            raise ValueError("state lacks 'feedback'/'step': build it with this VGG-F's init_state")
        if jnp.ndim(x) != 4:
            raise ValueError(f"x must be one frame batch [B, H, W, C] (NHWC), got shape {x.shape}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"x must be floating point, got dtype {x.dtype}")
        v0 = state["lif"][self.lif_names[0]].v
        if tuple(x.shape[:3]) != tuple(v0.shape[:3]):
            raise ValueError(
                f"x has batch/spatial shape {tuple(x.shape[:3])} but the state was built for "
                f"{tuple(v0.shape[:3])} ([B, H, W]); call init_state with the input's shape"
            )
        first = self._convs()[0][0]
        if not self.is_initializing() and self.has_variable("params", first):
            c_in = self.variables["params"][first]["kernel"].shape[2]
            if x.shape[-1] != c_in:
                raise ValueError(
                    f"x has {x.shape[-1]} channels but the first conv expects {c_in} "
                    f"(x: [B, H, W, C] NHWC)"
                )

    @nn.compact
    def __call__(self, state: dict, x: Array, *, return_stats: bool = False):
        """Advance one time step.

        Args:
          state: from :meth:`init_state` or the previous step.
          x: the frame ``x_t``, ``[B, H, W, C]`` float (NHWC).
          return_stats: also return ``{lif_name: spikes per sample [B] (float32)}``: the spikes
            each LIF layer emitted this step (after neuron dropout, unscaled: a 0/1 count).

        Returns:
          ``(logits [B, K], new_state)``, or ``((logits, stats), new_state)``.

        Per conv block: ``u = conv(S_in, trace=A_in)``; ``s, (v, â) = LIF(u)``;
        ``S = 2.74·m·s``, ``A = 2.74·m·â`` (``m`` the neuron-dropout mask); ``'M'`` pools ``S`` and
        ``A``; then ``logits = Linear(mean_hw(S)·m_fc, trace=mean_hw(A)·m_fc)``.
        """
        self._check_inputs(state, x)
        neuron = dataclasses.replace(self.neuron, online=self.online)
        convs = self._convs()
        masks = state.get("neuron_mask", {})
        new_lif, stats = {}, {}
        s = a = None
        a_scale = 1.0
        ci = 0
        for v in self.cfg:
            if v == "M":
                s, a = avg_pool(s), avg_pool(a)
                continue
            name, lif, feat, _ = convs[ci]
            conv = Conv(feat, name=name, dtype=self.dtype)
            if ci == 0:
                u = conv(x)
                if self.feedback:
                    u = u + self._feedback(state, feat)
            else:
                u = conv(s, trace=a if self.online else None, trace_scale=a_scale)
            spikes, st = neuron(state["lif"][lif], u)
            new_lif[lif] = st
            s, a = spikes, st.trace.astype(spikes.dtype)
            if lif in masks:  # the authors' neuron dropout acts on the emitted spikes
                m = masks[lif].astype(s.dtype)
                s, a = s * m, a * m
            if return_stats:
                sent = spikes * (masks[lif] > 0) if lif in masks else spikes
                stats[lif] = jnp.sum(sent, axis=(1, 2, 3), dtype=jnp.float32)
            # Scale(2.74): the spikes are scaled here; the trace's scale is carried as a constant
            # (a_scale) into the trace-rule ops, so their backward keeps the LIF's own trace
            # buffer (already in the scan carry) instead of a scaled copy.
            s, a_scale = s * SPIKE_SCALE, SPIKE_SCALE
            ci += 1
        new_state = dict(state, lif=new_lif)
        if self.feedback:
            new_state["feedback"] = {
                "spikes": jax.lax.stop_gradient(s).astype(state["feedback"]["spikes"].dtype),
                "trace": jax.lax.stop_gradient(a * a_scale).astype(
                    state["feedback"]["trace"].dtype
                ),
            }
            new_state["step"] = state["step"] + 1
        z, za = jnp.mean(s, axis=(1, 2)), jnp.mean(a, axis=(1, 2))
        if "fc_mask" in state:
            m = state["fc_mask"].astype(z.dtype)
            z, za = z * m, za * m
        logits = Linear(self.num_classes, name="classifier_0", dtype=self.dtype)(
            z, trace=za if self.online else None, trace_scale=a_scale
        )
        if return_stats:
            return (logits, stats), new_state
        return logits, new_state

    def _feedback(self, state: dict, features: int) -> Array:
        """Return ``fb_conv(upsample(F_{t−1}))``, zero at the first step of a sequence."""
        fb = state["feedback"]
        f = 2**self.num_pools
        up_s = _upsample(fb["spikes"].astype(self.dtype), f)
        up_a = _upsample(fb["trace"].astype(self.dtype), f)
        fb_conv = Conv(
            features,
            weight_standardization=False,
            kernel_init=nn.initializers.zeros,
            name="fb_conv",
            dtype=self.dtype,
        )
        y = fb_conv(up_s, trace=up_a if self.online else None)
        return y * (state["step"] > 0).astype(y.dtype)


class SpikingVGGF(SpikingVGG):
    """VGG-F: :class:`SpikingVGG` with ``feedback=True`` (authors: ``online_spiking_vgg11f_ws``)."""

    feedback: bool = True


def vgg11(num_classes: int = 10, **kwargs: Any) -> SpikingVGG:
    """Build the authors' spiking VGG-11 (sWS): CIFAR-10 (K=10), CIFAR-100, CIFAR10-DVS.

    Args:
      num_classes: ``K``.
      **kwargs: other :class:`SpikingVGG` fields (``neuron``, ``online``, ``dtype``,
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
