"""Import: :func:`from_nir` reads a ``nir.NIRGraph`` chain as a :class:`SequentialSNN` (layout
and LIF mapping: :mod:`ottt_jax.nir`, :mod:`ottt_jax.nir.lif`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ottt_jax.mode import OTTT, Mode
from ottt_jax.nir.lif import DEFAULT_DT, lif_from_nir, require_nir, uniform_value
from ottt_jax.nir.sequential import (
    ConvOp,
    DenseOp,
    FlattenOp,
    LIFOp,
    PoolOp,
    ScaleOp,
    SequentialSNN,
)

__all__ = ["from_nir"]


def _chain(graph: Any) -> tuple[list[str], set[str]]:
    """Return the node names from input to output, and the LIFs with a self-recurrent loop."""
    succ: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
    inputs = [n for n, v in graph.nodes.items() if type(v).__name__ == "Input"]
    if len(inputs) != 1:
        raise ValueError(f"from_nir: the graph must have one Input node, got {inputs}")
    order, recurrent, node = [], set(), inputs[0]
    while True:
        order.append(node)
        nxt = succ.get(node, [])
        # a loop node -> rec -> node is a recurrent weight, not the chain
        loops = [m for m in nxt if node in succ.get(m, []) and len(succ.get(m, [])) == 1]
        if loops:
            recurrent.add(node)
        nxt = [m for m in nxt if m not in loops]
        if not nxt:
            break
        if len(nxt) > 1:
            raise ValueError(f"from_nir: node {node!r} branches to {nxt}; only chains import")
        node = nxt[0]
        if node in order:
            raise ValueError(f"from_nir: the graph has a cycle through {node!r}")
    return order, recurrent


def _import_op(name: str, node: Any) -> tuple[Any, dict[str, Any] | None]:
    """Return ``(op, params or None)`` for a node that is not a LIF/IF, Input or Output."""
    nir = require_nir()
    if isinstance(node, nir.Conv2d):
        w = np.asarray(node.weight, np.float32)
        pad, stride = node.padding, node.stride
        if isinstance(pad, str) or len(set(np.ravel(pad))) != 1:
            raise ValueError(f"from_nir: Conv2d {name!r} needs one integer padding")
        if len(set(np.ravel(stride))) != 1 or w.shape[2] != w.shape[3]:
            raise ValueError(f"from_nir: Conv2d {name!r} needs a square kernel and stride")
        if np.any(np.asarray(node.dilation) != 1) or node.groups != 1:
            raise ValueError(f"from_nir: Conv2d {name!r} with dilation/groups is unsupported")
        op = ConvOp(name, w.shape[0], w.shape[2], int(np.ravel(stride)[0]), int(np.ravel(pad)[0]))
        return op, {"kernel": w.transpose(2, 3, 1, 0), "bias": np.asarray(node.bias)}
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight, np.float32)
        has_bias = isinstance(node, nir.Affine)
        bias = np.asarray(node.bias, np.float32) if has_bias else np.zeros(w.shape[0])
        params = {"kernel": w.T, "bias": bias.astype(np.float32)}
        return DenseOp(name, w.shape[0], use_bias=True), params
    if isinstance(node, nir.Scale):
        return ScaleOp(uniform_value(name, "scale", node.scale)), None
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        k, s, pad = (int(uniform_value(name, f, getattr(node, f)))
                     for f in ("kernel_size", "stride", "padding"))  # fmt: skip
        return PoolOp("avg" if isinstance(node, nir.AvgPool2d) else "sum", k, s, pad), None
    if isinstance(node, nir.Flatten):
        return FlattenOp(), None
    raise ValueError(f"from_nir: node {name!r} of type {type(node).__name__} unsupported")


def _import_lif(
    graph: Any, name: str, ops: list[Any], params: dict[str, Any], *, recurrent: bool, dt: float
) -> LIFOp:
    """Return the :class:`LIFOp` of the LIF/IF node ``name``, folding its input gain and leak
    into the params of the op feeding it (``ops[-1]``) and of its recurrent weight, if any."""
    nir = require_nir()
    lif, k, c = lif_from_nir(name, graph.nodes[name], dt=dt)
    feeder = ops[-1] if ops else None
    if not isinstance(feeder, (ConvOp, DenseOp)):
        raise ValueError(f"from_nir: LIF {name!r} must be fed by a Conv2d/Affine/Linear node")
    params[feeder.name] = {
        "kernel": params[feeder.name]["kernel"] * k,
        "bias": params[feeder.name]["bias"] * k + c,
    }
    if not recurrent:
        return lif
    succ = [b for a, b in graph.edges if a == name]
    rec = next(m for m in succ if (m, name) in graph.edges)
    rw = np.asarray(graph.nodes[rec].weight, np.float32).T * k
    params[f"{name}_rec"] = {"kernel": rw}
    if isinstance(graph.nodes[rec], nir.Affine):  # its bias joins the feeder's
        rb = np.asarray(graph.nodes[rec].bias, np.float32) * k
        params[feeder.name]["bias"] = params[feeder.name]["bias"] + rb
    return dataclasses.replace(lif, recurrent=True)


def from_nir(
    graph: Any,
    *,
    dt: float = DEFAULT_DT,
    mode: Mode = OTTT,
    surrogate: str = "sigmoid",
    dtype: Any = jnp.float32,
) -> tuple[SequentialSNN, dict[str, Any]]:
    """Import a NIR graph as a :class:`SequentialSNN` and its parameters.

    Args:
      graph: a ``nir.NIRGraph``: a chain ``Input → … → Output`` of ``Conv2d`` (square kernel,
        symmetric padding, no dilation or groups), ``Affine``, ``Linear``, ``Scale`` (one value),
        ``AvgPool2d``, ``SumPool2d``, ``Flatten``, ``LIF`` and ``IF`` nodes; a LIF may have a
        self loop through a ``Linear``/``Affine`` node (a recurrent weight). Each LIF must be
        fed by a ``Conv2d``/``Affine``/``Linear`` (its input gain is folded there).
      dt: the Euler step the graph's time constants are meant for (snnTorch, spyx: 1e-4).
      mode: the mode of the rule that will train the model.
      surrogate: the surrogate of the imported neurons.
      dtype: compute dtype.

    Returns:
      ``(model, params)``: run it with ``model.apply({"params": params}, state, x)``.
    """
    nir = require_nir()
    order, recurrent = _chain(graph)
    ops: list[Any] = []
    params: dict[str, Any] = {}
    in_shape = np.asarray(graph.nodes[order[0]].input_type["input"]).tolist()
    flatten_input = len(in_shape) == 1
    for name in order[1:]:
        node = graph.nodes[name]
        if isinstance(node, nir.Output):
            break
        if isinstance(node, (nir.LIF, nir.IF)):
            ops.append(_import_lif(graph, name, ops, params, recurrent=name in recurrent, dt=dt))
            continue
        op, op_params = _import_op(name, node)
        ops.append(op)
        if op_params is not None:
            params[name] = op_params
    model = SequentialSNN(ops=tuple(ops), flatten_input=flatten_input, surrogate=surrogate,
                          mode=mode, dtype=dtype)  # fmt: skip
    params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)
    return model, params
