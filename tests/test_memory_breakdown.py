"""The buffer kinds of ``benchmarks.memory_breakdown``, from names and shapes as XLA prints them."""

import pytest
from benchmarks.memory_breakdown import categorize


@pytest.mark.parametrize(
    "name, shape, kind",
    [
        ("wide.arg_tuple.4{3}", "f32[128,32,32,128]{3,2,1,0}", "carried membrane and trace"),
        ("wide.arg_tuple.4{33}", "f32[3,3,512,512]{3,2,1,0}", "gradient accumulator"),
        ("wide.arg_tuple.4{19}", "f32[512,10]{1,0}", "gradient accumulator"),
        ("broadcast_multiply_fusion.15", "f32[3,3,512,512]{3,2,1,0}", "standardized kernels"),
        ("copy.232", "f32[3,3,512,512]{3,2,1,0}", "flipped kernels"),
        ("broadcast_add_fusion", "f32[128,32,32,64]{3,2,1,0}", "first conv of the static image"),
        ("params__features_0____kernel__.1", "f32[3,3,3,64]{3,2,1,0}", "arguments"),
        ("opt_state_0__trace__features_3____kernel__.1", "f32[3,3,64,128]", "arguments"),
        ("bitcast_rsqrt_fusion.1", "f32[512]{0}", "other"),
    ],
)
def test_categorize(name, shape, kind):
    assert categorize(name, shape, batch=128).startswith(kind)
