"""``training.build``: the default run directory and the per-host batch, without training.

``default_workdir`` promises that two configs share a default workdir iff a checkpoint of one can
resume the other: checked here for every key of the schema (generated, as in
``test_config_schema_pins.py``), not only through the CLI.
"""

import os

import pytest

from ottt_jax.training.build import default_workdir, per_host_batch, resolve_workdir
from test_config_schema_pins import NON_RESUMABLE, RESUMABLE_REASONS, changed


@pytest.mark.parametrize("key", sorted(RESUMABLE_REASONS))
def test_a_resumable_key_keeps_the_default_workdir(key):
    """Catches: a rerun with another log_every (say) landing in a new directory, not resuming."""
    base, cfg = changed(key)
    if key == "name":  # the name is the directory's first part by design
        assert default_workdir(cfg) != default_workdir(base)
    else:
        assert default_workdir(cfg) == default_workdir(base)


@pytest.mark.parametrize("key", NON_RESUMABLE)
def test_a_trajectory_key_gets_its_own_default_workdir(key):
    """Catches: two different trajectories sharing runs/<name>-<method> (the second refused)."""
    base, cfg = changed(key)
    assert default_workdir(cfg) != default_workdir(base)


def test_default_workdir_layout_and_resolve_workdir():
    base, cfg = changed("optim.lr")
    root = os.path.join("runs", f"{base.name}-{base.method}")
    assert default_workdir(base).startswith(root)
    assert default_workdir(cfg).startswith(root + "-")
    assert resolve_workdir(cfg) == os.path.abspath(default_workdir(cfg))
    assert resolve_workdir(cfg, "elsewhere") == os.path.abspath("elsewhere")


def test_per_host_batch_refuses_a_batch_the_devices_do_not_divide():
    assert per_host_batch(8, 4) == 8  # one process here: the whole global batch
    with pytest.raises(ValueError, match=r"^data\.batch_size=6 must be divisible by .* \(4\)"):
        per_host_batch(6, 4)
    assert per_host_batch(6, 4, pad=True) == 8  # evaluation pads and masks instead
