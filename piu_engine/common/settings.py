"""The TOML settings builder: frozen dataclasses from TOML tables.

Unknown keys and wrong values are errors that name the key, so a typo never
silently falls back to a default. Layers above register their own sections
(``[service]``, ``[executor]``, ...) with :func:`register_section`; the core
parses them with the same rules without importing their owners.
"""

from __future__ import annotations

import sys
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

from piu_engine.common.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


# name -> dataclass for further top-level sections (filled by the service layer).
SECTIONS: dict[str, type] = {}


def register_section(name: str):
    """Class decorator: make ``[name]`` a typed, validated config section."""

    def deco(cls: type) -> type:
        SECTIONS[name] = cls
        return cls

    return deco


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if isinstance(tp, type) and is_dataclass(tp):
        return build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        for arg in args:
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: bad value {value!r}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)[:1]
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        _, vt = typing.get_args(tp)
        return {k: _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def build(cls: type, data: Any, key: str) -> Any:
    """Build dataclass ``cls`` from a TOML table, naming ``key`` in errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    kwargs = {name: _coerce(value, hints[name], f"{key}.{name}") for name, value in data.items()}
    for f in fields(cls):
        if f.init and f.name not in kwargs and f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"{key}.{f.name}: missing")
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate(key)
    return obj


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error is a :class:`ConfigError` naming the file."""
    try:
        with Path(path).open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
