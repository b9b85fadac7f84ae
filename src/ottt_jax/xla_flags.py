"""The XLA:CPU flags the command-line tools and the benchmarks set (never the library on import).

On XLA:CPU (jax 0.10) the YNNPACK library fusions take over every convolution of our models and
run the weight-gradient convolutions (a ``[Ci, H, W, B]`` input against an ``[H, W, B, Co]``
"kernel") at a third of the speed of XLA's own convolution thunk. Keeping YNN for dots only
(``--xla_cpu_experimental_ynn_fusion_type=dot``: convolutions and elementwise fusions go back to
XLA's own emitters) made an OTTT_A iteration of VGG-11 at batch 32, T = 6 1.8× faster on this
project's 2-core Xeon (median 3.72 against 6.72 s, 3 alternated rounds) and its compiled memory
at batch 128 smaller (779 against 838 MiB), with the same loss to the last bit; BENCHMARKS.md §2
has the A/B and the command.

Rules:

* ``ottt-train``, ``ottt-eval`` and ``python -m benchmarks.*`` call :func:`set_default_cpu_flags`
  first thing, before JAX creates its CPU client (flags are read then, not on import).
* A flag the user already gives in ``XLA_FLAGS`` (same name, any value) is never overridden; the
  user's other flags are kept.
* ``OTTT_JAX_XLA_DEFAULTS=0`` turns the defaults off.
* ``import ottt_jax`` and ``ottt_jax.train(cfg)`` never touch ``XLA_FLAGS``: a Python user who
  wants the speed-up calls :func:`set_default_cpu_flags` before the first JAX computation (or
  sets the flag in ``XLA_FLAGS`` themselves).

The flags are XLA:CPU's only; a GPU or TPU compile ignores them.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

__all__ = ["DEFAULT_CPU_FLAGS", "OPT_OUT_ENV", "flag_name", "set_default_cpu_flags"]

#: Every default flag, as it is appended to XLA_FLAGS.
DEFAULT_CPU_FLAGS: tuple[str, ...] = ("--xla_cpu_experimental_ynn_fusion_type=dot",)

#: Set this environment variable to ``0`` to keep XLA's own defaults.
OPT_OUT_ENV = "OTTT_JAX_XLA_DEFAULTS"


def flag_name(flag: str) -> str:
    """Return the name of one ``XLA_FLAGS`` token: ``'--name=value'`` -> ``'name'``."""
    return flag.lstrip("-").split("=", 1)[0]


def set_default_cpu_flags(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Append the default XLA:CPU flags the user has not set to ``XLA_FLAGS``.

    Call it before JAX's first computation: XLA reads ``XLA_FLAGS`` once, when it creates its
    CPU client, so a later call changes nothing for the running process (its children inherit
    the variable).

    Args:
      environ: the environment to edit (default ``os.environ``).

    Returns:
      The flags appended (``['--xla_cpu_experimental_ynn_fusion_type=dot']``), or ``[]`` when the
      user set them all or opted out with ``OTTT_JAX_XLA_DEFAULTS=0``.
    """
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT_ENV, "").strip() in ("0", "false", "no", "off"):
        return []
    current = env.get("XLA_FLAGS", "")
    given = {flag_name(tok) for tok in current.split()}
    added = [flag for flag in DEFAULT_CPU_FLAGS if flag_name(flag) not in given]
    if added:
        env["XLA_FLAGS"] = " ".join([current.strip(), *added]).strip()
    return added
