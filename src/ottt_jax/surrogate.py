"""Surrogate spike functions: Heaviside forward, pluggable smooth derivative backward.

A surrogate is a small frozen (hashable) dataclass. Calling it on ``x = v - V_th`` returns the
Heaviside step ``1[x >= 0]`` in the dtype of ``x`` (so it fires exactly at the threshold), while
its derivative under ``jax.grad``/``jax.jvp`` is ``surrogate.derivative(x)``. Every surrogate also
has a ``primitive(x)``, a smooth function whose exact derivative is ``derivative``; the tests check
that pair with ``jax.grad``.

Because surrogates are hashable values, they can be static arguments of ``jax.jit`` and attributes
of Flax modules without retracing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from ottt_jax.registry import Registry

Array = jax.Array

__all__ = [
    "Atan",
    "Clamp",
    "Custom",
    "Rectangular",
    "Sigmoid",
    "Surrogate",
    "custom",
    "default_param",
    "get_surrogate",
    "heaviside",
    "register_surrogate",
    "surrogate_names",
    "unregister_surrogate",
]


def heaviside(x: Array) -> Array:
    """Return the Heaviside step ``1[x >= 0]`` in the dtype of ``x`` (no gradient rule).

    Args:
      x: any shape; ``v - V_th``.

    Returns:
      Array of the same shape and dtype with values in {0, 1}.

    Eq. (1) of the paper: ``s = H(u - V_th)``.
    """
    return (x >= 0).astype(x.dtype)


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def _spike(surrogate: Surrogate, x: Array) -> Array:
    return heaviside(x)


@_spike.defjvp
def _spike_jvp(surrogate: Surrogate, primals: tuple[Array], tangents: tuple[Array]):
    (x,), (dx,) = primals, tangents
    # Evaluate the derivative in at least float32 (bfloat16 sigmoids saturate to 0 too early),
    # then round it to x's dtype before the product: the derivative is the residual that
    # linearization keeps (BPTT stacks it over T), so in bfloat16 it is stored in bfloat16.
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return heaviside(x), surrogate.derivative(xf).astype(x.dtype) * dx.astype(x.dtype)


class Surrogate:
    """Base class: Heaviside forward, ``derivative`` backward.

    Subclasses are frozen dataclasses and implement ``derivative(x)`` and ``primitive(x)``.
    """

    name: str = "surrogate"

    def __call__(self, x: Array) -> Array:
        """Spike: ``H(x)`` forward, ``self.derivative(x)`` as ``ds/dx`` under autodiff.

        Args:
          x: ``v - V_th``, any shape, floating dtype (float32 or bfloat16).

        Returns:
          Spikes in {0, 1}, same shape and dtype as ``x``.
        """
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"surrogate input must be floating point, got dtype {x.dtype}")
        return _spike(self, x)

    def derivative(self, x: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def primitive(self, x: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError


class _OneParameter(Surrogate):
    """A built-in surrogate: a frozen dataclass whose one parameter is a finite number > 0."""

    def __post_init__(self):
        for fld in dataclasses.fields(self):
            _check_positive(fld.name, getattr(self, fld.name))


@dataclasses.dataclass(frozen=True)
class Sigmoid(_OneParameter):
    """Sigmoid surrogate ``α·σ(αx)(1 − σ(αx))`` (the authors' default, α = 4)."""

    alpha: float = 4.0
    name = "sigmoid"

    def primitive(self, x: Array) -> Array:
        return jax.nn.sigmoid(self.alpha * x)

    def derivative(self, x: Array) -> Array:
        sg = jax.nn.sigmoid(self.alpha * x)
        return self.alpha * sg * (1 - sg)


@dataclasses.dataclass(frozen=True)
class Rectangular(_OneParameter):
    """Rectangular surrogate ``(1/a)·1[|x| < a/2]``."""

    a: float = 1.0
    name = "rectangular"

    def primitive(self, x: Array) -> Array:
        return jnp.clip(x / self.a + 0.5, 0.0, 1.0)

    def derivative(self, x: Array) -> Array:
        return (jnp.abs(x) < self.a / 2).astype(x.dtype) / self.a


@dataclasses.dataclass(frozen=True)
class Clamp(_OneParameter):
    """The paper's clamp-derivative surrogate ``1[|x| < V_th]`` (Sec. 4.2).

    Its primitive is ``clamp(x + V_th, 0, 2 V_th) / 2 V_th · 2 V_th`` up to a constant, i.e. the
    derivative of ``clip(x, -V_th, V_th)``.
    """

    v_th: float = 1.0
    name = "clamp"

    def primitive(self, x: Array) -> Array:
        return jnp.clip(x, -self.v_th, self.v_th)

    def derivative(self, x: Array) -> Array:
        return (jnp.abs(x) < self.v_th).astype(x.dtype)


@dataclasses.dataclass(frozen=True)
class Atan(_OneParameter):
    """Arctangent surrogate ``(α/2) / (1 + (π/2·α·x)²)``, primitive ``arctan(π/2·α·x)/π + 1/2``."""

    alpha: float = 2.0
    name = "atan"

    def primitive(self, x: Array) -> Array:
        return jnp.arctan(math.pi / 2 * self.alpha * x) / math.pi + 0.5

    def derivative(self, x: Array) -> Array:
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x) ** 2)


