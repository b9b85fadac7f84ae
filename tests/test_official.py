"""Official PyTorch checkpoints: name mapping, layouts, exact round trips, and every error path.

Full-size models are only traced with ``jax.eval_shape``; their "checkpoints" are random numpy
arrays of the right shapes. PyTorch is not a test dependency: without it, the ``.pth`` paths
are checked for their ImportError message.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from ottt_jax.models.nfresnet import NFResNet, nfresnet18, nfresnet34, nfresnet50
from ottt_jax.models.official import (
    describe_architecture,
    export_official,
    flax_path_to_official,
    import_official,
    official_param_shapes,
    official_to_flax_path,
)
from ottt_jax.models.vgg import SpikingVGG

HAS_TORCH = importlib.util.find_spec("torch") is not None
TINY = NFResNet(stage_sizes=(1, 1), base_planes=8, num_classes=5)
TINY_IN = (16, 16, 3)

# The architectures of official_param_names.json: key -> (model factory, input shape, total, sha256
# of the sorted [name, shape] list). The digests let the check run where the JSON is absent.
OFFICIAL = {
    "online_spiking_vgg11_ws(num_classes=10, c_in=3, fc_hw=1)": (
        lambda: SpikingVGG(num_classes=10),
        (32, 32, 3),
        9_228_362,
        "3827cbd7cb1052471862eb3142501c66bb2a5317e28919a692f383f912fd81d1",
    ),
    "online_spiking_vgg11_ws(num_classes=100, c_in=3, fc_hw=1)": (
        lambda: SpikingVGG(num_classes=100),
        (32, 32, 3),
        9_274_532,
        "cb2c23c0c32dcb31f17a542f85e65a54ede36d900872d01c53b522e98e601dbe",
    ),
    "online_spiking_vgg11f_ws(num_classes=100, c_in=3, fc_hw=1)": (
        lambda: SpikingVGG(num_classes=100, feedback=True),
        (32, 32, 3),
        9_569_508,
        "0390d5c9c630be13d067cddfeddde2aad5ea4969e5dc3cd462baaabd20c2fade",
    ),
    "online_spiking_vgg11_ws(num_classes=10, c_in=2, fc_hw=1) [CIFAR10-DVS]": (
        lambda: SpikingVGG(num_classes=10),
        (48, 48, 2),
        9_227_786,
        "d5d217bc2341058383836c790cd9d7822b59b6e960614c7ce9883592a19eccfc",
    ),
    "online_spiking_nfresnet34(num_classes=1000)": (
        lambda: nfresnet34(num_classes=1000),
        (224, 224, 3),
        21_797_688,
        "539fe89e67dc287c5b47dc754ce9a00d29f49e991c7bc63ca2acaed3731768bf",
    ),
}

ROUND_TRIP = {
    "vgg11": (lambda: SpikingVGG(num_classes=10), (32, 32, 3)),
    "vgg11f": (lambda: SpikingVGG(num_classes=100, feedback=True), (32, 32, 3)),
    "vgg11_dvs": (lambda: SpikingVGG(num_classes=10), (48, 48, 2)),
    "nfresnet18": (lambda: nfresnet18(), (224, 224, 3)),
    "nfresnet34": (lambda: nfresnet34(), (224, 224, 3)),
    "nfresnet50": (lambda: nfresnet50(), (224, 224, 3)),
}


def _param_shapes(model, in_shape):
    def init(key):
        st = model.init_state(1, in_shape, train=False)
        return model.init(key, st, jnp.zeros((1, *in_shape)))

    return jax.eval_shape(init, jax.random.PRNGKey(0))["params"]


def _random_params(model, in_shape, seed=0):
    rng = np.random.default_rng(seed)
    shapes = _param_shapes(model, in_shape)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape, dtype=np.float32), shapes)


def _fake_official(model, in_shape, seed=0):
    """A fake official state_dict in PyTorch layout with known random values."""
    rng = np.random.default_rng(seed)
    shapes = official_param_shapes(model, in_shape)
    return {n: rng.standard_normal(s, dtype=np.float32) for n, s in shapes.items()}


# ------------------------------------------------------------------------------------------------
# Names
# ------------------------------------------------------------------------------------------------

NAME_CASES = [
    ("features.0.weight", ("features_0", "kernel")),
    ("features.3.op.gain", ("features_3", "gain")),
    ("classifier.0.op.weight", ("classifier_0", "kernel")),
    ("conv1.weight", ("conv1", "kernel")),
    ("fb_conv.op.bias", ("fb_conv", "bias")),
    ("layer2.0.downsample.op.weight", ("layer2_0", "downsample", "kernel")),
    ("layer1.0.skipinit_gain", ("layer1_0", "skipinit_gain")),
    ("layer4.2.conv2.op.gain", ("layer4_2", "conv2", "gain")),
    ("fc.weight", ("fc", "kernel")),
    ("fc.bias", ("fc", "bias")),
]


@pytest.mark.parametrize("name, path", NAME_CASES)
def test_name_mapping_both_ways(name, path):
    assert official_to_flax_path(name) == path
    assert flax_path_to_official(path) == name
    assert flax_path_to_official("/".join(path)) == name


def test_name_mapping_explicit_wrap_and_errors():
    assert flax_path_to_official(("fc", "kernel"), wrapped=True) == "fc.op.weight"
    assert flax_path_to_official(("features_3", "bias"), wrapped=False) == "features.3.bias"
    assert official_to_flax_path("features.3.bias") == ("features_3", "bias")  # .op optional
    with pytest.raises(ValueError, match="must end in one of"):
        official_to_flax_path("layer1.0.sn1.v")
    with pytest.raises(ValueError, match="malformed"):
        official_to_flax_path("features..weight")
    with pytest.raises(ValueError, match="starts with an index"):
        official_to_flax_path("0.weight")
    with pytest.raises(ValueError, match="name"):
        official_to_flax_path("")
    with pytest.raises(ValueError, match="must end in one of"):
        flax_path_to_official(("conv1", "scale"))
    with pytest.raises(ValueError, match="at least 2"):
        flax_path_to_official(("kernel",))


@pytest.mark.parametrize("key", list(OFFICIAL))
def test_official_param_shapes_match_reference(key, official_reference):
    factory, in_shape, total, digest = OFFICIAL[key]
    shapes = official_param_shapes(factory(), in_shape)
    ours = sorted((n, list(s)) for n, s in shapes.items())
    assert sum(math.prod(s) for s in shapes.values()) == total
    ref = official_reference
    if ref is not None:
        assert ours == sorted((n, list(s)) for n, s in ref[key]["state_dict"])
    assert hashlib.sha256(json.dumps(ours).encode()).hexdigest() == digest
    for n in shapes:  # the name mapping is a bijection on every official name
        assert flax_path_to_official(official_to_flax_path(n)) == n


def test_describe_architecture():
    def desc(model, in_shape):
        return describe_architecture(official_param_shapes(model, in_shape))

    assert desc(nfresnet34(), (224, 224, 3)) == (
        "NF-ResNet-34 (BasicBlock stages [3, 4, 6, 3], 3 input channels, 1000 classes)"
    )
    assert desc(nfresnet50(num_classes=10), (64, 64, 3)).startswith(
        "NF-ResNet-50 (Bottleneck stages [3, 4, 6, 3]"
    )
    assert desc(SpikingVGG(num_classes=10), (48, 48, 2)) == "VGG-11 (2 input channels, 10 classes)"
    assert desc(SpikingVGG(num_classes=100, feedback=True), (32, 32, 3)) == (
        "VGG-F (feedback; 8 convs, 3 input channels, 100 classes)"
    )
    assert describe_architecture({"foo.weight": (3,)}) == "an unrecognised architecture"


# ------------------------------------------------------------------------------------------------
# Layouts and round trips
# ------------------------------------------------------------------------------------------------


def test_import_transposes_pytorch_layouts():
    sd = _fake_official(TINY, TINY_IN, seed=1)
    sd["layer1.0.skipinit_gain"] = np.float32(0.37)
    params = import_official(sd, TINY, TINY_IN)
    rng = np.random.default_rng(5)
    for name, path in [
        ("conv1.weight", ("conv1", "kernel")),
        ("layer2.0.conv1.op.weight", ("layer2_0", "conv1", "kernel")),
        ("layer2.0.downsample.op.weight", ("layer2_0", "downsample", "kernel")),
    ]:
        w = sd[name]
        k = np.asarray(traverse_util.flatten_dict(params)[path])
        assert k.shape == (w.shape[2], w.shape[3], w.shape[1], w.shape[0])
        for _ in range(20):
            o, i, h, x = (int(rng.integers(n)) for n in w.shape)
            assert k[h, x, i, o] == w[o, i, h, x]
    fc = np.asarray(params["fc"]["kernel"])
    assert fc.shape == (16, 5)
    for o, i in [(0, 0), (4, 15), (2, 7)]:
        assert fc[i, o] == sd["fc.weight"][o, i]
    np.testing.assert_array_equal(
        params["layer2_0"]["conv2"]["gain"], sd["layer2.0.conv2.op.gain"][:, 0, 0, 0]
    )
    np.testing.assert_array_equal(params["fc"]["bias"], sd["fc.bias"])
    assert params["layer1_0"]["skipinit_gain"].shape == ()
    assert params["layer1_0"]["skipinit_gain"] == np.float32(0.37)
    # the imported tree is exactly the model's tree (structure, shapes, float32)
    expected = _param_shapes(TINY, TINY_IN)
    chex.assert_trees_all_equal_shapes_and_dtypes(params, expected)
    logits, _ = TINY.apply({"params": params}, TINY.init_state(2, TINY_IN), jnp.ones((2, *TINY_IN)))
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_import_vgg_classifier_and_first_conv_layouts():
    model = SpikingVGG(num_classes=10)
    sd = _fake_official(model, (32, 32, 3), seed=2)
    params = import_official(sd, model, (32, 32, 3))
    w, k = sd["classifier.0.op.weight"], np.asarray(params["classifier_0"]["kernel"])
    assert k.shape == (512, 10) and k[17, 3] == w[3, 17] and k[511, 9] == w[9, 511]
    w0, k0 = sd["features.0.weight"], np.asarray(params["features_0"]["kernel"])
    assert k0.shape == (3, 3, 3, 64) and k0[2, 0, 1, 63] == w0[63, 1, 2, 0]
    np.testing.assert_array_equal(params["features_24"]["gain"], sd["features.24.op.gain"].ravel())


@pytest.mark.parametrize("arch", list(ROUND_TRIP))
def test_round_trip_exact(arch):
    factory, in_shape = ROUND_TRIP[arch]
    model = factory()
    params = _random_params(model, in_shape)
    sd = export_official(params)
    assert sd.keys() == official_param_shapes(model, in_shape).keys()
    assert all(sd[n].shape == s for n, s in official_param_shapes(model, in_shape).items())
    back = import_official(sd, model, in_shape)
    chex.assert_trees_all_equal(back, params)  # exact, every leaf
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(back))


def test_round_trip_through_npz_and_wrappers(tmp_path):
    params = _random_params(TINY, TINY_IN, seed=3)
    path = tmp_path / "tiny.npz"
    sd = export_official({"params": params}, path)  # a full variables dict is accepted
    assert path.is_file()
    chex.assert_trees_all_equal(import_official(path, TINY, TINY_IN), params)
    chex.assert_trees_all_equal(import_official(str(path), TINY, TINY_IN), params)
    # {'net': state_dict} with a DataParallel 'module.' prefix, as the training scripts save it
    wrapped = {"net": {f"module.{n}": v for n, v in sd.items()}, "epoch": 3}
    chex.assert_trees_all_equal(import_official(wrapped, TINY, TINY_IN), params)


class _FakeTensor:
    """Duck-typed stand-in for a torch tensor (detach/cpu/numpy)."""

    def __init__(self, a):
        self.a, self.dtype = a, "torch.float32"

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.a


def test_import_accepts_tensor_like_values():
    params = _random_params(TINY, TINY_IN, seed=4)
    sd = {n: _FakeTensor(v) for n, v in export_official(params).items()}
    chex.assert_trees_all_equal(import_official(sd, TINY, TINY_IN), params)


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


def test_missing_unexpected_and_mismatched_are_listed():
    sd = _fake_official(TINY, TINY_IN)
    del sd["layer2.0.downsample.op.weight"]
    sd["layer9.0.conv1.op.weight"] = np.zeros((3, 3, 1, 1), np.float32)
    sd["layer1.0.sn1.v"] = np.zeros((2,), np.float32)
    sd["fc.weight"] = np.zeros((7, 16), np.float32)
    with pytest.raises(ValueError) as e:
        import_official(sd, TINY, TINY_IN)
    msg = str(e.value)
    assert "missing parameters (1):\n    layer2.0.downsample.op.weight" in msg
    assert "unexpected parameters (2):" in msg
    assert "layer9.0.conv1.op.weight (3, 3, 1, 1)" in msg and "layer1.0.sn1.v (2,)" in msg
    assert (
        "shape mismatches (1; PyTorch layout):\n    fc.weight: expected (5, 16), got (7, 16)" in msg
    )
    # the extra stage and class count change the architecture read off the names
    assert "looks like NF-ResNet (BasicBlock stages [1, 1, 1], 3 input channels, 7 classes)" in msg
    # a checkpoint that is only damaged (same architecture) gets no hint
    sd = _fake_official(TINY, TINY_IN)
    del sd["layer1.0.conv2.op.bias"]
    with pytest.raises(ValueError) as e:
        import_official(sd, TINY, TINY_IN)
    assert "missing parameters (1):\n    layer1.0.conv2.op.bias" in str(e.value)
    assert "hint" not in str(e.value) and "unexpected" not in str(e.value)


def test_shape_mismatch_hint_names_the_classes():
    sd = _fake_official(SpikingVGG(num_classes=100), (32, 32, 3))
    with pytest.raises(ValueError) as e:
        import_official(sd, SpikingVGG(num_classes=10), (32, 32, 3))
    msg = str(e.value)
    assert "classifier.0.op.weight: expected (10, 512), got (100, 512)" in msg
    assert "looks like VGG-11 (3 input channels, 100 classes)" in msg
    assert "the model is VGG-11 (3 input channels, 10 classes)" in msg


def test_wrong_architecture_hint():
    sd = {
        n: np.zeros(s, np.float32)
        for n, s in official_param_shapes(SpikingVGG(), (32, 32, 3)).items()
    }
    with pytest.raises(ValueError) as e:
        import_official(sd, TINY, TINY_IN)
    msg = str(e.value)
    assert "most parameter names do not match (0 of 26)" in msg
    assert "the checkpoint looks like VGG-11 (3 input channels, 10 classes)" in msg
    assert "the model is NF-ResNet (BasicBlock stages [1, 1], 3 input channels, 5 classes)" in msg
    assert "missing parameters (22)" in msg and "... and 6 more" in msg


def test_duplicate_names_are_reported():
    sd = _fake_official(SpikingVGG(), (32, 32, 3))
    sd["features.3.weight"] = sd["features.3.op.weight"]
    with pytest.raises(ValueError, match=r"features\.3\.(op\.)?weight \(duplicate of"):
        import_official(sd, SpikingVGG(), (32, 32, 3))


def test_bad_sources(tmp_path):
    with pytest.raises(ValueError, match=r"\.pth/\.pt .* or \.npz"):
        import_official(tmp_path / "ckpt.h5", TINY, TINY_IN)
    with pytest.raises(ValueError, match="mapping"):
        import_official(42, TINY, TINY_IN)
    with pytest.raises(ValueError, match="not numeric"):
        import_official({"fc.weight": np.array(["a"])}, TINY, TINY_IN)
    with pytest.raises(ValueError, match="input_shape"):
        import_official({}, TINY, (16, 16))
    with pytest.raises(ValueError, match=r"\.npz or \.pth"):
        export_official(_random_params(TINY, TINY_IN), tmp_path / "x.bin")
    with pytest.raises(ValueError, match="mapping"):
        export_official([1, 2])


@pytest.mark.skipif(HAS_TORCH, reason="PyTorch is installed; see the .pth round-trip test")
def test_pth_without_torch_names_the_extra(tmp_path):
    with pytest.raises(ImportError, match=r"pip install 'ottt_jax\[torch\]'"):
        import_official(tmp_path / "checkpoint_max.pth", TINY, TINY_IN)
    with pytest.raises(ImportError, match=r"pip install 'ottt_jax\[torch\]'"):
        export_official(_random_params(TINY, TINY_IN), tmp_path / "out.pth")


@pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch (the 'torch' extra)")
def test_pth_round_trip(tmp_path):  # pragma: no cover - torch is not a test dependency
    params = _random_params(TINY, TINY_IN, seed=6)
    export_official(params, tmp_path / "ckpt.pth")
    chex.assert_trees_all_equal(import_official(tmp_path / "ckpt.pth", TINY, TINY_IN), params)
