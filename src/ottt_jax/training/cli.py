"""Console scripts ``ottt-train`` and ``ottt-eval`` (thin wrappers over the loop)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ottt_jax import config as config_lib
from ottt_jax.errors import UserError
from ottt_jax.training import distributed
from ottt_jax.training.build import resolved_config_json
from ottt_jax.training.loop import TrainingDivergedError, evaluate_checkpoint
from ottt_jax.training.run import train
from ottt_jax.xla_flags import set_default_cpu_flags

__all__ = ["cli_eval", "cli_train", "list_keys"]

_TRAIN_HELP = """\
Train a spiking network with the gradient rule the config key method names (OTTT_A by default).

The run goes to --workdir, by default runs/<preset>-<method>[-<hash of the other changed keys>]
(one directory per config, so different runs never collide). Rerunning the same command resumes
from the latest checkpoint, and a finished run prints its results. The resolved config is written
to <workdir>/config.json.

exit status: 0 done; 2 bad config, workdir, data or divergence; 3 (--aot) the step does not fit
the chip's HBM; 75 stopped by SIGINT/SIGTERM
(checkpoint saved, rerun the same command to resume); 130 a second signal (aborted, not saved)."""

_TRAIN_EXAMPLES = """\
examples:
  ottt-train                                    # digits preset, OTTT_A, in runs/digits-ottt_a
  ottt-train --set method=bptt                  # in runs/digits-bptt
  ottt-train --config digits --set optim.lr=0.05 --set num_steps=6
  ottt-train --list-keys                        # every KEY for --set, with its doc
  ottt-train --import my_plugin.py --set model.arch=my_net   # a model registered by a plugin
  ottt-train --set num_steps=6 --print-config   # the resolved config, no training
  ottt-train --aot v5e:2x2                      # compile for a TPU slice, no TPU (.[tpu-aot])"""

_EVAL_HELP = """\
Evaluate a training run's checkpoint on the test split, at any number of time steps T.

--which best (default) takes the checkpoint of the best test accuracy; among tied evaluations it is
the earliest (the output says so); --which latest takes the last one."""


def list_keys() -> str:
    """Return every config key with its documentation, one ``key  doc`` line each (sorted)."""
    docs = config_lib.field_docs()
    w = max(map(len, docs))
    return "\n".join(f"{k:<{w}}  {docs[k]}" for k in sorted(docs))


def _positive_int(text: str) -> int:

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 (time steps T), got {text!r}")
    return value


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    """Add ``ottt-train``'s multi-host flags to ``p``: ``--multihost`` and the three it reads."""
    p.add_argument(
        "--multihost",
        action="store_true",
        help="start multi-host JAX: from the three flags below, else JAX_COORDINATOR_ADDRESS / "
        "JAX_NUM_PROCESSES / JAX_PROCESS_ID, else JAX's SLURM/TPU/Open MPI detection",
    )
    p.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address (--multihost)")
    p.add_argument("--num-processes", type=int, metavar="N", help="process count (--multihost)")
    p.add_argument("--process-id", type=int, metavar="I", help="this process's id (--multihost)")


def _add_print_args(p: argparse.ArgumentParser) -> None:
    """Add ``ottt-train``'s flags that print and exit without training to ``p``."""
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument(
        "--list-keys", action="store_true", help="list every config key with its doc and exit"
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (JSON, workdir filled in) and exit without training",
    )


def _train_parser() -> argparse.ArgumentParser:
    """Return ``ottt-train``'s argument parser."""
    p = argparse.ArgumentParser(
        prog="ottt-train",
        description=_TRAIN_HELP,
        epilog=_TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        default="digits",
        help="a preset name (see --list) or a config .json file, e.g. <workdir>/config.json "
        "(default: digits)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set optim.lr=0.05 (repeatable); --list-keys lists "
        "every key with its doc",
    )
    p.add_argument(
        "--workdir",
        default=None,
        help="run directory (default: runs/<preset>-<method>[-<hash of the changed keys>])",
    )
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a plugin, a module (mypkg.mymodule) or a file (path/to/file.py), before the "
        "config is read, so --set can name the models, rules, datasets or presets it registers "
        "(repeatable; recorded in config.json, re-imported by ottt-eval)",
    )
    p.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="continue from the workdir's checkpoint (default: the config's resume, true)",
    )
    _add_cluster_args(p)
    _add_print_args(p)
    p.add_argument(
        "--aot",
        metavar="TOPOLOGY",
        default=None,
        help="compile the training step for a TPU topology (e.g. v5e:16x16) without a TPU, print "
        "memory per chip, FLOPs and a roofline estimate, write aot/*.json|md; no training "
        "(needs pip install -e '.[tpu-aot]'); data.batch_size is the global batch",
    )
    return p


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
    set_default_cpu_flags()  # before JAX creates its CPU client (ottt_jax.xla_flags)
    args = _train_parser().parse_args(argv)
    if args.list:
        print("\n".join(config_lib.list_presets()))
        return 0
    if args.list_keys:
        print(list_keys())
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
        plugins = config_lib.import_plugins(args.imports)  # before the config names them
        cfg = config_lib.get_config(args.config, overrides)
        if plugins:
            imports = tuple(dict.fromkeys((*cfg.imports, *plugins)))
            cfg = config_lib.apply_overrides(cfg, {"imports": imports})
        if args.print_config:
            print(resolved_config_json(cfg, args.workdir))
            return 0
        if args.aot:
            from ottt_jax.training.aot import run_aot  # libtpu only for this flag

            return run_aot(cfg, args.aot)
        r = train(cfg, workdir=args.workdir)
    except (ValueError, OSError, TrainingDivergedError, UserError) as e:
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
    set_default_cpu_flags()  # before JAX creates its CPU client (ottt_jax.xla_flags)
    p = argparse.ArgumentParser(
        prog="ottt-eval",
        description=_EVAL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workdir", required=True, help="the training run's directory")
    p.add_argument(
        "--num-steps",
        type=_positive_int,
        default=None,
        metavar="T",
        help="time steps for evaluation, >= 1 (default: the run's eval_num_steps)",
    )
    p.add_argument(
        "--which",
        choices=("best", "latest"),
        default="best",
        help="the best checkpoint (earliest among ties; default) or the latest",
    )
    p.add_argument("--data-dir", default=None, help="the dataset directory (default: the run's)")
    args = p.parse_args(argv)
    try:
        r = evaluate_checkpoint(
            args.workdir, num_steps=args.num_steps, which=args.which, data_dir=args.data_dir
        )
    except (ValueError, OSError, UserError) as e:
        print(f"ottt-eval: error: {e}", file=sys.stderr)
        return 2
    print(f"evaluated the {r['checkpoint']} checkpoint {r['path']} (step {r['step']})")
    if args.which == "best" and r["checkpoint"] == "latest":
        print("(the run kept no best checkpoint; this is the latest)")
    if r["ties"]:
        steps = ", ".join(map(str, r["ties"]))
        print(
            f"the best test accuracy is tied at steps {steps}; this is the earliest "
            "(--which latest evaluates the last checkpoint)"
        )
    print(json.dumps(dict(r), indent=1))
    print(f"test accuracy at T={r['num_steps']}: {100 * r['accuracy']:.2f}%")
    return 0
