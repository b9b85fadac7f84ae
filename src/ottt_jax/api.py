"""The front door ``ottt_jax.train``: a static name whose body imports the trainer on first call.

``import ottt_jax`` stays light (no orbax, Grain or optax-heavy trainer modules); the training
package (:mod:`ottt_jax.training`, the trunk that imports everything) is loaded when ``train`` runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for editors and type checkers only
    from ottt_jax.training.result import TrainResult

__all__ = ["train"]


def train(
    cfg: Any = "digits",
    overrides: Sequence[str] | dict | None = None,
    *,
    model: Any = None,
    data: tuple[Any, Any, Any, Any] | None = None,
    workdir: str | None = None,
    devices: Sequence[Any] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train a spiking network with the gradient rule ``cfg.method`` names.

    Args:
      cfg: a :class:`~ottt_jax.config.Config` or a preset name (default ``'digits'``).
      overrides: dotted ``key=value`` overrides applied to ``cfg``.
      model: your own model instead of ``cfg.model``: a Flax module called as
        ``model(state, x_t) -> (logits, state)`` with ``init_state(batch, input_shape, **kw)``,
        built with the rule's mode, or a callable ``make_model(mode)`` returning one.
      data: in-memory data ``(x_train, y_train, x_test, y_test)`` instead of ``cfg.data.dataset``:
        images ``[N, H, W, C]`` (float, fed as given) or ``[N, T, H, W, C]``, int labels ``[N]``.
      workdir: the run directory (default: one per config, see
        :func:`ottt_jax.training.build.default_workdir`).
      devices: devices to train on (default: all).
      on_step: called as ``on_step(step)`` after every training step.

    Returns:
      A :class:`~ottt_jax.training.result.TrainResult`: the final metrics, the per-epoch
      ``history`` (loss, train/test accuracy, lr, images/s), ``params`` and the output paths
      (it also reads as the old dict: ``result["test_accuracy"]``).

    See :func:`ottt_jax.training.run.train` for the errors it raises.
    """
    from ottt_jax.training import run

    return run.train(
        cfg,
        overrides,
        model=model,
        data=data,
        workdir=workdir,
        devices=devices,
        on_step=on_step,
    )
