"""The largest-batch search of ``benchmarks.tpu_aot`` on a synthetic compiled footprint (no TPU)."""

import math

import pytest
from benchmarks import tpu_aot

from ottt_jax.accelerators import CHIPS

HBM = CHIPS["v5e"].hbm_bytes
MIB = 2.0**20


def footprint(per_image_small, per_image_large, knee=512):
    """Peak bytes of a batch: one slope up to ``knee``, a smaller one above (as XLA packs)."""

    def peak(b):
        small = min(b, knee) * per_image_small
        return 100 * MIB + small + max(0, b - knee) * per_image_large

    return peak


def run_search(monkeypatch, peak, deadline=math.inf):
    calls = []

    def fake_run_case(case):
        b = int(case["set"][-1].split("=")[1])
        calls.append(b)
        assert len(calls) < 60, f"the search does not converge: {calls[-6:]}"
        ok = peak(b) <= HBM
        return {"fits": ok, "memory": {"peak": peak(b)} if ok else None}

    monkeypatch.setattr(tpu_aot, "run_case", fake_run_case)
    return tpu_aot.largest_batch("ottt_a", 6, deadline=deadline), calls


def truth(peak, step=32):
    b = step
    while peak(b + step) <= HBM:
        b += step
    return b


@pytest.mark.parametrize(
    "small, large",
    [
        (6.4 * MIB, 4.95 * MIB),  # OTTT_A on v5e: the 128/256 prediction is ~700 images low
        (16.0 * MIB, 16.0 * MIB),  # BPTT-like: the prediction is exact
        (70.0 * MIB, 70.0 * MIB),  # only 64 and 128 fit: the search starts from (64, 128)
    ],
)
def test_the_search_brackets_the_largest_batch_to_one_step_in_few_compiles(
    monkeypatch, small, large
):
    peak = footprint(small, large)
    res, calls = run_search(monkeypatch, peak)
    want = truth(peak)
    assert (res["fits"], res["fails"], res["complete"]) == (want, want + 32, True)
    assert len(calls) == len(set(calls))  # every batch compiled once
    # galloping + bisection: about 2·log2(bracket / step) compiles past the two that predict
    assert len(calls) <= 3 + 2 * math.ceil(math.log2(max(2, abs(want - res["predicted"]) / 32)))


def test_a_spent_budget_returns_an_open_bracket(monkeypatch):
    peak = footprint(6.4 * MIB, 4.95 * MIB)
    res, calls = run_search(monkeypatch, peak, deadline=0.0)
    assert calls == [128, 256]  # the two predicting compiles run; nothing after the deadline
    assert res["fits"] == 256 and res["fails"] is None and not res["complete"]
