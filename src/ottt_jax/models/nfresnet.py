"""Spiking normalizer-free ResNets (NF-ResNet-18/34/50), the ImageNet models of OTTT.

One call runs ONE time step, with the model interface shared by every ``ottt_jax`` model::

    state = model.init_state(batch, (H, W, C), key=key, train=True)
    (logits, new_state) = model.apply({'params': params}, state, x_t)

Structure (the authors' ``online_spiking_nfresnet*``; see ``official_implementation.md``):

* **Stem:** a 7×7 stride-2 sWS conv on the image (ordinary gradient, no neuron), then a 3×3
  stride-2 average pool with padding 1 that counts the padded zeros.
* **Pre-activation blocks** on a real-valued residual stream ``x``: ``h = LIF1(x / β)·2.74``; the
  shortcut is ``downsample(h)`` (1×1 sWS conv with stride, trace rule) when the shape changes,
  otherwise the raw ``x``; the residual branch ``y`` is a chain of sWS convs on ``h``, each later
  conv preceded by its own LIF and Scale(2.74); ``out = y · skipinit_gain · α + shortcut``.
* **Head:** global average pool of the stream, optional fixed-mask dropout, and a plain
  ``Linear`` (``fc``) whose kernel starts at zero. Its input is real-valued, not spikes, so it
  is an ordinary layer, never under the trace rule.

Every conv fed by spikes is passed its presynaptic trace and asks the model's ``mode``: the
spike-forward / trace-gradient rule under ``mode.OTTT``, an ordinary conv under ``mode.BPTT``.

**β and α** (signal propagation of NF-ResNets, Brock et al. 2021): the expected variance of the
stream starts at 1; each block divides its input by ``β = sqrt(expected variance)`` and adds
``α²`` to it; a block with a downsample shortcut resets it to ``1 + α²``.
:meth:`NFResNet.block_constants` lists the values.

**Bottleneck (NF-ResNet-50)** mirrors the BasicBlock rule as in the authors' code: a LIF and
Scale(2.74) before every conv, i.e. ``h = LIF1(x/β)·2.74`` feeds ``conv1`` (1×1) and the
downsample, ``LIF2`` feeds ``conv2`` (3×3, carries the stride) and ``LIF3`` feeds ``conv3`` (1×1,
``4·planes`` channels). The stage's first block has a downsample whenever its stride is not 1
or its input width is not ``4·planes`` (so ``layer1_0`` has one).

**Stochastic depth** (``stochastic_depth = p``): each block's residual branch is dropped for a
whole sequence with one Bernoulli draw per block *per sample*, drawn in :meth:`init_state` and
held for all steps; a dropped block returns its shortcut exactly. Its LIFs still run (the first
one feeds the downsample shortcut; the others are multiplied by 0 but still counted in the
stats). As in the authors' code the surviving branches are not rescaled and nothing is dropped
in evaluation (``train=False``). ``stochastic_depth_schedule`` is ``'uniform'`` (every block has
rate ``p``: the authors' choice) or ``'linear'`` (block ``i`` of ``N`` has rate ``p·(i+1)/N``,
Huang et al. 2016). The authors drew one value per block for the whole (per-GPU) batch; drawing
per sample is the same in distribution for each sequence.

**fc dropout** (``fc_dropout = p``): an inverted-dropout mask ``[B, C]`` on the pooled features,
drawn in :meth:`init_state` and fixed for the sequence (kept units scaled by ``1/(1−p)``).

The blocks (:class:`BlockSpec`, :class:`NFBlock`) live in :mod:`ottt_jax.models.nfresnet_blocks`
and are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ottt_jax.layers import Conv, Linear, avg_pool
from ottt_jax.mode import OTTT, Mode
from ottt_jax.models.common import (
    check_input_shape,
    check_mode,
    check_positive_int,
    check_rate,
    conv_coverage,
    dropout_mask,
)
from ottt_jax.models.nfresnet_blocks import EXPANSION, SD_SCHEDULES, BlockSpec, NFBlock, out_size
from ottt_jax.neuron import LIF, Neuron, check_neuron

Array = jax.Array

__all__ = [
    "BlockSpec",
    "NFBlock",
    "NFResNet",
    "NFResNetState",
    "nfresnet18",
    "nfresnet34",
    "nfresnet50",
]


class NFResNetState(NamedTuple):
    """The state of one sequence of an :class:`NFResNet` (a pytree of fixed fields).

    Attributes:
      neurons: ``{'{block}/sn{i}': neuron state}`` over :attr:`NFResNet.neuron_names` (a
        ``LIFState(v, trace)`` for the default LIF), each leaf ``[B, H_l, W_l, C_l]``. Iterate it
        through ``neuron_names``: JAX transformations rebuild dicts in sorted key order.
      keep: ``{block_name: [B]}`` the per-sequence stochastic-depth draws, 1 (residual branch
        kept) or 0 (dropped for the whole sequence); all ones without stochastic depth.
      fc_mask: ``[B, num_features]`` the per-sequence dropout mask before ``fc``, 0 or
        ``1/(1−p)``; all ones without fc dropout.
    """

    neurons: dict[str, Any]
    keep: dict[str, Array]
    fc_mask: Array


class NFResNet(nn.Module):
    """A spiking NF-ResNet (one time step per call).

    Attributes:
      stage_sizes: blocks per stage, e.g. ``(3, 4, 6, 3)``; stage ``s`` (0-based) has
        ``base_planes · 2**s`` planes and stride 2 except the first.
      block: ``'basic'`` or ``'bottleneck'``.
      num_classes: K.
      neuron: any :class:`~ottt_jax.neuron.Neuron`; it runs as ``neuron.with_mode(mode)``.
      mode: the :class:`~ottt_jax.mode.Mode` of the training rule (``OTTT``, ``BPTT``, ...).
      dtype: compute dtype (parameters stay float32).
      alpha: α, the residual-branch scale (0.2).
      stochastic_depth: drop rate p in [0, 1) of the residual branches (0 disables).
      stochastic_depth_schedule: ``'uniform'`` (rate p everywhere) or ``'linear'`` (p·(i+1)/N).
      fc_dropout: dropout rate in [0, 1) before ``fc``, mask fixed per sequence.
      base_planes: planes of the first stage and channels of the stem (64 for the paper's
        models; smaller values give toy networks).
    """

    #: Every sWS kernel is a layer of ottt_jax.layers: make_step hoists the sWS (online.Hoist).
    hoists_standardization = True

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    block: str = "basic"
    num_classes: int = 1000
    neuron: Neuron = LIF()
    mode: Mode = OTTT
    dtype: Any = jnp.float32
    alpha: float = 0.2
    stochastic_depth: float = 0.0
    stochastic_depth_schedule: str = "uniform"
    fc_dropout: float = 0.0
    base_planes: int = 64

    def __post_init__(self):
        sizes = self.stage_sizes
        if (
            isinstance(sizes, (str, bytes))
            or not isinstance(sizes, Sequence)
            or len(sizes) == 0
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes)
        ):
            raise ValueError(
                f"stage_sizes must be a non-empty sequence of ints >= 1, got {sizes!r}"
            )
        object.__setattr__(self, "stage_sizes", tuple(sizes))
        if self.block not in EXPANSION:
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {self.block!r}")
        for field in ("num_classes", "base_planes"):
            check_positive_int(field, getattr(self, field))
        for field in ("stochastic_depth", "fc_dropout"):
            check_rate(field, getattr(self, field))
        if self.stochastic_depth_schedule not in SD_SCHEDULES:
            raise ValueError(
                f"stochastic_depth_schedule must be one of {SD_SCHEDULES}, "
                f"got {self.stochastic_depth_schedule!r}"
            )
        a = self.alpha
        if not isinstance(a, (int, float)) or isinstance(a, bool) or not math.isfinite(a):
            raise ValueError(f"alpha must be a finite number, got {a!r}")
        check_neuron(self.neuron)
        check_mode(self.mode)
        super().__post_init__()

    # ------------------------------------------------------------------------------------------
    # Static structure
    # ------------------------------------------------------------------------------------------

    def block_specs(self) -> list[BlockSpec]:
        """Return every block's static description, in network order.

        Returns:
          One :class:`BlockSpec` per block. β follows the authors' ``_make_layer``: the expected
          variance starts at 1, grows by α² after each block and is reset to ``1 + α²`` after a
          block with a downsample shortcut; ``β = sqrt(variance)`` before the block.
        """
        expansion = EXPANSION[self.block]
        n_blocks = sum(self.stage_sizes)
        var, in_f, specs = 1.0, self.base_planes, []
        for s, n in enumerate(self.stage_sizes):
            planes = self.base_planes * 2**s
            out_f = planes * expansion
            for i in range(n):
                stride = 2 if (s > 0 and i == 0) else 1
                ds = i == 0 and (stride != 1 or in_f != out_f)
                idx = len(specs)
                if self.stochastic_depth_schedule == "linear":
                    rate = self.stochastic_depth * (idx + 1) / n_blocks
                else:
                    rate = float(self.stochastic_depth)
                specs.append(
                    BlockSpec(
                        name=f"layer{s + 1}_{i}",
                        kind=self.block,
                        in_features=in_f,
                        planes=planes,
                        out_features=out_f,
                        stride=stride,
                        has_downsample=ds,
                        beta=math.sqrt(var),
                        alpha=float(self.alpha),
                        drop_rate=rate,
                    )
                )
                var = 1.0 + self.alpha**2 if ds else var + self.alpha**2
                in_f = out_f
        return specs

    def block_constants(self) -> list[tuple[str, float, float, bool]]:
        """Return ``[(name, beta, alpha, has_downsample)]`` for every block, in network order."""
        return [(b.name, b.beta, b.alpha, b.has_downsample) for b in self.block_specs()]

    @property
    def num_features(self) -> int:
        """Channels of the final stream (the input size of ``fc``)."""
        return self.block_specs()[-1].out_features

    @property
    def neuron_names(self) -> tuple[str, ...]:
        """The neuron layer names ``'{block}/sn{i}'`` in network order (stats, layer sizes)."""
        return tuple(f"{b.name}/{k}" for b in self.block_specs() for k in self._block_neurons())

    def _block_neurons(self) -> tuple[str, ...]:
        """Return the neuron names inside one block: sn1, sn2 (and sn3 in a bottleneck)."""
        return ("sn1", "sn2") if self.block == "basic" else ("sn1", "sn2", "sn3")

    def layer_sizes(self, input_shape: tuple[int, int, int]) -> dict[str, tuple[int, float]]:
        """Return ``{neuron_name: (num_neurons, fan_out)}`` for the SOP count (no parameters).

        Args:
          input_shape: ``(H, W, C)`` of one frame.

        Returns:
          ``num_neurons = H_l·W_l·C_l``; ``fan_out`` the mean exact number of synapses one spike
          reaches: the convs the layer feeds (``sn1``: ``conv1`` and the downsample when there is
          one; ``sn2``/``sn3``: the next conv of the branch), each a ``k×k`` conv with stride and
          ``(k − 1)/2`` zero padding counted border-exact (padding has no synapses; a stride-2
          1×1 conv reads only every other position). The stream, the stem and ``fc`` read
          real values, not spikes, and are not counted.
        """
        out = {}
        for b, shapes in self._neuron_shapes(check_input_shape(input_shape)):
            if b.kind == "basic":
                reads = {"sn1": [(3, b.stride, b.planes)], "sn2": [(3, 1, b.out_features)]}
            else:
                reads = {
                    "sn1": [(1, 1, b.planes)],
                    "sn2": [(3, b.stride, b.planes)],
                    "sn3": [(1, 1, b.out_features)],
                }
            if b.has_downsample:
                reads["sn1"].append((1, b.stride, b.out_features))
            for key, (h, w, c) in shapes.items():
                syn = sum(
                    c_out
                    * conv_coverage(h, k, s, (k - 1) // 2).sum()
                    * conv_coverage(w, k, s, (k - 1) // 2).sum()
                    for k, s, c_out in reads[key]
                )
                out[f"{b.name}/{key}"] = (h * w * c, float(syn / (h * w)))
        return out

    def _neuron_shapes(self, input_shape: tuple[int, int, int]) -> list[tuple[BlockSpec, dict]]:
        h, w = input_shape[0], input_shape[1]
        h, w = out_size(out_size(h, 2), 2), out_size(out_size(w, 2), 2)  # stem conv, pool
        out = []
        for b in self.block_specs():
            ho, wo = out_size(h, b.stride), out_size(w, b.stride)
            shapes = {"sn1": (h, w, b.in_features)}
            if b.kind == "basic":
                shapes["sn2"] = (ho, wo, b.planes)
            else:
                shapes["sn2"] = (h, w, b.planes)
                shapes["sn3"] = (ho, wo, b.planes)
            out.append((b, shapes))
            h, w = ho, wo
        return out

    # ------------------------------------------------------------------------------------------
    # State
    # ------------------------------------------------------------------------------------------

    def init_state(
        self,
        batch_size: int,
        input_shape: tuple[int, int, int],
        *,
        key: Array | None = None,
        train: bool = True,
        dtype: Any = jnp.float32,
    ) -> NFResNetState:
        """Return the zero state of a new sequence, with its per-sequence random masks.

        Args:
          batch_size: B.
          input_shape: ``(H, W, C)`` of one frame.
          key: PRNG key for the stochastic-depth and fc-dropout masks; required when
            ``train=True`` and either rate is > 0.
          train: draw the masks; with False every block is kept and the fc mask is all ones.
          dtype: dtype of the membranes, traces and masks.

        Returns:
          An :class:`NFResNetState`: ``neurons`` ``{'layer1_0/sn1': neuron state, ...}`` (zeros),
          ``keep`` ``{'layer1_0': [B], ...}`` 1 (block kept) or 0 (residual branch dropped for
          the whole sequence), ``fc_mask`` ``[B, num_features]`` 0 or ``1/(1−p)``.
        """
        check_positive_int("batch_size", batch_size)
        specs = self._neuron_shapes(check_input_shape(input_shape))
        neuron = self.neuron.with_mode(self.mode)
        random = train and (self.stochastic_depth > 0 or self.fc_dropout > 0)
        if random and key is None:
            raise ValueError(
                "key is required by init_state when train=True and stochastic_depth or "
                "fc_dropout > 0 (the per-sequence masks are drawn from it)"
            )
        if random:
            k_sd, k_fc = jax.random.split(key)
            block_keys = jax.random.split(k_sd, len(specs))
        neurons, keep = {}, {}
        for i, (b, shapes) in enumerate(specs):
            for k, shape in shapes.items():
                neurons[f"{b.name}/{k}"] = neuron.init_state((batch_size, *shape), dtype)
            if random and b.drop_rate > 0:
                keep[b.name] = dropout_mask(
                    block_keys[i], b.drop_rate, (batch_size,), dtype, scale=False
                )
            else:
                keep[b.name] = jnp.ones((batch_size,), dtype)
        n_feat = specs[-1][0].out_features
        if random and self.fc_dropout > 0:
            fc_mask = dropout_mask(k_fc, self.fc_dropout, (batch_size, n_feat), dtype)
        else:
            fc_mask = jnp.ones((batch_size, n_feat), dtype)
        return NFResNetState(neurons, keep, fc_mask)

    # ------------------------------------------------------------------------------------------
    # One step
    # ------------------------------------------------------------------------------------------

    @nn.compact
    def __call__(self, state: NFResNetState, x: Array, *, return_stats: bool = False):
        """Run one time step.

        Args:
          state: the :class:`NFResNetState` from :meth:`init_state` (or the previous step).
          x: the frame ``[B, H, W, C]`` (NHWC, float).
          return_stats: also return spikes per sample of every LIF layer.

        Returns:
          ``(logits [B, K], new_state)``, or ``((logits, stats), new_state)`` with
          ``stats = {'layer1_0/sn1': [B], 'layer1_0/sn2': [B], ...}`` in network order;
          ``new_state`` has the new neuron states and the same ``keep`` and ``fc_mask``.
        """
        if jnp.ndim(x) != 4:
            raise ValueError(f"x must be one NHWC frame [B, H, W, C], got shape {jnp.shape(x)}")
        specs = self.block_specs()
        if not isinstance(state, NFResNetState):
            raise ValueError(
                f"state must be the NFResNetState returned by this model's init_state, got "
                f"{type(state).__name__}"
            )
        for field, want in (("neurons", self.neuron_names), ("keep", [b.name for b in specs])):
            got = getattr(state, field)
            if not isinstance(got, Mapping) or set(got) != set(want):
                got = sorted(got) if isinstance(got, Mapping) else type(got).__name__
                raise ValueError(
                    f"state.{field} must have the keys {list(want)} (this model's init_state); "
                    f"got {got}"
                )
        neuron = self.neuron.with_mode(self.mode)
        dt = self.dtype
        x = Conv(self.base_planes, 7, 2, 3, dtype=dt, mode=self.mode, name="conv1")(x)
        x = avg_pool(x, 3, 2, 1)
        new_neurons, stats = {}, {}
        for b in specs:
            neurons = {k: state.neurons[f"{b.name}/{k}"] for k in self._block_neurons()}
            x, block_neurons, st = NFBlock(
                kind=b.kind,
                planes=b.planes,
                out_features=b.out_features,
                stride=b.stride,
                has_downsample=b.has_downsample,
                beta=b.beta,
                alpha=b.alpha,
                neuron=neuron,
                mode=self.mode,
                dtype=dt,
                name=b.name,
            )(neurons, state.keep[b.name], x)
            new_neurons.update({f"{b.name}/{k}": v for k, v in block_neurons.items()})
            stats.update({f"{b.name}/{k}": v for k, v in st.items()})
        feat = jnp.mean(x, axis=(1, 2))
        feat = feat * state.fc_mask.astype(dt)
        new_state = state._replace(neurons=new_neurons)
        logits = Linear(self.num_classes, kernel_init=nn.initializers.zeros, dtype=dt, name="fc")(
            feat
        )
        if return_stats:
            return (logits, stats), new_state
        return logits, new_state


def nfresnet18(num_classes: int = 1000, **kwargs: Any) -> NFResNet:
    """Return a spiking NF-ResNet-18: BasicBlocks, stages ``[2, 2, 2, 2]``."""
    return NFResNet(stage_sizes=(2, 2, 2, 2), block="basic", num_classes=num_classes, **kwargs)


def nfresnet34(num_classes: int = 1000, **kwargs: Any) -> NFResNet:
    """Return a spiking NF-ResNet-34 (the paper's ImageNet model): BasicBlocks ``[3, 4, 6, 3]``."""
    return NFResNet(stage_sizes=(3, 4, 6, 3), block="basic", num_classes=num_classes, **kwargs)


def nfresnet50(num_classes: int = 1000, **kwargs: Any) -> NFResNet:
    """Return a spiking NF-ResNet-50: Bottlenecks (expansion 4), stages ``[3, 4, 6, 3]``."""
    return NFResNet(stage_sizes=(3, 4, 6, 3), block="bottleneck", num_classes=num_classes, **kwargs)
