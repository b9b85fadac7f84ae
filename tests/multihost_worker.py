"""One process of a multi-process test run (launched by tests/test_multihost.py).

``python multihost_worker.py SPEC_JSON``: SPEC has ``port``, ``processes``, ``process_id``,
``workdir``, ``overrides``, ``out`` (an .npz for process 0's final parameters) and optionally
``signal`` / ``signal_step`` (this process raises that signal on itself after that step, through
the real handlers). Exit 0 when done, ``EXIT_STOPPED`` (printing ``stopped <step>``) on a stop.
"""

import json
import signal
import sys

from ottt_jax.training import distributed


def main() -> int:
    spec = json.loads(sys.argv[1])
    if spec["processes"] > 1:
        distributed.initialize(f"127.0.0.1:{spec['port']}", spec["processes"], spec["process_id"])
    import jax
    import numpy as np

    from ottt_jax import training

    def on_step(step: int) -> None:
        if step == spec.get("signal_step"):
            signal.raise_signal(getattr(signal, spec["signal"]))

    try:
        r = training.train("digits", spec["overrides"], workdir=spec["workdir"], on_step=on_step)
    except distributed.TrainingStopped as e:
        print(f"stopped {e.step}", flush=True)
        return distributed.EXIT_STOPPED
    if jax.process_index() == 0:
        leaves = jax.tree_util.tree_flatten_with_path(r["params"])[0]
        arrays = {jax.tree_util.keystr(k): np.asarray(a.addressable_data(0)) for k, a in leaves}
        np.savez(spec["out"], **arrays)
    print(f"done {r['steps']} {r['test_accuracy']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
