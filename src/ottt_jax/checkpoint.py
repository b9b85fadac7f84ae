"""Training checkpoints with orbax: the latest few and the best, written atomically.

Layout under a run's ``workdir``::

    checkpoints/<step>/   latest checkpoints (``max_to_keep`` of them)
    best/<step>/          the checkpoint with the best evaluation accuracy

Each checkpoint holds two items: ``state`` (a pytree: params, optimizer state, step, RNG key) and
``meta`` (JSON: the config as a dict, epoch, data-iterator state, best metric so far). orbax writes
into a temporary directory and renames it on success, so a crash mid-write never leaves a
half-written checkpoint that would be picked up on resume.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

__all__ = ["Checkpointer", "IncompatibleCheckpointError"]

PyTree = Any


class IncompatibleCheckpointError(ValueError):
    """A checkpoint was written by a run with another architecture or config."""


class Checkpointer:
    """Save and restore the latest and best training checkpoints of one run.

    Args:
      workdir: the run directory.
      max_to_keep: how many latest checkpoints to keep.
    """

    def __init__(self, workdir: str | os.PathLike, max_to_keep: int = 3):
        self.workdir = os.path.abspath(os.fspath(workdir))
        opts = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        self._latest = ocp.CheckpointManager(
            os.path.join(self.workdir, "checkpoints"), options=opts
        )
        best_opts = ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, enable_async_checkpointing=False
        )
        self._best = ocp.CheckpointManager(os.path.join(self.workdir, "best"), options=best_opts)

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
        """
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        if self._latest.latest_step() != step:
            self._latest.save(step, args=args, force=True)
            self._latest.wait_until_finished()
        if best:
            args = ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            )
            self._best.save(step, args=args, force=True)
            self._best.wait_until_finished()

    def read_meta(self, which: str = "latest", step: int | None = None) -> dict | None:
        """Return the JSON metadata of a checkpoint (``which`` is 'latest' or 'best'), or None."""
        mngr = self._manager(which)
        step = mngr.latest_step() if step is None else step
        if step is None:
            return None
        return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def restore(
        self, target: PyTree, which: str = "latest", step: int | None = None
    ) -> tuple[PyTree, dict] | None:
        """Restore ``(state, meta)`` into the structure, shapes and shardings of ``target``.

        Args:
          target: a pytree like the saved state (arrays or ``jax.ShapeDtypeStruct``).
          which: 'latest' or 'best'.
          step: a specific step; default the newest.

        Returns:
          ``(state, meta)``, or None when there is no checkpoint.

        Raises:
          IncompatibleCheckpointError: the saved tree differs from ``target`` (another model).
        """
        mngr = self._manager(which)
        step = mngr.latest_step() if step is None else step
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            out = mngr.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise IncompatibleCheckpointError(
                f"checkpoint {mngr.directory}/{step} does not match this model's parameter tree "
                f"(another architecture or config?): {e}"
            ) from e
        return out["state"], out["meta"]

    def _manager(self, which: str) -> ocp.CheckpointManager:
        if which not in ("latest", "best"):
            raise ValueError(f"which must be 'latest' or 'best', got {which!r}")
        return self._latest if which == "latest" else self._best

    def close(self) -> None:
        self._latest.close()
        self._best.close()
