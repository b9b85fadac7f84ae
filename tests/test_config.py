"""Tests of the configuration system: presets, overrides, validation, serialization, diff."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from ottt_jax import config as C
from ottt_jax import rules
from ottt_jax import surrogate as S
from ottt_jax.data import catalog
from ottt_jax.models.common import check_rate
from ottt_jax.models.registry import (
    VGGOptions,
    get_model_entry,
    register_model,
    unregister_model,
)

PRESETS = [
    "cifar100_vgg",
    "cifar100_vggf",
    "cifar10_vgg",
    "cifar10dvs_vgg",
    "digits",
    "dvsgesture_vgg",
    "imagenet_nfresnet34",
    "nmnist_vgg",
    "shd_rsnn",
]
VGG11 = (64, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512)


def _err(name: str, overrides) -> str:
    """Return the message of the ValueError raised by get_config(name, overrides)."""
    with pytest.raises(ValueError) as info:
        C.get_config(name, overrides)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# Presets.


def test_list_presets():
    assert C.list_presets() == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_validate(name):
    cfg = C.get_config(name)
    assert isinstance(cfg, C.Config)
    assert cfg.name == name
    assert C.validate(cfg) == cfg
    assert cfg.compute_dtype == "float32"
    assert cfg.method == "ottt_a"
    assert catalog.get_dataset(cfg.data.dataset).num_classes == cfg.model.num_classes
    # Method variants are plain overrides that change nothing else.
    for method in ("ottt_o", "bptt"):
        assert C.diff(cfg, C.get_config(name, [f"method={method}"])) == [
            f"method: 'ottt_a' != '{method}'"
        ]


def test_digits_preset_values():
    cfg = C.get_config("digits")
    m, d, o = cfg.model, cfg.data, cfg.optim
    assert (m.arch, m.options.vgg_cfg, m.num_classes) == ("vgg", (32, "M", 64), 10)
    assert (m.decay, m.v_th, m.surrogate, m.surrogate_param) == (0.5, 1.0, "sigmoid", None)
    assert (cfg.num_steps, cfg.effective_eval_num_steps, cfg.loss_beta) == (4, 4, 0.05)
    assert (d.dataset, d.batch_size, d.eval_batch_size, d.augment) == ("digits", 32, 360, False)
    assert (o.name, o.lr, o.momentum, o.weight_decay) == ("sgd", 0.1, 0.9, 0.0)
    assert (o.schedule, o.epochs, o.warmup_epochs, o.nesterov) == ("cosine", 30, 0.0, False)


@pytest.mark.parametrize(
    "name, dataset, classes, arch",
    [
        ("cifar10_vgg", "cifar10", 10, "vgg"),
        ("cifar100_vgg", "cifar100", 100, "vgg"),
        ("cifar100_vggf", "cifar100", 100, "vggf"),
    ],
)
def test_cifar_preset_values(name, dataset, classes, arch):
    cfg = C.get_config(name)
    m, d, o = cfg.model, cfg.data, cfg.optim
    assert (m.arch, m.options.vgg_cfg, m.num_classes) == (arch, VGG11, classes)
    assert (m.decay, m.v_th, m.surrogate, m.options.neuron_dropout) == (0.5, 1.0, "sigmoid", 0.0)
    assert (cfg.num_steps, cfg.loss_beta) == (6, 0.05)
    assert (d.dataset, d.batch_size, d.augment, d.num_frames) == (dataset, 128, True, None)
    assert (o.name, o.lr, o.momentum, o.weight_decay) == ("sgd", 0.1, 0.9, 0.0)
    assert (o.schedule, o.epochs, o.min_lr) == ("cosine", 300, 0.0)


def test_dvs_preset_values():
    cfg = C.get_config("cifar10dvs_vgg")
    assert (cfg.num_steps, cfg.loss_beta, cfg.model.options.neuron_dropout) == (10, 0.001, 0.1)
    assert (cfg.model.arch, cfg.model.options.vgg_cfg, cfg.model.num_classes) == ("vgg", VGG11, 10)
    assert (cfg.data.dataset, cfg.data.batch_size, cfg.data.num_frames) == ("cifar10_dvs", 128, 10)
    assert cfg.effective_num_frames == 10
    assert catalog.get_dataset("cifar10_dvs").frame_shape == (48, 48, 2)
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.epochs) == (0.1, 0.9, 300)


def test_imagenet_preset_values():
    cfg = C.get_config("imagenet_nfresnet34")
    assert (cfg.model.arch, cfg.model.num_classes, cfg.data.dataset) == (
        "nfresnet34",
        1000,
        "imagenet2012",
    )
    assert (cfg.num_steps, cfg.loss_beta, cfg.data.batch_size) == (6, 0.0, 256)
    o = cfg.optim
    assert (o.name, o.lr, o.momentum, o.weight_decay, o.schedule, o.epochs) == (
        "sgd",
        0.1,
        0.9,
        2e-5,
        "cosine",
        100,
    )
    # Evaluation with more time steps than training is allowed for static images.
    assert C.get_config("imagenet_nfresnet34", ["eval_num_steps=12"]).effective_eval_num_steps == 12


def _vgg_param_count(layout, c_in, num_classes, feedback=False):
    """Parameters of the official sWS VGG: weight + bias + gain per conv, weight + bias for fc."""
    total, c = 0, c_in
    for item in layout:
        if item != "M":
            total += 9 * c * item + 2 * item
            c = item
    total += c * num_classes + num_classes
    if feedback:  # plain 3×3 conv from the last width back to the first, with bias
        total += 9 * c * layout[0] + layout[0]
    return total


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cifar10_vgg", 9_228_362),
        ("cifar100_vgg", 9_274_532),
        ("cifar100_vggf", 9_569_508),
        ("cifar10dvs_vgg", 9_227_786),
    ],
)
def test_preset_layouts_match_official_parameter_counts(name, expected):
    """The presets' layout, classes and input channels give the official models' sizes."""
    cfg = C.get_config(name)
    c_in = catalog.get_dataset(cfg.data.dataset).frame_shape[-1]
    count = _vgg_param_count(
        cfg.model.options.vgg_cfg, c_in, cfg.model.num_classes, feedback=cfg.model.arch == "vggf"
    )
    assert count == expected


def test_unknown_preset_lists_presets():
    msg = _err("cifar10", ())
    assert "unknown preset 'cifar10'" in msg
    for name in PRESETS:
        assert name in msg


def test_get_config_rejects_non_string():
    with pytest.raises(ValueError, match="config name must be a string"):
        C.get_config(3)  # type: ignore[arg-type]


def test_get_config_from_json_file(tmp_path):
    cfg = C.get_config("cifar10dvs_vgg", ["optim.lr=0.05", "workdir=/tmp/run"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(C.to_dict(cfg)))
    assert C.get_config(str(path)) == cfg
    assert C.get_config(str(path), ["seed=3"]).seed == 3
    with pytest.raises(ValueError, match="does not exist"):
        C.get_config(str(tmp_path / "missing.json"))


@pytest.fixture
def scratch_presets():
    before = C.list_presets()
    yield
    for name in set(C.list_presets()) - set(before):
        C.unregister_preset(name)
    assert C.list_presets() == before


def test_register_preset(scratch_presets):
    small = lambda: C.get_config("digits", ["name=tiny", "optim.epochs=2"])
    C.register_preset("tiny", small)
    assert "tiny" in C.list_presets()
    assert C.get_config("tiny").optim.epochs == 2
    with pytest.raises(ValueError, match="preset 'tiny' is already registered"):
        C.register_preset("tiny", small)
    C.register_preset("tiny", small, overwrite=True)
    with pytest.raises(ValueError, match=re.escape("not ending in .json")):
        C.register_preset("x.json", small)
    with pytest.raises(ValueError, match="factory must be callable"):
        C.register_preset("y", 3)  # type: ignore[arg-type]
    C.register_preset("bad", lambda: 3)  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match="preset 'bad' returned int, not a Config"):
        C.get_config("bad")
    C.unregister_preset("bad")
    assert "bad" not in C.list_presets()
    with pytest.raises(ValueError, match="unknown preset 'bad'; valid presets: cifar100_vgg"):
        C.unregister_preset("bad")


# ---------------------------------------------------------------------------------------------
# Override parsing.


@pytest.mark.parametrize(
    "override, path, expected",
    [
        ("num_steps=8", "num_steps", 8),
        ("data.batch_size= 64 ", "data.batch_size", 64),
        ("optim.lr=0.05", "optim.lr", 0.05),
        ("optim.weight_decay=2e-5", "optim.weight_decay", 2e-5),
        ("optim.lr=1", "optim.lr", 1.0),
        ("optim.nesterov=true", "optim.nesterov", True),
        ("optim.nesterov=TRUE", "optim.nesterov", True),
        ("optim.nesterov=1", "optim.nesterov", True),
        ("progress=false", "progress", False),
        ("progress=0", "progress", False),
        ("method=ottt_o", "method", "ottt_o"),
        ("name= my run ", "name", "my run"),
        ("data.data_dir=/x", "data.data_dir", "/x"),
        ("data.data_dir=/a=b", "data.data_dir", "/a=b"),
        ("workdir=none", "workdir", None),
        ("eval_num_steps=none", "eval_num_steps", None),
        ("eval_num_steps=NULL", "eval_num_steps", None),
        ("eval_num_steps=10", "eval_num_steps", 10),
        ("optim.grad_clip=1.5", "optim.grad_clip", 1.5),
        ("optim.grad_clip=null", "optim.grad_clip", None),
        ("model.surrogate_param=2", "model.surrogate_param", 2.0),
        ("model.vgg_cfg=[32,M,64]", "model.options.vgg_cfg", (32, "M", 64)),
        ("model.vgg_cfg=32,M,64", "model.options.vgg_cfg", (32, "M", 64)),
        ("model.vgg_cfg=( 16, m , 32 )", "model.options.vgg_cfg", (16, "M", 32)),
        ("model.vgg_cfg=['32','M']", "model.options.vgg_cfg", (32, "M")),
    ],
)
def test_override_parses_by_field_type(override, path, expected):
    cfg = C.get_config("digits", [override])
    value = cfg
    for part in path.split("."):
        value = getattr(value, part)
    assert value == expected
    assert type(value) is type(expected)


def test_float_fields_are_floats_after_int_override():
    cfg = C.get_config("digits", {"optim.lr": 1, "loss_beta": 0, "model.decay": 1})
    assert (cfg.optim.lr, cfg.loss_beta, cfg.model.decay) == (1.0, 0.0, 1.0)
    assert all(type(v) is float for v in (cfg.optim.lr, cfg.loss_beta, cfg.model.decay))


def test_mapping_overrides_typed_text_and_nested():
    cfg = C.get_config(
        "digits",
        {
            "optim": {"lr": 0.02, "nesterov": True},
            "model.vgg_cfg": [16, "M", 32],
            "data.batch_size": "16",
            "eval_num_steps": None,
            "data.data_dir": "none",
        },
    )
    assert (cfg.optim.lr, cfg.optim.nesterov) == (0.02, True)
    assert cfg.model.options.vgg_cfg == (16, "M", 32)
    assert cfg.data.batch_size == 16
    assert cfg.eval_num_steps is None and cfg.data.data_dir is None
    hash(cfg)  # the list became a tuple


def test_single_string_and_order_of_overrides():
    assert C.get_config("digits", "optim.lr=0.3").optim.lr == 0.3
    assert C.get_config("digits", ["optim.lr=0.3", "optim.lr=0.2"]).optim.lr == 0.2


def test_selectors_apply_first_so_options_may_precede_them():
    """``rule.k`` / ``model.<option>`` given before the ``method`` / ``model.arch`` they need."""
    cfg = C.get_config("digits", ["rule.k=3", "model.stochastic_depth=0.1", "method=sltt_k",
                                  "model.arch=nfresnet18"])  # fmt: skip
    assert (cfg.rule.k, cfg.model.options.stochastic_depth) == (3, 0.1)


def test_intermediate_inconsistency_is_fine():
    """Validation runs once after all overrides, so order does not matter."""
    cfg = C.get_config("digits", ["data.dataset=cifar100", "model.num_classes=100"])
    assert (cfg.data.dataset, cfg.model.num_classes) == ("cifar100", 100)
    cfg = C.get_config("digits", ["model.num_classes=100", "data.dataset=cifar100"])
    assert (cfg.data.dataset, cfg.model.num_classes) == ("cifar100", 100)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["num_steps=3.5"], ["num_steps expects an int", "'3.5'"]),
        (["num_steps=true"], ["num_steps expects an int", "'true'"]),
        (["num_steps=none"], ["num_steps expects an int", "'none'"]),
        (["optim.lr=fast"], ["optim.lr expects a float", "'fast'"]),
        (["optim.nesterov=yes"], ["optim.nesterov expects a bool (true/false/1/0)", "'yes'"]),
        (["eval_num_steps=x"], ["eval_num_steps expects an int or none", "'x'"]),
        (["model.vgg_cfg=[32,P,64]"], ["model.vgg_cfg expects a list of conv widths", "'P'"]),
        ({"num_steps": 2.5}, ["num_steps expects an int", "2.5"]),
        ({"optim.lr": True}, ["optim.lr expects a float", "True"]),
        ({"data.augment": 1}, ["data.augment expects a bool", "1"]),
        ({"method": 3}, ["method expects a string", "3"]),
        ({"model.vgg_cfg": [32, 1.5]}, ["model.vgg_cfg expects a list", "1.5"]),
        ({"model.vgg_cfg": "32;64"}, ["model.vgg_cfg expects a list", "'32;64'"]),
        (["optim.lr"], ["'optim.lr' must look like 'key=value'"]),
        (["=3"], ["override '=3' has an empty key"]),
        ([3], ["override 3 must look like 'key=value'"]),
        (3, ["overrides must be 'key=value' strings or a mapping", "int"]),
        ({3: 1}, ["override keys must be non-empty strings", "3"]),
    ],
)
def test_override_parse_errors(overrides, expected):
    msg = _err("digits", overrides)
    for part in expected:
        assert part in msg


def test_unknown_key_in_section_lists_section_keys():
    msg = _err("digits", ["optim.lrr=0.1"])
    assert msg.startswith("unknown key 'optim.lrr'; valid keys in optim: name, lr, momentum, ")
    for key in ("nesterov", "weight_decay", "schedule", "warmup_epochs", "epochs", "grad_clip"):
        assert key in msg
    assert "did you mean 'optim.lr'?" in msg


def test_unknown_top_level_key_suggests_section_key():
    msg = _err("digits", ["lr=0.1"])
    assert msg.startswith("unknown key 'lr'; valid top-level keys: name, method, num_steps, ")
    assert "sections: model.*, data.*, optim.*" in msg
    assert "did you mean 'optim.lr'?" in msg
    msg = _err("digits", {"num_step": 3})
    assert "unknown key 'num_step'" in msg and "did you mean 'num_steps'?" in msg


def test_unknown_section_lists_sections():
    msg = _err("digits", ["optimizer.lr=0.1"])
    assert "unknown key 'optimizer.lr'; valid sections: model, data, optim" in msg
    assert "did you mean 'optim.lr'?" in msg


def test_too_deep_key_is_unknown():
    msg = _err("digits", ["optim.lr.x=0.1"])
    assert "unknown key 'optim.lr.x'; valid keys in optim:" in msg


def test_section_key_is_rejected_with_its_keys():
    msg = _err("digits", ["model=vgg"])
    assert "key 'model' is a section; set its fields as 'model.<field>=value'" in msg
    assert "arch, num_classes, decay, v_th, surrogate, surrogate_param, vgg_cfg" in msg


# ---------------------------------------------------------------------------------------------
# Validation.

ALL_DATASETS = "'digits', 'cifar10', 'cifar100', 'cifar10_dvs', 'imagenet2012'"


@pytest.mark.parametrize(
    "name, overrides, expected",
    [
        ("digits", ["method=ottt"], ["method must be one of 'ottt_a', 'ottt_o', 'bptt'", "'ottt'"]),
        ("digits", ["optim.lr=-0.1"], ["optim.lr must be a finite number >= 0; got -0.1"]),
        ("digits", ["optim.lr=nan"], ["optim.lr must be a finite number >= 0; got nan"]),
        (
            "digits",
            ["data.batch_size=0"],
            ["data.batch_size: batch_size must be a positive int, got 0"],
        ),
        (
            "digits",
            ["data.eval_batch_size=0"],
            ["data.eval_batch_size: batch_size must be a positive int"],
        ),
        ("digits", ["data.worker_count=-1"], ["data.worker_count must be an int >= 0; got -1"]),
        ("digits", ["num_steps=0"], ["num_steps must be an int >= 1; got 0"]),
        ("digits", ["eval_num_steps=0"], ["eval_num_steps must be an int >= 1; got 0"]),
        (
            "digits",
            ["model.decay=0"],
            ["model.decay: LIF decay (lambda) must be a number in (0, 1], got 0.0"],
        ),
        (
            "digits",
            ["model.decay=1.01"],
            ["model.decay: LIF decay (lambda) must be a number in (0, 1], got 1.01"],
        ),
        ("digits", ["model.v_th=0"], ["model.v_th: LIF v_th must be a finite number > 0, got 0.0"]),
        (
            "digits",
            ["model.v_th=inf"],
            ["model.v_th: LIF v_th must be a finite number > 0, got inf"],
        ),
        ("digits", ["loss_beta=1.5"], ["loss_beta: beta must be in [0, 1], got 1.5"]),
        ("digits", ["loss_beta=-0.1"], ["loss_beta: beta must be in [0, 1], got -0.1"]),
        (
            "digits",
            ["model.neuron_dropout=1"],
            ["model.neuron_dropout: neuron_dropout must be a float in [0, 1), got 1.0"],
        ),
        (
            "digits",
            ["model.fc_dropout=-0.1"],
            ["model.fc_dropout: fc_dropout must be a float in [0, 1), got -0.1"],
        ),
        (
            "imagenet_nfresnet34",
            ["model.stochastic_depth=1.0"],
            ["model.stochastic_depth: stochastic_depth must be a float in [0, 1), got 1.0"],
        ),
        (
            "digits",
            ["compute_dtype=float16"],
            ["compute_dtype must be one of 'float32', 'bfloat16'", "'float16'"],
        ),
        (
            "digits",
            ["data.dataset=mnist"],
            [f"data.dataset must be one of {ALL_DATASETS}", "'mnist'"],
        ),
        (
            "digits",
            ["model.arch=resnet"],
            ["model.arch must be one of 'vgg', 'vggf', 'nfresnet18', 'nfresnet34', 'nfresnet50'"],
        ),
        (
            "digits",
            ["model.surrogate=sigmod"],
            [
                "model.surrogate must be one of 'sigmoid', 'rectangular', 'clamp', 'atan'",
                "did you mean 'sigmoid'?",
            ],
        ),
        (
            "digits",
            ["model.surrogate_param=0"],
            ["model.surrogate_param: surrogate parameter alpha must be a finite number > 0"],
        ),
        ("digits", ["optim.name=adam"], ["optim.name must be one of 'sgd', 'adamw'", "'adam'"]),
        ("digits", ["optim.schedule=step"], ["optim.schedule must be one of 'cosine', 'constant'"]),
        ("digits", ["optim.momentum=1"], ["optim.momentum must be a finite number in [0, 1)"]),
        ("digits", ["optim.weight_decay=-1"], ["optim.weight_decay must be a finite number >= 0"]),
        ("digits", ["optim.epochs=0"], ["optim.epochs must be an int >= 1; got 0"]),
        (
            "digits",
            ["optim.warmup_epochs=31"],
            ["optim.warmup_epochs must be a finite number in [0, 30]"],
        ),
        ("digits", ["optim.grad_clip=0"], ["optim.grad_clip must be a finite number > 0; got 0.0"]),
        (
            "digits",
            ["optim.min_lr=0.2"],
            ["optim.min_lr must be a finite number in [0, 0.1]; got 0.2"],
        ),
        ("digits", ["optim.adam_b2=1"], ["optim.adam_b2 must be a finite number in [0, 1)"]),
        ("digits", ["optim.adam_eps=0"], ["optim.adam_eps must be a finite number > 0"]),
        (
            "digits",
            ["optim.nesterov=true", "optim.momentum=0"],
            ["optim.nesterov=true needs optim.momentum > 0"],
        ),
        ("digits", ["seed=-1"], ["seed must be an int >= 0; got -1"]),
        ("digits", ["name= "], ["name must be a non-empty string"]),
        ("digits", ["workdir="], ["workdir must be a non-empty string"]),
        ("digits", ["data.data_dir= "], ["data.data_dir must be a non-empty string"]),
        ("digits", ["log_every=0"], ["log_every must be an int >= 1"]),
        ("digits", ["eval_every_epochs=0"], ["eval_every_epochs must be an int >= 1"]),
        ("digits", ["checkpoint_every_steps=0"], ["checkpoint_every_steps must be an int >= 1"]),
        ("digits", ["max_checkpoints=0"], ["max_checkpoints must be an int >= 1"]),
        ("digits", ["max_train_steps=0"], ["max_train_steps must be an int >= 1"]),
        (
            "cifar10_vgg",
            ["model.num_classes=100"],
            [
                "model.num_classes must be 10 for data.dataset 'cifar10'; got 100",
                "digits 10, cifar10 10, cifar100 100, cifar10_dvs 10, imagenet2012 1000",
            ],
        ),
        ("digits", ["data.dataset=imagenet2012"], ["model.num_classes must be 1000"]),
        (
            "digits",
            ["model.vgg_cfg=[M,32]"],
            [
                "model.vgg_cfg: cfg must start with a conv width (int), got cfg[0] = 'M'",
            ],
        ),
        ("digits", ["model.vgg_cfg=[]"], ["model.vgg_cfg: cfg must not be empty"]),
        (
            "cifar100_vggf",
            ["model.vgg_cfg=[M]"],
            ["invalid config 'cifar100_vggf': model.vgg_cfg: cfg must start with a conv width"],
        ),
        (
            "digits",
            ["model.vgg_cfg=[32,0]"],
            ["model.vgg_cfg: cfg[1] = 0 is invalid: entries must be positive ints"],
        ),
        (
            "digits",
            ["model.vgg_cfg=[8,M,M,M,M]"],
            [
                "model.vgg_cfg does not fit data.dataset 'digits' (8×8×1 frames): input_shape "
                "(8, 8, 1) is too small for cfg (8, 'M', 'M', 'M', 'M')"
            ],
        ),
        (
            "cifar10dvs_vgg",
            ["model.arch=vggf", "model.vgg_cfg=[8,M,M,M,M,M]"],
            [
                "model.vgg_cfg does not fit data.dataset 'cifar10_dvs' (48×48×2 frames): "
                "feedback=True needs H and W divisible by 2**5 = 32"
            ],
        ),
        (
            "digits",
            ["model.stochastic_depth=0.1"],
            [
                "model.stochastic_depth is not an option of model.arch 'vgg' (its options: "
                "vgg_cfg, neuron_dropout, fc_dropout); it applies only to",
                "'nfresnet34'",
            ],
        ),
        (
            "imagenet_nfresnet34",
            ["model.vgg_cfg=[M]"],
            ["model.vgg_cfg is not an option of model.arch 'nfresnet34'", "'vgg', 'vggf'"],
        ),
        (
            "digits",
            ["data.num_frames=4"],
            ["data.num_frames applies only to event datasets ('cifar10_dvs', ", "'digits'"],
        ),
        (
            "cifar10dvs_vgg",
            ["num_steps=8"],
            ["data.num_frames must equal num_steps (8) for 'cifar10_dvs'", "got 10"],
        ),
        (
            "cifar10dvs_vgg",
            ["eval_num_steps=20"],
            ["eval_num_steps must be none or equal to the number of frames (10)"],
        ),
    ],
)
def test_validation_errors(name, overrides, expected):
    msg = _err(name, overrides)
    assert msg.startswith("invalid config ")
    for part in expected:
        assert part in msg, (part, msg)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("digits", ["model.decay=1.0", "loss_beta=0", "optim.lr=0"]),
        ("digits", ["loss_beta=1", "model.neuron_dropout=0.99", "optim.warmup_epochs=30"]),
        ("imagenet_nfresnet34", ["model.stochastic_depth=0.1", "model.fc_dropout=0.5"]),
        ("cifar10dvs_vgg", ["num_steps=8", "data.num_frames=none"]),
        ("cifar10dvs_vgg", ["num_steps=8", "data.num_frames=8", "eval_num_steps=8"]),
        ("digits", ["optim.name=adamw", "optim.momentum=0", "optim.nesterov=true"]),
        ("digits", ["model.arch=vggf"]),
        ("digits", ["model.surrogate=clamp", "compute_dtype=bfloat16", "method=bptt"]),
    ],
)
def test_validation_boundaries_accepted(name, overrides):
    C.get_config(name, overrides)


def test_dvs_frames_follow_num_steps():
    cfg = C.get_config("cifar10dvs_vgg", ["num_steps=8", "data.num_frames=none"])
    assert (cfg.effective_num_frames, cfg.effective_eval_num_steps) == (8, 8)
    assert C.get_config("digits").effective_num_frames is None


def test_validation_reports_all_problems():
    msg = _err("digits", ["optim.lr=-1", "data.batch_size=0", "model.decay=2", "method=x"])
    assert msg.startswith("invalid config 'digits' (4 problems):")
    for key in ("optim.lr", "method"):
        assert f"  - {key} must be" in msg
    # Single-object rules report the owner's message under the config key.
    assert "  - data.batch_size: batch_size must be a positive int, got 0" in msg
    assert "  - model.decay: LIF decay (lambda) must be a number in (0, 1], got 2.0" in msg


def test_validate_checks_types_of_replaced_fields():
    cfg = C.get_config("digits")
    bad = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr="0.1"))
    with pytest.raises(ValueError, match=re.escape("optim.lr expects a float; got '0.1'")):
        C.validate(bad)
    with pytest.raises(ValueError, match="model must be a ModelConfig; got dict"):
        C.validate(dataclasses.replace(cfg, model={"arch": "vgg"}))
    with pytest.raises(ValueError, match="validate expects a Config, got dict"):
        C.validate({})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cfg must be a Config, got str"):
        C.apply_overrides("digits", ["seed=1"])  # type: ignore[arg-type]


def test_validate_normalizes_values():
    options = VGGOptions(vgg_cfg=[16, "M", 32])  # a list: validate makes it a tuple
    cfg = C.Config(name="x", model=C.ModelConfig(options=options, decay=1), loss_beta=0)
    out = C.validate(cfg)
    assert C.validate(out) == out and hash(out)
    assert out.model.options.vgg_cfg == (16, "M", 32)
    assert type(out.model.decay) is float and type(out.loss_beta) is float


def test_defaults_are_valid_and_documented():
    cfg = C.validate(C.Config(name="defaults"))
    assert (cfg.method, cfg.num_steps, cfg.compute_dtype) == ("ottt_a", 6, "float32")
    assert cfg.model.options.vgg_cfg == VGG11
    docs = C.field_docs()
    keys = list(C.to_flat_dict(cfg))
    assert [k for k in docs if k in keys] == keys  # docs also list the other archs' options
    assert docs["model.stochastic_depth"].startswith("(nfresnet18, nfresnet34, nfresnet50) drop")
    assert all(len(doc) > 10 for doc in docs.values())
    for cls in (C.Config, C.ModelConfig, C.DataConfig, C.OptimConfig):
        for fld in dataclasses.fields(cls):
            assert f"  {fld.name}: " in cls.__doc__


# ---------------------------------------------------------------------------------------------
# Serialization, diff, immutability.


@pytest.mark.parametrize("name", PRESETS)
def test_to_dict_from_dict_round_trip(name):
    cfg = C.get_config(name)
    d = C.to_dict(cfg)
    assert list(d) == [f.name for f in dataclasses.fields(C.Config)]
    assert C.from_dict(d) == cfg
    text = json.dumps(d)
    assert json.loads(text) == d
    back = C.from_dict(json.loads(text))
    assert back == cfg and hash(back) == hash(cfg)
    if hasattr(back.model.options, "vgg_cfg"):
        assert isinstance(back.model.options.vgg_cfg, tuple)


def test_round_trip_with_non_default_values():
    cfg = C.get_config(
        "digits",
        [
            "model.vgg_cfg=[16,M,32,M]",
            "eval_num_steps=9",
            "optim.grad_clip=2.5",
            "data.data_dir=/data",
            "workdir=/runs/x",
            "model.surrogate=atan",
            "model.surrogate_param=3",
            "optim.name=adamw",
            "compute_dtype=bfloat16",
            "max_train_steps=7",
        ],
    )
    d = C.to_dict(cfg)
    assert d["model"]["vgg_cfg"] == [16, "M", 32, "M"]
    assert C.from_dict(json.loads(json.dumps(d))) == cfg
    flat = C.to_flat_dict(cfg)
    assert flat["model.vgg_cfg"] == [16, "M", 32, "M"] and flat["optim.grad_clip"] == 2.5
    json.dumps(flat)


def test_from_dict_defaults_and_errors():
    cfg = C.from_dict({"name": "old", "optim": {"lr": 1}})
    assert cfg == C.Config(name="old", optim=C.OptimConfig(lr=1.0))
    assert type(cfg.optim.lr) is float
    with pytest.raises(ValueError, match="missing required key 'name'"):
        C.from_dict({"method": "ottt_a"})
    with pytest.raises(
        ValueError, match=re.escape("unknown key(s) 'lr'; valid keys: name, method")
    ):
        C.from_dict({"name": "x", "lr": 0.1})
    with pytest.raises(
        ValueError, match=re.escape("unknown key(s) 'optim.lrr'; valid keys in optim: name")
    ):
        C.from_dict({"name": "x", "optim": {"lrr": 0.1}})
    with pytest.raises(ValueError, match="model must be a mapping; got list"):
        C.from_dict({"name": "x", "model": []})
    with pytest.raises(ValueError, match="from_dict expects a mapping, got list"):
        C.from_dict([])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method must be one of"):
        C.from_dict({"name": "x", "method": "ottt"})


def test_diff():
    a = C.get_config("digits")
    assert C.diff(a, a) == []
    b = C.get_config(
        "digits",
        ["optim.lr=0.05", "model.vgg_cfg=[16,M,32]", "data.data_dir=/x", "eval_num_steps=8"],
    )
    assert C.diff(a, b) == [
        "eval_num_steps: None != 8",
        "model.vgg_cfg: (32, 'M', 64) != (16, 'M', 32)",
        "data.data_dir: None != '/x'",
        "optim.lr: 0.1 != 0.05",
    ]
    assert C.diff(a, b, ignore=C.RESUMABLE_KEYS) == [
        "model.vgg_cfg: (32, 'M', 64) != (16, 'M', 32)",
        "optim.lr: 0.1 != 0.05",
    ]
    assert C.diff(a, b, ignore=["model", "optim", "data"]) == ["eval_num_steps: None != 8"]
    with pytest.raises(ValueError, match=re.escape("unknown key(s) in ignore: 'optim.lrr'")):
        C.diff(a, b, ignore=["optim.lrr"])
    with pytest.raises(ValueError, match="diff expects two Configs"):
        C.diff(a, C.to_dict(b))  # type: ignore[arg-type]


def test_resumable_keys_are_real_keys():
    assert C.RESUMABLE_KEYS <= set(C.field_docs())
    assert "optim.lr" not in C.RESUMABLE_KEYS and "seed" not in C.RESUMABLE_KEYS


def test_immutability():
    cfg = C.get_config("digits")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.num_steps = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.lr = 0.5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.options.vgg_cfg = (1,)  # type: ignore[misc]
    new = C.apply_overrides(cfg, ["optim.lr=0.5", "num_steps=3"])
    assert (cfg.optim.lr, cfg.num_steps) == (0.1, 4)
    assert (new.optim.lr, new.num_steps) == (0.5, 3)
    assert new.model == cfg.model
    assert {cfg: 1}[C.get_config("digits")] == 1  # hashable, equal by value
    d = C.to_dict(cfg)
    d["model"]["vgg_cfg"].append(128)
    assert cfg.model.options.vgg_cfg == (32, "M", 64)


# ---------------------------------------------------------------------------------------------
# Helpers.


def test_surrogate_kwargs_match_surrogate_module():
    m = C.ModelConfig()
    assert C.surrogate_kwargs(m) == {"alpha": S.Sigmoid().alpha} == {"alpha": 4.0}
    atan = dataclasses.replace(m, surrogate="atan")
    assert C.surrogate_kwargs(atan) == {"alpha": S.Atan().alpha}
    rect = dataclasses.replace(m, surrogate="rectangular", surrogate_param=0.5)
    assert C.surrogate_kwargs(rect) == {"a": 0.5}
    assert C.surrogate_kwargs(dataclasses.replace(rect, surrogate_param=None)) == {
        "a": S.Rectangular().a
    }
    clamp = dataclasses.replace(m, surrogate="clamp", v_th=0.7)
    assert C.surrogate_kwargs(clamp) == {"v_th": 0.7}
    assert C.surrogate_kwargs(dataclasses.replace(clamp, surrogate_param=0.3)) == {"v_th": 0.3}
    for name in S.surrogate_names():
        sm = dataclasses.replace(m, surrogate=name)
        assert S.get_surrogate(name, **C.surrogate_kwargs(sm)).name == name
    with pytest.raises(ValueError, match=re.escape("model.surrogate must be one of")):
        C.surrogate_kwargs(dataclasses.replace(m, surrogate="relu"))


def test_describe():
    text = C.describe(C.get_config("cifar10dvs_vgg", ["workdir=/runs/dvs"]))
    lines = text.splitlines()
    assert lines[0] == "config 'cifar10dvs_vgg'"
    assert "ottt_a: OTTT_A" in text
    assert "T=10 train, T=10 eval" in text and "β=0.001" in text
    assert "vgg [64,128,M,256,256,M,512,512,M,512,512] -> 10 classes" in text
    assert "surrogate sigmoid(alpha=4)" in text
    assert "neuron_dropout=0.1" in text
    assert "cifar10_dvs (48×48×2, 9000 train / 1000 test, 10 frames); batch 128" in text
    assert "sgd lr=0.1 momentum=0.9 wd=0; cosine to 0" in text and "of 300 epochs" in text
    assert "workdir /runs/dvs" in text
    text = C.describe(C.get_config("imagenet_nfresnet34", ["optim.name=adamw", "method=ottt_o"]))
    assert "nfresnet34 -> 1000 classes" in text and "[64" not in text
    assert "adamw lr=0.1 b1=0.9 b2=0.999" in text and "wd=2e-05" in text
    assert f"ottt_o: {rules.get_rule('ottt_o').summary}" in text  # the rule's own summary
    assert "options stochastic_depth=0 fc_dropout=0" in text


# ---------------------------------------------------------------------------------------------
# Per-architecture model options (from the model registry).


def test_model_options_follow_the_arch():
    wrong = C.Config(name="x", model=C.ModelConfig(options=get_model_entry("nfresnet18").options()))
    with pytest.raises(
        ValueError, match=r"model\.options must be a VGGOptions for model\.arch 'vgg'"
    ):
        C.validate(wrong)
    vgg = C.get_config("cifar10_vgg", ["model.fc_dropout=0.3"])
    assert vgg.model.options == VGGOptions(fc_dropout=0.3)
    # Switching the arch keeps the options both archs have and drops the others.
    nf = C.apply_overrides(vgg, ["model.arch=nfresnet18"])
    assert nf.model.options == get_model_entry("nfresnet18").options(fc_dropout=0.3)
    assert (nf.model.options.fc_dropout, nf.model.options.stochastic_depth) == (0.3, 0.0)
    assert list(C.to_dict(nf)["model"]) == [
        "arch",
        "num_classes",
        "decay",
        "v_th",
        "surrogate",
        "surrogate_param",
        "stochastic_depth",
        "fc_dropout",
    ]
    assert C.diff(vgg, nf) == [
        "model.arch: 'vgg' != 'nfresnet18'",
        f"model.vgg_cfg: {VGG11!r} != (not an option)",
        "model.neuron_dropout: 0.0 != (not an option)",
        "model.stochastic_depth: (not an option) != 0.0",
    ]
    assert C.from_dict(json.loads(json.dumps(C.to_dict(nf)))) == nf


def test_type_problems_are_listed_top_keys_then_data_optim_model_options_rule():
    d, s = C.get_config("digits"), C.get_config("digits", ["method=sltt_k"])
    options = dataclasses.replace(d.model.options, fc_dropout="q")
    bad = dataclasses.replace(
        s,
        seed="x",
        data=dataclasses.replace(d.data, batch_size="y"),
        optim=dataclasses.replace(d.optim, lr="z"),
        model=dataclasses.replace(d.model, num_classes=2.5, options=options),
        rule=dataclasses.replace(s.rule, k=2.5),
    )
    with pytest.raises(ValueError) as info:
        C.validate(bad)
    assert str(info.value).splitlines() == [
        "invalid config 'digits' (6 problems):",
        "  - seed expects an int; got 'x'",
        "  - data.batch_size expects an int; got 'y'",
        "  - optim.lr expects a float; got 'z'",
        "  - model.num_classes expects an int; got 2.5",
        "  - model.fc_dropout expects a float; got 'q'",
        "  - rule.k expects an int; got 2.5",
    ]


def test_an_override_sets_the_options_object_the_config_holds():
    """Unvalidated options of another arch take that arch's key; validation names the mismatch."""
    d = C.get_config("digits")
    bad = dataclasses.replace(d, model=dataclasses.replace(d.model, arch="rsnn"))
    wrong = r"model\.options must be a RSNNOptions for model\.arch 'rsnn'; got VGGOptions"
    with pytest.raises(ValueError, match=wrong):
        C.apply_overrides(bad, ["model.fc_dropout=0.1"])


