"""Checkpoints: corrupt ones are reported in one line and skipped, write failures are one-line
errors (disk full has its own), orbax's temporary directories are cleaned, and the data-iterator
state survives the JSON metadata byte for byte."""

import errno
import gc
import logging
import os
import shutil
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from ottt_jax.checkpoint import (
    TMP_DIR_MARKER,
    CheckpointCorruptError,
    Checkpointer,
    CheckpointWriteError,
    IncompatibleCheckpointError,
    NoiseFilter,
    decode_iterator_state,
    encode_iterator_state,
)
from ottt_jax.errors import UserError

LOGGER = "ottt_jax.checkpoint"


def _state(step: int) -> dict:
    """A small state whose values tell the steps apart (``w`` big enough to be a data file)."""
    return {
        "params": {"w": jnp.arange(2000.0) + step, "b": jnp.full((3,), float(step))},
        "step": jnp.asarray(step, jnp.int32),
    }


def _meta(step: int) -> dict:
    return {"step": step, "data_state": encode_iterator_state(bytes([step, 255, 0]))}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A workdir with intact checkpoints at steps 1 and 2 (copied per test, saved once)."""
    workdir = tmp_path_factory.mktemp("template") / "run"
    ckpt = Checkpointer(workdir)
    for step in (1, 2):
        ckpt.save(step, _state(step), _meta(step))
    ckpt.close()
    return workdir


@pytest.fixture
def workdir(template, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(template, path)
    return path


def _largest_file(directory) -> str:
    files = [os.path.join(r, f) for r, _, fs in os.walk(directory) for f in fs]
    return max(files, key=os.path.getsize)


def _target(workdir, damaged: str) -> str:
    step = os.path.join(workdir, "checkpoints", "2")
    if damaged == "state data":  # the chunk holding params/w
        return _largest_file(os.path.join(step, "state", "ocdbt.process_0", "d"))
    return os.path.join(step, *damaged.split("/"))


def _damage(path: str, how: str) -> None:
    with open(path, "rb") as f:
        data = f.read()
    assert data, path
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "garble":
        data = bytes(b ^ 0x5A for b in data)
    else:
        assert how == "empty"
        data = b""
    with open(path, "wb") as f:
        f.write(data)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelname == "WARNING"]


# --------------------------------------------------------------------------- iterator state


def test_iterator_state_round_trips_every_byte_through_json():
    import json

    raw = bytes(range(256)) * 2
    stored = json.loads(json.dumps(encode_iterator_state(raw)))
    assert decode_iterator_state(stored) == raw
    assert isinstance(decode_iterator_state(stored), bytes)
    for other in ({"a": 1}, [1, 2], None, 3):  # already JSON: unchanged both ways
        assert encode_iterator_state(other) == other
        assert decode_iterator_state(other) == other


# --------------------------------------------------------------------------- corrupt checkpoints


DAMAGES = [
    ("state data", "truncate"),
    ("state data", "garble"),
    ("state/manifest.ocdbt", "garble"),
    ("state/_METADATA", "garble"),
    ("state/_METADATA", "empty"),
    ("meta/metadata", "truncate"),
    ("meta/metadata", "empty"),
]


@pytest.mark.parametrize("damaged,how", DAMAGES)
def test_corrupt_latest_falls_back_to_the_intact_one_with_one_line(
    workdir, caplog, capfd, monkeypatch, damaged, how
):
    _damage(_target(workdir, damaged), how)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    unraisable = []  # what Python would print as "Exception ignored in ..." tracebacks
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    ckpt = Checkpointer(workdir)
    meta = ckpt.read_meta()  # the trainer reads the config first, then restores
    state, meta2 = ckpt.restore(_state(0))
    assert meta2["step"] == 1
    assert meta["step"] == (1 if damaged.startswith("meta") else 2)  # step 2's meta is readable
    np.testing.assert_array_equal(state["params"]["w"], np.arange(2000.0) + 1)
    assert decode_iterator_state(meta2["data_state"]) == bytes([1, 255, 0])

    (line,) = _warnings(caplog)  # reported once, on one line, naming the checkpoint
    bad = os.path.join(workdir, "checkpoints", "2")
    assert bad in line and "\n" not in line and "corrupt" in line
    assert "another architecture" not in line
    gc.collect()
    assert unraisable == []
    err = capfd.readouterr().err
    for noise in ("Traceback", "Event loop is closed", "Exception ignored", "never awaited"):
        assert noise not in err
    # Moved aside: the run goes on from step 1 and can write step 2 again.
    assert ckpt.latest_step() == 1
    assert os.path.isdir(os.path.join(workdir, "corrupt", "latest_2"))
    ckpt.save(2, _state(2), _meta(2))
    ckpt.close()  # the debris filter goes with the checkpointer: the process's hook is back
    assert sys.unraisablehook == unraisable.append
    state, meta = ckpt.restore(_state(0))
    assert meta["step"] == 2
    np.testing.assert_array_equal(state["params"]["w"], np.arange(2000.0) + 2)
    ckpt.close()


def test_no_intact_checkpoint_is_a_clear_error_naming_the_directory(workdir, caplog):
    for step in ("1", "2"):
        _damage(os.path.join(workdir, "checkpoints", step, "state", "_METADATA"), "garble")
    caplog.set_level(logging.WARNING, logger=LOGGER)
    ckpt = Checkpointer(workdir)
    with pytest.raises(CheckpointCorruptError) as e:
        ckpt.restore(_state(0))
    message = str(e.value)
    assert os.path.join(workdir, "checkpoints") in message and "\n" not in message
    assert "another architecture" not in message
    assert isinstance(e.value, UserError)
    assert len(_warnings(caplog)) == 2  # one line per corrupt checkpoint


def test_a_specific_corrupt_step_is_an_error_not_a_silent_fallback(workdir):
    _damage(_target(workdir, "meta/metadata"), "empty")
    ckpt = Checkpointer(workdir)
    with pytest.raises(CheckpointCorruptError, match="checkpoints/2 is corrupt"):
        ckpt.restore(_state(0), step=2)
    assert ckpt.restore(_state(0), step=1)[1]["step"] == 1


def test_another_tree_is_incompatible_not_corrupt(workdir):
    other = _state(0)
    other["params"]["b"] = jnp.zeros(4)
    ckpt = Checkpointer(workdir)
    with pytest.raises(IncompatibleCheckpointError, match=r"another architecture.*b: shape \(3,\)"):
        ckpt.restore(other)
    assert ckpt.latest_step() == 2  # nothing moved aside
    assert not os.path.exists(os.path.join(workdir, "corrupt"))


def test_read_only_checkpointer_skips_but_moves_and_creates_nothing(workdir, tmp_path, caplog):
    _damage(_target(workdir, "state data"), "garble")
    caplog.set_level(logging.WARNING, logger=LOGGER)
    ckpt = Checkpointer(workdir, read_only=True)
    assert ckpt.restore(_state(0))[1]["step"] == 1
    assert "left in place" in _warnings(caplog)[0]
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "2"))
    assert not os.path.exists(os.path.join(workdir, "corrupt"))
    missing = tmp_path / "missing"
    assert Checkpointer(missing, read_only=True).latest_step() is None
    assert not missing.exists()


@pytest.mark.parametrize("reader", ["read-only", "process 1"])
def test_a_damaged_step_met_twice_is_reported_once_and_skipped_once(
    workdir, caplog, monkeypatch, reader
):
    """Catches: a reader that cannot move a damaged step aside forgetting it after read_meta.

    The trainer reads the metadata first, then restores; both meet the damaged step 2. A reader
    that leaves it in place (read-only, or a process other than 0) must warn once and skip it
    once, not warn again and re-read it in the restore.
    """
    _damage(_target(workdir, "meta/metadata"), "truncate")  # fails the meta read and the restore
    caplog.set_level(logging.WARNING, logger=LOGGER)
    if reader == "process 1":
        monkeypatch.setattr(jax, "process_index", lambda *a, **k: 1)
    ckpt = Checkpointer(workdir, read_only=reader == "read-only")
    assert ckpt.read_meta()["step"] == 1
    state, meta = ckpt.restore(_state(0))
    assert meta["step"] == 1
    np.testing.assert_array_equal(state["params"]["w"], np.arange(2000.0) + 1)
    (line,) = _warnings(caplog)
    assert os.path.join(workdir, "checkpoints", "2") in line and "left in place" in line
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "2"))
    assert not os.path.exists(os.path.join(workdir, "corrupt"))
    ckpt.close()


# --------------------------------------------------------------------------- retention


def _steps(directory) -> list[int]:
    return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def test_only_the_newest_max_to_keep_checkpoints_and_one_best_remain(tmp_path):
    """Catches: old step checkpoints or old best checkpoints never deleted (a disk filling up).

    Seven saves with ``max_to_keep=2``, four of them marked best, then a reopened checkpointer
    (a resumed run) saves three more: exactly the newest two steps and one best remain, and
    nothing else is left in the run directory.
    """
    run = tmp_path / "run"
    small = {"w": jnp.zeros(3)}
    ckpt = Checkpointer(run, max_to_keep=2)
    for step in range(1, 8):
        ckpt.save(step, small, {"step": step}, best=step in (1, 2, 4, 5))
        assert len(_steps(run / "checkpoints")) == min(step, 2)
        assert len(_steps(run / "best")) == 1
    assert _steps(run / "checkpoints") == [6, 7] and _steps(run / "best") == [5]
    ckpt.close()
    ckpt = Checkpointer(run, max_to_keep=2)
    for step in range(8, 11):
        ckpt.save(step, small, {"step": step}, best=step == 9)
    assert _steps(run / "checkpoints") == [9, 10] and _steps(run / "best") == [9]
    assert ckpt.best_step() == 9 and ckpt.latest_step() == 10
    assert sorted(os.listdir(run)) == ["best", "checkpoints"]
    assert sorted(os.listdir(run / "checkpoints")) == ["10", "9"]
    assert os.listdir(run / "best") == ["9"]
    ckpt.close()


# --------------------------------------------------------------------------- writing


def test_unfinished_temporary_checkpoints_are_removed_on_start(workdir, caplog):
    tmp = os.path.join(workdir, "checkpoints", f"3{TMP_DIR_MARKER}-1700000000")
    os.makedirs(os.path.join(tmp, "state"))
    best_tmp = os.path.join(workdir, "best", f"3{TMP_DIR_MARKER}")
    os.makedirs(best_tmp)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    ckpt = Checkpointer(workdir)
    assert not os.path.exists(tmp) and not os.path.exists(best_tmp)
    assert ckpt.latest_step() == 2
    assert sum(tmp in m or best_tmp in m for m in _warnings(caplog)) == 2


def _leftovers(workdir) -> list[str]:
    return [n for d in ("checkpoints", "best") for n in os.listdir(os.path.join(workdir, d))]


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "meta/metadata")


def _tensorstore_enospc(*args, **kwargs):
    # How tensorstore words a full disk (seen on a full tmpfs): a ValueError, errno in the text.
    raise ValueError(
        'RESOURCE_EXHAUSTED: Error writing "w/0" in OCDBT database: Failed to write 325351 bytes'
        " to file 11: No space left on device [os_error_code='28']"
    )


@pytest.mark.parametrize(
    "handler,fail",
    [(ocp.JsonCheckpointHandler, _enospc), (ocp.StandardCheckpointHandler, _tensorstore_enospc)],
)
def test_disk_full_is_one_line_and_leaves_no_temporary_directory(
    workdir, monkeypatch, capfd, handler, fail
):
    ckpt = Checkpointer(workdir)
    monkeypatch.setattr(handler, "async_save", fail)
    with pytest.raises(CheckpointWriteError) as e:
        ckpt.save(3, _state(3), _meta(3), best=True)
    message = str(e.value)
    assert message.startswith("disk full while writing checkpoint")
    assert os.path.join(workdir, "checkpoints", "3") in message and "\n" not in message
    assert "--workdir" in message
    assert sorted(_leftovers(workdir)) == ["1", "2"]  # no *.orbax-checkpoint-tmp*
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Event loop is closed" not in err
    monkeypatch.undo()
    assert ckpt.restore(_state(0))[1]["step"] == 2  # the previous checkpoints are intact


def test_other_write_errors_are_one_line_without_the_disk_full_message(workdir, monkeypatch):
    def eio(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    ckpt = Checkpointer(workdir)
    monkeypatch.setattr(ocp.JsonCheckpointHandler, "async_save", eio)
    with pytest.raises(CheckpointWriteError) as e:
        ckpt.save(3, _state(3), _meta(3))
    message = str(e.value)
    where = os.path.join(workdir, "checkpoints", "3")
    assert message.startswith(f"cannot write checkpoint {where}")
    assert "Input/output error" in message and "disk full" not in message


def test_read_only_checkpointer_refuses_to_save(workdir):
    with pytest.raises(CheckpointWriteError, match="read-only"):
        Checkpointer(workdir, read_only=True).save(3, _state(3), _meta(3))


# --------------------------------------------------------------------------- through the trainer


def test_training_resumes_past_a_corrupt_latest_checkpoint_to_the_uninterrupted_result(
    tmp_path, caplog
):
    import chex

    import ottt_jax
    from ottt_jax import config as config_lib

    cfg = config_lib.get_config(
        "digits", ["progress=false", "max_train_steps=10", "checkpoint_every_steps=4"]
    )
    full = ottt_jax.train(cfg, workdir=str(tmp_path / "full"))
    run = tmp_path / "run"
    ottt_jax.train(config_lib.apply_overrides(cfg, ["max_train_steps=8"]), workdir=str(run))
    assert sorted(os.listdir(run / "checkpoints")) == ["4", "8"]
    _damage(_largest_file(run / "checkpoints" / "8" / "state" / "ocdbt.process_0" / "d"), "garble")

    caplog.set_level(logging.WARNING, logger=LOGGER)
    resumed = ottt_jax.train(cfg, workdir=str(run))  # from step 4, past the damaged step 8
    (line,) = _warnings(caplog)
    assert str(run / "checkpoints" / "8") in line
    assert resumed["steps"] == 10
    chex.assert_trees_all_equal(jax.device_get(resumed["params"]), jax.device_get(full["params"]))
    assert (run / "corrupt" / "latest_8").is_dir()


def test_the_debris_filter_drops_only_orbax_debris_and_is_removed(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    noise = NoiseFilter()
    noise.install()
    noise.install()  # once: a second failure does not wrap it twice
    assert sys.unraisablehook is noise
    debris = types.SimpleNamespace(object=None, exc_value=RuntimeError("Event loop is closed"))
    other = types.SimpleNamespace(object=None, exc_value=RuntimeError("a user's error"))
    noise(debris)
    noise(other)
    assert seen == [other]
    noise.remove()
    assert sys.unraisablehook == seen.append and not noise.installed
