"""Training: ``ottt_jax.training.train(cfg)``, its public parts, and the console scripts.

* :mod:`~ottt_jax.training.build` — config → rule (registry), model (with the rule's mode),
  optimizer and LR schedule, devices; ``make_training`` builds them once.
* :mod:`~ottt_jax.training.loaders` — ``per_host_batch``, ``split_loader`` (a config's loaders).
* :mod:`~ottt_jax.training.steps` — ``init_train_state``, ``make_train_step``, ``make_eval_step``.
* :mod:`~ottt_jax.training.run` — ``train`` (config, in-memory data, build, workdir lock).
* :mod:`~ottt_jax.training.loop` — ``train_run``: restore or init, the step loop.
* :mod:`~ottt_jax.training.cadence` — when to log, close an epoch, evaluate, save (pure).
* :mod:`~ottt_jax.training.evaluation` — ``evaluate``, ``evaluate_checkpoint``.
* :mod:`~ottt_jax.training.result` — ``TrainResult`` and its per-epoch ``EpochStats``.
* :mod:`~ottt_jax.training.logging` — JSONL / TensorBoard metrics, summary, curves.
* :mod:`~ottt_jax.training.distributed` — multi-host start-up, the stop agreement, exit codes.
* :mod:`~ottt_jax.training.workdir` — run-directory checks and the workdir lock.
* :mod:`~ottt_jax.training.cli` — ``ottt-train`` and ``ottt-eval``.

This package is the trunk: nothing in the library imports it (``ottt_jax.train`` imports it when
called).
"""

from ottt_jax.api import train  # the front door, the same function as ``ottt_jax.train``
from ottt_jax.training.build import (
    Setup,
    Training,
    build_model,
    build_neuron,
    build_rule,
    make_optimizer,
    make_schedule,
    make_setup,
    make_training,
    update_count,
)
from ottt_jax.training.cadence import Cadence, cadence
from ottt_jax.training.distributed import EXIT_ABORTED, EXIT_STOPPED, TrainingStopped
from ottt_jax.training.distributed import initialize as initialize_distributed
from ottt_jax.training.evaluation import device_batch, evaluate, evaluate_checkpoint
from ottt_jax.training.loop import TrainingDivergedError, train_run
from ottt_jax.training.result import EpochStats, TrainResult
from ottt_jax.training.steps import (
    TrainState,
    init_params,
    init_train_state,
    make_eval_step,
    make_train_step,
    step_keys,
)

__all__ = [
    "EXIT_ABORTED",
    "EXIT_STOPPED",
    "Cadence",
    "EpochStats",
    "Setup",
    "TrainResult",
    "TrainState",
    "Training",
    "TrainingDivergedError",
    "TrainingStopped",
    "build_model",
    "build_neuron",
    "build_rule",
    "cadence",
    "device_batch",
    "evaluate",
    "evaluate_checkpoint",
    "init_params",
    "init_train_state",
    "initialize_distributed",
    "make_eval_step",
    "make_optimizer",
    "make_schedule",
    "make_setup",
    "make_train_step",
    "make_training",
    "step_keys",
    "train",
    "train_run",
    "update_count",
]
