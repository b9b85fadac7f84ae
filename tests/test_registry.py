"""The generic registry every extension point uses."""

import pytest

from ottt_jax.registry import Registry


def _positive(entry):
    if entry <= 0:
        raise ValueError(f"entry must be positive, got {entry}")


def test_register_get_names_in_registration_order():
    reg = Registry("widget", check=_positive)
    reg.register("b", 2)
    reg.register("a", 1)
    assert reg.names() == ("b", "a")
    assert reg.get("a") == 1
    assert "a" in reg and "c" not in reg
    assert list(reg) == ["b", "a"] and len(reg) == 2


def test_errors_name_the_kind_and_list_names():
    reg = Registry("widget", check=_positive)
    reg.register("alpha", 1)
    with pytest.raises(
        ValueError, match=r"unknown widget 'alpah'.*\['alpha'\].*did you mean 'alpha'"
    ):
        reg.get("alpah")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha", 3)
    assert reg.register("alpha", 3, overwrite=True) == 3 and reg.get("alpha") == 3
    with pytest.raises(ValueError, match="must be positive"):
        reg.register("beta", -1)
    assert "beta" not in reg
    with pytest.raises(ValueError, match="non-empty str"):
        reg.register("", 1)


def test_unregister():
    reg = Registry("widget")
    reg.register("a", 1)
    reg.unregister("a")
    assert reg.names() == ()
    with pytest.raises(ValueError, match="unknown widget 'a'"):
        reg.unregister("a")
