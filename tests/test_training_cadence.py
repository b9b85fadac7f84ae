"""The training loop's pure parts: the cadence, the result mapping, the run's one-time build."""

import math

import numpy as np
import pytest

from ottt_jax import config as config_lib
from ottt_jax import data as data_lib
from ottt_jax import get_rule
from ottt_jax.training import build, cadence, run
from ottt_jax.training.result import EpochStats, TrainResult, epoch_record, history_from_records

KW = dict(steps_per_epoch=4, total_steps=10, log_every=3, eval_every_epochs=2)


def _steps(what: str, **kw) -> list[int]:
    args = {**KW, "checkpoint_every_steps": 5, **kw}
    return [s for s in range(1, args["total_steps"] + 1) if getattr(cadence(s, **args), what)]


def test_cadence_by_hand():
    # 4 steps per epoch, 10 steps: epochs end at 4, 8 and (the run's end) 10.
    assert _steps("epoch_end") == [4, 8, 10]
    assert [cadence(s, **KW, checkpoint_every_steps=5).epoch for s in (1, 4, 5, 8, 9, 10)] == [
        1,
        1,
        2,
        2,
        3,
        3,
    ]
    assert _steps("evaluate") == [8, 10]  # every 2nd epoch, and the last step
    assert _steps("save") == [5, 8, 10]  # every 5 steps and after each evaluation
    assert _steps("log") == [3, 6, 9, 10]
    # Synced before a log, a save or an epoch's record: never a save of an unchecked loss.
    assert _steps("sync") == [3, 4, 5, 6, 8, 9, 10]


def test_cadence_matches_the_definitions_on_a_grid():
    for spe in (1, 3, 4):
        for total in (1, 7, 12):
            for log in (1, 5):
                for ev in (1, 2):
                    for ck in (2, 100):
                        kw = dict(
                            steps_per_epoch=spe,
                            total_steps=total,
                            log_every=log,
                            eval_every_epochs=ev,
                            checkpoint_every_steps=ck,
                        )
                        for s in range(1, total + 1):
                            c = cadence(s, **kw)
                            end = s % spe == 0 or s == total
                            assert c.epoch == math.ceil(s / spe)
                            assert c.epoch_end == end
                            assert c.evaluate == (end and (c.epoch % ev == 0 or s == total))
                            assert c.save == (c.evaluate or s % ck == 0)
                            assert c.sync == (c.log or c.save or c.epoch_end)


def _result(**kw):
    fields = dict(
        test_accuracy=0.5,
        test_loss=1.0,
        best_test_accuracy=0.6,
        train_accuracy=0.7,
        train_loss=0.9,
        steps=8,
        epochs=2.0,
        seconds=1.0,
        workdir="w",
        checkpoint="w/c/8",
        best_checkpoint=None,
        metrics="w/m",
        curves=None,
        params={"w": 1},
    )
    return TrainResult(**{**fields, **kw})


def test_train_result_reads_as_the_old_dict():
    r = _result()
    old_keys = (
        "test_accuracy test_loss best_test_accuracy train_accuracy train_loss steps epochs "
        "seconds workdir checkpoint best_checkpoint metrics curves params"
    ).split()
    assert list(r) == [*old_keys, "history"]
    assert r["steps"] == r.steps == 8 and r["params"] == {"w": 1} and "curves" in r
    assert dict(r)["test_accuracy"] == 0.5
    with pytest.raises(KeyError):
        r["no_such_key"]


def test_history_round_trips_through_the_metrics_records():
    h = [EpochStats(e, 4 * e, 1.0 / e, 0.5, None if e % 2 else 0.8, 0.1, 100.0) for e in (1, 2, 3)]
    records = [{"kind": "train", "step": 4}, *map(epoch_record, h)]
    assert history_from_records(records, 12) == h
    assert history_from_records(records, 8) == h[:2]  # a resume from step 8 keeps epochs 1, 2


def test_a_user_model_must_have_the_rules_mode():
    from ottt_jax.models import vgg11

    rule = get_rule("ottt_a")
    bptt_model = vgg11(mode=get_rule("bptt").mode)
    with pytest.raises(ValueError, match=r"mode .* but method 'ottt_a' needs"):
        build.user_model(bptt_model, rule)
    built = build.user_model(lambda mode: vgg11(mode=mode), rule)
    assert built.mode == rule.mode
    with pytest.raises(ValueError, match=r"flax\.linen Module or a callable"):
        build.user_model(3, rule)


def test_the_run_is_built_once_with_the_rules_update_count():
    cfg = config_lib.get_config("digits", ["method=ottt_o", "progress=false"])
    r = build.make_training(cfg)
    assert (r.steps_per_epoch, r.total_steps) == (44, 30 * 44)
    assert r.updates_per_batch == 4  # OTTT_O: one update per time step
    # the lr after a batch is the schedule at that batch's update count
    assert r.lr(44) == pytest.approx(float(r.schedule(44 * 4)))
    schedule = build.make_schedule(cfg, 44)
    assert r.lr(44) == pytest.approx(float(schedule(build.update_count(cfg, 44))))
    assert not r.setup.user_model
    mine = build.make_setup(cfg, model=lambda mode: r.setup.model.clone(mode=mode))
    assert mine.user_model and mine.model.mode == mine.rule.mode


def test_in_memory_data_is_registered_for_the_call_only():
    x = np.zeros((8, 4, 4, 1), np.float32)
    y = np.arange(8) % 3
    with run.array_dataset((x, y, x[:4], y[:4])) as overrides:
        name = overrides[0].split("=", 1)[1]
        assert overrides == [f"data.dataset={name}", "model.num_classes=3"]
        assert data_lib.get_dataset(name).num_train == 8
        with run.array_dataset((x, y, x[:4], (y[:4] + 1) % 3)) as other:
            assert other[0] != overrides[0]  # other data: another name (another workdir)
    assert name not in data_lib.dataset_names()
    with pytest.raises(ValueError, match=r"data must be a tuple \(x_train, y_train, x_test"):
        with run.array_dataset((x, y)):
            pass
