"""The workdir: one-line errors for a file, a missing parent or a read-only directory, and a lock
that refuses a second live run and takes over the stale lock of a killed one."""

import contextlib
import errno
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile

import pytest

from ottt_jax.errors import UserError
from ottt_jax.training.workdir import (
    LOCK_NAME,
    WorkdirError,
    WorkdirLock,
    WorkdirLockedError,
    check_workdir,
)

LOGGER = "ottt_jax.training.workdir"


def _one_line(e) -> str:
    message = str(e.value)
    assert "\n" not in message and isinstance(e.value, UserError)
    return message


# --------------------------------------------------------------------------- checks


def test_check_workdir_creates_it_with_parents_and_returns_the_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = check_workdir(os.path.join("runs", "a"))
    assert out == str(tmp_path / "runs" / "a") and os.path.isdir(out)
    assert os.listdir(out) == []  # the write probe is removed
    assert check_workdir(out) == out  # an existing one is fine


def test_workdir_that_is_a_regular_file(tmp_path):
    path = tmp_path / "run"
    path.write_text("x")
    for create in (True, False):
        with pytest.raises(WorkdirError) as e:
            check_workdir(path, create=create)
        assert f"workdir {path} is a regular file" in _one_line(e) and "--workdir" in str(e.value)
    with pytest.raises(WorkdirError) as e:
        check_workdir(path / "sub")
    assert "a parent of it is a regular file" in _one_line(e)


def test_missing_parent_is_an_error_only_when_parents_are_not_created(tmp_path):
    path = tmp_path / "no" / "run"
    with pytest.raises(WorkdirError) as e:
        check_workdir(path, parents=False)
    assert f"the parent directory {tmp_path / 'no'}" in _one_line(e) and "mkdir -p" in str(e.value)
    assert not (tmp_path / "no").exists()
    assert check_workdir(path) == str(path)


def test_evaluation_needs_an_existing_directory_and_creates_nothing(tmp_path):
    path = tmp_path / "missing"
    with pytest.raises(WorkdirError) as e:
        check_workdir(path, create=False)
    assert f"workdir {path} does not exist" in _one_line(e)
    assert not path.exists()


@contextlib.contextmanager
def _as_unprivileged_user():
    """Check permissions as an ordinary user: root drops its effective uid to nobody's.

    Root writes into any directory, so as root (CI) the permission checks of the block run with
    the effective uid and gid of ``nobody`` (65534), restored afterwards; any other user already
    meets them.
    """
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_read_only_workdir_by_permissions():
    """Catches: a read-only workdir accepted (the run would fail at its first checkpoint).

    Runs as root too: root checks it as ``nobody``; a writable sibling is the control.
    """
    base = tempfile.mkdtemp()  # in /tmp, not under root's private tmp_path, so nobody reaches it
    path, open_ = os.path.join(base, "ro"), os.path.join(base, "rw")
    try:
        os.chmod(base, 0o755)
        os.mkdir(path)
        os.mkdir(open_)
        os.chmod(path, 0o555)  # r-x for everyone: nobody may list it but not write in it
        os.chmod(open_, 0o777)
        with _as_unprivileged_user():
            assert not os.access(path, os.W_OK, effective_ids=True)  # the premise, also for root
            with pytest.raises(WorkdirError) as e:
                check_workdir(path)
            assert check_workdir(path, create=False) == path  # evaluation only reads
            assert check_workdir(open_) == open_  # the control: the same user can write here
        assert f"workdir {path} is read-only" in _one_line(e) and "--workdir" in str(e.value)
        assert os.listdir(path) == [] and os.listdir(open_) == []
    finally:
        os.chmod(path, stat.S_IRWXU)
        shutil.rmtree(base)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_read_only_file_system(tmp_path, monkeypatch, code):
    def refuse(*args, **kwargs):  # what creating a file on a read-only mount raises
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(WorkdirError) as e:
        check_workdir(tmp_path)
    message = _one_line(e)
    assert message.startswith(f"workdir {tmp_path} is read-only ({os.strerror(code)})")
    assert f"chmod u+w {tmp_path}" in message


# --------------------------------------------------------------------------- the lock


