"""AOT compilation of the training step for a TPU topology (``ottt-train --aot``).

Needs the TPU compiler (``pip install -e ".[tpu-aot]"``, i.e. ``libtpu``); no TPU. Without it the
module is skipped with that reason. One digits compile for ``v5e:2x2`` (4 chips) is shared.
"""

import json

import jax
import pytest

pytest.importorskip(
    "libtpu", reason='libtpu not installed: pip install -e ".[tpu-aot]" to run the AOT tests'
)

from ottt_jax import config as config_lib
from ottt_jax.accelerators import CHIPS, chip_for_topology
from ottt_jax.training import aot
from ottt_jax.training.cli import cli_train

TOPOLOGY = "v5e:2x2"


@pytest.fixture(scope="module")
def digits():
    cfg = config_lib.get_config("digits")
    compiled, s, secs = aot.compile_train_step(cfg, TOPOLOGY)
    return cfg, compiled, s, aot.aot_report(cfg, TOPOLOGY, compiled=compiled, compile_s=secs)


def test_report_memory_is_the_compiled_objects_own(digits):
    _cfg, compiled, _s, r = digits
    m = compiled.memory_analysis()
    assert r["memory"]["argument"] == m.argument_size_in_bytes
    assert r["memory"]["output"] == m.output_size_in_bytes
    assert r["memory"]["alias"] == m.alias_size_in_bytes
    assert r["memory"]["temp"] == m.temp_size_in_bytes
    assert r["memory"]["code"] == m.generated_code_size_in_bytes
    want = (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        - m.alias_size_in_bytes
        + m.temp_size_in_bytes
        + m.generated_code_size_in_bytes
    )
    assert r["memory"]["peak"] == want
    assert r["hbm_bytes"] == 16 * 1024**3 and r["fits"] is True


def test_compiled_for_the_topology_with_the_trainers_sharding_and_donation(digits):
    cfg, compiled, s, r = digits
    assert r["chips"] == 4 and len(s.mesh.devices.flat) == 4
    assert {d.platform for d in s.mesh.devices.flat} == {"tpu"}
    assert r["per_chip_batch"] == cfg.data.batch_size // 4
    ts_in, images_in, _ = compiled.input_shardings[0]
    leaves = jax.tree.leaves(ts_in)
    assert leaves and all(sh.is_fully_replicated for sh in leaves)
    assert images_in.spec[0] == "data"  # the batch is split over the chips
    # the state is donated, as in training: its outputs alias its arguments
    assert r["memory"]["alias"] > 0


def test_cost_bounds_scale_the_loop_once_count_by_T(digits):
    cfg, compiled, _, r = digits
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    assert r["cost"]["counted"]["flops"] == ca["flops"] > 0
    t = cfg.num_steps
    assert r["cost"]["low"]["flops"] == ca["flops"]
    assert r["cost"]["high"]["flops"] == t * ca["flops"]
    assert r["cost"]["high"]["bytes_accessed"] == t * ca["bytes accessed"]
    chip = CHIPS["v5e"]
    roof = r["roofline"]
    want = max(t * ca["flops"] / chip.peak_bf16_flops, t * ca["bytes accessed"] / 819e9)
    assert roof["step_s"] == pytest.approx(want, rel=1e-12)
    assert roof["images_per_s_per_chip"] == pytest.approx(r["per_chip_batch"] / want, rel=1e-12)


def test_cli_writes_the_report_and_refuses_a_step_too_large_for_the_chip(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    big = ["--set", "method=bptt", "--set", "num_steps=16", "--set", "data.batch_size=262144"]
    rc = cli_train(["--aot", TOPOLOGY, *big])
    _out, err = capsys.readouterr()
    assert rc == aot.EXIT_DOES_NOT_FIT
    lines = [ln for ln in err.splitlines() if ln.startswith("ottt-train:")]
    assert len(lines) == 1 and lines[0].startswith("ottt-train: error: does not fit: digits")
    # the TPU compiler itself refuses it (RESOURCE_EXHAUSTED); its numbers end the line
    assert "batch 65536/chip on v5e:2x2" in lines[0]
    assert "exceeds available HBM" in lines[0]
    r = json.loads((tmp_path / "aot" / "digits-bptt-v5e_2x2.json").read_text())
    assert r["fits"] is False and r["memory"] is None
    assert r["compiler_out_of_memory"] in lines[0]


def test_refusal_line_of_a_compiled_step_over_the_hbm_has_its_numbers(digits):
    _, _, _, r = digits
    over = {**r, "memory": {**r["memory"], "temp": 17 * 1024**3}}
    over["memory"]["peak"] += 17 * 1024**3 - r["memory"]["temp"]
    line = aot.refusal_line(over)
    assert "\n" not in line and line.startswith("does not fit: digits method=ottt_a T=4")
    assert f"{over['memory']['peak'] / 1024**2:,.1f} MiB per chip" in line
    assert "temporaries 17,408.0 MiB" in line and "> 16,384.0 MiB HBM of a v5e chip" in line


def test_batch_not_divisible_by_the_chips_is_one_line_naming_the_key(capsys):
    rc = cli_train(["--aot", TOPOLOGY, "--set", "data.batch_size=30"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("ottt-train: error: data.batch_size=30 (the global batch)")
    assert "data.batch_size=120" in err[-1]


def test_unknown_generation_is_refused():
    with pytest.raises(ValueError, match="generation one of v4, v5e, v5p, v6e"):
        chip_for_topology("v9z:2x2")
