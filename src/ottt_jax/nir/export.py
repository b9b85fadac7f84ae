"""Export: :func:`to_nir` writes a trained model as a ``nir.NIRGraph`` (layout and LIF mapping:
:mod:`ottt_jax.nir`, :mod:`ottt_jax.nir.lif`)."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from ottt_jax.layers import SPIKE_SCALE, standardize_weight
from ottt_jax.neuron import LIF
from ottt_jax.nir.lif import DEFAULT_DT, lif_to_nir, require_nir
from ottt_jax.nir.neuron import ResetToZeroLIF
from ottt_jax.nir.sequential import (
    ConvOp,
    DenseOp,
    FlattenOp,
    LIFOp,
    PoolOp,
    ScaleOp,
    SequentialSNN,
)

__all__ = ["to_nir"]


def _nchw(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)


def _export_ops(model: Any, params: Any, input_shape: tuple[int, ...]):
    """Return ``(ops, params, flatten_input, neuron)`` describing ``model`` as a chain."""
    from ottt_jax.models.rsnn import SpikingRSNN
    from ottt_jax.models.vgg import SpikingVGG

    if isinstance(model, SequentialSNN):
        return model.ops, params, model.flatten_input, None
    if isinstance(model, SpikingVGG):
        if model.feedback:
            raise ValueError("to_nir: VGG-F's feedback connection has no NIR export")
        ops, out = [], {}
        specs = iter(model.conv_specs())
        for v in model.cfg:
            if v == "M":
                ops.append(PoolOp("avg", 2, 2))
                continue
            name, lif, feat, _ = next(specs)
            p = params[name]
            kernel = standardize_weight(p["kernel"], p["gain"])
            out[name] = {"kernel": kernel, "bias": p["bias"]}
            ops += [ConvOp(name, feat, kernel.shape[0], 1, 1), LIFOp(lif), ScaleOp(SPIKE_SCALE)]
        h, w = (d // 2**model.num_pools for d in input_shape[:2])
        if h != w:
            raise ValueError(f"to_nir: global pooling needs a square map, got {h}x{w}")
        ops += [PoolOp("avg", h, h), FlattenOp()]
        ops.append(DenseOp("classifier_0", model.num_classes))
        out["classifier_0"] = dict(params["classifier_0"])
        return tuple(ops), out, False, model.neuron
    if isinstance(model, SpikingRSNN):
        ops, out = [], {}
        for i, lif in enumerate(model.neuron_names):
            p = params[f"fc{i + 1}"]
            kernel = p["kernel"]
            if model.weight_standardization:
                kernel = standardize_weight(kernel, p["gain"])
            out[f"fc{i + 1}"] = {"kernel": kernel, "bias": p["bias"]}
            ops += [DenseOp(f"fc{i + 1}", model.hidden[i]), LIFOp(lif, recurrent=model.recurrent)]
            if model.recurrent:
                out[f"{lif}_rec"] = dict(params[f"rec{i + 1}"])
        ops.append(DenseOp("readout", model.num_classes))
        out["readout"] = dict(params["readout"])
        return tuple(ops), out, True, model.neuron
    raise ValueError(
        f"to_nir exports SpikingVGG, SpikingRSNN or SequentialSNN, got {type(model).__name__}"
    )


def _with_neuron(ops: tuple, neuron: Any) -> tuple:
    """Return ``ops`` with every :class:`LIFOp` given ``neuron``'s decay, threshold and reset
    (``neuron`` None: the ops of a :class:`SequentialSNN`, returned as they are)."""
    if neuron is None:
        return ops
    if isinstance(neuron, ResetToZeroLIF):
        reset = "zero"
    elif isinstance(neuron, LIF):
        reset = "subtract"
    else:
        raise ValueError(f"to_nir: neuron {type(neuron).__name__} has no NIR mapping")
    return tuple(
        dataclasses.replace(op, decay=neuron.decay, v_th=neuron.v_th, reset=reset)
        if isinstance(op, LIFOp)
        else op
        for op in ops
    )


def _op_node(op: Any, p: Any, shape: tuple[int, ...], counter: int, dt: float):
    """Return ``(name, node, shape)``: the NIR node of ``op`` (the ``counter``-th op, fed by a
    signal of ``shape``, NHWC or ``(n,)``, without batch) and the shape of its output."""
    nir = require_nir()
    if isinstance(op, ConvOp):
        h, w, _ = shape
        k = np.asarray(p[op.name]["kernel"], np.float32)
        bias = p[op.name].get("bias") if op.use_bias else None
        bias = np.zeros(op.features, np.float32) if bias is None else np.asarray(bias)
        node = nir.Conv2d(input_shape=(h, w), weight=k.transpose(3, 2, 0, 1),
                          stride=op.stride, padding=op.padding, dilation=1, groups=1,
                          bias=bias.astype(np.float32))  # fmt: skip
        s, pad = op.stride, op.padding
        shape = ((h + 2 * pad - k.shape[0]) // s + 1, (w + 2 * pad - k.shape[1]) // s + 1,
                 op.features)  # fmt: skip
        return op.name, node, shape
    if isinstance(op, DenseOp):
        w = np.asarray(p[op.name]["kernel"], np.float32).T
        if op.use_bias:
            node = nir.Affine(weight=w, bias=np.asarray(p[op.name]["bias"], np.float32))
        else:
            node = nir.Linear(weight=w)
        return op.name, node, (op.features,)
    if isinstance(op, ScaleOp):
        node = nir.Scale(scale=np.full(_nchw(shape), op.scale, np.float32))
        return f"scale_{counter}", node, shape
    if isinstance(op, PoolOp):
        cls = nir.AvgPool2d if op.kind == "avg" else nir.SumPool2d
        node = cls(kernel_size=np.array([op.window] * 2), stride=np.array([op.stride] * 2),
                   padding=np.array([op.padding] * 2))  # fmt: skip
        h, w, c = shape
        k, s, pad = op.window, op.stride, op.padding
        shape = ((h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1, c)
        return f"pool_{counter}", node, shape
    if isinstance(op, FlattenOp):
        node = nir.Flatten(input_type={"input": np.array(_nchw(shape))}, start_dim=0)
        return f"flatten_{counter}", node, (int(np.prod(shape)),)
    # LIFOp
    node = lif_to_nir(op.decay, op.v_th, _nchw(shape), dt=dt, reset=op.reset)
    return op.name, node, shape


def to_nir(model: Any, params: Any, input_shape: tuple[int, ...], *, dt: float = DEFAULT_DT) -> Any:
    """Export a trained model to a ``nir.NIRGraph``.

    Args:
      model: a :class:`~ottt_jax.models.vgg.SpikingVGG` (not VGG-F),
        :class:`~ottt_jax.models.rsnn.SpikingRSNN` or :class:`SequentialSNN`; its neuron a
        :class:`~ottt_jax.neuron.LIF` or :class:`ResetToZeroLIF`. Dropout is not exported.
      params: its ``params``.
      input_shape: one frame's shape ``(H, W, C)``.
      dt: the Euler step the LIF nodes are written for (:mod:`ottt_jax.nir.lif`).

    Returns:
      The graph: nodes ``input``, one per op (named as the parameters / neurons), ``output``.
      A subtractive-reset LIF warns (``UserWarning``) that tools other than ottt_jax read NIR's
      reset to zero.
    """
    nir = require_nir()
    ops, p, flatten_input, neuron = _export_ops(model, params, tuple(input_shape))
    ops = _with_neuron(ops, neuron)  # one neuron for every layer
    shape = (int(np.prod(input_shape)),) if flatten_input else tuple(input_shape)
    nodes = {"input": nir.Input(input_type={"input": np.array(_nchw(shape))})}
    edges, prev = [], "input"
    for counter, op in enumerate(ops, start=1):
        name, node, shape = _op_node(op, p, shape, counter, dt)
        if isinstance(op, LIFOp) and op.recurrent:
            rec = f"{op.name}_rec"
            nodes[rec] = nir.Linear(weight=np.asarray(p[rec]["kernel"], np.float32).T)
            edges += [(name, rec), (rec, name)]
        nodes[name] = node
        edges.append((prev, name))
        prev = name
    nodes["output"] = nir.Output(output_type={"output": np.array(_nchw(shape))})
    edges.append((prev, "output"))
    subtract = [op.name for op in ops if isinstance(op, LIFOp) and op.reset == "subtract"]
    if subtract:
        warnings.warn(
            f"to_nir: LIF nodes {subtract} reset by subtraction, which NIR 1.0 cannot express; "
            "they are written with v_reset = 0 and metadata {'ottt_jax': {'reset': 'subtract'}}: "
            "ottt_jax.nir.from_nir restores them exactly, other tools reset to zero. Train with "
            "ottt_jax.nir.ResetToZeroLIF for an export every tool reads exactly.",
            UserWarning,
            stacklevel=2,
        )
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
