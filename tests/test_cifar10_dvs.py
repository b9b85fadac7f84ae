"""CIFAR10-DVS: AEDAT parsing, count-split frames, and a full TFDS build on synthetic files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ottt_jax.data import DatasetNotPreparedError, augment, make_loader
from ottt_jax.data import cifar10_dvs as dvs

HEADER = b"#!AER-DAT3.1\r\n#Format: RAW\r\n# some comment\r\n#End Of ASCII Header\r\n"


def _address(x_raw, y_raw, p_raw, junk=0):
    """Compose raw addresses with the CIFAR10-DVS bit layout (plus bits the masks must drop)."""
    return (np.asarray(y_raw) << 8) | (np.asarray(x_raw) << 1) | np.asarray(p_raw) | junk


def _aedat_bytes(x_raw, y_raw, p_raw, t=None, junk=0x8001_0000):
    addr = _address(x_raw, y_raw, p_raw, junk).astype(np.uint64)
    t = np.arange(len(addr), dtype=np.uint64) * 7 + 3 if t is None else np.asarray(t)
    pairs = np.stack([addr, t], axis=1).astype(">u4")
    return HEADER + pairs.tobytes()


def test_header_length_skips_hash_lines_only():
    assert dvs.header_length(HEADER + b"\x00\x01\x02\x03") == len(HEADER)
    assert dvs.header_length(b"\x00\x00\x00\x01\x00\x00\x00\x02") == 0
    assert dvs.header_length(b"#a\n#b\n") == 6
    # A line that does not start with '#' ends the header (even if later lines do).
    assert dvs.header_length(b"#a\nxx\n#b\n") == 3


def test_parse_aedat_reads_big_endian_pairs():
    rng = np.random.default_rng(0)
    addresses = rng.integers(0, 2**32, size=50, dtype=np.uint64)
    addresses[0] = 0x0102_0304  # first byte != '#'
    timestamps = rng.integers(0, 2**32, size=50, dtype=np.uint64)
    data = HEADER + np.stack([addresses, timestamps], 1).astype(">u4").tobytes()
    got_a, got_t = dvs.parse_aedat(data)
    np.testing.assert_array_equal(got_a, addresses.astype(np.uint32))
    np.testing.assert_array_equal(got_t, timestamps.astype(np.uint32))
    assert got_a.dtype == np.uint32 and got_t.dtype == np.uint32


def test_parse_aedat_rejects_partial_pairs():
    with pytest.raises(ValueError, match="multiple of 8"):
        dvs.parse_aedat(HEADER + b"\x00" * 12)


def test_read_events_applies_the_authors_transforms(tmp_path):
    x_raw = np.array([0, 5, 127, 64, 3])
    y_raw = np.array([0, 9, 127, 1, 100])
    p_raw = np.array([0, 1, 1, 0, 1])
    t = np.array([10, 20, 30, 40, 50])
    path = tmp_path / "cifar10_cat_0.aedat"
    path.write_bytes(_aedat_bytes(x_raw, y_raw, p_raw, t))
    events = dvs.read_events(path)
    np.testing.assert_array_equal(events.x, 127 - x_raw)  # mirrored
    np.testing.assert_array_equal(events.y, y_raw)  # unchanged
    np.testing.assert_array_equal(events.p, 1 - p_raw)  # inverted
    np.testing.assert_array_equal(events.t, t)
    # Bytes or a path give the same events.
    from_bytes = dvs.read_events(path.read_bytes())
    for a, b in zip(events, from_bytes):
        np.testing.assert_array_equal(a, b)


def test_events_to_frames_splits_by_number_exactly():
    n, t_frames = 23, 4  # ⌊23/4⌋ = 5: segments [0,5) [5,10) [10,15) [15,23)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, n)
    y = rng.integers(0, 3, n)
    p = rng.integers(0, 2, n)
    events = dvs.DvsEvents(np.arange(n), x, y, p)
    frames = dvs.events_to_frames(events, t_frames, height=3, width=4)
    assert frames.shape == (4, 3, 4, 2) and frames.dtype == np.uint16
    bounds = [(0, 5), (5, 10), (10, 15), (15, 23)]
    for j, (lo, hi) in enumerate(bounds):
        expected = np.zeros((3, 4, 2), np.int64)
        for k in range(lo, hi):
            expected[y[k], x[k], p[k]] += 1
        np.testing.assert_array_equal(frames[j], expected)
    assert frames.sum() == n


def test_events_to_frames_fewer_events_than_frames():
    events = dvs.DvsEvents(np.arange(2), np.array([1, 1]), np.array([0, 0]), np.array([0, 1]))
    frames = dvs.events_to_frames(events, 5, height=2, width=2)
    assert frames[:4].sum() == 0  # ⌊2/5⌋ = 0: every event lands in the last frame
    np.testing.assert_array_equal(frames[4, 0, 1], [1, 1])
    with pytest.raises(ValueError, match="num_frames"):
        dvs.events_to_frames(events, 0)
    bad = dvs.DvsEvents(np.arange(1), np.array([128]), np.array([0]), np.array([0]))
    with pytest.raises(ValueError, match="outside"):
        dvs.events_to_frames(bad, 2)


def _write_manual_dir(root, indices=(0, 1, 2, 10), events_per_file=37):
    """Ten class folders of tiny recordings; returns {(class, index): path}."""
    rng = np.random.default_rng(2)
    paths = {}
    for c, name in enumerate(dvs.CLASS_NAMES):
        folder = root / name
        folder.mkdir(parents=True)
        for i in indices:
            n = events_per_file + i
            data = _aedat_bytes(
                rng.integers(0, 128, n),
                rng.integers(0, 128, n),
                rng.integers(0, 2, n),
                junk=0x4000_0000 * (c % 2),
            )
            path = folder / f"cifar10_{name}_{i}.aedat"
            path.write_bytes(data)
            paths[name, i] = path
    return paths


def test_find_class_files_sorts_by_numeric_index(tmp_path):
    _write_manual_dir(tmp_path)
    files = dvs.find_class_files(tmp_path, "dog")
    assert [i for i, _ in files] == [0, 1, 2, 10]
    # A class folder nested in an extracted archive is found too.
    nested = tmp_path / "nested"
    os.rename(tmp_path / "cat", tmp_path / "x")
    nested.mkdir()
    os.rename(tmp_path / "x", nested / "cat")
    assert [i for i, _ in dvs.find_class_files(tmp_path, "cat")] == [0, 1, 2, 10]


@pytest.fixture(scope="module")
def built_dvs(tmp_path_factory):
    """A full TFDS build (no TensorFlow) of 2 train + 1 test recordings per class."""
    root = tmp_path_factory.mktemp("dvs")
    manual = root / "manual"
    paths = _write_manual_dir(manual)
    data_dir = root / "tfds"
    out = dvs.prepare(manual, data_dir, 10, train_per_class=2, test_per_class=1)
    return data_dir, paths, out


def test_build_writes_array_record_without_tensorflow(built_dvs):
    import sys

    _, _, out = built_dvs
    assert "tensorflow" not in sys.modules
    names = os.listdir(out)
    assert any(n.startswith("cifar10_dvs-train.array_record") for n in names)
    assert any(n.startswith("cifar10_dvs-test.array_record") for n in names)


def test_build_reads_back_exact_frames_and_split(built_dvs):
    data_dir, paths, _ = built_dvs
    for split, expected_indices in (("train", {0, 1}), ("test", {2})):
        source = tfds.data_source(
            "cifar10_dvs/frames_10", split=split, data_dir=os.fspath(data_dir), download=False
        )
        assert len(source) == 10 * len(expected_indices)
        seen = set()
        for k in range(len(source)):
            record = source[k]
            name = dvs.CLASS_NAMES[record["label"]]
            index = int(record["index"])
            assert index in expected_indices
            seen.add((name, index))
            expected = dvs.events_to_frames(dvs.read_events(paths[name, index]), 10)
            assert record["frames"].dtype == np.uint16
            np.testing.assert_array_equal(record["frames"], expected)
        assert len(seen) == len(source)


def test_loader_serves_normalized_dvs_sequences(built_dvs):
    data_dir, _, _ = built_dvs
    test = make_loader("cifar10_dvs", "test", batch_size=4, seed=0, data_dir=data_dir)
    batches = list(test)
    assert [b["image"].shape for b in batches] == [(4, 10, 48, 48, 2)] * 2 + [(2, 10, 48, 48, 2)]
    assert all(b["image"].dtype == np.float32 and b["label"].dtype == np.int32 for b in batches)
    labels = np.concatenate([b["label"] for b in batches])
    np.testing.assert_array_equal(np.sort(labels), np.arange(10))
    source = tfds.data_source(
        "cifar10_dvs/frames_10", split="test", data_dir=os.fspath(data_dir), download=False
    )
    np.testing.assert_allclose(
        batches[0]["image"][1], augment.dvs_eval(source[1]["frames"]), rtol=0, atol=0
    )
    train = make_loader("cifar10_dvs", "train", batch_size=8, seed=3, data_dir=data_dir)
    assert train.steps_per_epoch == 2 and train.info.num_frames == 10
    batch = next(iter(train))
    assert batch["image"].shape == (8, 10, 48, 48, 2)
    assert np.all((batch["label"] >= 0) & (batch["label"] < 10))


def test_missing_dvs_data_names_the_command(tmp_path):
    with pytest.raises(DatasetNotPreparedError, match=r"ottt_jax\.data\.prepare cifar10_dvs"):
        make_loader("cifar10_dvs", "train", batch_size=2, seed=0, data_dir=tmp_path)
    with pytest.raises(ValueError, match="num_frames"):
        make_loader("cifar10_dvs", "train", batch_size=2, seed=0, data_dir=tmp_path, num_frames=7)


def test_build_with_too_few_files_fails_clearly(tmp_path):
    _write_manual_dir(tmp_path / "manual", indices=(0,))
    with pytest.raises(FileNotFoundError, match="i = 1"):
        dvs.prepare(tmp_path / "manual", tmp_path / "tfds", 4, train_per_class=1, test_per_class=1)


def test_prepare_entry_point_validates_and_needs_no_tensorflow_for_dvs(tmp_path):
    from ottt_jax.data.prepare import prepare_dataset

    assert prepare_dataset("digits") is None
    with pytest.raises(ValueError, match="manual_dir"):
        prepare_dataset("cifar10_dvs")
    with pytest.raises(ValueError, match="num_frames"):
        prepare_dataset("cifar10_dvs", manual_dir=tmp_path, num_frames=3)
    with pytest.raises(ValueError, match="cifar10_dvs"):
        prepare_dataset("mnist")
    # CIFAR is prepared from the official archive without TensorFlow (cifar_archive): a missing
    # archive is named, with where to get it.
    with pytest.raises(FileNotFoundError, match=r"cifar-10-python\.tar\.gz not found"):
        prepare_dataset("cifar10", manual_dir=tmp_path, data_dir=tmp_path)


def test_trainer_runs_on_event_sequences(built_dvs, tmp_path):
    """End to end on the synthetic build: time-major frames, one frame per step, neuron dropout."""
    import ottt_jax

    data_dir, _, _ = built_dvs
    r = ottt_jax.train(
        "cifar10dvs_vgg",
        [
            "progress=false",
            f"data.data_dir={data_dir}",
            "model.vgg_cfg=[8,M,16]",
            "data.batch_size=8",
            "data.eval_batch_size=8",
            "max_train_steps=2",
            "optim.epochs=1",
        ],
        workdir=str(tmp_path),
    )
    assert r["steps"] == 2 and np.isfinite(r["train_loss"])
    assert r["test_accuracy"] * 10 == pytest.approx(round(r["test_accuracy"] * 10))  # 10 samples
