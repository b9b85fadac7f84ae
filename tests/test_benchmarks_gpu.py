"""The GPU benchmark's ``--smoke`` run (the CI check of its code path) and its pure parts.

The smoke run compiles and runs every case of the real benchmark at tiny sizes on the CPU,
once for the module; the tests check the files it writes and properties of the numbers that a
wrong method, dtype or T loop would break.
"""

import json
import math
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds benchmarks/

from benchmarks import gpu


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpu")
    md, js = d / "gpu.md", d / "gpu.json"
    with pytest.MonkeyPatch.context() as mp:  # main() sets it only when unset
        mp.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")
        rc = gpu.main(["--smoke", "--budget", "900", "--out-md", str(md), "--out-json", str(js)])
    return rc, json.loads(js.read_text()), md.read_text()


def _by_key(result):
    return {(r["model"], r["method"], r["dtype"], r["steps"]): r for r in result["cases"]}


def test_smoke_runs_every_case(smoke):
    rc, result, _ = smoke
    assert rc == 0
    assert result["smoke"] is True and result["platform"] == "cpu"
    want = {(c.model, c.method, c.dtype, c.steps) for c in gpu.cases(smoke=True)}
    assert len(want) == 14  # VGG: 3 methods x 2 dtypes x T in {2, 3}; NF-ResNet: 2 methods
    assert set(_by_key(result)) == want
    assert [r["status"] for r in result["cases"]] == ["ok"] * 14


def test_smoke_numbers_positive_finite_and_consistent(smoke):
    _, result, _ = smoke
    for r in result["cases"]:
        for k in ("s_per_iter", "images_per_s", "ms_per_step", "compile_s", "warmup_s", "flops"):
            assert math.isfinite(r[k]) and r[k] > 0, (k, r)
        assert math.isfinite(r["loss"])
        mem = r["compiled"]
        assert mem["temp"] > 0 and mem["argument"] > 0 and mem["output"] > 0
        assert mem["total"] == mem["argument"] + mem["output"] + mem["temp"] - mem["alias"]
        assert r["s_per_iter"] == statistics.median(r["times_s"])
        assert r["images_per_s"] == pytest.approx(r["batch"] / r["s_per_iter"], rel=1e-12)
        assert r["ms_per_step"] == pytest.approx(1e3 * r["s_per_iter"] / r["steps"], rel=1e-12)
        assert r["peak_bytes"] is None  # the CPU backend keeps no memory statistics


def test_smoke_records_follow_method_dtype_and_steps(smoke):
    by = _by_key(smoke[1])
    for dt in gpu.DTYPES:
        temp = {
            (m, t): by["vgg11", m, dt, t]["compiled"]["temp"]
            for m in ("ottt_a", "bptt")
            for t in (2, 3)
        }
        # BPTT keeps every step's activations: its memory grows with T; OTTT_A's does not.
        assert temp["bptt", 3] > temp["bptt", 2]
        assert temp["ottt_a", 3] == temp["ottt_a", 2]
    # bfloat16 compute is another program (at these tiny sizes its casts even cost bytes).
    f32 = by["vgg11", "bptt", "float32", 3]["compiled"]["temp"]
    assert by["vgg11", "bptt", "bfloat16", 3]["compiled"]["temp"] != f32
    # The FLOPs of an iteration scale with T (XLA counts the loop body once; we multiply).
    fl = {t: by["vgg11", "ottt_a", "float32", t]["flops"] for t in (2, 3)}
    assert fl[3] / fl[2] == pytest.approx(1.5, rel=0.01)
    # The NF-ResNet records are NF-ResNet programs, not VGG ones.
    nf = by["nfresnet34", "ottt_a", "float32", 2]["compiled"]["argument"]
    assert nf != by["vgg11", "ottt_a", "float32", 2]["compiled"]["argument"]


def test_smoke_markdown(smoke):
    md = smoke[2]
    assert md.startswith("Device: cpu (cpu); ")
    assert "`python -m benchmarks.gpu --smoke`" in md
    for title, rows in (("VGG-11 sWS", 12), ("NF-ResNet-34", 2)):
        block = md.split(f"**{title}** (tiny smoke layout)")[1].split("\n\n")[1]
        lines = block.splitlines()
        assert lines[0].startswith("| method | dtype | T | images / s | ms / step | peak MiB |")
        assert len(lines) == 2 + rows
        assert all(line.endswith("| ok |") for line in lines[2:])
    assert "| OTTT_O | bfloat16 | 3 |" in md


