"""benchmarks.tpu_buffers on a real (tiny, XLA:CPU) dump: the heap, the peak and the loop carry."""

import subprocess
import sys
import textwrap

import pytest
from benchmarks import tpu_buffers

B, N = 96, 700  # the carried state: two f32[96, 700] arrays (268,800 bytes each)

PROBE = textwrap.dedent(
    """
    import os, sys
    os.environ["XLA_FLAGS"] = f"--xla_dump_to={sys.argv[1]} --xla_dump_hlo_module_re=carry_probe"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax, jax.numpy as jnp
    from jax import lax
    B, N = int(sys.argv[2]), int(sys.argv[3])

    def carry_probe(w, x):
        def body(st, x_t):
            v, tr = st
            v = 0.5 * v + jnp.tanh(x_t @ w)
            tr = 0.5 * tr + v
            return (v, tr), jnp.sum(tr)
        z = jnp.zeros((B, N), jnp.float32)
        (v, tr), out = lax.scan(body, (z, z), x)
        return jnp.sum(out) + jnp.sum(v * tr)

    w = jnp.ones((50, N), jnp.float32)
    x = jnp.ones((5, B, 50), jnp.float32)
    compiled = jax.jit(jax.grad(carry_probe)).lower(w, x).compile()
    print(compiled.memory_analysis().temp_size_in_bytes)
    """
)


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    d = tmp_path_factory.mktemp("carry_probe")
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(d), str(B), str(N)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return str(d), int(out.stdout.strip().splitlines()[-1])


def test_heap_is_the_compilers_temp_size(dump):
    d, temp = dump
    r = tpu_buffers.peak_table(d, module="carry_probe")
    assert r["heap"] == temp
    assert 0 < r["peak"] <= r["heap"]
    assert sum(row["size"] for row in r["rows"]) == r["peak"]


def test_finds_the_carried_state_at_the_peak(dump):
    r = tpu_buffers.peak_table(dump[0], module="carry_probe")
    carried = [
        v
        for row in r["rows"]
        for v in row["values"]
        if v.origin.startswith("carry{") and v.size == B * N * 4
    ]
    # the membrane-like v and the trace-like tr, each its own buffer
    assert len({v.offset for v in carried}) == 2, [(v.name, v.origin) for v in carried]
    assert all(f"f32[{B},{N}]" in v.shape for v in carried)


def test_usage_counts_aliases_once():
    v = tpu_buffers.Value
    values = [v("a", 100, 0, "", 0, 5), v("b", 100, 0, "", 3, 9), v("c", 50, 80, "", 4, 4)]
    assert tpu_buffers.usage(values, 4) == 130  # a and b alias; c overlaps their tail
    assert tpu_buffers.usage(values, 8) == 100
    assert tpu_buffers.peak(values, 9) == (4, 130)


def test_missing_dump_names_the_flags(tmp_path):
    with pytest.raises(ValueError, match="xla_dump_to"):
        tpu_buffers.peak_table(str(tmp_path))


def test_reads_the_memory_space_0_temporaries_only():
    text = "\n".join(
        [
            "allocation 0: size 9000, parameter 0, shape |f32[2250]| at ShapeIndex {}:",
            " value: <1 p.1 @0> (size=9000,offset=0): f32[2250]{0}",
            "allocation 1: size 800, color 1, page 0, preallocated-temp:",
            " value: <2 s.1 @1> (size=800,offset=0): f32[200]{0}",
            "allocation 2: size 400, page 0, preallocated-temp:",
            " value: <3 t.1 @0> (size=400,offset=0): f32[100]{0}",
            " value: <4 u.1{1} (phi) @0> (size=40,offset=400): f32[10]{0}",
        ]
    )
    heap, values = tpu_buffers.parse_temp_values(text)
    assert heap == 400
    assert tpu_buffers.other_spaces(text) == {1: 800}
    assert [(v.name, v.size, v.offset) for v in values] == [("t.1", 400, 0), ("u.1{1}", 40, 400)]
