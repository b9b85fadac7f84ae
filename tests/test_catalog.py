"""The dataset catalog: registering user datasets and training on them by name; the frames rule."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

import ottt_jax
from ottt_jax import config as config_lib
from ottt_jax.data import augment, catalog, make_loader

MOCK = tfds.testing.MockPolicy.USE_CODE
SMALL = ["progress=false", "model.vgg_cfg=[8]", "data.batch_size=4", "data.eval_batch_size=4"]


@pytest.fixture
def scratch_catalog():
    """Remove whatever a test registers, so the catalog is the built-ins again afterwards."""
    before = catalog.dataset_names()
    yield
    for name in catalog.dataset_names():
        if name not in before:
            catalog.unregister_dataset(name)
    assert catalog.dataset_names() == before


def _arrays(n, shape, classes, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape)).astype(np.uint8)
    labels = (np.arange(n) % classes).astype(np.int64)
    return images, labels


def _train_two_steps(tmp_path, *overrides):
    """Train the digits preset on a dataset chosen by name for two steps; return the result."""
    cfg = config_lib.get_config(
        "digits", [*SMALL, "max_train_steps=2", "optim.epochs=1", *overrides]
    )
    r = ottt_jax.train(cfg, workdir=str(tmp_path))
    assert r["steps"] == 2 and np.isfinite(r["train_loss"])
    return r


def _all_batches(loader):
    batches = list(loader)
    return (
        np.concatenate([b["image"] for b in batches]),
        np.concatenate([b["label"] for b in batches]),
    )


# --------------------------------------------------------------------------- the catalog


def test_catalog_import_needs_no_tfds():
    code = "import sys, ottt_jax.data.catalog; sys.exit('tensorflow_datasets' in sys.modules)"
    import subprocess

    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_builtin_facts_come_from_the_catalog_once():
    dvs = catalog.get_dataset("cifar10_dvs")
    from ottt_jax.data import cifar10_dvs

    # The builder prepares exactly the catalog's frame counts.
    assert cifar10_dvs.NUM_FRAMES_CHOICES == dvs.frames == (4, 5, 8, 10, 16, 20)
    assert {c.num_frames for c in cifar10_dvs.Cifar10Dvs.BUILDER_CONFIGS} == set(dvs.frames)
    assert dvs.is_sequence and dvs.image_key == "frames" and dvs.mean == augment.DVS_MEAN
    cfg = config_lib.get_config("cifar100_vgg")
    assert cfg.model.num_classes == catalog.get_dataset("cifar100").num_classes == 100
    assert catalog.dataset_names()[:5] == (
        "digits",
        "cifar10",
        "cifar100",
        "cifar10_dvs",
        "imagenet2012",
    )


def test_unknown_and_duplicate_names(scratch_catalog):
    with pytest.raises(
        ValueError, match=r"unknown dataset 'nope'; registered datasets: \['digits', 'cifar10'"
    ):
        catalog.get_dataset("nope")
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        make_loader("nope", "train", batch_size=2, seed=0)
    with pytest.raises(ValueError, match=r"data\.dataset must be one of 'digits'.*'nope'"):
        config_lib.get_config("digits", ["data.dataset=nope"])
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        catalog.unregister_dataset("nope")
    spec = catalog.numpy_dataset("dup", _arrays(4, (8, 8, 1), 2, 0), _arrays(2, (8, 8, 1), 2, 1))
    with pytest.raises(ValueError, match="dataset 'dup' is already registered; pass overwrite"):
        catalog.register_dataset(spec)
    assert catalog.register_dataset(spec, overwrite=True) is spec
    with pytest.raises(ValueError, match="expects a DatasetSpec, got dict"):
        catalog.register_dataset({"name": "x"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("name", " ", "DatasetSpec.name must be a non-empty string"),
        ("num_classes", 0, "DatasetSpec.num_classes must be an int >= 1; got 0"),
        ("frame_shape", (8, 8), "DatasetSpec.frame_shape must be (H, W, C)"),
        ("num_test", 0, "DatasetSpec.num_test must be an int >= 1"),
        ("open_split", "x", "DatasetSpec.open_split must be callable"),
        ("mean", (0.0, 0.0), "DatasetSpec.mean must be one value per channel (1)"),
        ("std", (0.0,), "DatasetSpec.std must be positive"),
        ("frames", (0,), "DatasetSpec.frames must be a tuple of ints >= 1"),
        ("default_frames", 3, "DatasetSpec.default_frames must be None for a static dataset"),
        ("uses_cutout", True, "DatasetSpec.uses_cutout must be False when there is no train"),
    ],
)
def test_spec_rejects_bad_fields(field, value, expected):
    good = dict(
        name="x",
        num_classes=2,
        frame_shape=(8, 8, 1),
        num_train=4,
        num_test=2,
        open_split=catalog.ArraySplits(
            catalog.ArraySource(*_arrays(4, (8, 8, 1), 2, 0)),
            catalog.ArraySource(*_arrays(2, (8, 8, 1), 2, 0)),
        ),
        eval_transform=augment.digits_eval,
    )
    catalog.DatasetSpec(**good)
    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        catalog.DatasetSpec(**{**good, field: value})
    with pytest.raises(ValueError, match="default_frames must be one of frames"):
        catalog.DatasetSpec(**{**good, "frames": (2, 3)})


# --------------------------------------------------------------------------- the frames rule


def test_frames_rule():
    dvs = catalog.get_dataset("cifar10_dvs")
    rule = catalog.resolve_num_frames
    assert rule(dvs) == 10  # no T known: the dataset's default
    assert rule(dvs, num_steps=8) == 8  # none means num_steps
    assert rule(dvs, 16, num_steps=16) == 16
    assert rule("cifar10", None, num_steps=6) is None
    with pytest.raises(ValueError, match=r"must be one of \(4, 5, 8, 10, 16, 20\); got 7$"):
        rule(dvs, 7)
    with pytest.raises(ValueError, match=r"got 7 \(num_frames=none means num_steps\)"):
        rule(dvs, num_steps=7)
    with pytest.raises(ValueError, match=r"must be one of .*; got 7$"):
        rule(dvs, 7, num_steps=10)  # the allowed values first
    with pytest.raises(ValueError, match=r"must equal num_steps \(10\).*got 8"):
        rule(dvs, 8, num_steps=10)
    with pytest.raises(ValueError, match="applies only to event datasets"):
        rule("digits", 4)


def test_config_refuses_frames_the_data_layer_refuses():
    with pytest.raises(ValueError, match=r"data.num_frames for 'cifar10_dvs' must be one of \(4,"):
        config_lib.get_config("cifar10dvs_vgg", ["num_steps=7", "data.num_frames=7"])
    with pytest.raises(ValueError, match=r"data.num_frames for 'cifar10_dvs' must be one of"):
        config_lib.get_config("cifar10dvs_vgg", ["data.num_frames=7"])
    with pytest.raises(ValueError, match=r"got 7 \(num_frames=none means num_steps\)"):
        config_lib.get_config("cifar10dvs_vgg", ["num_steps=7", "data.num_frames=none"])
    cfg = config_lib.get_config("cifar10dvs_vgg", ["num_steps=8", "data.num_frames=none"])
    # What the config promises is what the data layer serves.
    info = catalog.dataset_info("cifar10_dvs", num_frames=cfg.effective_num_frames)
    assert info.input_shape == (8, 48, 48, 2) and cfg.effective_eval_num_steps == 8


# A sequence dataset offering 2 or 3 frames, recording the frame count each split is opened with.
OPENED: list[int] = []


def _open_sequences(split, data_dir, num_frames):
    OPENED.append(num_frames)
    images, labels = _arrays(8 if split == "train" else 4, (num_frames, 8, 8, 1), 2, 0)
    return catalog.ArraySource((images > 128).astype(np.float32), labels)


def test_trainer_uses_the_frames_the_config_resolved(scratch_catalog, tmp_path):
    """num_frames=none with T=2 must train and evaluate on 2-frame sequences (not the default 3)."""
    catalog.register_dataset(
        catalog.DatasetSpec(
            name="two_or_three",
            num_classes=2,
            frame_shape=(8, 8, 1),
            num_train=8,
            num_test=4,
            open_split=_open_sequences,
            eval_transform=augment.digits_eval,
            frames=(2, 3),
            default_frames=3,
        )
    )
    OPENED.clear()
    _train_two_steps(
        tmp_path, "data.dataset=two_or_three", "model.num_classes=2", "num_steps=2",
        "data.num_frames=none",
    )  # fmt: skip
    assert OPENED and set(OPENED) == {2}


# --------------------------------------------------------------------------- user datasets


def test_numpy_dataset_by_name_end_to_end(scratch_catalog, tmp_path):
    train, test = _arrays(16, (8, 8, 1), 3, 0), _arrays(8, (8, 8, 1), 3, 1)
    spec = catalog.numpy_dataset("tiny_np", train, test, scale=255.0, mean=(0.5,), std=(0.25,))
    assert catalog.get_dataset("tiny_np") is spec
    assert (spec.num_classes, spec.frame_shape, spec.num_train, spec.num_test) == (
        3,
        (8, 8, 1),
        16,
        8,
    )
    assert not spec.is_sequence and not spec.has_augmentation
    # The loader serves the arrays exactly, normalized: (x / 255 - 0.5) / 0.25.
    images, labels = _all_batches(make_loader("tiny_np", "test", batch_size=3, seed=0))
    np.testing.assert_allclose(images, (test[0] / 255.0 - 0.5) / 0.25, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(labels, test[1])
    assert images.dtype == np.float32 and labels.dtype == np.int32
    pickle.loads(pickle.dumps(spec.open_split))  # Grain workers can receive the source
    with pytest.raises(ValueError, match=r"model\.num_classes must be 3 for data\.dataset 'tiny_"):
        config_lib.get_config("digits", ["data.dataset=tiny_np"])
    r = _train_two_steps(tmp_path, "data.dataset=tiny_np", "model.num_classes=3")
    assert r["test_accuracy"] * 8 == pytest.approx(round(r["test_accuracy"] * 8))  # 8 samples


def test_numpy_sequence_dataset_frames_are_its_length(scratch_catalog):
    train = (np.zeros((4, 3, 8, 8, 1), np.float32), np.array([0, 1, 0, 1]))
    spec = catalog.numpy_dataset("seq3", train, train)
    assert spec.is_sequence and spec.frames == (3,) and spec.frame_shape == (8, 8, 1)
    config_lib.get_config("digits", ["data.dataset=seq3", "model.num_classes=2", "num_steps=3"])
    with pytest.raises(ValueError, match=r"data.num_frames for 'seq3' must be one of \(3,\)"):
        config_lib.get_config("digits", ["data.dataset=seq3", "model.num_classes=2"])
    with pytest.raises(ValueError, match="labels must be in"):
        catalog.numpy_dataset("bad", train, train, num_classes=1, register=False)
    with pytest.raises(ValueError, match="test images must have the train images' shape"):
        catalog.numpy_dataset("bad", train, (train[0][:, :2], train[1]), register=False)


def test_tfds_image_dataset_by_name_end_to_end(scratch_catalog, tmp_path):
    with tfds.testing.mock_data(num_examples=8, policy=MOCK):
        spec = catalog.tfds_image_dataset("mnist", mean=(0.1307,), std=(0.3081,))
        assert catalog.get_dataset("mnist") is spec
        assert (spec.num_classes, spec.frame_shape, spec.num_train, spec.num_test) == (
            10,
            (28, 28, 1),
            8,
            8,
        )
        raw = tfds.data_source("mnist", split="test")
        images, labels = _all_batches(make_loader("mnist", "test", batch_size=8, seed=0))
        expected = np.stack([raw[i]["image"] for i in range(8)]) / 255.0
        np.testing.assert_allclose(images, (expected - 0.1307) / 0.3081, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(labels, [raw[i]["label"] for i in range(8)])
        _train_two_steps(
            tmp_path, "data.dataset=mnist", "model.num_classes=10", "model.vgg_cfg=[8,M]"
        )
    with pytest.raises(ValueError, match="not an image classification dataset"):
        catalog.tfds_image_dataset("mnist", image_key="pixels", register=False)


def test_data_modules_import_one_way():
    """spec ← sources ← digits ← catalog: no module imports one that imports it (no cycle)."""
    import ast
    import pathlib

    root = pathlib.Path(catalog.__file__).parent

    def data_imports(name):
        tree = ast.parse((root / f"{name}.py").read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("ottt_jax.data."):
                    found.add(node.module.rsplit(".", 1)[1])
                elif node.module == "ottt_jax.data":
                    found.update(a.name for a in node.names)
        return found

    assert data_imports("spec") == set()
    assert data_imports("sources") == {"spec"}
    assert data_imports("digits") == {"sources"}
    assert data_imports("catalog") >= {"spec", "sources", "digits"}


def test_split_sizes_are_defined_once():
    from ottt_jax.data import DatasetInfo, DatasetSpec, digits

    assert DatasetInfo.num_examples is DatasetSpec.num_examples
    spec = catalog.get_dataset("digits")
    assert (spec.num_train, spec.num_test) == (digits.NUM_TRAIN, digits.NUM_TEST)
    assert len(digits.load_digits_split("train")[1]) == digits.NUM_TRAIN
    assert spec.num_examples("test") == len(digits.load_digits_split("test")[1])
