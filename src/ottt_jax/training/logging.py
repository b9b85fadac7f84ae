"""Run logging: JSONL metrics (and TensorBoard when ``tensorboardX`` is installed), the progress
bar, the end-of-run summary table and the curves figure."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

__all__ = ["MetricsLogger", "plot_curves", "progress_bar", "summary"]


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

    def write(self, record: dict) -> None:
        """Append one record (``{'kind': 'train'|'eval', 'step': int, ...numbers}``)."""
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k not in ("step", "kind") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{record.get('kind', 'train')}/{k}", v, record["step"])

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self.tb is not None:
            self.tb.close()


def progress_bar(enabled: bool, total: int, initial: int) -> Any:
    """Return a ``tqdm`` bar over ``total`` steps starting at ``initial`` (None if disabled)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)


def summary(cfg: Any, r: dict) -> str:
    """Return the end-of-run table of a config and the result dict of ``train``."""
    rows = [
        ("config", cfg.name),
        ("method", cfg.method),
        ("T (train / eval)", f"{cfg.num_steps} / {cfg.effective_eval_num_steps}"),
        ("steps / epochs", f"{r['steps']} / {r['epochs']:.2f}"),
        ("train loss / acc", f"{r['train_loss']:.4f} / {100 * r['train_accuracy']:.2f}%"),
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

    with open(metrics_path) as f:
        recs = [json.loads(line) for line in f]
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
