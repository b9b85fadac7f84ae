"""The real CIFAR preparation path, end to end and without TensorFlow: tiny archives in the official
python-version format, ``python -m ottt_jax.data.prepare cifar10 --manual_dir DIR``, the records
read back through ``ottt_jax.data`` pixel for pixel, and two training steps on them."""

import io
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

import ottt_jax
from ottt_jax import data
from ottt_jax.data import cifar_archive
from ottt_jax.data.prepare import prepare_dataset

N_TRAIN, N_TEST = 20, 10
LAYOUT = {  # the official archives' folders, batch files and label keys
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]),
    "cifar100": ("cifar-100-python", ["train"], ["test"]),
}


def make_archive(path, name: str, seed: int = 0) -> dict:
    """Write a tiny archive with the official pickle keys; return the images and labels it holds.

    Images are built as ``[N, 32, 32, 3]`` and stored as the official rows: per image the 1024
    red values in row-major order, then green, then blue.
    """
    rng = np.random.default_rng(seed)
    folder, train_files, test_files = LAYOUT[name]
    members, truth = {}, {}
    for split, files, n in (("train", train_files, N_TRAIN), ("test", test_files, N_TEST)):
        per = n // len(files)
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        labels = {"label": rng.integers(0, 10 if name == "cifar10" else 100, n)}
        if name == "cifar100":
            labels["coarse_label"] = rng.integers(0, 20, n)
        truth[split] = {"image": images, **labels}
        for i, f in enumerate(files):
            part = slice(i * per, (i + 1) * per)
            rows = np.stack([images[part][..., c].reshape(per, 1024) for c in range(3)], axis=1)
            batch = {
                b"batch_label": f"{split} batch {i + 1}".encode(),
                b"data": rows.reshape(per, 3072),
                b"filenames": [f"img_{j}.png".encode() for j in range(per)],
            }
            if name == "cifar10":
                batch[b"labels"] = [int(x) for x in labels["label"][part]]
            else:
                batch[b"fine_labels"] = [int(x) for x in labels["label"][part]]
                batch[b"coarse_labels"] = [int(x) for x in labels["coarse_label"][part]]
            members[f"{folder}/{f}"] = batch
    if name == "cifar10":
        members[f"{folder}/batches.meta"] = {
            b"label_names": [f"class{i}".encode() for i in range(10)],
            b"num_cases_per_batch": N_TRAIN // 5,
            b"num_vis": 3072,
        }
    else:
        members[f"{folder}/meta"] = {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        }
    _write_tar(path, {k: pickle.dumps(v, protocol=2) for k, v in members.items()})
    return truth


def _write_tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for member, payload in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def _read_back(name: str, data_dir) -> dict:
    """Every record of both splits through the public data API, in archive order (by ``id``)."""
    out = {}
    for split in ("train", "test"):
        source = data.open_source(name, split, data_dir=data_dir)
        records = sorted((source[i] for i in range(len(source))), key=lambda r: r["id"])
        assert [r["id"] for r in records] == [
            f"{split}_{i:05d}".encode() for i in range(len(records))
        ]
        out[split] = {k: np.stack([np.asarray(r[k]) for r in records]) for k in records[0]}
    return out


