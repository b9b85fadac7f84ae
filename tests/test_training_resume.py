"""End-to-end training, resume and devices: an interrupted run (stopped, Ctrl-C, best checkpoint)
resumes to the uninterrupted result, and four devices train like one.

Split from ``test_training_loop.py`` so that the two halves run on different test workers.
"""

import json
import os
import signal

import chex
import jax
import pytest

from ottt_jax import config as config_lib
from ottt_jax import training
from ottt_jax.checkpoint import Checkpointer

QUIET = ["progress=false"]


def _digits(*overrides):
    return config_lib.get_config("digits", [*QUIET, *overrides])


def _params(r):
    return jax.device_get(r["params"])


def test_resume_and_ctrl_c_equal_uninterrupted(tmp_path):
    cfg = _digits("method=ottt_o", "max_train_steps=10", "checkpoint_every_steps=4")
    full = training.train(cfg, workdir=str(tmp_path / "full"))

    # 1) stop after 6 steps, then resume to 10
    stop6 = config_lib.apply_overrides(cfg, ["max_train_steps=6"])
    training.train(stop6, workdir=str(tmp_path / "a"))
    resumed = training.train(cfg, workdir=str(tmp_path / "a"))
    chex.assert_trees_all_equal(_params(resumed), _params(full))

    # 2) Ctrl-C during step 5 leaves an exact checkpoint at step 5; rerunning finishes the job
    def sigint_at_5(step):
        if step == 5:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, workdir=str(tmp_path / "b"), on_step=sigint_at_5)
    assert sorted(os.listdir(tmp_path / "b" / "checkpoints"))[-1] == "5"
    after = training.train(cfg, workdir=str(tmp_path / "b"))
    chex.assert_trees_all_equal(_params(after), _params(full))


def test_resume_keeps_best_accuracy_and_best_checkpoint(tmp_path):
    """Catches: the best accuracy forgotten on resume (a later, worse epoch taken as best).

    At this (too high, constant) learning rate the test accuracy peaks before the last of 6
    epochs and then falls; the run is interrupted one epoch after its peak, so the best
    checkpoint was written before the interruption.
    """
    cfg = _digits(
        "data.batch_size=256",  # 5 steps per epoch
        "optim.epochs=6",
        "eval_every_epochs=1",
        "optim.schedule=constant",
        "optim.lr=2.0",
        "log_every=5",
    )
    full = training.train(cfg, workdir=str(tmp_path / "full"))
    with open(full["metrics"]) as f:
        evals = [(r["step"], r["accuracy"]) for r in map(json.loads, f) if r["kind"] == "eval"]
    best_step, best_acc = max(evals, key=lambda e: (e[1], -e[0]))
    stop = best_step + 5
    assert stop < 30 and all(a < best_acc for s, a in evals if s > best_step), evals  # premise
    assert os.path.basename(full["best_checkpoint"]) == str(best_step)
    assert full["best_test_accuracy"] == best_acc

    stopped = config_lib.apply_overrides(cfg, [f"max_train_steps={stop}"])
    training.train(stopped, workdir=str(tmp_path / "a"))
    resumed = training.train(cfg, workdir=str(tmp_path / "a"))
    assert os.path.basename(resumed["best_checkpoint"]) == str(best_step)
    assert resumed["best_test_accuracy"] == best_acc
    for r in (full, resumed):
        assert Checkpointer(r["workdir"]).read_meta()["best_accuracy"] == best_acc
    # The history spans the resume: the epochs before it come from metrics.jsonl.
    untimed = lambda r: [h._replace(images_per_sec=None) for h in r.history]
    assert len(resumed.history) == 6 and untimed(resumed) == untimed(full)


def test_eval_num_steps_differs_from_num_steps(tmp_path):
    """Catches: the trainer evaluating at ``num_steps`` instead of ``eval_num_steps``."""
    cfg = _digits("max_train_steps=44", "eval_num_steps=2")  # trains at T = 4
    r = training.train(cfg, workdir=str(tmp_path), devices=jax.devices()[:1])
    s = training.make_setup(cfg, jax.devices()[:1])
    at = {t: training.evaluate(s, r["params"], num_steps=t) for t in (2, 4)}
    assert at[2]["loss"] != pytest.approx(at[4]["loss"], rel=1e-3)  # T matters to the number
    assert r["test_loss"] == pytest.approx(at[2]["loss"], rel=1e-6)
    assert r["test_accuracy"] == at[2]["accuracy"]


@pytest.mark.parametrize("method", ["ottt_a", "ottt_o", "bptt"])
def test_four_devices_equal_one_device(tmp_path, method):
    assert jax.device_count() == 4
    cfg = _digits(f"method={method}", "max_train_steps=3")
    one = training.train(cfg, workdir=str(tmp_path / "one"), devices=jax.devices()[:1])
    four = training.train(cfg, workdir=str(tmp_path / "four"))
    chex.assert_trees_all_close(_params(one), _params(four), rtol=1e-5, atol=1e-6)
