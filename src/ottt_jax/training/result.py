"""What ``train`` returns: :class:`TrainResult` with the per-epoch :class:`EpochStats` history."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

__all__ = ["EpochStats", "TrainResult", "epoch_record", "history_from_records"]


class EpochStats(NamedTuple):
    """One epoch of a run.

    Attributes:
      epoch: the epoch, counting from 1.
      step: the step that ended it.
      loss: the mean training loss ``Σ_t L[t]`` over its batches.
      train_accuracy: the mean training accuracy (``argmax Σ_t out_t``) over its batches.
      test_accuracy: the test accuracy evaluated at its end, or None when not evaluated.
      lr: the learning rate after its last step.
      images_per_sec: its training images over its wall time.
    """

    epoch: int
    step: int
    loss: float
    train_accuracy: float
    test_accuracy: float | None
    lr: float
    images_per_sec: float


def epoch_record(stats: EpochStats) -> dict[str, Any]:
    """Return the ``metrics.jsonl`` record of an epoch (``kind`` ``'epoch'``)."""
    return {"kind": "epoch", **stats._asdict()}


def history_from_records(records: list[dict], step: int) -> list[EpochStats]:
    """Return the :class:`EpochStats` of the ``'epoch'`` records up to ``step`` (a resume)."""
    fields = EpochStats._fields
    return [
        EpochStats(**{k: r[k] for k in fields})
        for r in records
        if r.get("kind") == "epoch" and r["step"] <= step
    ]


@dataclasses.dataclass(frozen=True)
class TrainResult(Mapping):
    """The outcome of ``train``; also a read-only mapping of its fields (``result['steps']``).

    Attributes:
      test_accuracy: the last evaluation's accuracy.
      test_loss: the last evaluation's cross-entropy.
      best_test_accuracy: the best evaluation's accuracy.
      train_accuracy: the last logged training accuracy (NaN when none was logged).
      train_loss: the last logged training loss.
      steps: the batches trained.
      epochs: ``steps / steps_per_epoch``.
      seconds: this call's wall time.
      workdir: the run directory.
      checkpoint: the latest checkpoint's directory.
      best_checkpoint: the best checkpoint's directory (None without one).
      metrics: the path of ``metrics.jsonl``.
      curves: the path of ``curves.png`` (None when not drawn).
      params: the trained parameters.
      history: one :class:`EpochStats` per epoch (an epoch interrupted by a resume averages
        the steps trained after the resume).
    """

    test_accuracy: float
    test_loss: float
    best_test_accuracy: float
    train_accuracy: float
    train_loss: float
    steps: int
    epochs: float
    seconds: float
    workdir: str
    checkpoint: str
    best_checkpoint: str | None
    metrics: str
    curves: str | None
    params: Any
    history: tuple[EpochStats, ...] = ()

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)
