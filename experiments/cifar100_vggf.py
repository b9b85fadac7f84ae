"""CIFAR-100, VGG-F (feedback), OTTT_A (paper Table 2).

Single host (all local GPUs/TPUs, data parallel)::

    ottt-train --config cifar100_vggf --workdir runs/cifar100_vggf

or ``python experiments/cifar100_vggf.py``. Multi-host (the same command on every host; settings from SLURM/TPU detection, the
``JAX_*`` variables or ``--coordinator/--num-processes/--process-id``; see
``experiments/launch.md``)::

    ottt-train --multihost --config cifar100_vggf --workdir runs/cifar100_vggf

``--workdir`` must be on storage every host shares; rerunning the command resumes from the latest
checkpoint. Add ``--set compute_dtype=bfloat16`` on GPU/TPU.
"""

import sys

import ottt_jax

OVERRIDES = []

if __name__ == "__main__":
    result = ottt_jax.train("cifar100_vggf", OVERRIDES + sys.argv[1:], workdir="runs/cifar100_vggf")
    print(f"test accuracy: {100 * result['test_accuracy']:.2f}%")
