"""Tests of ottt_jax.models.registry: the built-in entries and a user model added with one entry."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ottt_jax import layers
from ottt_jax.losses import instantaneous_loss
from ottt_jax.mode import BPTT, OTTT, Mode
from ottt_jax.models import (
    NFResNet,
    SpikingModel,
    SpikingVGG,
    build_model,
    get_model_entry,
    make_step,
    model_names,
    register_model,
)
from ottt_jax.neuron import LIF
from ottt_jax.rules import get_rule


def test_builtin_entries_and_their_documented_options():
    assert model_names()[:5] == ("vgg", "vggf", "nfresnet18", "nfresnet34", "nfresnet50")
    fields = {
        n: [(f.name, f.default) for f in dataclasses.fields(get_model_entry(n).options)]
        for n in ("vgg", "vggf", "nfresnet34")
    }
    assert [f for f, _ in fields["vgg"]] == ["vgg_cfg", "neuron_dropout", "fc_dropout"]
    assert fields["vgg"] == fields["vggf"]
    assert fields["nfresnet34"] == [("stochastic_depth", 0.0), ("fc_dropout", 0.0)]
    for n in model_names()[:5]:
        for f in dataclasses.fields(get_model_entry(n).options):
            assert f.metadata["doc"].strip(), (n, f.name)
    neuron = LIF(decay=0.25)
    vggf = build_model(
        "vggf", num_classes=3, neuron=neuron, mode=BPTT, options={"vgg_cfg": (8, "M", 16)}
    )
    assert isinstance(vggf, SpikingVGG) and vggf.feedback and vggf.cfg == (8, "M", 16)
    assert (vggf.num_classes, vggf.neuron, vggf.mode) == (3, neuron, BPTT)
    nf = build_model("nfresnet50", num_classes=7, options={"stochastic_depth": 0.1})
    assert isinstance(nf, NFResNet) and nf.block == "bottleneck" and nf.stochastic_depth == 0.1
    assert nf.mode == OTTT and nf.neuron == LIF()


@pytest.mark.parametrize(
    "name, options",
    [
        ("vgg", {"vgg_cfg": (8, "M"), "neuron_dropout": 0.1, "fc_dropout": 0.2}),
        ("vggf", {"vgg_cfg": (8, "M"), "neuron_dropout": 0.1, "fc_dropout": 0.2}),
        ("nfresnet18", {"stochastic_depth": 0.1, "fc_dropout": 0.2}),
        ("nfresnet34", {"stochastic_depth": 0.1, "fc_dropout": 0.2}),
        ("nfresnet50", {"stochastic_depth": 0.1, "fc_dropout": 0.2}),
        ("rsnn", {"hidden": (5, 6), "recurrent": False, "weight_standardization": False}),
    ],
)
def test_every_builtin_entry_passes_the_common_arguments_and_its_options(name, options):
    neuron = LIF(decay=0.25)
    model = build_model(
        name, num_classes=7, neuron=neuron, mode=BPTT, dtype=jnp.bfloat16, options=options
    )
    assert (model.num_classes, model.neuron, model.mode, model.dtype) == (
        7,
        neuron,
        BPTT,
        jnp.bfloat16,
    )
    renamed = {"vgg_cfg": "cfg"}
    for key, value in options.items():
        assert getattr(model, renamed.get(key, key)) == value, key
    if name.startswith("vgg"):
        assert model.feedback == (name == "vggf")


def test_errors_name_the_model_the_option_and_the_field():
    with pytest.raises(ValueError, match=r"unknown model 'resnet'.*'vgg'.*'nfresnet50'"):
        build_model("resnet", num_classes=10)
    with pytest.raises(ValueError, match=r"unknown \['stochastic_depth'\]"):
        build_model("vgg", num_classes=10, options={"stochastic_depth": 0.1})
    with pytest.raises(ValueError, match="fc_dropout"):  # the value check is the model's own
        build_model("nfresnet18", num_classes=10, options={"fc_dropout": 1.5})
    with pytest.raises(ValueError, match="already registered"):
        register_model("vgg", get_model_entry("vgg").build, get_model_entry("vgg").options)

    @dataclasses.dataclass(frozen=True)
    class Undocumented:
        width: int = 3

    with pytest.raises(ValueError, match=r"Undocumented\.width needs metadata\['doc'\]"):
        register_model("undocumented", lambda **kw: None, Undocumented)


# ---------------------------------------------------------------------------------------------
# A user model, registered with one entry
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DenseOptions:
    width: int = dataclasses.field(default=6, metadata={"doc": "hidden spiking neurons"})


class DenseSNN(nn.Module):
    """Flattened frame → Linear → neuron → (trace-rule) Linear readout, one step per call."""

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

    def layer_sizes(self, input_shape):
        return {"hidden": (self.width, float(self.num_classes))}

    @nn.compact
    def __call__(self, state, x, *, return_stats=False):
        neuron = self.neuron.with_mode(self.mode)
        u = layers.Linear(self.width, kernel_init=nn.initializers.normal(1.0))(
            x.reshape(x.shape[0], -1)
        )
        s, st = neuron(state["hidden"], u + 0.5)
        out = layers.Linear(self.num_classes, mode=self.mode)(s, st.trace)
        if return_stats:
            return (out, {"hidden": jnp.sum(s, -1, dtype=jnp.float32)}), {"hidden": st}
        return out, {"hidden": st}


def _build_dense(*, num_classes, neuron, mode, dtype, options: DenseOptions):
    return DenseSNN(num_classes, options.width, neuron, mode, dtype)


def test_user_model_registered_with_one_entry_is_built_by_name_and_trains():
    register_model("dense_snn", _build_dense, DenseOptions, overwrite=True)
    model = build_model("dense_snn", num_classes=3, mode=OTTT, options={"width": 5})
    assert isinstance(model, DenseSNN) and model.width == 5 and model.mode == OTTT
    assert isinstance(model, SpikingModel)
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 2, 2, 1))
    y = jnp.array([0, 1, 2, 0])
    st = model.init_state(4, (2, 2, 1))
    params = model.init(jax.random.PRNGKey(1), st, x)["params"]
    opt = optax.sgd(0.5)
    loss_fn = lambda out, t: instantaneous_loss(out, t, beta=0.0, num_steps=3)
    rule = get_rule("ottt_a")
    step = make_step(model)
    res = rule.apply(step, loss_fn, opt, params, opt.init(params), st, x, y, num_steps=3)
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), res.params, params)
    assert all(v > 0 for v in jax.tree.leaves(moved)), moved
    assert np.isfinite(float(res.loss))
    with pytest.raises(ValueError, match="needs a model built with"):  # built for BPTT
        bptt_model = build_model("dense_snn", num_classes=3, mode=BPTT)
        rule.apply(make_step(bptt_model), loss_fn, opt, params, None, st, x, y, num_steps=3)


def test_a_model_entry_unregisters_and_bad_entries_are_refused():
    from ottt_jax.models import registry

    @dataclasses.dataclass(frozen=True)
    class NoOptions:
        pass

    registry.register_model("scratch", lambda **kw: None, NoOptions)
    assert "scratch" in registry.model_names()
    registry.unregister_model("scratch")
    assert "scratch" not in registry.model_names()
    with pytest.raises(ValueError, match=r"unknown model 'scratch'"):
        registry.unregister_model("scratch")

    @dataclasses.dataclass
    class Mutable:
        pass

    with pytest.raises(ValueError, match="options Mutable for model 'bad' must be frozen"):
        registry.register_model("bad", lambda **kw: None, Mutable)
    assert "bad" not in registry.model_names()