@pytest.fixture(scope="module")
def prepared_cifar10(tmp_path_factory):
    """``python -m ottt_jax.data.prepare cifar10 --manual_dir DIR`` run as a user runs it."""
    root = tmp_path_factory.mktemp("cifar10")
    manual, out = root / "manual", root / "tfds"
    manual.mkdir()
    truth = make_archive(manual / "cifar-10-python.tar.gz", "cifar10")
    cmd = [sys.executable, "-m", "ottt_jax.data.prepare", "cifar10", "--manual_dir", str(manual)]
    run = subprocess.run(
        [*cmd, "--data_dir", str(out)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == str(out / "cifar10" / "3.0.2")
    return truth, out


def test_prepare_cifar10_command_writes_the_archive_pixel_for_pixel(prepared_cifar10):
    truth, out = prepared_cifar10
    got = _read_back("cifar10", out)
    for split in ("train", "test"):
        np.testing.assert_array_equal(got[split]["image"], truth[split]["image"])
        np.testing.assert_array_equal(got[split]["label"], truth[split]["label"])
    assert "tensorflow" not in sys.modules  # neither preparing nor reading imported it


def test_two_training_steps_on_the_prepared_cifar10(prepared_cifar10, tmp_path):
    _, out = prepared_cifar10
    overrides = [
        "progress=false",
        f"data.data_dir={out}",
        "model.vgg_cfg=[8,M,16]",
        "num_steps=2",
        "data.batch_size=8",
        "data.eval_batch_size=10",
        "max_train_steps=2",
    ]
    r = ottt_jax.train("cifar10_vgg", overrides, workdir=str(tmp_path / "run"))
    assert r["steps"] == 2 and np.isfinite(r["train_loss"]) and np.isfinite(r["test_loss"])
    assert 0.0 <= r["test_accuracy"] <= 1.0
    assert "tensorflow" not in sys.modules


def test_prepare_cifar100_keeps_fine_and_coarse_labels(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    truth = make_archive(manual / "cifar-100-python.tar.gz", "cifar100", seed=1)
    written = prepare_dataset("cifar100", manual_dir=manual, data_dir=tmp_path / "tfds")
    assert written == str(tmp_path / "tfds" / "cifar100" / "3.0.2")
    got = _read_back("cifar100", tmp_path / "tfds")
    for split in ("train", "test"):
        for key in ("image", "label", "coarse_label"):
            np.testing.assert_array_equal(got[split][key], truth[split][key])


def test_images_from_rows_is_the_documented_channel_plane_layout():
    rows = np.random.default_rng(2).integers(0, 256, (3, 3072), dtype=np.uint8)
    images = cifar_archive.images_from_rows(rows)
    assert images.shape == (3, 32, 32, 3)
    for n, y, x, c in [(0, 0, 0, 0), (1, 5, 31, 1), (2, 31, 7, 2), (2, 16, 0, 1)]:
        assert images[n, y, x, c] == rows[n, 1024 * c + 32 * y + x]
    with pytest.raises(ValueError, match=r"uint8 \[N, 3072\]"):
        cifar_archive.images_from_rows(rows[:, :100])


def test_missing_archive_names_the_file_and_the_download(tmp_path):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as e:
        prepare_dataset("cifar10", manual_dir=tmp_path, data_dir=tmp_path / "tfds")
    message = str(e.value)
    assert str(tmp_path / "cifar-10-python.tar.gz") in message and "binary version" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message


@pytest.mark.parametrize("manual", ["empty", "missing"])
def test_an_empty_or_missing_manual_dir_is_an_error_not_a_download(tmp_path, manual):
    manual_dir = tmp_path / "manual"
    if manual == "empty":
        manual_dir.mkdir()
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python.tar.gz not found"):
        prepare_dataset("cifar100", manual_dir=manual_dir, data_dir=tmp_path / "tfds")
    assert not (tmp_path / "tfds").exists()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_an_archive_that_would_run_code_is_refused(tmp_path):
    folder, train_files, test_files = LAYOUT["cifar10"]
    payload = pickle.dumps({b"data": _Evil()}, protocol=2)
    _write_tar(
        tmp_path / "cifar-10-python.tar.gz",
        {f"{folder}/{f}": payload for f in [*train_files, *test_files, "batches.meta"]},
    )
    with pytest.raises(ValueError, match="only NumPy arrays"):
        cifar_archive.read_archive(tmp_path / "cifar-10-python.tar.gz", "cifar10")


def test_an_archive_missing_a_batch_is_a_clear_error(tmp_path):
    make_archive(tmp_path / "full.tar.gz", "cifar10")
    with tarfile.open(tmp_path / "full.tar.gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    del members["cifar-10-batches-py/data_batch_3"]
    _write_tar(tmp_path / "cifar-10-python.tar.gz", members)
    with pytest.raises(ValueError, match="lacks cifar-10-batches-py/data_batch_3"):
        cifar_archive.read_archive(tmp_path / "cifar-10-python.tar.gz", "cifar10")
