"""Map the authors' PyTorch parameter names and layouts to ours, and describe an architecture.

:mod:`ottt_jax.models.official` (the checkpoint import/export) re-exports
:func:`official_to_flax_path`, :func:`flax_path_to_official` and :func:`describe_architecture`
and converts every array with the layout functions here (its module docstring states the naming
and layout rules).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import traverse_util

__all__ = [
    "Path",
    "describe_architecture",
    "flat_params",
    "flax_path_to_official",
    "kernel_ndims",
    "official_to_flax_path",
    "to_flax_array",
    "to_official_array",
    "to_official_shape",
]

_LEAF_TO_FLAX = {
    "weight": "kernel",
    "bias": "bias",
    "gain": "gain",
    "skipinit_gain": "skipinit_gain",
}
_LEAF_TO_OFFICIAL = {v: k for k, v in _LEAF_TO_FLAX.items()}
#: Layers fed by the image or by a real-valued stream: ordinary gradients, no ``.op`` wrapper.
_UNWRAPPED_MODULES = {("features_0",), ("conv1",), ("fc",)}


Path = tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------


def official_to_flax_path(name: str) -> Path:
    """Map an official PyTorch parameter name to its Flax parameter path.

    Args:
      name: e.g. ``'features.3.op.gain'`` or ``'layer2.0.downsample.op.weight'`` (a leading
        ``module.`` from DataParallel must already be stripped).

    Returns:
      The path in ``params``, e.g. ``('features_3', 'gain')`` or
      ``('layer2_0', 'downsample', 'kernel')``.

    Raises:
      ValueError: if the last segment is not weight/bias/gain/skipinit_gain or the name is
        malformed.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty official parameter name, got {name!r}")
    segs = name.split(".")
    if any(s == "" for s in segs):
        raise ValueError(f"malformed official parameter name {name!r}")
    leaf = segs[-1]
    if leaf not in _LEAF_TO_FLAX:
        raise ValueError(
            f"official parameter name {name!r} must end in one of {sorted(_LEAF_TO_FLAX)}"
        )
    mods: list[str] = []
    for s in segs[:-1]:
        if s == "op":
            continue
        if s.isdigit():
            if not mods:
                raise ValueError(f"official parameter name {name!r} starts with an index")
            mods[-1] = f"{mods[-1]}_{s}"
        else:
            mods.append(s)
    if not mods:
        raise ValueError(f"official parameter name {name!r} has no module path")
    return (*mods, _LEAF_TO_FLAX[leaf])


def flax_path_to_official(path: Path | str, *, wrapped: bool | None = None) -> str:
    """Map a Flax parameter path back to the official PyTorch name.

    Args:
      path: a tuple such as ``('layer2_0', 'downsample', 'kernel')`` or the same joined by ``/``.
      wrapped: whether the layer sits in the authors' ``.op`` wrapper; None infers it: every
        layer is wrapped except the stem convs (``features_0``, ``conv1`` at top level), the
        NF-ResNet ``fc`` and the scalar ``skipinit_gain``.

    Returns:
      The official name, e.g. ``'layer2.0.downsample.op.weight'``.

    Raises:
      ValueError: for an empty path or an unknown parameter name (last segment).
    """
    if isinstance(path, str):
        path = tuple(path.split("/"))
    path = tuple(path)
    if len(path) < 2 or not all(isinstance(p, str) and p for p in path):
        raise ValueError(f"path must be (module, ..., param) with at least 2 names, got {path!r}")
    leaf = path[-1]
    if leaf not in _LEAF_TO_OFFICIAL:
        raise ValueError(
            f"Flax parameter {'/'.join(path)!r} must end in one of {sorted(_LEAF_TO_OFFICIAL)}"
        )
    if wrapped is None:
        wrapped = leaf != "skipinit_gain" and path[:-1] not in _UNWRAPPED_MODULES
    segs: list[str] = []
    for m in path[:-1]:
        match = re.fullmatch(r"(.+)_(\d+)", m)
        segs.extend(match.groups() if match else (m,))
    if wrapped:
        segs.append("op")
    segs.append(_LEAF_TO_OFFICIAL[leaf])
    return ".".join(segs)


# ---------------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------------


def to_flax_array(leaf: str, a: np.ndarray) -> np.ndarray:
    """Convert one official array to the Flax layout (shape checks happen afterwards)."""
    if leaf == "kernel" and a.ndim == 4:
        return np.transpose(a, (2, 3, 1, 0))  # OIHW -> HWIO
    if leaf == "kernel" and a.ndim == 2:
        return a.T  # (out, in) -> (in, out)
    if leaf == "gain" and a.ndim > 1 and all(n == 1 for n in a.shape[1:]):
        return a.reshape(a.shape[0])  # [out, 1, 1, 1] -> [out]
    return a


