"""Training checkpoints with orbax: the latest few and the best, written atomically.

Layout under a run's ``workdir``::

    checkpoints/<step>/   latest checkpoints (``max_to_keep`` of them)
    best/<step>/          the checkpoint with the best evaluation accuracy
    corrupt/              checkpoints found damaged on restore, moved aside (kept for inspection)

Each checkpoint holds two items: ``state`` (a pytree: params, optimizer state, step, RNG key) and
``meta`` (JSON: the config as a dict, epoch, data-iterator state, best metric so far). orbax writes
into a temporary directory (``<step>.orbax-checkpoint-tmp*``) and renames it on success, so a
crash mid-write never leaves a half-written checkpoint that would be picked up on resume; the
temporary directories such a crash leaves are removed when a writable :class:`Checkpointer` opens
the workdir, and after a failed write.

Failures at this boundary are one-line :class:`~ottt_jax.errors.UserError` s naming the path and
the fix (orbax / tensorstore report them as long tracebacks and asyncio noise):

* a checkpoint that fails to restore (truncated or garbled state files, empty or damaged JSON,
  damaged ``_METADATA``) is reported in one log line with its path, moved to ``corrupt/``, and
  :meth:`Checkpointer.restore` falls back to the newest intact one; only when none is intact does
  it raise :class:`CheckpointCorruptError` naming the directory;
* a checkpoint of another parameter tree raises :class:`IncompatibleCheckpointError`;
* a write that fails (disk full, read-only or missing directory) raises
  :class:`CheckpointWriteError`; a full disk (``ENOSPC``) has its own message.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from ottt_jax.errors import UserError
from ottt_jax.orbax_calls import NoiseFilter, call_quietly, has_errno, one_line

__all__ = [
    "TMP_DIR_MARKER",
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointWriteError",
    "Checkpointer",
    "IncompatibleCheckpointError",
    "NoiseFilter",
    "decode_iterator_state",
    "encode_iterator_state",
]

PyTree = Any

logger = logging.getLogger(__name__)

#: Part of the name of the temporary directory orbax writes a checkpoint into before renaming it.
TMP_DIR_MARKER = ".orbax-checkpoint-tmp"


class CheckpointError(UserError):
    """A checkpoint could not be read or written (the message names the path and the fix)."""


class IncompatibleCheckpointError(CheckpointError, ValueError):
    """A checkpoint was written by a run with another architecture or config."""


class CheckpointCorruptError(CheckpointError):
    """No intact checkpoint is left to restore (every candidate failed to read)."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, read-only or missing directory)."""


# ---------------------------------------------------------------------------------------------
# Data-iterator state (stored in the JSON ``meta`` item)
# ---------------------------------------------------------------------------------------------


def encode_iterator_state(state: Any) -> Any:
    """Make a data iterator's state JSON-serializable.

    Grain iterators return their state as ``bytes``; JSON has no bytes, so they are stored as
    ``{"__bytes__": <latin-1 text>}`` (a lossless byte-to-character map). Other states (already
    JSON: dicts, lists, numbers, ``None``) are returned unchanged.

    Args:
      state: ``iterator.get_state()``.

    Returns:
      A JSON-serializable value that :func:`decode_iterator_state` maps back to ``state``.
    """
    if isinstance(state, bytes):
        return {"__bytes__": state.decode("latin-1")}
    return state


def decode_iterator_state(encoded: Any) -> Any:
    """Invert :func:`encode_iterator_state`.

    Args:
      encoded: the value stored in a checkpoint's metadata.

    Returns:
      The state to pass to ``iterator.set_state``.
    """
    if isinstance(encoded, dict) and set(encoded) == {"__bytes__"}:
        return encoded["__bytes__"].encode("latin-1")
    return encoded


# ---------------------------------------------------------------------------------------------
# Error translation
# ---------------------------------------------------------------------------------------------


def _write_error(err: BaseException, path: str) -> CheckpointWriteError:
    if has_errno(err, errno.ENOSPC):
        return CheckpointWriteError(
            f"disk full while writing checkpoint {path}: free space on that disk (or pass "
            "another --workdir on a disk with room) and rerun to resume from the last checkpoint"
        )
    if has_errno(err, errno.EROFS) or has_errno(err, errno.EACCES):
        return CheckpointWriteError(
            f"cannot write checkpoint {path}: the directory is read-only; make it writable or "
            "pass another --workdir"
        )
    return CheckpointWriteError(
        f"cannot write checkpoint {path} ({one_line(err)}); check the disk and the directory, "
        "or pass another --workdir"
    )


def _remove_tmp_dirs(directory: str) -> list[str]:
    """Delete the unfinished ``*.orbax-checkpoint-tmp*`` directories directly in ``directory``."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if TMP_DIR_MARKER in name and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _leaf_shapes(tree: PyTree) -> dict[str, tuple[int, ...]]:
    """Map ``a/b/c`` leaf paths of ``tree`` (dicts, NamedTuples, lists alike) to their shapes."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(_key_name(k) for k in path): tuple(leaf.shape) for path, leaf in leaves}


