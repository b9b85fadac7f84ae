"""The command line and the run directory: help, keys, config, workdirs, lock, errors, resume."""

import errno
import json
import os
import socket
import subprocess
import sys
import tempfile

import pytest

from ottt_jax import config as config_lib
from ottt_jax import training
from ottt_jax.checkpoint import IncompatibleCheckpointError
from ottt_jax.training import cli
from ottt_jax.training.build import default_workdir, resolve_workdir
from ottt_jax.training.logging import MetricsLogger, progress_bar, read_metrics
from ottt_jax.training.loop import best_ties
from ottt_jax.training.workdir import LOCK_NAME, WorkdirError

QUIET = ["--set", "progress=false"]
# Five batches of 256 per epoch; lr = 0 keeps the parameters, so every evaluation ties.
TIED = ["data.batch_size=256", "optim.epochs=2", "eval_every_epochs=1", "optim.lr=0"]


def _digits(*overrides):
    return config_lib.get_config("digits", ["progress=false", *overrides])


def _no_traceback_one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_help_is_readable_and_points_to_the_keys(capsys):
    for tool in (cli.cli_train, cli.cli_eval):
        with pytest.raises(SystemExit) as e:
            tool(["--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        for markup in ("``", ":class:", ":func:", "Args:", "Returns:", "`"):
            assert markup not in text, (tool.__name__, markup)
    with pytest.raises(SystemExit):
        cli.cli_train(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--set KEY=VALUE override one config key" in text and "--list-keys lists every" in text


def test_list_keys_lists_every_key_with_its_doc(capsys):
    assert cli.cli_train(["--list-keys"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    docs = config_lib.field_docs()
    assert len(lines) == len(docs)
    listed = {line.split()[0]: " ".join(line.split()[1:]) for line in lines}
    assert listed == {k: " ".join(v.split()) for k, v in docs.items()}
    assert {"optim.lr", "model.vgg_cfg", "rule.k", "max_train_steps"} <= set(listed)


def test_default_workdir_is_one_per_preset_method_and_trajectory_overrides():
    base = default_workdir(_digits())
    assert base == os.path.join("runs", "digits-ottt_a")
    assert default_workdir(_digits("method=bptt")) == os.path.join("runs", "digits-bptt")
    # a method's default options (rule.k of sltt_k) are not a change from the preset
    assert default_workdir(_digits("method=sltt_k")) == os.path.join("runs", "digits-sltt_k")
    # keys that do not change the trajectory (RESUMABLE_KEYS) keep the workdir: a rerun resumes
    resumable = ("max_train_steps=3", "log_every=1", "eval_num_steps=2", "data.eval_batch_size=8")
    assert default_workdir(_digits(*resumable)) == base
    lr = default_workdir(_digits("optim.lr=0.05"))
    assert lr.startswith(base + "-") and len(lr) == len(base) + 9
    assert lr != default_workdir(_digits("optim.lr=0.06"))
    assert lr != default_workdir(_digits("optim.lr=0.05", "num_steps=6"))
    assert default_workdir(_digits("optim.lr=0.05", "method=bptt")) == lr.replace("ottt_a", "bptt")
    assert default_workdir(_digits("optim.lr=0.1")) == base  # the preset's own value
    cfg = _digits()
    assert resolve_workdir(cfg) == os.path.abspath(base)
    assert resolve_workdir(cfg, "x") == os.path.abspath("x")


def test_print_config_prints_the_resolved_config_and_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.cli_train(["--set", "num_steps=6", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    cfg = config_lib.from_dict(printed)
    want = config_lib.get_config("digits", ["num_steps=6"])
    assert cfg.workdir == os.path.abspath(default_workdir(want))
    assert config_lib.diff(cfg, want) == [f"workdir: {cfg.workdir!r} != None"]
    assert os.listdir(tmp_path) == []


def test_failed_validation_and_errors_create_nothing_and_print_one_line(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    # the global batch 30 does not divide by the 4 devices: refused before any directory exists
    assert cli.cli_train([*QUIET, "--set", "data.batch_size=30"]) == 2
    assert "data.batch_size=30" in _no_traceback_one_line(capsys.readouterr().err)
    assert cli.cli_train([*QUIET, "--set", "optim.lrr=1"]) == 2
    capsys.readouterr()
    assert os.listdir(tmp_path) == []

    missing = str(tmp_path / "missing")
    assert cli.cli_eval(["--workdir", missing]) == 2
    assert f"workdir {missing} does not exist" in _no_traceback_one_line(capsys.readouterr().err)
    assert os.listdir(tmp_path) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.cli_eval(["--workdir", str(empty)]) == 2
    assert "no checkpoint under" in _no_traceback_one_line(capsys.readouterr().err)
    assert os.listdir(empty) == []  # no best/ or checkpoints/ created

    afile = tmp_path / "afile"
    afile.write_text("x")
    for tool in (cli.cli_train, cli.cli_eval):
        assert tool(["--workdir", str(afile)]) == 2
        line = _no_traceback_one_line(capsys.readouterr().err)
        assert f"workdir {afile} is a regular file" in line and "--workdir" in line

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    ro = tmp_path / "ro"
    assert cli.cli_train([*QUIET, "--workdir", str(ro)]) == 2
    line = _no_traceback_one_line(capsys.readouterr().err)
    assert f"workdir {ro} is read-only" in line and "--workdir" in line


def test_a_second_run_in_a_workdir_in_use_is_refused(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        wd = tmp_path / "wd"
        wd.mkdir()
        lock = {"host": socket.gethostname(), "pid": holder.pid, "started": "now"}
        (wd / LOCK_NAME).write_text(json.dumps(lock))
        assert cli.cli_train([*QUIET, "--workdir", str(wd)]) == 2
        line = _no_traceback_one_line(capsys.readouterr().err)
        assert f"host {socket.gethostname()}, pid {holder.pid}" in line and "--workdir" in line
        assert sorted(os.listdir(wd)) == [LOCK_NAME]  # nothing written by the refused run
    finally:
        holder.kill()
        holder.wait()


def test_eval_rejects_num_steps_below_one(tmp_path, capsys):
    for bad in ("0", "-1", "x"):
        with pytest.raises(SystemExit) as e:
            cli.cli_eval(["--workdir", str(tmp_path), "--num-steps", bad])
        assert e.value.code == 2
        assert "--num-steps: must be an integer >= 1" in capsys.readouterr().err
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ValueError, match="num_steps must be an integer >= 1"):
            training.evaluate_checkpoint(str(tmp_path / "none"), num_steps=bad)
    assert os.listdir(tmp_path) == []


def test_progress_bar_reads_compiling_until_the_first_step_ends(capsys):
    bar = progress_bar(True, 5, 1)
    before = capsys.readouterr().err
    assert "compiling" in before and "1/5" in before
    assert "<" not in before and "step/s" not in before and "s/step" not in before  # no ETA/rate
    bar.set_postfix(loss="1.0")
    bar.update(1)
    bar.update(1)
    bar.close()
    after = capsys.readouterr().err
    assert "compiling" not in after and "3/5" in after and "loss=1.0" in after and "<" in after
    assert progress_bar(False, 5, 0) is None


def test_metrics_logger_keeps_records_up_to_the_resumed_step(tmp_path):
    log = MetricsLogger(str(tmp_path), True)
    for step in (1, 2, 3, 3, 4):
        log.write({"kind": "eval" if step == 3 else "train", "step": step})
    assert log.keep_until(2) == 3
    assert [r["step"] for r in read_metrics(log.path)] == [1, 2]
    assert log.keep_until(2) == 0
    assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl"]  # no temporary file left
    assert MetricsLogger(str(tmp_path), False).keep_until(0) == 0  # other hosts do nothing
    assert len(read_metrics(log.path)) == 2


def test_a_crashed_run_resumes_without_duplicate_metrics(tmp_path):
    cfg = _digits("max_train_steps=6", "checkpoint_every_steps=4", "log_every=1")
    wd = str(tmp_path)

    def crash_at_6(step):
        if step == 6:  # step 5 is logged, the last checkpoint is step 4 (like kill -9)
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        training.train(cfg, workdir=wd, on_step=crash_at_6)
    assert [r["step"] for r in read_metrics(os.path.join(wd, "metrics.jsonl"))] == [1, 2, 3, 4, 5]
    assert not os.path.exists(os.path.join(wd, LOCK_NAME))  # released on the way out
    training.train(cfg, workdir=wd)
    recs = read_metrics(os.path.join(wd, "metrics.jsonl"))
    assert [r["step"] for r in recs if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in recs if r["kind"] == "eval"] == [6]


@pytest.fixture(scope="module")
def tied_run(tmp_path_factory):
    """A finished run of 10 steps whose two evaluations (steps 5 and 10) tie."""
    wd = str(tmp_path_factory.mktemp("tied"))
    return wd, training.train(_digits(*TIED), workdir=wd)


def test_a_finished_run_says_it_is_complete_and_prints_its_results(tied_run, capsys):
    wd, first = tied_run
    saved = config_lib.get_config(os.path.join(wd, "config.json"))
    assert saved == config_lib.apply_overrides(_digits(*TIED), [f"workdir={wd}"])
    assert (
        cli.cli_train(["--config", os.path.join(wd, "config.json"), "--set", "progress=true"]) == 0
    )
    out, err = capsys.readouterr()
    assert "compiling" not in err  # no progress bar: nothing is trained
    assert f"the run in {wd} is already complete (step 10 of 10)" in out
    assert "nan" not in out and f"{100 * first['train_accuracy']:.2f}%" in out
    assert f"test accuracy: {100 * first['test_accuracy']:.2f}%" in out


def test_a_config_collision_suggests_another_workdir(tied_run):
    wd, _ = tied_run
    with pytest.raises(IncompatibleCheckpointError, match=r"(?s)Pass another --workdir .*optim.lr"):
        training.train(_digits(*TIED[:-1], "optim.lr=0.5"), workdir=wd)


def test_eval_names_its_checkpoint_and_the_tie(tied_run, capsys):
    wd, _ = tied_run
    assert best_ties(wd, 5) == [5, 10]
    assert cli.cli_eval(["--workdir", wd]) == 0
    out = capsys.readouterr().out
    assert f"evaluated the best checkpoint {wd}/best/5 (step 5)" in out
    assert "tied at steps 5, 10; this is the earliest" in out
    assert cli.cli_eval(["--workdir", wd, "--which", "latest", "--num-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert f"evaluated the latest checkpoint {wd}/checkpoints/10 (step 10)" in out
    assert "tied at" not in out and "test accuracy at T=2" in out


def test_a_metrics_file_that_cannot_be_written_is_one_line_naming_it(tmp_path):
    os.mkdir(tmp_path / "metrics.jsonl")  # open(..., 'a') fails as on a full or read-only disk
    log = MetricsLogger(str(tmp_path), True)
    with pytest.raises(WorkdirError, match=f"cannot append to {log.path} .*rerun to resume"):
        log.write({"kind": "train", "step": 1})


PLUGIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins", "my_model.py")
_TOOL = "import sys; from ottt_jax.training import cli; sys.exit(cli.cli_{}(sys.argv[1:]))"


def _tool(name: str, *argv: str) -> subprocess.CompletedProcess:
    """Run ``ottt-<name>`` in a fresh Python process (nothing imported by this one)."""
    cmd = [sys.executable, "-c", _TOOL.format(name), *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_import_plugin_model_trains_and_evaluates_in_a_fresh_process(tmp_path, monkeypatch):
    """``--import path.py`` registers a user model; config.json records it; ottt-eval reloads it."""
    wd = str(tmp_path / "run")
    sets = ["model.arch=plugin_dense", "model.width=5", "num_steps=2", "max_train_steps=2"]
    argv = ["--import", PLUGIN, *QUIET, *(a for s in sets for a in ("--set", s))]
    done = _tool("train", *argv, "--workdir", wd)
    assert done.returncode == 0, done.stderr
    with open(os.path.join(wd, "config.json")) as fh:
        saved = json.load(fh)
    assert saved["imports"] == [PLUGIN] and saved["model"]["width"] == 5
    monkeypatch.chdir(tmp_path)  # the recorded path is absolute: any working directory works
    evaluated = _tool("eval", "--workdir", wd)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "test accuracy at T=2" in evaluated.stdout
    # without the import the arch is unknown: the one-line error says a plugin must be imported
    refused = _tool("train", *argv[2:], "--workdir", str(tmp_path / "no"))
    assert (
        refused.returncode == 2 and "model.arch 'plugin_dense' is not registered" in refused.stderr
    )
    missing = _tool("train", "--import", "no_such_plugin_module", "--print-config")
    assert "imports: cannot import 'no_such_plugin_module'" in missing.stderr
