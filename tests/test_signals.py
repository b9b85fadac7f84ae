"""Multi-host settings and the stop request, in one process (the runs are in test_multihost)."""

import signal

import pytest

from ottt_jax.errors import UserError
from ottt_jax.training import cli, distributed

ENV = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}


def test_cluster_from_flags_else_environment_else_autodetect():
    want = {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
    assert distributed.resolve_cluster(env=ENV) == want
    assert distributed.resolve_cluster(env={}) is None  # JAX detects SLURM/TPU/Open MPI
    flags = distributed.resolve_cluster("127.0.0.1:9", 2, 0, env=ENV)
    assert flags == {"coordinator_address": "127.0.0.1:9", "num_processes": 2, "process_id": 0}
    mixed = distributed.resolve_cluster(process_id=1, env=ENV)  # a flag beats its variable
    assert mixed == {**want, "process_id": 1}


@pytest.mark.parametrize(
    ("args", "env", "match"),
    [
        (("127.0.0.1:9", None, None), {}, r"missing --num-processes \(or JAX_NUM_PROCESSES\), "
         r"--process-id \(or JAX_PROCESS_ID\)"),
        ((None, None, None), {"JAX_COORDINATOR_ADDRESS": "h:1"}, r"missing --num-processes"),
        ((None, 2, 1), {}, r"missing --coordinator \(or JAX_COORDINATOR_ADDRESS\);"),
        (("localhost", 2, 1), {}, "--coordinator .* must be HOST:PORT, got 'localhost'"),
        (("h:1", 2, 2), {}, r"--process-id .* must be in \[0, 2\), got 2"),
        (("h:1", 0, 0), {}, "--num-processes .* must be >= 1, got 0"),
        ((None, None, None), {**ENV, "JAX_NUM_PROCESSES": "four"}, "must be integers"),
    ],
)  # fmt: skip
def test_bad_cluster_settings_are_one_line_errors_naming_the_setting(args, env, match):
    with pytest.raises(UserError, match=match) as e:
        distributed.resolve_cluster(*args, env=env)
    assert "\n" not in str(e.value)


def test_ottt_train_refuses_partial_multihost_flags_before_starting(monkeypatch, capsys):
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    assert cli.cli_train(["--multihost", "--coordinator", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ottt-train: error: multi-host settings are incomplete: missing "
                          "--num-processes")  # fmt: skip
    assert err.count("\n") == 1


def test_first_signal_requests_a_stop_second_aborts_then_handlers_restored():
    before = {s: signal.getsignal(s) for s in distributed.StopRequest.SIGNALS}
    stop = distributed.StopRequest(announce=False)
    try:
        assert not stop.requested and not distributed.agree_to_stop(stop.requested)
        signal.raise_signal(signal.SIGTERM)
        assert stop.signal_name == "SIGTERM" and distributed.agree_to_stop(stop.requested)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert stop.signal_name == "SIGTERM"  # the first one is kept
    finally:
        stop.restore()
    assert {s: signal.getsignal(s) for s in distributed.StopRequest.SIGNALS} == before


def test_training_stopped_is_a_keyboard_interrupt_with_its_step():
    e = distributed.TrainingStopped(7, "SIGINT")
    assert isinstance(e, KeyboardInterrupt) and (e.step, e.signal_name) == (7, "SIGINT")
    assert distributed.EXIT_STOPPED == 75 and distributed.EXIT_ABORTED == 130
