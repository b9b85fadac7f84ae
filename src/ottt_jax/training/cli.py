"""Console scripts ``ottt-train`` and ``ottt-eval`` (thin wrappers over the loop)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from ottt_jax import config as config_lib
from ottt_jax.errors import UserError
from ottt_jax.training import distributed
from ottt_jax.training.loop import TrainingDivergedError, evaluate_checkpoint, train

__all__ = ["cli_eval", "cli_train"]


def cli_train(argv: Sequence[str] | None = None) -> int:
    """``ottt-train [--config NAME] [--set key=value ...] [--workdir DIR]``.

    Args:
      argv: the arguments (default ``sys.argv[1:]``).

    Returns:
      The exit status: 0; 2 for a bad config / missing data / divergence; 75
      (``distributed.EXIT_STOPPED``) after a SIGINT / SIGTERM on any host: every host stopped
      after the same step and saved it, rerun the same command to resume; 130 for a second
      signal (aborted without saving).
    """
    import argparse

    p = argparse.ArgumentParser(prog="ottt-train", description=cli_train.__doc__)
    p.add_argument("--config", default="digits", help="preset name or a config .json file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override")
    p.add_argument("--workdir", default=None, help="run directory (default runs/<name>)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--multihost",
        action="store_true",
        help="start multi-host JAX: from the three flags below, else JAX_COORDINATOR_ADDRESS / "
        "JAX_NUM_PROCESSES / JAX_PROCESS_ID, else JAX's SLURM/TPU/Open MPI detection",
    )
    p.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address (--multihost)")
    p.add_argument("--num-processes", type=int, metavar="N", help="process count (--multihost)")
    p.add_argument("--process-id", type=int, metavar="I", help="this process's id (--multihost)")
    p.add_argument("--list", action="store_true", help="list presets and exit")
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(config_lib.list_presets()))
        return 0
    cluster = (args.coordinator, args.num_processes, args.process_id)
    if args.multihost or any(v is not None for v in cluster):
        try:
            distributed.initialize(*cluster)
        except UserError as e:
            print(f"ottt-train: error: {e}", file=sys.stderr)
            return 2
    overrides = list(args.set)
    if args.resume is not None:
        overrides.append(f"resume={str(args.resume).lower()}")
    try:
        cfg = config_lib.get_config(args.config, overrides)
        r = train(cfg, workdir=args.workdir)
    except (ValueError, FileNotFoundError, TrainingDivergedError, UserError) as e:
        print(f"ottt-train: error: {e}", file=sys.stderr)
        return 2
    except distributed.TrainingStopped as e:
        print(
            f"ottt-train: stopped at step {e.step} ({e.signal_name or 'signal on another host'}); "
            "checkpoint saved, rerun the same command to resume",
            file=sys.stderr,
        )
        return distributed.EXIT_STOPPED
    except KeyboardInterrupt:
        return distributed.EXIT_ABORTED
    print(f"test accuracy: {100 * r['test_accuracy']:.2f}%")
    return 0


def cli_eval(argv: Sequence[str] | None = None) -> int:
    """``ottt-eval --workdir DIR [--num-steps T] [--which best|latest]``.

    Args:
      argv: the arguments (default ``sys.argv[1:]``).

    Returns:
      The exit status: 0, or 2 for a missing checkpoint / bad value.
    """
    import argparse

    p = argparse.ArgumentParser(prog="ottt-eval", description=cli_eval.__doc__)
    p.add_argument("--workdir", required=True)
    p.add_argument("--num-steps", type=int, default=None, help="T for evaluation")
    p.add_argument("--which", choices=("best", "latest"), default="best")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    try:
        r = evaluate_checkpoint(
            args.workdir, num_steps=args.num_steps, which=args.which, data_dir=args.data_dir
        )
    except (ValueError, FileNotFoundError, UserError) as e:
        print(f"ottt-eval: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(dict(r), indent=1))
    print(f"test accuracy at T={r['num_steps']}: {100 * r['accuracy']:.2f}%")
    return 0
