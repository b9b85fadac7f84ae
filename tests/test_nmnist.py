"""N-MNIST: the 40-bit .bin reader (event exact), prepare → loader (frame exact), training."""

from __future__ import annotations

import numpy as np
import pytest

import ottt_jax
from ottt_jax import config as config_lib
from ottt_jax.data import events, make_loader, nmnist
from ottt_jax.data.prepare import prepare_dataset


def test_read_bin_decodes_the_40_bit_events_by_hand():
    data = bytes(
        [
            *(3, 5, 0x81, 0x23, 0x45),  # x=3 y=5 p=1 t=0x012345
            *(33, 0, 0x7F, 0xFF, 0xFF),  # x=33 y=0 p=0 t=2²³−1
            *(0, 240, 0x00, 0x00, 0x00),  # overflow marker: +2¹³ from here on, dropped
            *(1, 2, 0x80, 0x00, 0x07),  # x=1 y=2 p=1 t=7 (+8192)
        ]
    )
    ev = nmnist.read_bin(data)
    assert ev.dtype == events.DVS_EVENT
    np.testing.assert_array_equal(ev["x"], [3, 33, 1])
    np.testing.assert_array_equal(ev["y"], [5, 0, 2])
    np.testing.assert_array_equal(ev["p"], [1, 0, 1])
    np.testing.assert_array_equal(ev["t"], [0x012345, (1 << 23) - 1, 7 + 8192])
    with pytest.raises(ValueError, match="multiple of 5"):
        nmnist.read_bin(data[:-1])


def test_read_bin_reads_a_path_like_its_bytes(tmp_path):
    data = bytes([3, 5, 0x81, 0x23, 0x45, 1, 2, 0x80, 0x00, 0x07])
    path = tmp_path / "00001.bin"
    path.write_bytes(data)
    from_path = nmnist.read_bin(path)
    np.testing.assert_array_equal(from_path, nmnist.read_bin(data))
    np.testing.assert_array_equal(from_path["t"], [0x012345, 7])
    np.testing.assert_array_equal(nmnist.read_bin(str(path)), from_path)


def _random_events(rng, n):
    t = np.sort(rng.integers(0, 300_000, n))
    x, y, p = rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n)
    return events.dvs_events(t, x, y, p)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Two recordings per class in Train, one in Test for classes 0-1, written as .bin files."""
    root = tmp_path_factory.mktemp("nmnist")
    manual, data_dir = root / "raw" / "N-MNIST", root / "data"
    rng = np.random.default_rng(0)
    written = {"train": [], "test": []}
    for split, folder, per_class, classes in (("train", "Train", 2, 3), ("test", "Test", 1, 2)):
        for digit in range(classes):
            (manual / folder / str(digit)).mkdir(parents=True)
            for i in range(per_class):
                ev = _random_events(rng, 40 + 7 * i + digit)
                (manual / folder / str(digit) / f"{i:05d}.bin").write_bytes(nmnist.encode_bin(ev))
                written[split].append((ev, digit))
    assert prepare_dataset("nmnist", manual_dir=manual.parent, data_dir=data_dir).endswith("events")
    return data_dir, written


def test_loader_serves_the_files_frames_exactly(prepared):
    data_dir, written = prepared
    loader = make_loader("nmnist", "train", batch_size=6, seed=0, shuffle=False, num_frames=3,
                         data_dir=data_dir, drop_remainder=False)  # fmt: skip
    batch = next(iter(loader))
    assert batch["image"].shape == (6, 3, 34, 34, 2)
    for k, (ev, label) in enumerate(written["train"]):
        want = events.bin_events(ev, nmnist.SENSOR_SIZE, 3, by="count")
        np.testing.assert_array_equal(batch["image"][k], want.astype(np.float32))
        assert batch["label"][k] == label


def test_two_training_steps_by_name(prepared, tmp_path):
    data_dir, _ = prepared
    cfg = config_lib.get_config(
        "nmnist_vgg",
        ["progress=false", "num_steps=2", "model.vgg_cfg=[4,M]", f"data.data_dir={data_dir}",
         "data.batch_size=4", "data.eval_batch_size=4", "max_train_steps=2", "optim.epochs=2"],
    )  # fmt: skip
    r = ottt_jax.train(cfg, workdir=str(tmp_path))
    assert r["steps"] == 2 and np.isfinite(r["train_loss"])
    assert r["test_accuracy"] * 2 == pytest.approx(round(r["test_accuracy"] * 2))  # 2 samples
