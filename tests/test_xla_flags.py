"""The XLA:CPU defaults of the command-line tools and benchmarks (``ottt_jax.xla_flags``)."""

import os
import subprocess
import sys

from ottt_jax import xla_flags
from ottt_jax.training import cli

FLAG = "--xla_cpu_experimental_ynn_fusion_type=dot"


def test_defaults_are_appended_and_never_override_the_user():
    env = {}
    assert xla_flags.set_default_cpu_flags(env) == [FLAG]
    assert env["XLA_FLAGS"] == FLAG
    assert xla_flags.set_default_cpu_flags(env) == []  # idempotent
    assert env["XLA_FLAGS"] == FLAG

    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    xla_flags.set_default_cpu_flags(env)
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=4 {FLAG}"

    mine = "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise --xla_cpu_enable_fast_math=false"
    env = {"XLA_FLAGS": mine}
    assert xla_flags.set_default_cpu_flags(env) == []
    assert env["XLA_FLAGS"] == mine

    env = {xla_flags.OPT_OUT_ENV: "0"}
    assert xla_flags.set_default_cpu_flags(env) == [] and "XLA_FLAGS" not in env


def test_cli_sets_them_and_the_library_import_does_not(monkeypatch, capsys):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    monkeypatch.delenv(xla_flags.OPT_OUT_ENV, raising=False)
    assert cli.cli_train(["--print-config"]) == 0
    capsys.readouterr()
    assert os.environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=4", FLAG]

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = "import os, ottt_jax, ottt_jax.training; print(os.environ.get('XLA_FLAGS'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
