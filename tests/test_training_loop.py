"""End-to-end training: presets, methods, resume, multi-device, CLI and every error path."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from ottt_jax import config as config_lib
from ottt_jax import data as data_lib
from ottt_jax import training
from ottt_jax.checkpoint import Checkpointer, IncompatibleCheckpointError
from ottt_jax.models import make_step
from ottt_jax.online import forward
from ottt_jax.training import cli

QUIET = ["progress=false"]


def _digits(*overrides):
    return config_lib.get_config("digits", [*QUIET, *overrides])


def _params(r):
    return jax.device_get(r["params"])


def _init_params(cfg):
    s = training.make_setup(cfg)
    return training.init_train_state(s, training.make_optimizer(cfg, 1)[0]).params


def test_package_exposes_train_function():
    import ottt_jax

    assert ottt_jax.train is training.train  # a function, not a module
    with pytest.raises(ValueError, match="unknown preset"):
        ottt_jax.train("no_such_preset")


def test_root_api_names_and_a_light_import():
    import subprocess
    import sys

    import ottt_jax
    from ottt_jax import models, online, surrogate

    assert ottt_jax.make_step is models.make_step and ottt_jax.Hoist is online.Hoist
    assert ottt_jax.sltt_k_grad is online.sltt_k_grad
    assert ottt_jax.custom_surrogate is surrogate.custom and not hasattr(ottt_jax, "custom")
    code = "import sys, ottt_jax; print(sorted(m for m in sys.modules if 'ottt_jax.training' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # the trainer is imported when train runs, not before


def test_digits_preset_reaches_90_percent(tmp_path):
    """The embedded default on real data, with a reduced epoch count (the preset runs 30)."""
    r = training.train(_digits("optim.epochs=8", "eval_every_epochs=4"), workdir=str(tmp_path))
    assert r["test_accuracy"] >= 0.90, r["test_accuracy"]
    assert r["steps"] == 8 * 44
    with open(r["metrics"]) as f:
        recs = [json.loads(line) for line in f]
    assert {"train", "eval", "epoch"} == {x["kind"] for x in recs}
    evals = [x for x in recs if x["kind"] == "eval"]
    assert [x["epoch"] for x in evals] == [4, 8]
    # One history entry per epoch; the preset logs once per epoch (log_every=44), so each
    # epoch's mean loss, accuracy and lr are exactly those of its train record.
    train_recs = [x for x in recs if x["kind"] == "train"]
    assert [h.epoch for h in r.history] == list(range(1, 9))
    assert [h.step for h in r.history] == [x["step"] for x in train_recs]
    for h, x in zip(r.history, train_recs, strict=True):
        assert (h.loss, h.train_accuracy, h.lr) == (x["loss"], x["accuracy"], x["lr"])
        assert h.images_per_sec > 0
    assert [h.test_accuracy for h in r.history if h.test_accuracy is not None] == [
        x["accuracy"] for x in evals
    ]
    assert [h.epoch for h in r.history if h.test_accuracy is not None] == [4, 8]
    assert os.path.getsize(r["curves"]) > 10_000  # a real PNG of the curves
    assert r["best_checkpoint"] is not None and os.path.isdir(r["checkpoint"])
    # ottt-eval at another T (Fig. 3 setting): more steps still classify well
    ev = training.evaluate_checkpoint(str(tmp_path), num_steps=8)
    assert ev["num_steps"] == 8 and ev["accuracy"] >= 0.85 and ev["count"] == 360


@pytest.mark.parametrize("method", ["ottt_a", "ottt_o", "bptt"])
def test_mock_cifar10_end_to_end(tmp_path, method):
    overrides = [
        *QUIET,
        f"method={method}",
        "model.vgg_cfg=[8,M,16]",
        "num_steps=2",
        "data.batch_size=8",
        "data.eval_batch_size=8",
        "max_train_steps=3",
        "optim.epochs=2",  # 16 mock examples / batch 8 = 2 steps per epoch
    ]
    cfg = config_lib.get_config("cifar10_vgg", overrides)
    with tfds.testing.mock_data(num_examples=16, policy=tfds.testing.MockPolicy.USE_CODE):
        r = training.train(cfg, workdir=str(tmp_path))
        test = next(iter(data_lib.make_loader("cifar10", "test", batch_size=16, seed=0)))
    assert r["steps"] == 3 and np.isfinite(r["train_loss"])
    # the reported test accuracy is argmax Σ_t out_t of the final params over the 16 examples
    model = training.make_setup(cfg).model
    x = jnp.asarray(test["image"], jnp.float32)
    state = model.init_state(16, x.shape[1:], train=False)
    outs, _ = forward(make_step(model), _params(r), state, x, num_steps=2)
    want = np.mean(np.argmax(np.asarray(outs).sum(0), -1) == np.asarray(test["label"]))
    assert r["test_accuracy"] == pytest.approx(want, abs=1e-9)
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), _init_params(cfg), r["params"])
    assert all(jax.tree.leaves(changed["features_4"])), changed  # the trace-rule conv learned


def test_batch_size_one_trains(tmp_path):
    r = training.train(
        _digits("data.batch_size=1", "max_train_steps=4", "method=ottt_o"),
        workdir=str(tmp_path),
        devices=jax.devices()[:1],
    )
    assert r["steps"] == 4 and np.isfinite(r["train_loss"])


def test_cli_train_and_eval(tmp_path, capsys):
    wd = str(tmp_path)
    args = ["--config", "digits", "--set", "max_train_steps=5", "--set", "progress=false"]
    assert cli.cli_train([*args, "--workdir", wd]) == 0
    assert "test accuracy:" in capsys.readouterr().out
    assert cli.cli_eval(["--workdir", wd, "--num-steps", "6", "--which", "latest"]) == 0
    assert "test accuracy at T=6" in capsys.readouterr().out
    assert cli.cli_train(["--config", "digits", "--set", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'optim.lrr'" in err and "lr" in err


def test_error_paths(tmp_path):
    with pytest.raises(ValueError, match=r"divisible by the number of devices \(4\)"):
        training.train(_digits("data.batch_size=30"), workdir=str(tmp_path / "div"))

    wd = str(tmp_path / "inc")
    training.train(_digits("max_train_steps=2"), workdir=wd)
    with pytest.raises(IncompatibleCheckpointError, match=r"model.vgg_cfg: \(32, 'M', 64\)"):
        training.train(_digits("max_train_steps=4", "model.vgg_cfg=[16,M,32]"), workdir=wd)
    with pytest.raises(ValueError, match=r"already holds a checkpoint .* resume=false"):
        training.train(_digits("max_train_steps=4", "resume=false"), workdir=wd)

    with pytest.raises(FileNotFoundError, match="prepare"):
        training.train(
            config_lib.get_config("cifar10_vgg", [*QUIET, f"data.data_dir={tmp_path / 'none'}"]),
            workdir=str(tmp_path / "missing"),
        )

    wd = str(tmp_path / "nan")
    with pytest.raises(
        training.TrainingDivergedError, match=r"non-finite .* at step \d+ .* last good"
    ):
        training.train(_digits("optim.lr=1e30", "checkpoint_every_steps=1"), workdir=wd)
    meta_dir = os.path.join(wd, "checkpoints")
    last = max(int(d) for d in os.listdir(meta_dir) if d.isdigit())
    cfg = _digits()
    s = training.make_setup(cfg)
    restored = Checkpointer(wd).restore(
        training.init_train_state(s, training.make_optimizer(cfg, 44)[0])
    )
    assert restored is not None and int(restored[0].step) == last
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(restored[0].params)))


def test_bfloat16_compute_keeps_float32_params_and_tracks_float32(tmp_path):
    runs = {
        dt: training.train(
            _digits(f"compute_dtype={dt}", "max_train_steps=20", "log_every=20"),
            workdir=str(tmp_path / dt),
            devices=jax.devices()[:1],
        )
        for dt in ("float32", "bfloat16")
    }
    assert {x.dtype for x in jax.tree.leaves(runs["bfloat16"]["params"])} == {np.dtype("float32")}
    lf, lb = runs["float32"]["train_loss"], runs["bfloat16"]["train_loss"]
    assert np.isfinite(lb) and abs(lb - lf) < 0.05 * lf, (lf, lb)
