"""Multi-process training on 127.0.0.1: host-count independence, stop agreement and resume.

Every run is a subprocess (``tests/multihost_worker.py``, or the real ``ottt-train``) with CPU
devices simulated by ``--xla_force_host_platform_device_count`` and a bounded wait (killed on
timeout). One compilation cache is shared by the runs of this module.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from ottt_jax import config as config_lib
from ottt_jax import data as data_lib
from ottt_jax import training
from ottt_jax.training import distributed

WORKER = os.path.join(os.path.dirname(__file__), "multihost_worker.py")
OVERRIDES = [
    "progress=false",
    "max_train_steps=12",
    "checkpoint_every_steps=100",
]
TIMEOUT = 240  # seconds for one launch of all its processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax_cache"))


def _env(devices: int, cache: str) -> dict:
    return dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_COMPILATION_CACHE_DIR=cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )


def _wait(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    """Wait for every process (bounded); kill them all on timeout and fail."""
    deadline = time.monotonic() + TIMEOUT
    out = []
    try:
        for p in procs:
            text, _ = p.communicate(timeout=max(deadline - time.monotonic(), 1))
            out.append((p.returncode, text))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        for p in procs:
            p.communicate()
        pytest.fail(f"a run did not end within {TIMEOUT}s (hang)")
    return out


def _launch(n, devices, workdir, cache, *, signals=None, overrides=OVERRIDES):
    """Run ``n`` worker processes of ``devices`` CPU devices each; return ``[(rc, output)]``."""
    port = _free_port()
    procs = []
    for i in range(n):
        spec = {
            "port": port,
            "processes": n,
            "process_id": i,
            "workdir": str(workdir),
            "out": str(workdir) + ".npz",
            "overrides": list(overrides),
            **(signals or {}).get(i, {}),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, WORKER, json.dumps(spec)],
                env=_env(devices, cache),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return _wait(procs)


def _params(workdir) -> dict:
    with np.load(str(workdir) + ".npz") as f:
        return dict(f)


def _assert_done(results):
    for rc, text in results:
        assert rc == 0, text[-3000:]


def _stopped_at(results) -> list[int]:
    steps = []
    for rc, text in results:
        assert rc == distributed.EXIT_STOPPED, text[-3000:]
        steps.append(int(text.split("stopped ")[-1].split()[0]))
    return steps


@pytest.fixture(scope="module")
def references(tmp_path_factory, cache_dir):
    """Uninterrupted runs: 1 process x 4 devices and 2 processes x 2 devices."""
    root = tmp_path_factory.mktemp("reference")
    _assert_done(_launch(1, 4, root / "one", cache_dir))
    _assert_done(_launch(2, 2, root / "two", cache_dir))
    return _params(root / "one"), _params(root / "two")


def test_two_processes_train_the_parameters_of_one(references):
    one, two = references
    cfg = config_lib.get_config("digits", OVERRIDES)
    s = training.make_setup(cfg)
    init = training.init_train_state(s, training.make_optimizer(cfg, 1)[0]).params
    init = {
        jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(init)
    }
    assert one.keys() == two.keys() == init.keys()
    for k in one:
        assert "gain" in k or not np.array_equal(one[k], init[k]), k  # it trained
        np.testing.assert_allclose(two[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_stops_on_any_host_agree_and_resume_to_the_uninterrupted_run(
    references, tmp_path, cache_dir
):
    """SIGTERM on process 1, then SIGINT on process 0, then SIGINT on both; then finish."""
    w = tmp_path / "run"
    runs = [
        ({1: {"signal": "SIGTERM", "signal_step": 3}}, 3),
        ({0: {"signal": "SIGINT", "signal_step": 6}}, 6),
        ({i: {"signal": "SIGINT", "signal_step": 9} for i in (0, 1)}, 9),
    ]
    for signals, step in runs:
        results = _launch(2, 2, w, cache_dir, signals=signals)
        assert _stopped_at(results) == [step, step], results
        assert sorted(int(d) for d in os.listdir(w / "checkpoints"))[-1] == step
    _assert_done(_launch(2, 2, w, cache_dir))
    got, (_, two) = _params(w), references
    assert got.keys() == two.keys()
    for k in two:
        np.testing.assert_array_equal(got[k], two[k], err_msg=k)


@pytest.mark.parametrize("processes", [1, 2])
def test_ottt_train_sigterm_saves_and_exits_with_the_stop_code(tmp_path, cache_dir, processes):
    """The real CLI, signalled from outside while it trains: no hang, exit 75, one saved step."""
    port = _free_port()
    w = tmp_path / "run"
    args = ["--config", "digits", "--workdir", str(w)]
    args += [f"--set={o}" for o in OVERRIDES if not o.startswith("max_train_steps")]
    args += ["--set=max_train_steps=100000", "--set=optim.epochs=1000", "--set=log_every=1"]
    procs = []
    for i in range(processes):
        cluster = [f"--coordinator=127.0.0.1:{port}", f"--num-processes={processes}",
                   f"--process-id={i}"] if processes > 1 else []  # fmt: skip
        code = "import sys; from ottt_jax.training.cli import cli_train; sys.exit(cli_train())"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code, *args, *cluster],
                env=_env(4 // processes, cache_dir),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    metrics = w / "metrics.jsonl"
    deadline = time.monotonic() + TIMEOUT
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            pytest.fail("the run did not start training: " + procs[0].communicate()[0][-3000:])
        time.sleep(0.2)
    procs[-1].send_signal(signal.SIGTERM)  # the last process: not the one that writes
    results = _wait(procs)
    codes = [rc for rc, _ in results]
    assert codes == [distributed.EXIT_STOPPED] * processes, results
    steps = {
        int(m) for _, t in results for m in re.findall(r"ottt-train: stopped at step (\d+)", t)
    }
    assert len(steps) == 1, results  # every process named the same step
    (step,) = steps
    assert sorted(int(d) for d in os.listdir(w / "checkpoints"))[-1] == step
    assert "rerun the same command to resume" in results[0][1]


def test_augmented_global_batches_and_their_state_do_not_depend_on_the_host_count():
    """CIFAR augmentation (random crop, flip, cutout) on 40 synthetic records, 1 vs 2 hosts."""
    rng = np.random.default_rng(0)
    records = [
        {"image": rng.integers(0, 256, (32, 32, 3), np.uint8), "label": i % 10} for i in range(40)
    ]

    def loader(batch_size, shard_index=0, shard_count=1):
        return data_lib.make_loader(
            "cifar10", "train", batch_size=batch_size, seed=11, data_source=records,
            shard_index=shard_index, shard_count=shard_count,
        )  # fmt: skip

    one = iter(loader(8))
    hosts = [iter(loader(4, k, 2)) for k in range(2)]
    for _ in range(7):  # crosses an epoch boundary (5 global batches per epoch)
        whole, parts = next(one), [next(h) for h in hosts]
        for key in ("image", "label"):
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])
    state = hosts[1].get_state()
    assert state == hosts[0].get_state() == one.get_state()  # one copy serves every host
    resumed = iter(loader(8))
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed)["image"], next(one)["image"])
    with pytest.raises(ValueError, match=r"global_batch_size=8 but this loader has .*=4"):
        iter(loader(4)).set_state(state)
