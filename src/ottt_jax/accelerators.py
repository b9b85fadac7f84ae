"""The per-chip facts of the accelerators we compile for: one table, one source per row.

Each :class:`Chip` holds a chip's HBM capacity, its peak dense bfloat16 matrix throughput and its
HBM bandwidth, as the vendor publishes them (per chip, not per pod):

* TPU v4: 32 GiB HBM, 275 TFLOP/s bf16, 1200 GB/s — https://cloud.google.com/tpu/docs/v4
* TPU v5e: 16 GiB HBM, 197 TFLOP/s bf16, 819 GB/s — https://cloud.google.com/tpu/docs/v5e
* TPU v5p: 95 GiB HBM, 459 TFLOP/s bf16, 2765 GB/s — https://cloud.google.com/tpu/docs/v5p
* TPU v6e (Trillium): 32 GiB HBM, 918 TFLOP/s bf16, 1640 GB/s — https://cloud.google.com/tpu/docs/v6e
* NVIDIA H100 SXM: 80 GB HBM3, 989 TFLOP/s dense bf16, 3.35 TB/s; H200 SXM: 141 GB HBM3e, the
  same compute, 4.8 TB/s — the H100 / H200 product pages and data sheets at
  https://www.nvidia.com/en-us/data-center/h100/ and https://www.nvidia.com/en-us/data-center/h200/

These peaks are the roofline's ceilings; a real step reaches a fraction of them.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["CHIPS", "Chip", "chip_for_topology"]

GiB = 1024**3


class Chip(NamedTuple):
    """One accelerator chip's published per-chip figures.

    Attributes:
      name: the short name used in topology strings (``'v5e'``) or the GPU's name.
      hbm_bytes: HBM capacity in bytes.
      peak_bf16_flops: peak dense bfloat16 FLOP/s.
      hbm_bytes_per_s: peak HBM bandwidth in bytes/s.
    """

    name: str
    hbm_bytes: int
    peak_bf16_flops: float
    hbm_bytes_per_s: float


#: The chip table (sources in the module docstring).
CHIPS: dict[str, Chip] = {
    "v4": Chip("v4", 32 * GiB, 275e12, 1200e9),
    "v5e": Chip("v5e", 16 * GiB, 197e12, 819e9),
    "v5p": Chip("v5p", 95 * GiB, 459e12, 2765e9),
    "v6e": Chip("v6e", 32 * GiB, 918e12, 1640e9),
    "h100": Chip("h100", 80 * 10**9, 989e12, 3.35e12),
    "h200": Chip("h200", 141 * 10**9, 989e12, 4.8e12),
}


def chip_for_topology(topology: str) -> Chip:
    """Return the chip of a TPU topology name such as ``'v5e:2x2'`` or ``'v5p:4x4x4'``.

    Args:
      topology: ``'<generation>:<shape>'`` as ``jax.experimental.topologies`` takes it.

    Returns:
      The :class:`Chip` of ``<generation>``.

    Raises:
      ValueError: naming the topology and the known generations.
    """
    gen = topology.partition(":")[0].strip().lower()
    tpus = [k for k in CHIPS if k.startswith("v")]
    if gen not in tpus or ":" not in topology:
        raise ValueError(
            f"topology {topology!r}: expected '<generation>:<shape>' with generation one of "
            f"{', '.join(tpus)} (e.g. 'v5e:2x2', 'v5p:4x4x4')"
        )
    return CHIPS[gen]
