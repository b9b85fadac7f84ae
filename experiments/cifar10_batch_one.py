"""CIFAR-10, VGG-11 sWS, OTTT_O with batch size 1 (paper Table 3).

Single host (all local GPUs/TPUs, data parallel)::

    ottt-train --config cifar10_vgg --set method=ottt_o --set data.batch_size=1 --workdir runs/cifar10_batch_one

or ``python experiments/cifar10_batch_one.py``. Multi-host (the same command on every host; settings from SLURM/TPU detection, the
``JAX_*`` variables or ``--coordinator/--num-processes/--process-id``; see
``experiments/launch.md``)::

    ottt-train --multihost --config cifar10_vgg --set method=ottt_o --set data.batch_size=1 --workdir runs/cifar10_batch_one

``--workdir`` must be on storage every host shares; rerunning the command resumes from the latest
checkpoint. Add ``--set compute_dtype=bfloat16`` on GPU/TPU.

Batch size 1 cannot be split across devices: run it on one device
(``CUDA_VISIBLE_DEVICES=0``).
"""

import sys

import ottt_jax

OVERRIDES = ["method=ottt_o", "data.batch_size=1"]

if __name__ == "__main__":
    result = ottt_jax.train(
        "cifar10_vgg", OVERRIDES + sys.argv[1:], workdir="runs/cifar10_batch_one"
    )
    print(f"test accuracy: {100 * result['test_accuracy']:.2f}%")