def _tree_differences(saved: dict, wanted: dict, limit: int = 3) -> list[str]:
    diffs = [f"{k}: in the checkpoint only" for k in sorted(set(saved) - set(wanted))]
    diffs += [f"{k}: missing from the checkpoint" for k in sorted(set(wanted) - set(saved))]
    diffs += [
        f"{k}: shape {saved[k]} in the checkpoint, {wanted[k]} requested"
        for k in sorted(set(saved) & set(wanted))
        if saved[k] != wanted[k]
    ]
    more = f" (and {len(diffs) - limit} more)" if len(diffs) > limit else ""
    return [*diffs[:limit], more] if more else diffs


class _Corrupt(Exception):
    """A step failed to read; ``str(self)`` is the one-line reason."""


# ---------------------------------------------------------------------------------------------
# The checkpointer
# ---------------------------------------------------------------------------------------------


class Checkpointer:
    """Save and restore the latest and best training checkpoints of one run.

    Args:
      workdir: the run directory.
      max_to_keep: how many latest checkpoints to keep.
      read_only: only read (for evaluation): create nothing, move and delete nothing.

    Raises:
      CheckpointWriteError: the checkpoint directories cannot be created.
    """

    def __init__(
        self, workdir: str | os.PathLike, max_to_keep: int = 3, *, read_only: bool = False
    ):
        self.workdir = os.path.abspath(os.fspath(workdir))
        self.read_only = read_only
        self._noise = NoiseFilter()  # installed after a failed orbax call, removed by close()
        self._skipped: dict[str, set[int]] = {"latest": set(), "best": set()}  # left in place
        self._found_corrupt: set[str] = set()
        dirs = {"latest": "checkpoints", "best": "best"}
        self._managers: dict[str, ocp.CheckpointManager] = {}
        for which, sub in dirs.items():
            path = os.path.join(self.workdir, sub)
            keep = max_to_keep if which == "latest" else 1
            if read_only:
                opts = ocp.CheckpointManagerOptions(
                    read_only=True, create=False, max_to_keep=None, enable_async_checkpointing=False
                )
            else:
                opts = ocp.CheckpointManagerOptions(
                    max_to_keep=keep, create=True, enable_async_checkpointing=False
                )
            if not read_only and self._is_primary:
                for tmp in _remove_tmp_dirs(path):
                    logger.warning("removed the unfinished checkpoint %s (left by a crash)", tmp)
            mngr, error = call_quietly(
                lambda path=path, opts=opts: ocp.CheckpointManager(path, options=opts),
                lambda e, path=path: _write_error(e, path),
                self._noise,
            )
            if error is not None:
                self.close()
                raise error
            self._managers[which] = mngr
        self._latest = self._managers["latest"]
        self._best = self._managers["best"]

    @property
    def _is_primary(self) -> bool:
        return jax.process_index() == 0

    @property
    def latest_dir(self) -> str:
        return os.fspath(self._latest.directory)

    @property
    def best_dir(self) -> str:
        return os.fspath(self._best.directory)

    def latest_step(self) -> int | None:
        """Return the step of the latest checkpoint, or None."""
        return self._latest.latest_step()

    def best_step(self) -> int | None:
        """Return the step of the best checkpoint, or None."""
        return self._best.latest_step()

    def save(self, step: int, state: PyTree, meta: dict, *, best: bool = False) -> None:
        """Write ``state`` and ``meta`` as checkpoint ``step`` (and as the best one if ``best``).

        Args:
          step: the global training step (monotonic).
          state: a pytree of arrays.
          meta: a JSON-serializable dict.
          best: also replace the best checkpoint.

        Raises:
          CheckpointWriteError: the write failed (disk full, read-only); the unfinished
            temporary directory is removed and the previous checkpoints are intact.
        """
        if self.read_only:
            raise CheckpointWriteError(
                f"this Checkpointer of {self.workdir} is read-only; open it with read_only=False"
            )
        targets = []
        if self._latest.latest_step() != step:
            targets.append(self._latest)
        if best:
            targets.append(self._best)
        for mngr in targets:
            args = ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            )
            path = os.path.join(os.fspath(mngr.directory), str(step))

            def write(mngr=mngr, args=args):
                mngr.save(step, args=args, force=True)
                mngr.wait_until_finished()

            _, error = call_quietly(write, lambda e, path=path: _write_error(e, path), self._noise)
            if error is not None:
                if self._is_primary:
                    _remove_tmp_dirs(os.fspath(mngr.directory))
                raise error

    def read_meta(self, which: str = "latest", step: int | None = None) -> dict | None:
        """Return the JSON metadata of a checkpoint, falling back past corrupt ones.

        Args:
          which: 'latest' or 'best'.
          step: a specific step (no fallback); default the newest intact one.

        Returns:
          The metadata dict, or None when there is no checkpoint.

        Raises:
          CheckpointCorruptError: no checkpoint could be read (or ``step`` could not).
        """
        mngr = self._manager(which)
        for s in self._candidates(which, step):
            try:
                return self._read(mngr, s, ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            except _Corrupt as c:
                self._report_corrupt(which, s, str(c), fallback=step is None)
        return self._none_left(which, step)

    def restore(
        self, target: PyTree, which: str = "latest", step: int | None = None
    ) -> tuple[PyTree, dict] | None:
        """Restore ``(state, meta)`` into the structure, shapes and shardings of ``target``.

        A checkpoint that fails to read is reported in one log line with its path, moved to
        ``<workdir>/corrupt/`` (a writable Checkpointer on process 0), and the next older one is
        tried.

        Args:
          target: a pytree like the saved state (arrays or ``jax.ShapeDtypeStruct``).
          which: 'latest' or 'best'.
          step: a specific step (no fallback); default the newest intact one.

        Returns:
          ``(state, meta)``, or None when there is no checkpoint.

        Raises:
          IncompatibleCheckpointError: the saved tree differs from ``target`` (another model).
          CheckpointCorruptError: no checkpoint could be read (or ``step`` could not).
        """
        mngr = self._manager(which)
        wanted = _leaf_shapes(target)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
        )
        for s in self._candidates(which, step):
            try:
                out = self._read(mngr, s, args)
                return out["state"], out["meta"]
            except _Corrupt as c:
                # A restore fails for another parameter tree too: tell the two apart by the
                # saved tree's shapes (unreadable metadata means damage, not another model).
                saved = self._saved_shapes(
                    mngr, s, reason=str(c), which=which, fallback=step is None
                )
                if saved is not None and saved != wanted:
                    raise IncompatibleCheckpointError(
                        f"checkpoint {mngr.directory}/{s} does not match this model's parameter "
                        "tree (another architecture or config?): "
                        + "; ".join(_tree_differences(saved, wanted))
                    ) from None
                if saved is not None:
                    self._report_corrupt(which, s, str(c), fallback=step is None)
        return self._none_left(which, step)

    def close(self) -> None:
        """Release orbax's resources and restore ``sys.unraisablehook`` if a call failed."""
        for mngr in self._managers.values():
            call_quietly(mngr.close)
        self._noise.remove()

    # -- helpers ---------------------------------------------------------------------------

    def _manager(self, which: str) -> ocp.CheckpointManager:
        if which not in self._managers:
            raise ValueError(f"which must be 'latest' or 'best', got {which!r}")
        return self._managers[which]

    def _candidates(self, which: str, step: int | None) -> list[int]:
        if step is not None:
            return [step]
        steps = self._manager(which).all_steps()
        return sorted((s for s in steps if s not in self._skipped[which]), reverse=True)

    def _read(self, mngr: ocp.CheckpointManager, step: int, args: Any) -> Any:
        out, reason = call_quietly(lambda: mngr.restore(step, args=args), noise=self._noise)
        if reason is not None:
            raise _Corrupt(reason)
        return out

    def _saved_shapes(
        self, mngr: ocp.CheckpointManager, step: int, *, reason: str, which: str, fallback: bool
    ) -> dict | None:
        """Return the saved state's leaf shapes, or report ``step`` corrupt and return None."""
        path = epath.Path(os.fspath(mngr.directory)) / str(step) / "state"

        def read() -> dict:
            handler = ocp.StandardCheckpointHandler()
            try:
                tree = handler.metadata(path)
            finally:
                handler.close()
            if tree is None or getattr(tree, "tree", None) is None:
                raise ValueError("no saved tree")
            return _leaf_shapes(tree.tree)

        shapes, error = call_quietly(read, noise=self._noise)
        if error is not None:
            self._report_corrupt(
                which, step, f"{reason}; state metadata unreadable: {error}", fallback=fallback
            )
        return shapes

    def _report_corrupt(self, which: str, step: int, reason: str, *, fallback: bool) -> None:
        mngr = self._manager(which)
        path = os.path.join(os.fspath(mngr.directory), str(step))
        if not fallback:
            raise CheckpointCorruptError(
                f"checkpoint {path} is corrupt ({reason}); restore another step or delete it"
            )
        where = "left in place"
        if not self.read_only and self._is_primary:
            dest = os.path.join(self.workdir, "corrupt", f"{which}_{step}")
            n = 1
            while os.path.exists(dest):
                n += 1
                dest = os.path.join(self.workdir, "corrupt", f"{which}_{step}_{n}")
            try:
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.replace(path, dest)
                where = f"moved to {dest}"
                mngr.reload()
            except OSError:
                pass
        if where == "left in place":
            self._skipped[which].add(step)
        self._found_corrupt.add(which)
        logger.warning(
            "checkpoint %s is corrupt (%s); %s; falling back to an older checkpoint",
            path,
            reason,
            where,
        )

    def _none_left(self, which: str, step: int | None) -> None:
        if which not in self._found_corrupt or step is not None:
            return None
        raise CheckpointCorruptError(
            f"no intact checkpoint in {self._manager(which).directory}: every checkpoint failed "
            f"to read (moved to {os.path.join(self.workdir, 'corrupt')} where writable); delete "
            "the directory to start over, or pass another --workdir"
        )