@pytest.fixture
def live_pid():
    """A running process that is not this one (killed after the test)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield child.pid
    child.kill()
    child.wait()


@pytest.fixture
def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write_lock(workdir, **fields):
    record = {"host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00", **fields}
    (workdir / LOCK_NAME).write_text(json.dumps(record))
    return record


def _lock(workdir) -> dict:
    return json.loads((workdir / LOCK_NAME).read_text())


def test_lock_records_host_pid_and_start_and_is_released(tmp_path):
    with WorkdirLock(tmp_path, enabled=True) as lock:
        held = _lock(tmp_path)
        assert held["host"] == socket.gethostname() and held["pid"] == os.getpid()
        assert held["started"] and lock.held
    assert not (tmp_path / LOCK_NAME).exists()
    with WorkdirLock(tmp_path, enabled=True):  # free again
        pass


def test_a_second_run_is_refused_with_the_holders_host_and_pid(tmp_path, live_pid):
    _write_lock(tmp_path, pid=live_pid)
    with pytest.raises(WorkdirLockedError) as e:
        WorkdirLock(tmp_path, enabled=True).acquire()
    message = _one_line(e)
    assert f"workdir {tmp_path} is in use by another run" in message
    assert f"host {socket.gethostname()}, pid {live_pid}" in message and "--workdir" in message
    assert _lock(tmp_path)["pid"] == live_pid  # untouched


def test_a_second_lock_in_the_same_process_is_refused(tmp_path):
    with WorkdirLock(tmp_path, enabled=True):
        with pytest.raises(WorkdirLockedError, match=f"pid {os.getpid()}"):
            WorkdirLock(tmp_path, enabled=True).acquire()
        assert _lock(tmp_path)["pid"] == os.getpid()


def test_a_lock_from_another_host_is_respected(tmp_path, dead_pid):
    _write_lock(tmp_path, host="not-" + socket.gethostname(), pid=dead_pid)
    with pytest.raises(WorkdirLockedError, match=f"delete {tmp_path / LOCK_NAME}"):
        WorkdirLock(tmp_path, enabled=True).acquire()


def _stale_cases(dead_pid, live_pid):
    return {
        "dead pid": {"pid": dead_pid},
        "reused pid": {"pid": live_pid, "pid_start": "0"},  # alive, but started at another time
        "our own pid": {"pid": os.getpid()},  # a lock this process does not hold
    }


@pytest.mark.parametrize("case", ["dead pid", "reused pid", "our own pid", "garbled"])
def test_a_stale_lock_is_taken_over_with_a_one_line_warning(
    tmp_path, caplog, dead_pid, live_pid, case
):
    if case == "garbled":
        (tmp_path / LOCK_NAME).write_text('{"host": "h", "pi')
        stale_pid = None
    else:
        fields = _stale_cases(dead_pid, live_pid)[case]
        _write_lock(tmp_path, **fields)
        stale_pid = fields["pid"]
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with WorkdirLock(tmp_path, enabled=True):
        assert _lock(tmp_path)["pid"] == os.getpid()
    (line,) = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert "took over the stale lock" in line and str(tmp_path) in line and "\n" not in line
    if stale_pid is not None:
        assert f"pid {stale_pid}" in line
    assert sorted(os.listdir(tmp_path)) == []  # nothing left aside


def test_a_fresh_lock_that_replaces_a_stale_one_mid_takeover_wins(
    tmp_path, monkeypatch, dead_pid, live_pid
):
    """Catches: a take-over that removes whatever lock is there now, not the stale one it read.

    Run B reads a stale lock; before B moves it, run A takes the stale lock over and writes its
    own (the race is injected at B's first change of the lock file: rename, replace or remove).
    B must be refused naming A, and A's lock and the workdir's files must be left as they were.
    """
    _write_lock(tmp_path, pid=dead_pid)
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    fresh = json.dumps({"host": socket.gethostname(), "pid": live_pid, "started": "now"})
    lock_path = str(tmp_path / LOCK_NAME)
    raced = []

    def racing(name):
        real = getattr(os, name)

        def call(src, *args, **kwargs):
            if not raced and os.fspath(src) == lock_path:
                raced.append(name)  # run A wins the race: its fresh lock replaces the stale one
                with open(lock_path, "w") as f:
                    f.write(fresh)
            return real(src, *args, **kwargs)

        return call

    for name in ("rename", "replace", "remove", "unlink"):
        monkeypatch.setattr(os, name, racing(name))
    with pytest.raises(WorkdirLockedError) as e:
        WorkdirLock(tmp_path, enabled=True).acquire()
    monkeypatch.undo()
    assert raced, "the take-over never touched the stale lock: the race was not injected"
    assert f"pid {live_pid}" in _one_line(e)
    assert (tmp_path / LOCK_NAME).read_text() == fresh
    assert sorted(os.listdir(tmp_path)) == sorted([LOCK_NAME, "metrics.jsonl"])
    assert (tmp_path / "metrics.jsonl").read_text() == "{}\n"


def test_a_live_pid_with_its_own_start_time_is_not_stale(tmp_path, live_pid):
    with open(f"/proc/{live_pid}/stat") as f:  # proc(5): field 22 is the start time
        start = f.read().rsplit(")", 1)[1].split()[19]
    _write_lock(tmp_path, pid=live_pid, pid_start=start)
    with pytest.raises(WorkdirLockedError):
        WorkdirLock(tmp_path, enabled=True).acquire()


def test_release_leaves_a_lock_that_is_not_ours(tmp_path, live_pid):
    lock = WorkdirLock(tmp_path, enabled=True)
    lock.acquire()
    _write_lock(tmp_path, pid=live_pid)  # e.g. an operator removed ours and another run started
    lock.release()
    assert _lock(tmp_path)["pid"] == live_pid


def test_disabled_lock_writes_nothing(tmp_path):
    with WorkdirLock(tmp_path, enabled=False) as lock:
        assert not lock.held
    assert os.listdir(tmp_path) == []
