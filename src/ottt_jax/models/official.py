"""Import and export the authors' PyTorch checkpoints (VGG-11, VGG-F, DVS VGG, NF-ResNet-18/34/50).

Names map mechanically between the official ``state_dict`` and our Flax parameter tree:

* official → Flax: drop the ``.op`` wrapper segment, split off the last segment
  (``weight → kernel``, ``bias``, ``gain``, ``skipinit_gain``), join each numeric segment to its
  predecessor with ``_`` and use the rest as the module path; e.g.
  ``layer2.0.downsample.op.weight → ('layer2_0', 'downsample', 'kernel')``.
* Flax → official: the reverse, with ``.op`` inserted before the last segment exactly where the
  authors wrapped the layer in their spike/rate op (``WrapedSNNOp``), i.e. for every layer that
  applies the trace rule: every conv but the stem conv (``features.0``, VGG-F ``conv1``, ResNet
  ``conv1``), the VGG classifier ``classifier.0`` and VGG-F's ``fb_conv``. The NF-ResNet ``fc``
  and the scalar ``skipinit_gain`` are not wrapped.

Layouts: conv kernels OIHW ↔ HWIO, linear weights ``(out, in)`` ↔ ``[in, out]``, conv gains
``[out, 1, 1, 1]`` ↔ ``[out]``, biases and the scalar ``skipinit_gain`` unchanged.

Reading or writing ``.pth`` files needs PyTorch (``pip install 'ottt_jax[torch]'``), imported
only then; ``.npz`` files and in-memory mappings need nothing extra.

The name and layout mappings live in :mod:`ottt_jax.models.official_names` (re-exported here).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from ottt_jax.models.official_names import (
    Path,
    describe_architecture,
    flat_params,
    flax_path_to_official,
    kernel_ndims,
    official_to_flax_path,
    to_flax_array,
    to_official_array,
    to_official_shape,
)

__all__ = [
    "describe_architecture",
    "export_official",
    "flax_path_to_official",
    "import_official",
    "official_param_shapes",
    "official_to_flax_path",
]

_TORCH_HINT = "pip install 'ottt_jax[torch]'"
_MAX_LISTED = 20


# ---------------------------------------------------------------------------------------------
# The model's expected tree
# ---------------------------------------------------------------------------------------------


def _expected_params(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[Path, Any]:
    """Return the model's parameter shapes (``jax.eval_shape`` of ``model.init``; no compute)."""
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(isinstance(n, int) and n >= 1 for n in input_shape)
    ):
        raise ValueError(f"input_shape must be (H, W, C) positive ints, got {input_shape!r}")
    shape = tuple(input_shape)

    def init(key):
        state = model.init_state(1, shape, train=False)
        return model.init(key, state, jnp.zeros((1, *shape), jnp.float32))

    variables = jax.eval_shape(init, jax.random.key(0))
    return traverse_util.flatten_dict(dict(variables["params"]))


def official_param_shapes(
    model: nn.Module, input_shape: tuple[int, int, int]
) -> dict[str, tuple[int, ...]]:
    """Return the official ``state_dict`` names and shapes (PyTorch layout) matching a model.

    Args:
      model: any ``ottt_jax`` model (``init_state`` + ``__call__(state, x)``).
      input_shape: ``(H, W, C)`` of one frame.

    Returns:
      official name → shape, in the order of the model's parameter tree.
    """
    flat = _expected_params(model, input_shape)
    kdims = kernel_ndims(flat)
    return {
        flax_path_to_official(p): to_official_shape(p[-1], tuple(v.shape), kdims.get(p[:-1]))
        for p, v in flat.items()
    }


# ---------------------------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------------------------


def _import_torch(purpose: str):
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"{purpose} needs PyTorch; install it with: {_TORCH_HINT}") from e
    return torch


def _as_numpy(v: Any) -> np.ndarray:
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor
        v = v.detach().cpu()
        if str(getattr(v, "dtype", "")) == "torch.bfloat16":
            v = v.float()
        return v.numpy()
    return np.asarray(v)


def _load_source(source: Any) -> dict[str, np.ndarray]:
    if isinstance(source, Mapping):
        raw: Mapping = source
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as f:
                raw = {k: f[k] for k in f.files}
        elif path.endswith((".pth", ".pt")):
            torch = _import_torch(f"reading the checkpoint {path!r}")
            raw = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise ValueError(
                f"source path {path!r} must end in .pth/.pt (PyTorch) or .npz; or pass a mapping "
                "name -> array"
            )
    else:
        raise ValueError(
            "source must be a .pth/.npz path or a mapping name -> array, got "
            f"{type(source).__name__}"
        )
    if not isinstance(raw, Mapping):
        raise ValueError(f"the checkpoint must hold a state_dict mapping, got {type(raw).__name__}")
    for key in ("net", "state_dict"):
        if isinstance(raw.get(key), Mapping):
            raw = raw[key]
            break
    out: dict[str, np.ndarray] = {}
    for name, value in raw.items():
        if not isinstance(name, str):
            raise ValueError(f"state_dict keys must be strings, got {name!r}")
        if name.startswith("module."):  # DataParallel / DistributedDataParallel
            name = name[len("module.") :]
        arr = _as_numpy(value)
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"state_dict entry {name!r} is not numeric (dtype {arr.dtype})")
        out[name] = arr
    return out


