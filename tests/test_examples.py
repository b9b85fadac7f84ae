"""The examples in examples/ run, train, and follow the rule they claim (per kernel)."""

import importlib.util
import pathlib
import sys

import numpy as np

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses (Flax modules) resolve annotations through it
    spec.loader.exec_module(mod)
    return mod


def test_flax_layers_example_trains_and_its_wrapped_layers_follow_the_trace_rule():
    """Catches: the wrapper not applying the trace rule, or the example not training."""
    ex = _load("flax_layers")
    r = ex.main(steps=12, batch=8)
    assert r["report"] == {
        "conv1/kernel": "instantaneous",  # on the image: no trace, correctly
        "conv2/kernel": "trace",
        "fc/kernel": "trace",
    }
    assert np.isfinite(r["losses"]).all() and r["losses"][-1] < 0.8 * r["losses"][0]
    pitfall = ex.main(steps=1, batch=8, wrap=False)["report"]
    assert pitfall["conv2/kernel"] == pitfall["fc/kernel"] == "instantaneous"


def test_recurrent_example_feeds_the_recurrent_weight_its_delayed_trace():
    """Catches: the recurrent weight given no trace (instantaneous) or a path through time
    left open under OTTT by the carried spikes; under BPTT the recurrence is through time."""
    ex = _load("recurrent_snn")
    r = ex.main(steps=3, batch=8)
    assert r["report"] == {
        "inp/kernel": "instantaneous",
        "out/kernel": "trace",
        "rec/kernel": "trace",
    }
    assert np.isfinite(r["losses"]).all()
    b = ex.main(steps=1, batch=8, rule_name="bptt")["report"]
    assert b["rec/kernel"] == b["inp/kernel"] == "through time"
