"""NIR export and import: our spiking networks as ``nir.NIRGraph`` and back.

`NIR <https://neuroir.org>`_ (the Neuromorphic Intermediate Representation, ``pip install
"ottt_jax[nir]"``) describes a network as a graph of continuous-time nodes; simulators and chips
discretize it with their own step ``dt``. :func:`to_nir` exports :class:`~ottt_jax.models.vgg.
SpikingVGG`, :class:`~ottt_jax.models.rsnn.SpikingRSNN` or a :class:`SequentialSNN` (any
chain of our layers); :func:`from_nir` imports a graph as a :class:`SequentialSNN`, a model of
:mod:`ottt_jax.layers` trainable by every rule (``mode=rule.mode``).

**The LIF mapping and the reset.** Derived in :mod:`ottt_jax.nir.lif`: our LIF is NIR's LIF
with ``τ = dt/(1 − λ)``, ``R = 1/(1 − λ)``, ``v_leak = 0``, ``v_threshold = V_th``, ``v_reset =
0``; the subtractive reset NIR 1.0 cannot express is recorded in the node's metadata
(:func:`to_nir` warns), and :class:`ResetToZeroLIF` exports exactly for every tool.

**Layout.** NIR is channel-first (``Conv2d`` weight ``(C_out, C_in, kH, kW)``, ``Affine``
weight ``(out, in)``, shapes ``(C, H, W)``); our models are NHWC with HWIO and ``[in, out]``
kernels. ``Flatten`` flattens in NIR's ``(C, H, W)`` order. A graph whose input is 1-D ``(D,)``
takes frames of any shape, flattened (as the RSNN does). VGG's ``Scale(2.74)`` exports as
``nir.Scale``, its 2×2 pools as ``AvgPool2d``, global average pooling as ``AvgPool2d`` over the
whole map followed by ``Flatten``; sWS kernels export standardized.

**Modules.** :mod:`~ottt_jax.nir.neuron` (:class:`ResetToZeroLIF`) ←
:mod:`~ottt_jax.nir.sequential` (:class:`SequentialSNN` and its ops) ←
:mod:`~ottt_jax.nir.lif` (the LIF mapping) ← :mod:`~ottt_jax.nir.export` (:func:`to_nir`) and
:mod:`~ottt_jax.nir.imports` (:func:`from_nir`). Every public name is re-exported here.
"""

from ottt_jax.nir.export import to_nir
from ottt_jax.nir.imports import from_nir
from ottt_jax.nir.lif import DEFAULT_DT, lif_from_nir, lif_to_nir
from ottt_jax.nir.neuron import ResetToZeroLIF
from ottt_jax.nir.sequential import (
    ConvOp,
    DenseOp,
    FlattenOp,
    LIFOp,
    PoolOp,
    ScaleOp,
    SequentialSNN,
    SequentialState,
)

__all__ = [
    "DEFAULT_DT",
    "ConvOp",
    "DenseOp",
    "FlattenOp",
    "LIFOp",
    "PoolOp",
    "ResetToZeroLIF",
    "ScaleOp",
    "SequentialSNN",
    "SequentialState",
    "from_nir",
    "lif_from_nir",
    "lif_to_nir",
    "to_nir",
]
