"""Training: ``ottt_jax.training.train(cfg)``, its public parts, and the console scripts.

* :mod:`~ottt_jax.training.build` — config → rule (registry), model (with the rule's mode),
  optimizer and LR schedule, devices.
* :mod:`~ottt_jax.training.steps` — ``init_train_state``, ``make_train_step``, ``make_eval_step``.
* :mod:`~ottt_jax.training.loop` — ``train``, ``evaluate``, ``evaluate_checkpoint``.
* :mod:`~ottt_jax.training.logging` — JSONL / TensorBoard metrics, summary, curves.
* :mod:`~ottt_jax.training.distributed` — multi-host start-up, the stop agreement, exit codes.
* :mod:`~ottt_jax.training.workdir` — run-directory checks and the workdir lock.
* :mod:`~ottt_jax.training.cli` — ``ottt-train`` and ``ottt-eval``.

This package is the trunk: nothing in the library imports it (``ottt_jax.train`` is exported
lazily).
"""

from ottt_jax.training.build import (
    Setup,
    build_model,
    build_neuron,
    build_rule,
    make_optimizer,
    make_schedule,
    make_setup,
    update_count,
)
from ottt_jax.training.distributed import EXIT_ABORTED, EXIT_STOPPED, TrainingStopped
from ottt_jax.training.distributed import initialize as initialize_distributed
from ottt_jax.training.loop import (
    TrainingDivergedError,
    device_batch,
    evaluate,
    evaluate_checkpoint,
    train,
)
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
    "Setup",
    "TrainState",
    "TrainingDivergedError",
    "TrainingStopped",
    "build_model",
    "build_neuron",
    "build_rule",
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
    "step_keys",
    "train",
    "update_count",
]
