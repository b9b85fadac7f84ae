"""ImageNet, NF-ResNet-34, OTTT_A (paper Table 1); evaluate at larger T with ottt-eval (Fig. 3).

Single host (all local GPUs/TPUs, data parallel)::

    ottt-train --config imagenet_nfresnet34 --workdir runs/imagenet_nfresnet34

or ``python experiments/imagenet_nfresnet34.py``. Multi-host (the same command on every host; settings from SLURM/TPU detection, the
``JAX_*`` variables or ``--coordinator/--num-processes/--process-id``; see
``experiments/launch.md``)::

    ottt-train --multihost --config imagenet_nfresnet34 --workdir runs/imagenet_nfresnet34

``--workdir`` must be on storage every host shares; rerunning the command resumes from the latest
checkpoint. Add ``--set compute_dtype=bfloat16`` on GPU/TPU.

Data: prepare it once offline first (see docs/datasets.md), then add
``--set data.data_dir=/path/to/tensorflow_datasets``.

Evaluate the trained model with more time steps (paper Fig. 3)::

    ottt-eval --workdir runs/imagenet_nfresnet34 --num-steps 10
"""

import sys

import ottt_jax

OVERRIDES = []

if __name__ == "__main__":
    result = ottt_jax.train(
        "imagenet_nfresnet34", OVERRIDES + sys.argv[1:], workdir="runs/imagenet_nfresnet34"
    )
    print(f"test accuracy: {100 * result['test_accuracy']:.2f}%")
