"""Data layer: dataset info, digits, Grain loaders (sharding, determinism, checkpoint state),
TFDS-mocked CIFAR/ImageNet loaders and the augmentations' exact math."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ottt_jax.data import (
    DatasetNotPreparedError,
    dataset_names,
    get_dataset_info,
    make_loader,
    open_source,
    shard_bounds,
    steps_per_epoch,
)
from ottt_jax.data import augment as aug
from ottt_jax.data.digits import load_digits_split

MOCK = tfds.testing.MockPolicy.USE_CODE


def _take(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])


# --------------------------------------------------------------------------- dataset info


def test_dataset_info_facts():
    cifar = get_dataset_info("cifar10")
    assert (cifar.num_classes, cifar.frame_shape, cifar.num_train, cifar.num_test) == (
        10,
        (32, 32, 3),
        50000,
        10000,
    )
    assert cifar.mean == aug.CIFAR_MEAN and cifar.std == aug.CIFAR_STD
    assert (cifar.name, cifar.is_sequence, cifar.num_frames) == ("cifar10", False, None)
    assert get_dataset_info("cifar100").num_classes == 100
    assert get_dataset_info("cifar100").mean == aug.CIFAR_MEAN  # the authors reuse CIFAR-10's
    imnet = get_dataset_info("imagenet2012")
    assert (imnet.num_classes, imnet.frame_shape, imnet.num_test) == (1000, (224, 224, 3), 50000)
    dvs = get_dataset_info("cifar10_dvs")
    assert dvs.is_sequence and dvs.num_frames == 10 and dvs.frame_shape == (48, 48, 2)
    assert dvs.input_shape == (10, 48, 48, 2) and (dvs.num_train, dvs.num_test) == (9000, 1000)
    assert get_dataset_info("cifar10_dvs", num_frames=16).num_frames == 16
    digits = get_dataset_info("digits")
    assert (digits.num_train, digits.num_test, digits.frame_shape) == (1437, 360, (8, 8, 1))
    assert not digits.is_sequence and digits.num_frames is None
    assert digits.num_examples("test") == 360


def test_dataset_info_rejects_bad_input():
    with pytest.raises(ValueError, match="cifar10_dvs"):  # lists the valid names
        get_dataset_info("mnist")
    with pytest.raises(ValueError, match="sequence"):
        get_dataset_info("cifar10", num_frames=4)
    with pytest.raises(ValueError, match="num_frames"):
        get_dataset_info("cifar10_dvs", num_frames=7)
    builtin = {"digits", "cifar10", "cifar100", "imagenet2012", "cifar10_dvs", "nmnist", "shd"}
    builtin.add("dvs_gesture")
    assert set(dataset_names()) == builtin


# --------------------------------------------------------------------------- digits


def test_digits_split_is_fixed_stratified_and_scaled():
    from sklearn.datasets import load_digits

    x_tr, y_tr = load_digits_split("train")
    x_te, y_te = load_digits_split("test")
    assert x_tr.shape == (1437, 8, 8, 1) and x_te.shape == (360, 8, 8, 1)
    assert x_tr.dtype == np.float32 and y_tr.dtype == np.int32
    assert x_tr.min() >= 0 and x_tr.max() <= 1 and x_tr.max() == 1
    full = load_digits()
    # The two splits partition the dataset (compare as multisets of (image, label) rows).
    rows = np.concatenate([x_tr.reshape(-1, 64) * 16, x_te.reshape(-1, 64) * 16], 0)
    labels = np.concatenate([y_tr, y_te])
    a = np.column_stack([rows, labels])
    b = np.column_stack([full.data, full.target])
    np.testing.assert_array_equal(a[np.lexsort(a.T)], b[np.lexsort(b.T)])
    # Stratified: each class's test count is its share of 360, to within one.
    share = np.bincount(full.target) * 360 / len(full.target)
    assert np.all(np.abs(np.bincount(y_te, minlength=10) - share) <= 1)
    with pytest.raises(ValueError, match="split"):
        load_digits_split("validation")


def test_digits_test_loader_yields_the_split_in_order():
    loader = make_loader("digits", "test", batch_size=64, seed=0)
    batches = list(loader)
    assert [b["image"].shape for b in batches] == [(64, 8, 8, 1)] * 5 + [(40, 8, 8, 1)]
    assert loader.steps_per_epoch == 6 and loader.num_records == 360
    assert all(b["image"].dtype == np.float32 and b["label"].dtype == np.int32 for b in batches)
    x, y = load_digits_split("test")
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), y)


def test_digits_train_loader_defaults_shuffle_forever_full_batches():
    loader = make_loader("digits", "train", batch_size=100, seed=0)
    assert loader.steps_per_epoch == 14 and loader.num_epochs is None
    first = _take(loader, 16)  # crosses the epoch boundary (1437 records)
    assert all(b["image"].shape == (100, 8, 8, 1) for b in first)
    labels = np.concatenate([b["label"] for b in first])
    assert labels.min() == 0 and labels.max() == 9
    x, _ = load_digits_split("train")
    epoch = np.concatenate([b["image"] for b in first])[:1437]
    assert not np.array_equal(epoch, x)  # shuffled
    # The first epoch is a permutation of the split.
    np.testing.assert_array_equal(
        np.sort(epoch.reshape(1437, -1), axis=0), np.sort(x.reshape(1437, -1), axis=0)
    )


def test_same_seed_same_batches_other_seed_other_order():
    a = _take(make_loader("digits", "train", batch_size=32, seed=5), 3)
    b = _take(make_loader("digits", "train", batch_size=32, seed=5), 3)
    c = _take(make_loader("digits", "train", batch_size=32, seed=6), 3)
    _assert_same_batches(a, b)
    assert not np.array_equal(a[0]["image"], c[0]["image"])


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_hosts_read_their_rows_of_the_same_global_batches(drop_remainder):
    x, _ = load_digits_split("test")
    hosts, b = 7, 10  # 360 = 5·70 + 10: the last global batch reaches only host 0

    def batches(batch_size, **kw):
        return list(
            make_loader("digits", "test", batch_size=batch_size, seed=0, shuffle=True,
                        drop_remainder=drop_remainder, **kw)
        )  # fmt: skip

    whole = batches(hosts * b)
    per_host = [batches(b, shard_index=k, shard_count=hosts) for k in range(hosts)]
    assert len(whole) == (5 if drop_remainder else 6)
    assert all(len(p) == len(whole) for p in per_host)  # every host runs the same steps
    for j, batch in enumerate(whole):
        rows = np.concatenate([p[j]["image"] for p in per_host])
        np.testing.assert_array_equal(rows, batch["image"])
    got = np.concatenate([w["image"] for w in whole]).reshape(-1, 64)
    if drop_remainder:
        assert len(got) == 5 * hosts * b
    else:  # every record exactly once
        np.testing.assert_array_equal(np.sort(got, 0), np.sort(x.reshape(-1, 64), 0))
        assert [p[-1]["image"].shape[0] for p in per_host] == [10, 0, 0, 0, 0, 0, 0]
    in_order = list(make_loader("digits", "test", batch_size=b, seed=0))
    np.testing.assert_array_equal(np.concatenate([t["image"] for t in in_order]), x)
    with pytest.raises(ValueError, match="shard_index"):
        shard_bounds(len(x), 7, 7, drop_remainder=True)
    with pytest.raises(ValueError, match="shard_index"):
        make_loader("digits", "test", batch_size=b, seed=0, shard_index=7, shard_count=7)


def test_steps_per_epoch():
    assert steps_per_epoch("cifar10", "train", 128) == 390
    assert steps_per_epoch("cifar10", "test", 128, drop_remainder=False) == 79
    assert steps_per_epoch("cifar10", "train", 43, shard_count=3) == 16666 // 43
    assert steps_per_epoch("cifar10_dvs", "train", 128) == 70
    digits = make_loader("digits", "train", batch_size=100, seed=0, shard_index=1, shard_count=2)
    assert digits.steps_per_epoch == steps_per_epoch("digits", "train", 100, shard_count=2) == 7
    with pytest.raises(ValueError, match="batch_size"):
        steps_per_epoch("digits", "train", 0)
    with pytest.raises(ValueError, match="split"):
        steps_per_epoch("digits", "val", 8)


def test_iterator_state_round_trip_digits():
    loader = make_loader("digits", "train", batch_size=128, seed=1)
    it = iter(loader)
    for _ in range(10):
        next(it)
    state = it.get_state()
    assert isinstance(state, bytes)
    expected = [next(it) for _ in range(3)]  # crosses into the second epoch
    resumed = iter(make_loader("digits", "train", batch_size=128, seed=1))
    resumed.set_state(state)
    _assert_same_batches([next(resumed) for _ in range(3)], expected)


def test_make_loader_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="digits"):
        make_loader("mnist", "train", batch_size=1, seed=0)
    with pytest.raises(ValueError, match="'train', 'test'"):
        make_loader("digits", "validation", batch_size=1, seed=0)
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match="batch_size"):
            make_loader("digits", "train", batch_size=bad, seed=0)
    with pytest.raises(ValueError, match="batch_size 2000"):
        make_loader("digits", "train", batch_size=2000, seed=0)
    with pytest.raises(ValueError, match="seed"):
        make_loader("digits", "train", batch_size=1, seed=-1)
    with pytest.raises(ValueError, match="num_epochs"):
        make_loader("digits", "train", batch_size=1, seed=0, num_epochs=0)
    with pytest.raises(ValueError, match="augmentation"):
        make_loader("digits", "train", batch_size=1, seed=0, augment=True)
    with pytest.raises(ValueError, match="cutout"):
        make_loader("digits", "train", batch_size=1, seed=0, cutout="big")
    with pytest.raises(ValueError, match="shard_index"):
        make_loader("digits", "train", batch_size=1, seed=0, shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="sequence"):
        make_loader("digits", "train", batch_size=1, seed=0, num_frames=10)


def test_missing_dataset_names_command_and_location(tmp_path):
    with pytest.raises(DatasetNotPreparedError) as err:
        make_loader("cifar10", "train", batch_size=8, seed=0, data_dir=tmp_path)
    message = str(err.value)
    assert "python -m ottt_jax.data.prepare cifar10" in message
    assert str(tmp_path / "cifar10" / "3.0.2") in message
    assert isinstance(err.value, FileNotFoundError)


# --------------------------------------------------------------------------- TFDS mock data


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_mock_cifar_loaders(name, classes):
    with tfds.testing.mock_data(num_examples=40, policy=MOCK):
        train = make_loader(name, "train", batch_size=8, seed=0)
        a = _take(train, 6)  # crosses an epoch
        b = _take(make_loader(name, "train", batch_size=8, seed=0), 6)
        c = _take(make_loader(name, "train", batch_size=8, seed=1), 1)
        test = make_loader(name, "test", batch_size=16, seed=0)
        test_batches = list(test)
        raw = open_source(name, "test")
        raw_images = [raw[i]["image"] for i in range(len(raw))]
        raw_labels = [raw[i]["label"] for i in range(len(raw))]
    for batch in a:
        assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.float32
        assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
        assert np.all((batch["label"] >= 0) & (batch["label"] < classes))
    _assert_same_batches(a, b)  # deterministic, augmentation included
    assert not np.array_equal(a[0]["image"], c[0]["image"])
    assert train.steps_per_epoch == 5
    assert [t["image"].shape[0] for t in test_batches] == [16, 16, 8]
    want = np.stack([aug.cifar_eval(x) for x in raw_images])
    np.testing.assert_array_equal(np.concatenate([t["image"] for t in test_batches]), want)
    np.testing.assert_array_equal(np.concatenate([t["label"] for t in test_batches]), raw_labels)


def test_mock_cifar_iterator_state_round_trip_with_augmentation():
    with tfds.testing.mock_data(num_examples=20, policy=MOCK):
        loader = make_loader("cifar10", "train", batch_size=6, seed=3)
        it = iter(loader)
        for _ in range(2):
            next(it)
        state = it.get_state()
        expected = [next(it) for _ in range(3)]
        resumed = iter(make_loader("cifar10", "train", batch_size=6, seed=3))
        resumed.set_state(state)
        got = [next(resumed) for _ in range(3)]
    _assert_same_batches(got, expected)


def test_mock_imagenet_loader_shapes():
    with tfds.testing.mock_data(num_examples=3, policy=MOCK):
        train = next(iter(make_loader("imagenet2012", "train", batch_size=2, seed=0)))
        test = list(make_loader("imagenet2012", "test", batch_size=2, seed=0))
    assert train["image"].shape == (2, 224, 224, 3) and train["image"].dtype == np.float32
    assert [t["image"].shape for t in test] == [(2, 224, 224, 3), (1, 224, 224, 3)]
    assert np.all((train["label"] >= 0) & (train["label"] < 1000))


# --------------------------------------------------------------------------- augmentation math


def _image(h=32, w=32, c=3, seed=0, low=1):
    return np.random.default_rng(seed).integers(low, 256, (h, w, c)).astype(np.uint8)


def test_crop_with_padding_is_a_window_of_the_zero_padded_image():
    x = _image()
    padded = np.zeros((40, 40, 3), np.uint8)
    padded[4:36, 4:36] = x
    for top, left in [(0, 0), (8, 8), (3, 6), (4, 4)]:
        np.testing.assert_array_equal(
            aug.crop_with_padding(x, top, left, 32, 4), padded[top : top + 32, left : left + 32]
        )
    np.testing.assert_array_equal(aug.crop_with_padding(x, 4, 4, 32, 4), x)
    with pytest.raises(ValueError, match="outside"):
        aug.crop_with_padding(x, 9, 0, 32, 4)


def test_random_crop_offsets_are_uniform_over_all_81_windows():
    x = _image()
    padded = np.pad(x, ((4, 4), (4, 4), (0, 0)))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(600):
        out = aug.random_crop(x, rng, 32, 4)
        matches = [
            (i, j)
            for i in range(9)
            for j in range(9)
            if np.array_equal(out, padded[i : i + 32, j : j + 32])
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {(i, j) for i in range(9) for j in range(9)}


def test_horizontal_flip():
    x = _image(4, 5, 2)
    y = aug.horizontal_flip(x)
    for j in range(5):
        np.testing.assert_array_equal(y[:, j], x[:, 4 - j])
    np.testing.assert_array_equal(aug.horizontal_flip(y), x)


def test_normalize_formula():
    x = _image(2, 3, 3)
    got = aug.normalize(x, aug.CIFAR_MEAN, aug.CIFAR_STD)
    want = (x.astype(np.float32) / 255 - np.float32(aug.CIFAR_MEAN)) / np.float32(aug.CIFAR_STD)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="one entry per channel"):
        aug.normalize(x, (0.5,), (0.5,))


def test_cutout_hole_zeros_exactly_a_clipped_16x16_square():
    x = _image().astype(np.float32)  # no zeros, so the hole is exactly the zeros
    rng = np.random.default_rng(1)
    sizes = set()
    for _ in range(300):
        out = aug.cutout_hole(x, rng, 16)
        hole = np.all(out == 0, axis=-1)
        rows, cols = np.nonzero(hole.any(1))[0], np.nonzero(hole.any(0))[0]
        y1, y2, x1, x2 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert hole.sum() == (y2 - y1) * (x2 - x1)  # a full rectangle
        assert hole[y1:y2, x1:x2].all()
        h, w = y2 - y1, x2 - x1
        assert h == 16 or y1 == 0 or y2 == 32  # clipped only at the border
        assert w == 16 or x1 == 0 or x2 == 32
        np.testing.assert_array_equal(out[~hole], x[~hole])
        sizes.add((h, w))
    assert (16, 16) in sizes and any(h < 16 or w < 16 for h, w in sizes)


def test_random_erase_reproduces_torchtoolbox_cutout():
    x = _image()
    rng = np.random.default_rng(2)
    erased = 0
    for _ in range(400):
        out = aug.random_erase(x, rng)
        changed = np.any(out != x, axis=-1)
        if not changed.any():
            continue
        erased += 1
        box = (out[..., 1] == 0) & (out[..., 2] == 0)  # green and blue are zeroed
        rows, cols = np.nonzero(box.any(1))[0], np.nonzero(box.any(0))[0]
        y1, y2, x1, x2 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert box.sum() == (y2 - y1) * (x2 - x1)
        assert len(np.unique(out[y1:y2, x1:x2, 0])) == 1  # one red value c
        np.testing.assert_array_equal(out[~box], x[~box])
        h, w = y2 - y1, x2 - x1
        # h = int(sqrt(s·r)), w = int(sqrt(s/r)) with s ∈ [0.02, 0.4]·1024, r ∈ [0.4, 2.5].
        assert h * w <= 0.4 * 1024 and (h + 1) * (w + 1) > 0.02 * 1024
        assert h / (w + 1) <= 2.5 and (h + 1) / w >= 0.4
    assert 160 < erased < 240  # p = 0.5


def test_cifar_train_is_crop_flip_normalize_without_cutout():
    x = _image()
    padded = np.pad(x, ((4, 4), (4, 4), (0, 0)))
    rng = np.random.default_rng(3)
    flips = 0
    for _ in range(40):
        out = aug.cifar_train(x, rng, cutout="none")
        pixels = np.rint(
            (out * np.float32(aug.CIFAR_STD) + np.float32(aug.CIFAR_MEAN)) * 255
        ).astype(np.uint8)
        windows = [padded[i : i + 32, j : j + 32] for i in range(9) for j in range(9)]
        plain = any(np.array_equal(pixels, win) for win in windows)
        flipped = any(np.array_equal(pixels, win[:, ::-1]) for win in windows)
        assert plain or flipped
        flips += flipped and not plain
    assert 8 < flips < 32
    for mode in ("reference", "hole"):
        assert aug.cifar_train(x, rng, cutout=mode).shape == (32, 32, 3)


def test_imagenet_geometry():
    rng = np.random.default_rng(4)
    for _ in range(200):
        top, left, h, w = aug.random_resized_crop_box(300, 400, rng)
        assert 0 <= top and top + h <= 300 and 0 <= left and left + w <= 400
        assert 0.08 * 120000 * 0.9 <= h * w <= 120000 * 1.01
        assert 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05
    # No box of the sampled size fits a very thin image: fall back to a central crop.
    top, left, h, w = aug.random_resized_crop_box(10, 1000, rng, scale=(0.9, 1.0))
    assert (h, w) == (10, round(10 * 4 / 3)) and left == (1000 - w) // 2 and top == 0
    image = _image(300, 400, seed=5)
    resized = aug.resize_shorter_side(image, 256)
    assert resized.shape == (256, 341, 3)
    crop = aug.center_crop(resized, 224)
    np.testing.assert_array_equal(crop, resized[16:240, 58:282])
    constant = np.full((300, 400, 3), 128, np.uint8)
    np.testing.assert_allclose(
        aug.imagenet_eval(constant),
        aug.normalize(np.full((224, 224, 3), 128, np.uint8), aug.IMAGENET_MEAN, aug.IMAGENET_STD),
    )
    assert aug.imagenet_train(image, rng).shape == (224, 224, 3)


def test_dvs_reference_conversion_wraps_and_premultiplies():
    counts = np.zeros((3, 128, 128, 2), np.uint16)
    counts[0] = 1  # every pixel one event of each polarity -> 255 everywhere
    counts[1, ..., 0] = 1  # polarity-0 events where polarity 1 has none: lost (alpha = 0)
    counts[2, ..., 0] = 2  # (255·2) mod 256 = 254
    counts[2, ..., 1] = 257  # (255·257) mod 256 = 255
    frames = aug.dvs_reference_frames(counts)
    big = np.full((1, 128, 128, 2), 300, np.int64)  # (255·300) mod 256 = 212
    big[..., 1] = 1  # alpha 255: L passes the premultiplication unchanged
    assert np.all(aug.dvs_reference_frames(big)[..., 0] == 212)
    assert frames.shape == (3, 48, 48, 2) and frames.dtype == np.uint8
    assert np.all(frames[0] == 255)
    assert np.all(frames[1] == 0)
    assert np.all(frames[2, ..., 0] == 254) and np.all(frames[2, ..., 1] == 255)
    np.testing.assert_allclose(
        aug.dvs_eval(counts)[0],
        np.broadcast_to((1 - np.float32(aug.DVS_MEAN)) / np.float32(aug.DVS_STD), (48, 48, 2)),
        rtol=1e-6,
    )


def test_dvs_train_uses_one_crop_for_all_frames():
    counts = np.random.default_rng(6).integers(0, 3, (5, 128, 128, 2)).astype(np.uint16)
    reference = aug.dvs_eval(counts)
    zero = (0 - np.float32(aug.DVS_MEAN)) / np.float32(aug.DVS_STD)  # a normalized zero pixel
    padded = np.broadcast_to(zero, (5, 56, 56, 2)).copy()
    padded[:, 4:52, 4:52] = reference
    rng = np.random.default_rng(7)
    for _ in range(10):
        out = aug.dvs_train(counts, rng)
        assert out.shape == (5, 48, 48, 2) and out.dtype == np.float32
        offsets = [
            (i, j)
            for i in range(9)
            for j in range(9)
            if np.array_equal(out, padded[:, i : i + 48, j : j + 48])  # all frames at once
        ]
        assert len(offsets) == 1


def test_worker_processes_give_the_same_batches():
    import gc

    serial = list(make_loader("digits", "test", batch_size=64, seed=0))
    parallel = list(make_loader("digits", "test", batch_size=64, seed=0, worker_count=1))
    _assert_same_batches(parallel, serial)
    del parallel  # release Grain's shared-memory batches while the interpreter is alive
    gc.collect()