def test_configs_saved_with_every_arch_field_still_load():
    cfg = C.get_config("imagenet_nfresnet34")
    old = C.to_dict(cfg)
    old["model"] = {**old["model"], "vgg_cfg": list(VGG11), "neuron_dropout": 0.0}  # v0.1 format
    assert C.from_dict(old) == cfg
    old["model"]["neuron_dropout"] = 0.1  # a value the arch would ignore is not dropped silently
    with pytest.raises(ValueError, match=r"from_dict: model\.neuron_dropout is not an option of"):
        C.from_dict(old)
    old["model"]["nope"] = 1
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'model.nope'; valid keys in model"):
        C.from_dict(old)


@dataclasses.dataclass(frozen=True)
class _WidthOptions:
    width: int = dataclasses.field(default=16, metadata={"doc": "hidden channels of the net"})
    fc_dropout: float = dataclasses.field(default=0.0, metadata={"doc": "dropout rate. In [0, 1)"})


def test_user_model_options_are_typed_and_documented_from_the_registry():
    def build(*, options, **_):  # the model checks its own option (config runs it)
        check_rate("fc_dropout", options.fc_dropout)

    register_model("config_test_net", build, _WidthOptions, overwrite=True)
    try:
        _check_user_model_options()
    finally:  # the registry is process-wide: later tests list every key of the schema
        unregister_model("config_test_net")


def _check_user_model_options():
    cfg = C.get_config("digits", ["model.arch=config_test_net", "model.width=5"])
    assert cfg.model.options.width == 5 and type(cfg.model.options.width) is int
    assert cfg.model.options == _WidthOptions(width=5)
    assert C.validate(cfg) == cfg
    for bad, expected in [
        ("model.width=x", "model.width expects an int; got 'x'"),
        ("model.fc_dropout=1", "model.fc_dropout: fc_dropout must be a float in [0, 1), got 1.0"),
        ("model.vgg_cfg=[8]", "not an option of model.arch 'config_test_net' (its options: width"),
    ]:
        msg = _err("digits", ["model.arch=config_test_net", bad])
        assert expected in msg, (expected, msg)
    assert C.field_docs()["model.width"] == "(config_test_net) hidden channels of the net"
