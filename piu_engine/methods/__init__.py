"""Registry of unlearning methods, one module each, behind one interface."""
from __future__ import annotations

import importlib
from typing import Any

from piu_engine.config import ConfigError
from piu_engine.methods.base import MethodSpec, UnlearnContext

_MODULES = ("piu_fr", "retrain", "finetune", "neggrad", "scrub", "random_label", "bad_teacher")

METHODS: dict[str, MethodSpec] = {}
for _name in _MODULES:
    for _spec in importlib.import_module(f"piu_engine.methods.{_name}").SPECS:
        METHODS[_spec.name] = _spec


def get_method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r} (known: {', '.join(METHODS)})") from None


def validate_overrides(name: str, overrides: dict[str, Any], key: str = "params") -> Any:
    """Check a method name and its parameter overrides; return the params object."""
    return get_method(name).make_params(overrides, key)


__all__ = ["METHODS", "MethodSpec", "UnlearnContext", "get_method", "validate_overrides"]