def to_official_shape(leaf: str, shape: tuple[int, ...], kernel_ndim: int | None) -> tuple:
    """Return the official (PyTorch) shape of a Flax parameter of the given shape."""
    if leaf == "kernel" and len(shape) == 4:
        h, w, i, o = shape
        return (o, i, h, w)
    if leaf == "kernel" and len(shape) == 2:
        return (shape[1], shape[0])
    if leaf == "gain" and len(shape) == 1 and kernel_ndim == 4:
        return (shape[0], 1, 1, 1)
    return tuple(shape)


def to_official_array(leaf: str, a: np.ndarray, kernel_ndim: int | None) -> np.ndarray:
    """Convert one Flax array to the official layout (``kernel_ndim``: its layer's kernel rank)."""
    if leaf == "kernel" and a.ndim == 4:
        a = np.transpose(a, (3, 2, 0, 1))  # HWIO -> OIHW
    elif leaf == "kernel" and a.ndim == 2:
        a = a.T
    elif leaf == "gain" and a.ndim == 1 and kernel_ndim == 4:
        a = a.reshape(a.shape[0], 1, 1, 1)
    return np.array(a, order="C")  # a C-contiguous copy; keeps 0-d scalars 0-d


def flat_params(params: Mapping) -> dict[Path, Any]:
    """Flatten a parameter tree (or a full variables dict) to ``{path: array}``."""
    if not isinstance(params, Mapping):
        raise ValueError(
            f"params must be a (nested) mapping of arrays, got {type(params).__name__}"
        )
    if set(params) == {"params"} and isinstance(params["params"], Mapping):
        params = params["params"]  # a full variables dict
    return traverse_util.flatten_dict(dict(params))


def kernel_ndims(flat: Mapping[Path, Any]) -> dict[Path, int]:
    """Return ``{layer_path: kernel rank}`` of a flat parameter tree."""
    return {p[:-1]: len(np.shape(v)) for p, v in flat.items() if p[-1] == "kernel"}


# ---------------------------------------------------------------------------------------------
# Architecture description (for error hints)
# ---------------------------------------------------------------------------------------------

_RESNET_NAMES = {
    ("basic", (2, 2, 2, 2)): "NF-ResNet-18",
    ("basic", (3, 4, 6, 3)): "NF-ResNet-34",
    ("bottleneck", (3, 4, 6, 3)): "NF-ResNet-50",
}


def describe_architecture(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """Guess which official architecture a ``state_dict`` belongs to, from names and shapes.

    Args:
      shapes: official parameter name → shape (PyTorch layout).

    Returns:
      A short description, e.g. ``'NF-ResNet-34 (BasicBlock stages [3, 4, 6, 3], 3 input
      channels, 1000 classes)'``, ``'VGG-F (feedback; 8 convs, 3 input channels, 100 classes)'``
      or ``'an unrecognised architecture'``.
    """
    names = list(shapes)

    def dim(name_options, axis):
        for n in name_options:
            if n in shapes and len(shapes[n]) > axis:
                return shapes[n][axis]
        return "?"

    blocks: dict[int, set[int]] = {}
    for n in names:
        m = re.match(r"layer(\d+)\.(\d+)\.", n)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if blocks:
        kind = "bottleneck" if any(".conv3." in n for n in names) else "basic"
        stages = tuple(len(blocks[k]) for k in sorted(blocks))
        title = _RESNET_NAMES.get((kind, stages), "NF-ResNet")
        c_in, k = dim(["conv1.weight"], 1), dim(["fc.weight"], 0)
        label = "Bottleneck" if kind == "bottleneck" else "BasicBlock"
        return f"{title} ({label} stages {list(stages)}, {c_in} input channels, {k} classes)"
    k = dim(["classifier.0.op.weight", "classifier.0.weight"], 0)
    convs = [n for n in names if re.fullmatch(r"(features\.\d+|conv1)\.(op\.)?weight", n)]
    if any(n.startswith("fb_conv.") for n in names):
        c_in = dim(["conv1.weight"], 1)
        return f"VGG-F (feedback; {len(convs)} convs, {c_in} input channels, {k} classes)"
    if any(n.startswith("features.") for n in names):
        c_in = dim(["features.0.weight", "features.0.op.weight"], 1)
        title = "VGG-11" if len(convs) == 8 else f"VGG ({len(convs)} convs)"
        return f"{title} ({c_in} input channels, {k} classes)"
    return "an unrecognised architecture"
