"""Test configuration: CPU only, four simulated devices, float32 matmuls at full precision.

The environment must be set before JAX is imported anywhere, so this runs at collection time.
"""

import os

os.environ["JAX_PLATFORMS"] = "cpu"
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=4").strip()

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
