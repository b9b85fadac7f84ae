"""Errors a user can fix, which the command-line tools report in one line without a traceback.

``ottt-train`` and ``ottt-eval`` catch :class:`UserError` and print ``<tool>: error: <message>``.
Each subclass's message names the file or directory at fault and the fix, on one line.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """A problem with the user's input or environment (a path, a disk, a lock), not a bug.

    The message is one line naming what is wrong, where, and how to fix it.
    """
