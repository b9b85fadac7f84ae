"""A user's plugin: one spiking model registered by name (``ottt-train --import`` loads it).

Used by ``tests/test_cli.py``: ``ottt-train --import tests/plugins/my_model.py --set
model.arch=plugin_dense`` trains it, and ``ottt-eval`` re-imports this file from config.json.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ottt_jax import layers
from ottt_jax.mode import Mode
from ottt_jax.models import register_model


@dataclasses.dataclass(frozen=True)
class PluginDenseOptions:
    width: int = dataclasses.field(default=6, metadata={"doc": "hidden spiking neurons"})


class PluginDense(nn.Module):
    """Flattened frame → Linear → LIF → (trace-rule) Linear readout, one time step per call."""

    num_classes: int
    width: int
    neuron: Any
    mode: Mode
    dtype: Any = jnp.float32

    @property
    def neuron_names(self) -> tuple[str, ...]:
        return ("hidden",)

    def init_state(self, batch_size, input_shape, *, key=None, train=True, dtype=jnp.float32):
        return {"hidden": self.neuron.with_mode(self.mode).init_state((batch_size, self.width))}

    @nn.compact
    def __call__(self, state, x, *, return_stats=False):
        neuron = self.neuron.with_mode(self.mode)
        s, st = neuron(state["hidden"], layers.Linear(self.width)(x.reshape(x.shape[0], -1)))
        out = layers.Linear(self.num_classes, mode=self.mode)(s, st.trace)
        if return_stats:
            return (out, {"hidden": jnp.sum(s, -1, dtype=jnp.float32)}), {"hidden": st}
        return out, {"hidden": st}


def _build(*, num_classes, neuron, mode, dtype, options: PluginDenseOptions):
    return PluginDense(num_classes, options.width, neuron, mode, dtype)


register_model("plugin_dense", _build, PluginDenseOptions)
