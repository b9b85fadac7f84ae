"""SHD: the .h5 reader (spike exact, plain and gzipped), prepare → loader, two train steps."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

import ottt_jax
from ottt_jax import config as config_lib
from ottt_jax.data import events, make_loader, shd
from ottt_jax.data.prepare import prepare_dataset

h5py = pytest.importorskip("h5py", reason="SHD needs h5py: pip install 'ottt_jax[events]'")

# (times in s, units, label) per recording, chosen so that round(t · 10⁶) is known by hand.
TRAIN = [
    ([0.0, 0.25, 0.5, 1.5], [0, 699, 3, 5], 19),
    ([0.001, 0.0015], [7, 7], 0),
    ([1.3999], [1], 4),
    ([0.7, 0.1], [2, 2], 11),
]
TEST = [([0.2], [9], 3), ([0.9, 1.0], [0, 1], 1)]


def _write_h5(path, recordings):
    with h5py.File(path, "w") as f:
        vf = h5py.vlen_dtype(np.dtype("float32"))
        vu = h5py.vlen_dtype(np.dtype("uint16"))
        times = f.create_dataset("spikes/times", (len(recordings),), dtype=vf)
        units = f.create_dataset("spikes/units", (len(recordings),), dtype=vu)
        for i, (t, u, _) in enumerate(recordings):
            times[i] = np.array(t, np.float32)
            units[i] = np.array(u, np.uint16)
        f.create_dataset("labels", data=np.array([r[2] for r in recordings], np.uint16))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("shd")
    manual, data_dir = root / "raw", root / "data"
    manual.mkdir()
    _write_h5(manual / "shd_train.h5", TRAIN)
    _write_h5(root / "shd_test.h5", TEST)  # the test split as distributed: gzipped
    with open(root / "shd_test.h5", "rb") as src, gzip.open(manual / "shd_test.h5.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    prepare_dataset("shd", manual_dir=manual, data_dir=data_dir)
    return manual, data_dir


def test_read_h5_gives_microsecond_spikes(prepared):
    manual, _ = prepared
    recs = list(shd.read_h5(manual / "shd_train.h5"))
    assert [label for _, label in recs] == [19, 0, 4, 11]
    ev = recs[0][0]
    assert ev.dtype == events.AUDIO_EVENT
    np.testing.assert_array_equal(ev["t"], [0, 250_000, 500_000, 1_500_000])
    np.testing.assert_array_equal(ev["ch"], [0, 699, 3, 5])
    np.testing.assert_array_equal(recs[1][0]["t"], [1000, 1500])
    np.testing.assert_array_equal(recs[2][0]["t"], [1_399_900])


def test_loader_bins_fixed_windows_of_the_h5_spikes(prepared):
    _, data_dir = prepared
    loader = make_loader("shd", "train", batch_size=4, seed=0, shuffle=False, num_frames=4,
                         data_dir=data_dir)  # fmt: skip
    b = next(iter(loader))
    assert b["image"].shape == (4, 4, 1, 1, 700)
    x = b["image"][:, :, 0, 0, :]
    want = np.zeros((4, 4, 700), np.float32)
    # windows of 350 ms from 0: 0 s → 0, 0.25 → 0, 0.5 → 1, 1.5 s dropped; 1.3999 s → 3; 0.7 → 2.
    want[0, 0, 0] = want[0, 0, 699] = want[0, 1, 3] = 1
    want[1, 0, 7] = 2
    want[2, 3, 1] = 1
    want[3, 2, 2] = want[3, 0, 2] = 1
    np.testing.assert_array_equal(x, want)
    np.testing.assert_array_equal(b["label"], [19, 0, 4, 11])
    test = next(iter(make_loader("shd", "test", batch_size=2, seed=0, num_frames=4,
                                 data_dir=data_dir)))  # fmt: skip
    np.testing.assert_array_equal(test["label"], [3, 1])  # the gzipped file was read


def test_missing_files_name_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"shd_train\.h5\(\.gz\) not found"):
        prepare_dataset("shd", manual_dir=tmp_path, data_dir=tmp_path)


def test_two_training_steps_by_name(prepared, tmp_path):
    _, data_dir = prepared
    cfg = config_lib.get_config(
        "shd_rsnn",
        ["progress=false", "num_steps=2", "model.hidden=[8]", f"data.data_dir={data_dir}",
         "data.batch_size=4", "data.eval_batch_size=4", "max_train_steps=2", "optim.epochs=2"],
    )  # fmt: skip
    r = ottt_jax.train(cfg, workdir=str(tmp_path))
    assert r["steps"] == 2 and np.isfinite(r["train_loss"])
