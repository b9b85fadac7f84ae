"""Run logging: JSONL metrics (and TensorBoard when ``tensorboardX`` is installed), the progress
bar, the end-of-run summary table and the curves figure."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from typing import Any

from ottt_jax.training.workdir import WorkdirError

__all__ = ["MetricsLogger", "ProgressBar", "plot_curves", "progress_bar", "read_metrics", "summary"]


class MetricsLogger:
    """Append records to ``<workdir>/metrics.jsonl`` (and TensorBoard scalars, if available).

    Args:
      workdir: the run directory.
      enabled: write anything at all (False on every process but the first).
    """

    def __init__(self, workdir: str, enabled: bool):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tb = None
        if enabled:
            try:
                from tensorboardX import SummaryWriter  # optional

                self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
            except ImportError:
                pass

    def keep_until(self, step: int) -> int:
        """Drop the records with ``step`` above ``step``, atomically (a resume from ``step``).

        A run killed after logging steps past its last checkpoint replays those steps when it
        resumes; dropping them first keeps one record per step. The file is rewritten to a
        temporary file and renamed over the old one, so a crash leaves the old or the new file.

        Args:
          step: the step training resumes from (0 for a fresh start).

        Returns:
          The number of records dropped.
        """
        if not self.enabled or not os.path.exists(self.path):
            return 0
        recs = read_metrics(self.path)
        kept = [r for r in recs if r.get("step", 0) <= step]
        if len(kept) == len(recs):
            return 0
        tmp = f"{self.path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        return len(recs) - len(kept)

    def write(self, record: dict) -> None:
        """Append one record (``{'kind': 'train'|'eval', 'step': int, ...numbers}``).

        Raises:
          WorkdirError: the file cannot be written (disk full, read-only), in one line naming it.
        """
        if not self.enabled:
            return
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise WorkdirError(
                f"cannot append to {self.path} ({e.strerror or e}); free space or make the "
                "workdir writable, then rerun to resume from the last checkpoint"
            ) from None
        if self.tb is not None:
            for k, v in record.items():
                if k not in ("step", "kind") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{record.get('kind', 'train')}/{k}", v, record["step"])

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: str) -> list[dict]:
    """Return the records of a ``metrics.jsonl`` in file order (``[]`` when it does not exist).

    A last line cut short by a crash is skipped.
    """
    if not os.path.exists(path):
        return []
    recs = []
    with open(path) as f:
        for line in f:
            try:
                recs.append(json.loads(line))
            except ValueError:
                continue
    return recs


class ProgressBar:
    """A ``tqdm`` bar over training steps that reads "compiling" until the first step ends.

    The first step's time is the compilation's; an ETA from it would read hours. So the bar shows
    no rate or ETA until :meth:`update` is first called, and then restarts its clock.

    Args:
      total: the number of steps of the run.
      initial: the step it starts from (a resume).
    """

    def __init__(self, total: int, initial: int):
        self.total = total
        self.bar = self._tqdm(
            initial,
            bar_format="{desc}{n_fmt}/{total_fmt} steps [compiling the train step...]",
            leave=False,
        )
        self.compiling = True
        self.postfix: dict[str, str] = {}

    def _tqdm(self, initial: int, **kwargs: Any) -> Any:
        from tqdm.auto import tqdm

        return tqdm(
            total=self.total,
            initial=initial,
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
            **kwargs,
        )

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` steps (the first call ends the compiling phase)."""
        if self.compiling:
            start = self.bar.n + n
            self.bar.close()
            self.bar = self._tqdm(start)
            self.compiling = False
            if self.postfix:
                self.bar.set_postfix(**self.postfix)
            return
        self.bar.update(n)

    def set_postfix(self, **kwargs: str) -> None:
        """Show ``key=value`` pairs (loss, accuracy, images/s) after the bar."""
        self.postfix = kwargs
        if not self.compiling:
            self.bar.set_postfix(**kwargs)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


def progress_bar(enabled: bool, total: int, initial: int) -> ProgressBar | None:
    """Return a :class:`ProgressBar` over ``total`` steps starting at ``initial`` (None if off)."""
    return ProgressBar(total, initial) if enabled else None


def summary(cfg: Any, r: Mapping[str, Any]) -> str:
    """Return the end-of-run table of a config and the result of ``train`` (a TrainResult).

    A train loss that was never logged (NaN) reads "not logged", never ``nan / nan%``.
    """
    train = "not logged"
    if math.isfinite(r["train_loss"]):
        train = f"{r['train_loss']:.4f} / {100 * r['train_accuracy']:.2f}%"
    rows = [
        ("config", cfg.name),
        ("method", cfg.method),
        ("T (train / eval)", f"{cfg.num_steps} / {cfg.effective_eval_num_steps}"),
        ("steps / epochs", f"{r['steps']} / {r['epochs']:.2f}"),
        ("train loss / acc", train),
        ("test loss", f"{r['test_loss']:.4f}"),
        ("test accuracy", f"{100 * r['test_accuracy']:.2f}%"),
        ("best test accuracy", f"{100 * r['best_test_accuracy']:.2f}%"),
        ("wall time", f"{r['seconds']:.1f} s"),
        ("workdir", r["workdir"]),
    ]
    w = max(len(k) for k, _ in rows)
    line = "-" * (w + 3 + max(len(v) for _, v in rows))
    return "\n".join([line, *(f"{k:<{w}} | {v}" for k, v in rows), line])


def plot_curves(metrics_path: str, out_path: str) -> str | None:
    """Plot loss and accuracy against epoch from a ``metrics.jsonl``.

    Args:
      metrics_path: the JSONL written by :class:`MetricsLogger`.
      out_path: the PNG to write.

    Returns:
      ``out_path``, or None when there is no metrics file.
    """
    if not os.path.exists(metrics_path):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = read_metrics(metrics_path)
    tr = [r for r in recs if r["kind"] == "train"]
    ev = [r for r in recs if r["kind"] == "eval"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot([r["epoch"] for r in tr], [r["loss"] for r in tr], label="train loss (Σ_t L[t])")
    if ev:
        ax1.plot([r["epoch"] for r in ev], [r["loss"] for r in ev], "o-", label="test CE")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot([r["epoch"] for r in tr], [100 * r["accuracy"] for r in tr], label="train")
    if ev:
        ax2.plot([r["epoch"] for r in ev], [100 * r["accuracy"] for r in ev], "o-", label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
