"""``data.pipeline``: a global batch does not depend on how many hosts read it.

Each host reads its rows of the same global batch, augmented identically (random crop, flip,
cutout drawn per record, not per host), and the iterator state is the same on every host, so one
checkpointed copy restores any host and a run can resume on another host count. Checked here on
synthetic CIFAR records in one process (``test_multihost.py`` runs real processes).
"""

import numpy as np
import pytest

from ottt_jax import data as data_lib

GLOBAL = 8


def _records(n=24):
    rng = np.random.default_rng(0)
    return [
        {"image": rng.integers(0, 256, (32, 32, 3), np.uint8), "label": i % 10} for i in range(n)
    ]


def _loader(records, hosts, index):
    return data_lib.make_loader(
        "cifar10",
        "train",
        batch_size=GLOBAL // hosts,
        seed=5,
        data_source=records,
        shard_index=index,
        shard_count=hosts,
    )


@pytest.mark.parametrize("hosts", [2])
def test_augmented_global_batches_and_state_do_not_depend_on_the_host_count(hosts):
    """Catches: augmentation keyed by the host's own row, or a per-host iterator state."""
    records = _records()
    one = iter(_loader(records, 1, 0))
    parts = [iter(_loader(records, hosts, k)) for k in range(hosts)]
    for _ in range(4):  # crosses an epoch boundary (3 global batches per epoch)
        whole, rows = next(one), [next(p) for p in parts]
        for key in ("image", "label"):
            np.testing.assert_array_equal(np.concatenate([r[key] for r in rows]), whole[key])
    state = one.get_state()
    assert all(p.get_state() == state for p in parts)  # one copy serves every host
    resumed = iter(_loader(records, hosts, hosts - 1))  # resume on another host count
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed)["image"], next(one)["image"][-GLOBAL // hosts :])
