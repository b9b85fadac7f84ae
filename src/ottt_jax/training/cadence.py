"""When the training loop logs, closes an epoch, evaluates and saves: a pure function of the step.

:func:`cadence` is the loop's whole schedule of side effects; it reads nothing but its arguments,
so the decisions are tested without training.
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["Cadence", "cadence"]


class Cadence(NamedTuple):
    """What the loop does after a training step.

    Attributes:
      epoch: the epoch the step belongs to, counting from 1 (``⌈step / steps_per_epoch⌉``).
      epoch_end: the step ends its epoch (or the run).
      log: write a ``train`` record (every ``log_every`` steps and at the last step).
      evaluate: evaluate on the test split (at the end of every ``eval_every_epochs``-th epoch
        and of the run).
      save: write a checkpoint (after each evaluation and every ``checkpoint_every_steps``).
      sync: pull the pending step metrics to the host (before a log, an epoch record or a save,
        so a non-finite loss stops the run before it is checkpointed).
    """

    epoch: int
    epoch_end: bool
    log: bool
    evaluate: bool
    save: bool
    sync: bool


def cadence(
    step: int,
    *,
    steps_per_epoch: int,
    total_steps: int,
    log_every: int,
    eval_every_epochs: int,
    checkpoint_every_steps: int,
) -> Cadence:
    """Return what to do after training step ``step`` (counting from 1).

    Args:
      step: the batches trained so far.
      steps_per_epoch: batches per epoch.
      total_steps: the run's last step.
      log_every: log every this many steps.
      eval_every_epochs: evaluate every this many epochs.
      checkpoint_every_steps: save every this many steps.

    Returns:
      The :class:`Cadence`.
    """
    last = step == total_steps
    epoch_end = step % steps_per_epoch == 0 or last
    epoch = math.ceil(step / steps_per_epoch)
    evaluate = epoch_end and (epoch % eval_every_epochs == 0 or last)
    save = evaluate or step % checkpoint_every_steps == 0
    log = step % log_every == 0 or last
    return Cadence(epoch, epoch_end, log, evaluate, save, sync=log or save or epoch_end)
