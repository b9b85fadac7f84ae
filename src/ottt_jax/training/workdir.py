"""The run directory: checks with one-line errors, and a lock so that one run uses it at a time.

Two runs writing one workdir interleave their metrics and overwrite each other's checkpoints, so a
run holds ``<workdir>/run.lock`` while it trains. The lock is a small JSON file created with
``O_CREAT | O_EXCL`` (atomic on local and NFSv3+ file systems) holding the holder's host, pid,
process start time and wall-clock start. A second run finds the file and is refused with the
holder's host and pid. A lock left by a run that was killed (``kill -9``, a crash, a preempted
machine) is *stale*: its host is this host and its pid is not running (or is running but started
at another time, i.e. the pid was reused). A stale lock is taken over with a one-line warning. A
lock held from another host cannot be checked from here and is respected; the error says how to
remove it.

Multi-host runs: only process 0 takes the lock (``WorkdirLock(..., enabled=None)`` decides by
``jax.process_index()``). The other processes of the same run share the workdir by design, and a
second multi-host run is refused on its process 0, which stops that run.
"""

from __future__ import annotations

import datetime
import errno
import json
import logging
import os
import socket
import tempfile
from typing import Any

from ottt_jax.errors import UserError

__all__ = ["LOCK_NAME", "WorkdirError", "WorkdirLock", "WorkdirLockedError", "check_workdir"]

logger = logging.getLogger(__name__)

#: The lock file's name inside the workdir.
LOCK_NAME = "run.lock"

_HELD: set[str] = set()  # lock paths this process holds (a lock with our pid not here is stale)


class WorkdirError(UserError):
    """The workdir cannot be used (a regular file, missing, read-only, or in use)."""


class WorkdirLockedError(WorkdirError):
    """Another live run holds the workdir's lock."""


def _fix(path: str) -> str:
    return f"pass another --workdir (now {path})"


def check_workdir(path: str | os.PathLike, *, create: bool = True, parents: bool = True) -> str:
    """Check that ``path`` can be a run directory, and create it.

    Args:
      path: the workdir.
      create: training (True): create ``path`` if missing and check that files can be written
        in it. Evaluation (False): ``path`` must already be a directory; nothing is created and
        it may be read-only.
      parents: with ``create``, also create missing parent directories (else a missing parent is
        an error).

    Returns:
      The absolute path.

    Raises:
      WorkdirError: ``path`` (or a parent) is a regular file, does not exist (``create=False``),
        has a missing parent (``parents=False``), or is read-only; the one-line message names
        the path and the fix.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise WorkdirError(
            f"workdir {path} is a regular file, not a directory; remove it or {_fix(path)}"
        )
    if not create:
        if not os.path.isdir(path):
            raise WorkdirError(
                f"workdir {path} does not exist; point --workdir at a training run's directory"
            )
        return path
    parent = os.path.dirname(path)
    if not parents and not os.path.isdir(parent):
        raise WorkdirError(
            f"the parent directory {parent} of workdir {path} does not exist; create it "
            f"(mkdir -p {parent}) or {_fix(path)}"
        )
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise WorkdirError(
            f"cannot create workdir {path}: a parent of it is a regular file; {_fix(path)}"
        ) from None
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
    except OSError as e:
        raise _write_error(path, e) from None
    os.close(fd)
    os.remove(probe)
    return path


def _write_error(path: str, err: OSError) -> WorkdirError:
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return WorkdirError(
            f"workdir {path} is read-only ({os.strerror(err.errno)}); make it writable "
            f"(chmod u+w {path}) or {_fix(path)}"
        )
    if err.errno == errno.ENOSPC:
        return WorkdirError(
            f"no space left on the disk of workdir {path}; free space or {_fix(path)}"
        )
    return WorkdirError(f"cannot write in workdir {path} ({err.strerror or err}); {_fix(path)}")


# ---------------------------------------------------------------------------------------------
# The lock
# ---------------------------------------------------------------------------------------------


def _process_start(pid: int) -> str | None:
    """Return the start time of process ``pid`` (Linux ``/proc``; clock ticks since boot)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) is parenthesized and may hold spaces.
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _read_lock(path: str) -> dict | None:
    """Return the lock's JSON, ``{}`` when unreadable or garbled, None when absent."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    return (
        f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, started "
        f"{holder.get('started', '?')}"
    )


class WorkdirLock:
    """Hold ``<workdir>/run.lock`` for the duration of a run (a context manager).

    Args:
      workdir: the run directory (must exist; see :func:`check_workdir`).
      enabled: take the lock; default (None) only on JAX process 0 (multi-host: one lock per
        run).

    Raises:
      WorkdirLockedError: on enter, when a live run holds the lock: the message names its host
        and pid and suggests ``--workdir``.
    """

    def __init__(self, workdir: str | os.PathLike, *, enabled: bool | None = None):
        self.workdir = os.path.abspath(os.fspath(workdir))
        self.path = os.path.join(self.workdir, LOCK_NAME)
        if enabled is None:
            import jax

            enabled = jax.process_index() == 0
        self.enabled = enabled
        self.held = False
        self._record: dict[str, Any] | None = None

    def _is_stale(self, holder: dict) -> bool:
        """Whether ``holder`` is a run on this host that no longer runs (or garbled)."""
        if self.path in _HELD:
            return False  # this process holds it (another WorkdirLock object)
        if not holder:
            return True  # empty or garbled: its writer died between create and write
        if holder.get("host") != socket.gethostname():
            return False  # cannot check another host's processes
        pid = holder.get("pid")
        if not isinstance(pid, int) or pid == os.getpid() or not _pid_alive(pid):
            return True  # our own pid in a lock we do not hold: a previous life of this pid
        start = holder.get("pid_start")
        return start is not None and _process_start(pid) not in (None, start)

    def acquire(self) -> None:
        """Create the lock, taking over a stale one; raise if a live run holds it."""
        if not self.enabled or self.held:
            return
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_start": _process_start(os.getpid()),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        for _ in range(3):  # a stale lock taken over, then a race lost, at most
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(self.path)
                if holder is None:
                    continue  # released meanwhile
                if not self._is_stale(holder):
                    raise WorkdirLockedError(
                        f"workdir {self.workdir} is in use by another run ({_describe(holder)}); "
                        f"wait for it to finish or pass another --workdir (if that run is gone, "
                        f"delete {self.path})"
                    ) from None
                self._take_over(holder)
                continue
            except OSError as e:
                raise _write_error(self.workdir, e) from None
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            self._record = record
            self.held = True
            _HELD.add(self.path)
            return
        raise WorkdirLockedError(
            f"workdir {self.workdir}: could not take the lock {self.path} (other runs are "
            "starting in it); pass another --workdir"
        )

    def _take_over(self, holder: dict) -> None:
        """Move the stale lock aside atomically (one taker wins), then check what was moved."""
        aside = f"{self.path}.stale-{os.getpid()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another run took it over first
        moved = _read_lock(aside)
        if moved != holder:  # a fresh lock replaced the stale one meanwhile: give it back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        else:
            logger.warning(
                "workdir %s: took over the stale lock of a run that is not running (%s)",
                self.workdir,
                _describe(holder) if holder else "unreadable lock file",
            )
        os.remove(aside)

    def release(self) -> None:
        """Remove the lock if this object holds it (idempotent)."""
        if not self.held:
            return
        self.held = False
        _HELD.discard(self.path)
        if _read_lock(self.path) == self._record:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
