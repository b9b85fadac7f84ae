"""Test configuration: CPU only, four simulated devices, float32 matmuls at full precision.

The environment must be set before JAX is imported anywhere, so this runs at collection time.
"""

import os
import tempfile

os.environ["JAX_PLATFORMS"] = "cpu"
# One persistent XLA compilation cache per test run, shared by the xdist workers (children of
# the controller) and the subprocesses tests start: the many trainer runs that compile the same
# digits programs compile them once. The controller removes it at the end of the session.
_WORKER = "PYTEST_XDIST_WORKER" in os.environ
_CACHE = os.path.join(
    tempfile.gettempdir(), f"ottt_jax_test_xla_cache_{os.getppid() if _WORKER else os.getpid()}"
)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=4").strip()

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


import json  # noqa: E402
import pathlib  # noqa: E402
import shutil  # noqa: E402

import pytest  # noqa: E402


def _find_reference() -> dict | None:
    root = pathlib.Path(__file__).resolve().parents[1]
    candidates = [os.environ.get("OTTT_REFERENCE_DIR", ""), root / "shared" / "reference"]
    candidates.append(root.parent / "shared" / "reference")
    for c in candidates:
        p = pathlib.Path(c) / "official_param_names.json"
        if c and p.is_file():
            return json.loads(p.read_text())
    return None


@pytest.fixture(scope="session")
def official_reference() -> dict | None:
    """The authors' parameter names, shapes and counts (``official_param_names.json``), or None.

    Looked up in ``$OTTT_REFERENCE_DIR``, ``<repo>/shared/reference`` and ``<repo>/../shared/
    reference`` (where CI and the developers' checkouts have it).
    """
    return _find_reference()


def pytest_sessionfinish(session, exitstatus):
    """Remove this run's compilation cache (the controller, or a run without xdist)."""
    if not _WORKER and os.environ.get("JAX_COMPILATION_CACHE_DIR") == _CACHE:
        shutil.rmtree(_CACHE, ignore_errors=True)