def _listing(items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return "".join(f"\n    {s}" for s in shown) + more


def import_official(
    source: str | os.PathLike | Mapping[str, Any],
    model: nn.Module,
    input_shape: tuple[int, int, int],
) -> dict:
    """Load an official PyTorch checkpoint into a Flax parameter tree for ``model``.

    Args:
      source: a ``.pth`` file (needs PyTorch; holding ``{'net': state_dict, ...}`` as saved by the
        authors' training scripts, or a bare state_dict), an ``.npz`` file, or a mapping
        name → array (numpy arrays or torch tensors). A ``module.`` prefix is stripped.
      model: the matching ``ottt_jax`` model (e.g. ``nfresnet34()`` or a ``SpikingVGG``).
      input_shape: ``(H, W, C)`` of one frame, used to build the model's expected tree with
        ``jax.eval_shape`` (no forward pass is computed).

    Returns:
      ``params`` (nested dict of float arrays in Flax layout) for
      ``model.apply({'params': params}, ...)``.

    Raises:
      ValueError: listing missing parameters, unexpected parameters and shape mismatches
        (official name, expected and found shape, both in PyTorch layout), with a hint when the
        checkpoint looks like a different architecture.
      ImportError: for a ``.pth`` file when PyTorch is not installed.
    """
    arrays = _load_source(source)
    expected = _expected_params(model, input_shape)
    kdims = kernel_ndims(expected)
    exp_official = {
        p: (flax_path_to_official(p), to_official_shape(p[-1], tuple(v.shape), kdims.get(p[:-1])))
        for p, v in expected.items()
    }

    params: dict[Path, np.ndarray] = {}
    source_of: dict[Path, str] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    for name, arr in arrays.items():
        try:
            path = official_to_flax_path(name)
        except ValueError:
            unexpected.append(f"{name} {tuple(arr.shape)}")
            continue
        if path not in expected:
            unexpected.append(f"{name} {tuple(arr.shape)}")
            continue
        if path in source_of:
            unexpected.append(f"{name} (duplicate of {source_of[path]})")
            continue
        source_of[path] = name
        value = to_flax_array(path[-1], arr)
        want = expected[path]
        if tuple(value.shape) != tuple(want.shape):
            mismatched.append(f"{name}: expected {exp_official[path][1]}, got {tuple(arr.shape)}")
            continue
        params[path] = np.asarray(value, dtype=want.dtype)
    missing = [exp_official[p][0] for p in expected if p not in source_of]

    if missing or unexpected or mismatched:
        raise ValueError(
            _mismatch_report(arrays, exp_official, len(source_of), missing, unexpected, mismatched)
        )

    tree = traverse_util.unflatten_dict({p: jnp.asarray(v) for p, v in params.items()})
    return tree


def _mismatch_report(
    arrays: Mapping[str, np.ndarray],
    exp_official: Mapping[Path, tuple[str, tuple[int, ...]]],
    matched: int,
    missing: list[str],
    unexpected: list[str],
    mismatched: list[str],
) -> str:
    """Describe how a checkpoint fails to match the model, with a hint when it looks like another.

    Args:
      arrays: the checkpoint's ``{official name: array}``.
      exp_official: the model's ``{flax path: (official name, PyTorch-layout shape)}``.
      matched: how many checkpoint names matched a model parameter.
      missing, unexpected, mismatched: the listed problems.

    Returns:
      The multi-line error message.
    """
    parts = ["the checkpoint does not match the model:"]
    if missing:
        parts.append(f"  missing parameters ({len(missing)}):{_listing(missing)}")
    if unexpected:
        parts.append(f"  unexpected parameters ({len(unexpected)}):{_listing(unexpected)}")
    if mismatched:
        parts.append(
            f"  shape mismatches ({len(mismatched)}; PyTorch layout):{_listing(mismatched)}"
        )
    ckpt_desc = describe_architecture({n: tuple(a.shape) for n, a in arrays.items()})
    model_desc = describe_architecture(dict(exp_official.values()))
    if ckpt_desc != model_desc or matched < len(arrays) / 2:
        note = (
            f"most parameter names do not match ({matched} of {len(arrays)}); "
            if matched < len(arrays) / 2
            else ""
        )
        parts.append(
            f"  hint: {note}the checkpoint looks like {ckpt_desc}, but the model is "
            f"{model_desc}; build the model that matches the checkpoint"
        )
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


def export_official(
    params: Mapping, path: str | os.PathLike | None = None
) -> dict[str, np.ndarray]:
    """Convert a Flax parameter tree to the official ``state_dict`` (PyTorch names and layout).

    Args:
      params: the model's ``params`` (or ``{'params': params}``).
      path: optional file to write: ``*.npz`` (numpy) or ``*.pth``/``*.pt`` (``{'net':
        state_dict}`` saved with PyTorch, which must be installed).

    Returns:
      official name → numpy array (OIHW convs, ``(out, in)`` linears, ``[out, 1, 1, 1]`` conv
      gains). :func:`import_official` of it gives back ``params`` exactly.
    """
    flat = flat_params(params)
    kdims = kernel_ndims(flat)
    out: dict[str, np.ndarray] = {}
    for p, v in flat.items():
        name = flax_path_to_official(p)
        out[name] = to_official_array(p[-1], np.asarray(v), kdims.get(p[:-1]))
    if path is not None:
        fpath = os.fspath(path)
        if fpath.endswith(".npz"):
            np.savez(fpath, **out)
        elif fpath.endswith((".pth", ".pt")):
            torch = _import_torch(f"writing the checkpoint {fpath!r}")
            torch.save({"net": {k: torch.from_numpy(v) for k, v in out.items()}}, fpath)
        else:
            raise ValueError(f"path {fpath!r} must end in .npz or .pth/.pt")
    return out
