"""Multi-host start-up and the stop agreement (SIGINT / SIGTERM on any host).

Start-up (:func:`initialize`): ``ottt-train --multihost`` takes the coordinator, process count and
process id from its flags, else from ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
``JAX_PROCESS_ID``, else lets JAX detect the cluster (SLURM, TPU pod slices, Open MPI, ...).

Stopping (:class:`StopRequest`): the first SIGINT or SIGTERM on a host sets a local flag; after
every training step all hosts combine their flags (:func:`agree_to_stop`, an all-gather of one
int), so they all stop after the same step, save that checkpoint once and raise
:class:`TrainingStopped` (``ottt-train`` exits with :data:`EXIT_STOPPED`). A second signal aborts
at once (``KeyboardInterrupt``, exit 130).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Mapping

import jax
import numpy as np

from ottt_jax.errors import UserError

__all__ = [
    "ENV_COORDINATOR",
    "ENV_NUM_PROCESSES",
    "ENV_PROCESS_ID",
    "EXIT_ABORTED",
    "EXIT_STOPPED",
    "StopRequest",
    "TrainingStopped",
    "agree_to_stop",
    "initialize",
    "resolve_cluster",
]

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"

#: ``ottt-train`` exit status after a signal: stopped at a step boundary, checkpoint saved;
#: rerun the same command to resume (``EX_TEMPFAIL`` of sysexits.h).
EXIT_STOPPED = 75
#: exit status of a hard abort (a second signal): the usual 128 + SIGINT.
EXIT_ABORTED = 130


class TrainingStopped(KeyboardInterrupt):
    """Every host stopped after the same step on a SIGINT / SIGTERM and saved a checkpoint.

    Attributes:
      step: the step of the saved checkpoint.
      signal_name: the signal that started the stop on this host, or None (another host's).
    """

    def __init__(self, step: int, signal_name: str | None):
        super().__init__(step, signal_name)
        self.step = step
        self.signal_name = signal_name


def resolve_cluster(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> dict | None:
    """Return the ``jax.distributed.initialize`` arguments from flags, else the environment.

    Args:
      coordinator: ``HOST:PORT`` of process 0's coordination service.
      num_processes: the number of processes ``N``.
      process_id: this process's id in ``[0, N)``.
      env: the environment (default ``os.environ``).

    Returns:
      ``{'coordinator_address', 'num_processes', 'process_id'}``, or None when none of the three
      is given anywhere (then JAX detects the cluster itself).

    Raises:
      UserError: some but not all of the three are given, or one is malformed (naming it).
    """
    env = os.environ if env is None else env
    fields = (
        ("--coordinator", ENV_COORDINATOR, coordinator),
        ("--num-processes", ENV_NUM_PROCESSES, num_processes),
        ("--process-id", ENV_PROCESS_ID, process_id),
    )
    values = [value if value is not None else env.get(var) for _, var, value in fields]
    if all(v is None for v in values):
        return None
    missing = [f"{flag} (or {var})" for (flag, var, _), v in zip(fields, values) if v is None]
    if missing:
        raise UserError(
            "multi-host settings are incomplete: missing " + ", ".join(missing) + "; give all "
            "three, or none to let JAX detect SLURM/TPU/Open MPI"
        )
    address, count, index = values
    host, _, port = str(address).rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--coordinator (or {ENV_COORDINATOR}) must be HOST:PORT, got {address!r}")
    try:
        count, index = int(count), int(index)
    except ValueError:
        raise UserError(
            f"--num-processes and --process-id must be integers, got {count!r} and {index!r}"
        ) from None
    if count < 1:
        raise UserError(f"--num-processes (or {ENV_NUM_PROCESSES}) must be >= 1, got {count}")
    if not 0 <= index < count:
        raise UserError(f"--process-id (or {ENV_PROCESS_ID}) must be in [0, {count}), got {index}")
    return {"coordinator_address": str(address), "num_processes": count, "process_id": index}


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Start multi-host JAX once, before any computation (see :func:`resolve_cluster`).

    On CPU the cross-process collectives go through Gloo (JAX's CPU default has none), so the same
    command runs on plain machines; that setting does not affect GPU or TPU devices.

    Args:
      coordinator: ``HOST:PORT`` of process 0.
      num_processes: the number of processes.
      process_id: this process's id.

    Raises:
      UserError: incomplete or malformed settings.
    """
    kwargs = resolve_cluster(coordinator, num_processes, process_id)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**(kwargs or {}))


def agree_to_stop(local: bool) -> bool:
    """Return whether any process asked to stop; every process gets the same answer.

    Call it at the same point on every process (after each training step).

    Args:
      local: this process's stop flag.

    Returns:
      ``any(local over processes)`` (``local`` itself on one process).
    """
    if jax.process_count() == 1:
        return bool(local)
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.array([int(local)], np.int32))
    return bool(np.asarray(flags).any())


class StopRequest:
    """Turn the first SIGINT / SIGTERM into a stop request, and a second one into an abort.

    Installed on the main thread only (elsewhere it does nothing); :meth:`restore` puts the
    previous handlers back. Install it after ``jax.distributed.initialize``, whose preemption
    notifier otherwise keeps SIGTERM.

    Attributes:
      signal_name: the first signal received ('SIGINT' / 'SIGTERM'), or None.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce: bool = True):
        self.signal_name: str | None = None
        self.announce = announce
        self.previous: dict = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self.handle)

    @property
    def requested(self) -> bool:
        """Whether a signal arrived on this process."""
        return self.signal_name is not None

    def handle(self, signum, frame) -> None:
        """The signal handler: record the first signal, abort on the second."""
        if self.requested:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        if self.announce:
            print(
                f"\n{self.signal_name}: stopping after this step and saving a checkpoint "
                "(send it again to abort without saving)",
                file=sys.stderr,
                flush=True,
            )

    def restore(self) -> None:
        """Reinstall the handlers that were there before."""
        for sig, old in self.previous.items():
            signal.signal(sig, old)
        self.previous = {}
