"""Orbax calls without their noise: one-line errors, no tracebacks or asyncio debris.

A failed orbax / tensorstore call logs each background thread's traceback and leaves coroutines
and callbacks whose errors Python prints later ("Exception ignored in ...", "Event loop is
closed"). :func:`call_quietly` runs a call with that noise dropped and returns a one-line reason;
:class:`NoiseFilter` is the ``sys.unraisablehook`` a :class:`~ottt_jax.checkpoint.Checkpointer`
keeps installed between a failed call and its ``close()``, never longer.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

__all__ = [
    "MAX_REASON",
    "NoiseFilter",
    "call_quietly",
    "error_chain",
    "has_errno",
    "is_orbax_noise",
    "one_line",
    "quiet_orbax",
]

#: The longest one-line reason :func:`one_line` returns.
MAX_REASON = 160


def one_line(err: BaseException) -> str:
    """Return ``Type: first line of the message``, at most ``MAX_REASON`` characters."""
    text = str(err).strip().splitlines()
    first = text[0].split(" See full TensorStore details")[0] if text else ""
    reason = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."


def error_chain(err: BaseException) -> Iterator[BaseException]:
    """Yield ``err``, then its cause or context, and so on (each once)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def has_errno(err: BaseException, code: int) -> bool:
    """Whether ``err`` (or its cause) is an OSError ``code``, also as tensorstore words it."""
    for e in error_chain(err):
        if isinstance(e, OSError) and e.errno == code:
            return True
        if f"os_error_code='{code}'" in str(e) or os.strerror(code) in str(e):
            return True
    return False


class _DropErrors(logging.Filter):
    """Drop orbax's ERROR logs (with tracebacks) for failures this module reports itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


def is_orbax_noise(unraisable: Any) -> bool:
    """Whether an unraisable exception is the debris of a failed orbax / tensorstore call."""
    obj = unraisable.object
    if inspect.iscoroutine(obj) and "orbax" in obj.cr_code.co_filename:
        return True  # a read coroutine whose exception nobody awaited
    exc = unraisable.exc_value
    # tensorstore completing a future for orbax's asyncio loop after that loop closed
    return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"


@contextlib.contextmanager
def quiet_orbax() -> Iterator[None]:
    """Drop the noise orbax makes around a failure that the caller reports in one line.

    A failed orbax read or write logs each background thread's traceback, leaves coroutines
    whose exceptions Python prints when they are collected ("Exception ignored in <coroutine>",
    "coroutine ... was never awaited") and tensorstore callbacks that find orbax's event loop
    closed ("Event loop is closed"). Within the block those are dropped; any other unraisable
    exception goes to the previous hook.
    """
    absl_logger = logging.getLogger("absl")
    drop = _DropErrors()
    previous = sys.unraisablehook

    def hook(unraisable):
        if not is_orbax_noise(unraisable):
            previous(unraisable)

    absl_logger.addFilter(drop)
    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
            yield
    finally:
        sys.unraisablehook = previous
        absl_logger.removeFilter(drop)


class NoiseFilter:
    """A ``sys.unraisablehook`` that drops orbax's failure debris, installed only while needed.

    orbax's background threads can release a failed read's coroutines after the call returned,
    so a :class:`Checkpointer` installs this after its first failed orbax call and removes it in
    :meth:`Checkpointer.close` (after orbax's threads are joined and the debris collected). Any
    other unraisable exception goes to the hook that was installed before.
    """

    def __init__(self) -> None:
        self._previous: Any = None

    @property
    def installed(self) -> bool:
        """Return whether this filter is (still) forwarding to a previous hook."""
        return self._previous is not None

    def install(self) -> None:
        """Wrap the current ``sys.unraisablehook`` (once; later calls do nothing)."""
        if self._previous is None:
            self._previous = sys.unraisablehook
            sys.unraisablehook = self

    def __call__(self, unraisable: Any) -> None:
        if not is_orbax_noise(unraisable):
            (self._previous or sys.__unraisablehook__)(unraisable)

    def remove(self) -> None:
        """Collect the pending debris and restore the previous hook (if this one is current)."""
        if self._previous is None:
            return
        gc.collect()
        if sys.unraisablehook is self:
            sys.unraisablehook = self._previous
            self._previous = None


def call_quietly(
    fn: Any, on_error: Any = None, noise: NoiseFilter | None = None
) -> tuple[Any, Any]:
    """Run the orbax call ``fn()`` with its noise dropped.

    Args:
      fn: the orbax call.
      on_error: ``on_error(exception)`` makes the returned error (default: its one-line summary).
      noise: installed when the call fails, to drop debris orbax's threads release later; its
        owner removes it (None: nothing stays installed after this returns).

    Returns:
      ``(fn(), None)``, or ``(None, on_error(exception))`` when it raised; the failed call's
      debris is collected before this returns, so no traceback surfaces later.
    """
    with quiet_orbax():
        try:
            return fn(), None
        except Exception as e:  # tensorstore raises bare Exception / ValueError; JSON its own
            summary = (on_error or one_line)(e)
        # Leaving the except block releases the traceback, which holds orbax's failed
        # coroutines; those in reference cycles need a collection. Both happen here, while the
        # hook still drops their noise (only on this failure path).
        gc.collect()
    if noise is not None:
        noise.install()
    return None, summary
