"""``training.logging``: the metrics file a resumed run rewrites, and its one-line failures.

Unit tests of :class:`~ottt_jax.training.logging.MetricsLogger` and
:func:`~ottt_jax.training.logging.read_metrics` (the trainer's use of them is checked end to end
in ``test_cli.py``).
"""

import json
import os

import pytest

from ottt_jax.training.logging import MetricsLogger, read_metrics
from ottt_jax.training.workdir import WorkdirError


def _steps(path) -> list:
    return [(r["kind"], r["step"]) for r in read_metrics(path)]


def test_keep_until_drops_the_records_past_the_resumed_step_atomically(tmp_path):
    """Catches: records past the checkpoint kept (a resumed run logs those steps twice)."""
    log = MetricsLogger(str(tmp_path), True)
    for kind, step in [("train", 1), ("train", 2), ("eval", 2), ("train", 3), ("eval", 4)]:
        log.write({"kind": kind, "step": step, "loss": 0.5})
    assert log.keep_until(2) == 2
    assert _steps(log.path) == [("train", 1), ("train", 2), ("eval", 2)]
    assert os.listdir(tmp_path) == ["metrics.jsonl"]  # no temporary file left behind
    assert log.keep_until(2) == 0 and log.keep_until(0) == 3
    assert read_metrics(log.path) == []
    log.write({"kind": "train", "step": 1})
    assert _steps(log.path) == [("train", 1)]


def test_a_logger_of_another_process_writes_and_drops_nothing(tmp_path):
    main = MetricsLogger(str(tmp_path), True)
    main.write({"kind": "train", "step": 5})
    other = MetricsLogger(str(tmp_path), False)
    other.write({"kind": "train", "step": 6})
    assert other.keep_until(0) == 0
    assert _steps(main.path) == [("train", 5)]
    assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl"]


def test_read_metrics_skips_a_line_cut_short_by_a_crash(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert read_metrics(str(path)) == []  # none yet
    path.write_text(json.dumps({"kind": "train", "step": 1}) + '\n{"kind": "tr')
    assert _steps(str(path)) == [("train", 1)]


def test_a_metrics_file_that_cannot_be_written_is_one_line_naming_it(tmp_path):
    os.mkdir(tmp_path / "metrics.jsonl")  # open(..., 'a') fails, as on a full or read-only disk
    log = MetricsLogger(str(tmp_path), True)
    with pytest.raises(WorkdirError) as e:
        log.write({"kind": "train", "step": 1})
    assert "\n" not in str(e.value) and f"cannot append to {log.path}" in str(e.value)
