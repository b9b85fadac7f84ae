"""CIFAR-10, VGG-11 sWS, BPTT baseline (paper Table 1 / Fig. 2).

Single host (all local GPUs/TPUs, data parallel)::

    ottt-train --config cifar10_vgg --set method=bptt --workdir runs/cifar10_bptt

or ``python experiments/cifar10_bptt.py``. Multi-host (the same command on every host; settings from SLURM/TPU detection, the
``JAX_*`` variables or ``--coordinator/--num-processes/--process-id``; see
``experiments/launch.md``)::

    ottt-train --multihost --config cifar10_vgg --set method=bptt --workdir runs/cifar10_bptt

``--workdir`` must be on storage every host shares; rerunning the command resumes from the latest
checkpoint. Add ``--set compute_dtype=bfloat16`` on GPU/TPU.
"""

import sys

import ottt_jax

OVERRIDES = ["method=bptt"]

if __name__ == "__main__":
    result = ottt_jax.train("cifar10_vgg", OVERRIDES + sys.argv[1:], workdir="runs/cifar10_bptt")
    print(f"test accuracy: {100 * result['test_accuracy']:.2f}%")
