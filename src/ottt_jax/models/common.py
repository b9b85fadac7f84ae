"""Helpers shared by the models: value checks, per-sequence dropout masks, upsampling, traces.

Also the :class:`SpikingModel` protocol every model of :mod:`ottt_jax.models` follows and the
:class:`ModelState` protocol its state follows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from ottt_jax.mode import Mode

Array = jax.Array

__all__ = [
    "ModelState",
    "SpikingModel",
    "check_input_shape",
    "check_mode",
    "check_positive_int",
    "check_rate",
    "conv_coverage",
    "dropout_mask",
    "map_trace",
    "spikes_per_sample",
    "upsample",
]


@runtime_checkable
class ModelState(Protocol):
    """What every model's state is: a NamedTuple (a pytree of fixed fields) with ``neurons``.

    Each model has its own NamedTuple (:class:`~ottt_jax.models.vgg.VGGState`,
    :class:`~ottt_jax.models.nfresnet.NFResNetState`) whose fields are the same for every option
    (a part a model or a sequence does not use is None, which holds no pytree leaves); its other
    fields hold the per-sequence masks and buffers.

    Attributes:
      neurons: ``{neuron_name: neuron state}`` over the model's ``neuron_names``; each neuron
        state has a ``trace`` attribute (None when the mode keeps no trace).
    """

    neurons: Mapping[str, Any]


@runtime_checkable
class SpikingModel(Protocol):
    """What trainers, metrics and analysis ask of a spiking model (a Flax module).

    Attributes:
      mode: the :class:`~ottt_jax.mode.Mode` it was built with (``make_step`` carries it).
      neuron_names: the neuron layer names in network order; the keys of ``state.neurons``, of
        the statistics and of :meth:`layer_sizes`.
    """

    mode: Mode

    @property
    def neuron_names(self) -> tuple[str, ...]: ...

    def init_state(
        self,
        batch_size: int,
        input_shape: tuple[int, ...],
        *,
        key: Array | None = None,
        train: bool = True,
        dtype: Any = jnp.float32,
    ) -> ModelState:
        """Return the :class:`ModelState` of a new sequence (zeros, plus its per-sequence masks)."""
        ...

    def __call__(self, state: ModelState, x: Array, *, return_stats: bool = False) -> Any:
        """Run one step: ``(logits [B, K], state)``, or ``((logits, stats), state)``.

        A state of the wrong type or for another configuration raises a ValueError.

        ``stats`` is ``{neuron_name: spikes per sample [B] float32}``.
        """
        ...

    def layer_sizes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, float]]:
        """Return ``{neuron_name: (num_neurons, mean fan_out)}`` for the SOP count."""
        ...


def check_positive_int(name: str, v: Any) -> int:
    """Return ``int(v)`` or raise a ValueError naming ``name`` unless ``v`` is an int >= 1."""
    is_int = isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
    if not is_int or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)


def check_rate(name: str, p: Any) -> float:
    """Return ``float(p)`` or raise a ValueError naming ``name`` unless ``p`` is in [0, 1)."""
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {p!r}")
    return float(p)


def check_mode(mode: Any) -> None:
    """Raise a ValueError naming the field unless ``mode`` is a :class:`~ottt_jax.mode.Mode`."""
    if not isinstance(mode, Mode):
        raise ValueError(f"mode must be an ottt_jax.mode.Mode (e.g. mode.OTTT), got {mode!r}")


def check_input_shape(input_shape: Any) -> tuple[int, int, int]:
    """Return ``(H, W, C)`` as ints or raise a ValueError unless it is 3 positive ints."""
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
            for d in input_shape
        )
    ):
        raise ValueError(f"input_shape must be (H, W, C) positive ints, got {input_shape!r}")
    return tuple(int(d) for d in input_shape)


def dropout_mask(key: Array, rate: float, shape: tuple[int, ...], dtype: Any, scale: bool = True):
    """Draw a per-sequence dropout mask.

    Args:
      key: PRNG key.
      rate: drop probability ``p`` in [0, 1).
      shape: the mask's shape, ``[B, ...]``.
      dtype: its dtype.
      scale: inverted dropout (kept entries ``1/(1−p)``); else kept entries are 1.

    Returns:
      ``[shape]`` of 0 and ``1/(1−p)`` (or 1): ``Bernoulli(1 − p)``, divided in float32.
    """
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    if not scale:
        return keep.astype(dtype)
    return (keep.astype(jnp.float32) / (1.0 - rate)).astype(dtype)


def conv_coverage(n: int, k: int = 3, stride: int = 1, pad: int = 1) -> np.ndarray:
    """Return, per input index of one axis, how many output positions of a conv read it.

    Args:
      n: the axis length.
      k: kernel size.
      stride: stride.
      pad: symmetric zero padding (padded positions have no synapses).

    Returns:
      ``[n]`` ints: the number of windows ``[o·stride − pad, o·stride − pad + k − 1]``,
      ``o = 0 … (n + 2·pad − k) // stride``, holding the index.
    """
    n_out = (n + 2 * pad - k) // stride + 1
    start = np.arange(n_out)[:, None] * stride - pad
    i = np.arange(n)[None, :]
    return ((i >= start) & (i <= start + k - 1)).sum(0)


def upsample(x: Array, factor: int) -> Array:
    """Nearest-neighbour upsample an NHWC array ``[B, H, W, C]`` to ``[B, fH, fW, C]``."""
    if factor == 1:
        return x
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def map_trace(f: Callable[[Array], Array], trace: Array | None) -> Array | None:
    """Return ``f(trace)``, or None when the neuron keeps no trace (``mode.keeps_trace`` False)."""
    return None if trace is None else f(trace)


def spikes_per_sample(s: Array) -> Array:
    """Return the spikes of one layer summed per sample: ``[B, ...] -> [B]`` float32."""
    return jnp.sum(s.astype(jnp.float32), axis=tuple(range(1, s.ndim)))
