"""The LIF mapping between our neurons and NIR's ``LIF``/``IF`` nodes.

**The LIF mapping.** NIR's LIF is ``τ dv/dt = (v_leak − v) + R·I``, spike ``z = [v > v_thr]``,
then ``v ← v_reset``. Its forward-Euler step ``dt`` is::

    v[t] = (1 − dt/τ)·v[t−1] + (dt/τ)·v_leak + (dt·R/τ)·I[t]

Ours (Eqs. (1)–(2)) is ``u[t] = λ·v[t−1] + I[t]``, ``s = H(u − V_th)``, ``v[t] = u − V_th·s``.
Matching term by term with ``v_leak = 0`` and ``dt·R/τ = 1``:

* ``λ = 1 − dt/τ``  ⇒  ``τ = dt / (1 − λ)``;
* ``dt·R/τ = 1``  ⇒  ``R = τ/dt = 1 / (1 − λ)``;
* ``v_leak = 0``, ``v_threshold = V_th``, ``v_reset = 0``.

(λ = 1, the IF neuron, exports as ``nir.IF`` with ``R = 1/dt``.) The paper's λ = 0.5, V_th = 1
with snnTorch's ``dt = 10⁻⁴`` gives ``τ = 2·10⁻⁴``, ``R = 2``. On import the same equations are
solved for the foreign node: ``λ = 1 − dt/τ`` and the input gain ``k = dt·R/τ`` and leak term
``(dt/τ)·v_leak`` are folded into the weight and bias of the layer(s) feeding the LIF (exact).

**The reset.** Our LIF resets by subtraction; NIR 1.0 has no subtractive reset (its issues
#137/#138). :func:`~ottt_jax.nir.to_nir` writes the exact NIR LIF with ``v_reset = 0`` and
records ``metadata = {"ottt_jax": {"reset": "subtract"}}`` on the node:
:func:`~ottt_jax.nir.from_nir` restores the subtraction (the round trip is exact), while other
tools read NIR's reset-to-zero, which differs after every spike whose membrane exceeded ``V_th``;
:func:`~ottt_jax.nir.to_nir` warns about this. To export exactly, train with
:class:`~ottt_jax.nir.ResetToZeroLIF` (``neuron=ResetToZeroLIF()`` in any model): its nodes carry
no such metadata and mean the same to every tool. A foreign LIF with ``v_reset = 0`` imports as
:class:`~ottt_jax.nir.ResetToZeroLIF`; another ``v_reset`` is refused. Spike times agree except
on ``v = v_thr`` exactly (NIR fires on ``>``, ours on ``≥``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ottt_jax.nir.sequential import LIFOp

__all__ = ["DEFAULT_DT", "lif_from_nir", "lif_to_nir", "require_nir", "uniform_value"]

#: The Euler step NIR graphs are written and read with by default (snnTorch's and spyx's).
DEFAULT_DT = 1e-4


def require_nir():
    """Return the ``nir`` package, or raise an ImportError naming the extra that installs it."""
    try:
        import nir
    except ImportError as err:
        raise ImportError(
            'ottt_jax.nir needs the nir package: pip install "ottt_jax[nir]"'
        ) from err
    return nir


def lif_to_nir(decay: float, v_th: float, shape: tuple[int, ...], *, dt: float, reset: str):
    """Return the NIR node of our LIF population (see the module docstring for the derivation).

    Args:
      decay: ``λ`` in (0, 1].
      v_th: ``V_th``.
      shape: the population's NIR shape (``(C, H, W)`` or ``(n,)``).
      dt: the Euler step the node is written for.
      reset: ``"subtract"`` (recorded in the node's metadata) or ``"zero"``.

    Returns:
      ``nir.LIF(τ = dt/(1−λ), R = 1/(1−λ), v_leak = 0, v_threshold = V_th, v_reset = 0)``, or
      ``nir.IF(R = 1/dt, V_th, 0)`` for ``λ = 1``.
    """
    nir = require_nir()
    ones = np.ones(shape, np.float64)  # float64: 1 − dt/τ gives λ back to ~1e-16
    meta = {"ottt_jax": {"reset": "subtract"}} if reset == "subtract" else {}
    if decay == 1.0:
        return nir.IF(r=ones / dt, v_threshold=ones * v_th, v_reset=0 * ones, metadata=meta)
    tau = dt / (1.0 - decay)
    return nir.LIF(
        tau=ones * tau,
        r=ones / (1.0 - decay),
        v_leak=0 * ones,
        v_threshold=ones * v_th,
        v_reset=0 * ones,
        metadata=meta,
    )


def uniform_value(node_name: str, field: str, values: Any) -> float:
    """Return the one value ``values`` holds for every neuron of a population, or raise a
    ValueError naming the node and the field."""
    arr = np.asarray(values, np.float64)
    if arr.size == 0 or not np.all(arr == arr.flat[0]):
        raise ValueError(
            f"NIR node {node_name!r}: {field} must be equal for every neuron of the population "
            "(ottt_jax's LIF has one value per layer)"
        )
    return float(arr.flat[0])


def lif_from_nir(node_name: str, node: Any, *, dt: float) -> tuple[LIFOp, float, float]:
    """Return ``(LIFOp, k, c)`` for a foreign LIF/IF node: the input ``I`` of NIR becomes ``k·I +
    c`` of ours (``k = dt·R/τ``, ``c = (dt/τ)·v_leak``), folded into the feeding layer."""
    nir = require_nir()
    v_reset = uniform_value(node_name, "v_reset", node.v_reset)
    reset = node.metadata.get("ottt_jax", {}).get("reset") if node.metadata else None
    if reset is None:
        if v_reset != 0.0:
            raise ValueError(
                f"NIR node {node_name!r}: v_reset = {v_reset} is not representable (ottt_jax "
                "resets to zero or by subtraction)"
            )
        reset = "zero"
    v_th = uniform_value(node_name, "v_threshold", node.v_threshold)
    r = uniform_value(node_name, "r", node.r)
    if isinstance(node, nir.IF):
        return LIFOp(node_name, 1.0, v_th, reset), dt * r, 0.0
    tau = uniform_value(node_name, "tau", node.tau)
    decay = 1.0 - dt / tau
    if not 0.0 < decay <= 1.0:
        raise ValueError(
            f"NIR node {node_name!r}: tau = {tau} with dt = {dt} gives λ = 1 − dt/τ = {decay}, "
            "outside (0, 1]; pass the dt the graph was written for"
        )
    v_leak = uniform_value(node_name, "v_leak", node.v_leak)
    return LIFOp(node_name, decay, v_th, reset), dt * r / tau, dt / tau * v_leak