def test_budget_spent_skips_without_compiling():
    recs = gpu.benchmark(gpu.cases(smoke=True), smoke=True, budget_s=1e-9, log=lambda s: None)
    assert len(recs) == 14
    assert all(r["status"].startswith("skipped: time budget") for r in recs)
    assert all("compiled" not in r for r in recs)


def test_out_of_memory_is_recorded_and_the_rest_go_on(monkeypatch):
    a, b = gpu.cases(smoke=True)[:2]
    tried = []

    def fake_compile(case, smoke, params):
        tried.append(case)
        if case == a:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9 GiB")
        raise ValueError("boom")

    monkeypatch.setattr(gpu, "compile_case", fake_compile)
    recs = gpu.benchmark([a, b], smoke=True, budget_s=100, log=lambda s: None)
    assert tried == [a, b]
    assert recs[0]["status"].startswith("skipped: out of memory while compiling (RuntimeError")
    assert recs[1]["status"] == "skipped: error while compiling (ValueError: boom)"
    with pytest.raises(ValueError, match="boom"):  # strict: only out-of-memory is tolerated
        gpu.benchmark([a, b], smoke=True, budget_s=100, strict=True, log=lambda s: None)


def test_is_out_of_memory():
    assert gpu.is_out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: failed to allocate"))
    assert gpu.is_out_of_memory(MemoryError("CUDA out of memory"))
    assert not gpu.is_out_of_memory(ValueError("shapes (2, 3) and (4,) differ"))


def test_full_cases_are_the_issue_list():
    cs = gpu.cases()
    vgg = [c for c in cs if c.model == "vgg11"]
    assert {(c.method, c.dtype, c.steps) for c in vgg} == {
        (m, d, t) for m in ("ottt_a", "ottt_o", "bptt") for d in gpu.DTYPES for t in (2, 6, 16, 32)
    }
    assert len(vgg) == 24
    assert {(c.batch, c.input_shape) for c in vgg} == {(128, (32, 32, 3))}
    nf = [c for c in cs if c.model == "nfresnet34"]
    assert {(c.method, c.batch, c.steps, c.input_shape, c.num_classes) for c in nf} == {
        (m, 64, 6, (224, 224, 3), 1000) for m in ("ottt_a", "bptt")
    }
    assert cs[0].steps == 6  # the paper's T first: the budget keeps the most useful cases


def test_full_run_refuses_a_cpu(capsys, monkeypatch):
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")
    assert gpu.main(["--out-md", "/dev/null", "--out-json", "/dev/null"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, option", [(["--iters", "0"], "--iters"), (["--budget", "-1"], "--budget")]
)
def test_bad_arguments_name_the_option(args, option, capsys):
    with pytest.raises(SystemExit):
        gpu.parse_args(args)
    assert f"{option} must be" in capsys.readouterr().err


def test_precheck_compares_the_compiled_footprint_with_the_device_limit():
    mem = {"total": 3 * 2**20, "generated_code": 2**20}
    assert gpu.precheck(mem, None) is None
    assert gpu.precheck(mem, 4 * 2**20) is None  # total + code = 4 MiB fits exactly
    why = gpu.precheck(mem, 4 * 2**20 - 1)
    assert why == "does not fit: compiled 4 MiB > 4 MiB of the device"


def test_a_case_over_the_device_limit_is_skipped_before_it_runs(monkeypatch):
    monkeypatch.setattr(gpu, "device_limit", lambda device: 1024)
    ran = []
    monkeypatch.setattr(gpu, "run_case", lambda *a, **k: ran.append(a) or {})
    (rec,) = gpu.benchmark(gpu.cases(smoke=True)[:1], smoke=True, budget_s=600, strict=True)
    assert ran == []
    assert rec["status"].startswith("skipped: does not fit: compiled ")
    assert rec["status"].endswith("> 0 MiB of the device (memory pre-check)")
    assert rec["compiled"]["total"] > 1024