@dataclasses.dataclass(frozen=True)
class Custom(Surrogate):
    """A user-defined surrogate built by :func:`custom`."""

    derivative_fn: Callable[[Array], Array] = dataclasses.field(compare=True)
    primitive_fn: Callable[[Array], Array] | None = None
    name: str = "custom"  # type: ignore[misc]

    def derivative(self, x: Array) -> Array:
        return jnp.asarray(self.derivative_fn(x), x.dtype)

    def primitive(self, x: Array) -> Array:
        if self.primitive_fn is None:
            raise ValueError(f"surrogate {self.name!r} was built without a primitive")
        return self.primitive_fn(x)


def custom(
    derivative: Callable[[Array], Array],
    primitive: Callable[[Array], Array] | None = None,
    name: str = "custom",
) -> Custom:
    """Build a surrogate from a user's derivative ``ds/dx`` (and optionally its primitive).

    Args:
      derivative: elementwise function of ``x = v - V_th`` giving the surrogate ``ds/dx``.
      primitive: optional smooth function whose derivative is ``derivative`` (used in tests and
        analysis only).
      name: a label.

    Returns:
      A hashable surrogate. Pass the *same* function objects to get equal (cache-hitting) values.
    """
    if not callable(derivative):
        raise ValueError(f"derivative must be callable, got {type(derivative).__name__}")
    return Custom(derivative_fn=derivative, primitive_fn=primitive, name=name)


_SURROGATES: Registry[type[Surrogate]] = Registry("surrogate")


def register_surrogate(name: str, cls: type[Surrogate], overwrite: bool = False) -> type[Surrogate]:
    """Register a surrogate class under ``name`` for :func:`get_surrogate` and the config.

    Args:
      name: the name (the config's ``model.surrogate``).
      cls: a :class:`Surrogate` dataclass with one parameter field (its default is the default).
      overwrite: replace an entry of the same name (else that is a ValueError).

    Returns:
      ``cls``.
    """
    if not (isinstance(cls, type) and issubclass(cls, Surrogate)):
        raise ValueError(f"surrogate {name!r} must be a Surrogate subclass, got {cls!r}")
    return _SURROGATES.register(name, cls, overwrite=overwrite)


def unregister_surrogate(name: str) -> None:
    """Remove the surrogate ``name`` (a ValueError lists the registered names when unknown)."""
    _SURROGATES.unregister(name)


for _cls in (Sigmoid, Rectangular, Clamp, Atan):
    register_surrogate(_cls.name, _cls)


def get_surrogate(spec: str | Surrogate, **kwargs: Any) -> Surrogate:
    """Resolve a surrogate from a registered name (:func:`surrogate_names`) or return one as is.

    Args:
      spec: a name or an existing :class:`Surrogate` (returned as is).
      **kwargs: the surrogate's parameters, e.g. ``alpha=4.0``.

    Returns:
      The surrogate.
    """
    if isinstance(spec, Surrogate):
        if kwargs:
            raise ValueError("keyword parameters are only accepted with a surrogate name")
        return spec
    cls = _SURROGATES.get(spec)
    try:
        return cls(**kwargs)
    except TypeError as e:
        fields = [f.name for f in dataclasses.fields(cls)]
        raise ValueError(f"surrogate {spec!r} accepts parameters {fields}, got {kwargs}") from e


def surrogate_names() -> tuple[str, ...]:
    """Return the names :func:`get_surrogate` accepts, in registration order."""
    return _SURROGATES.names()


def default_param(name: str) -> tuple[str, float]:
    """Return the parameter of the named surrogate and its default, e.g. ``('alpha', 4.0)``.

    Args:
      name: one of :func:`surrogate_names`.

    Returns:
      ``(parameter name, default value)``: the surrogate dataclass's one field.
    """
    (fld,) = dataclasses.fields(_SURROGATES.get(name))
    return fld.name, fld.default


def _check_positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"surrogate parameter {name} must be a finite number > 0, got {value!r}")
