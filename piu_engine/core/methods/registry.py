"""Each catalogued method bound to the function that runs it."""

from __future__ import annotations

import importlib

from piu_engine.core.methods.base import MethodSpec, guarded
from piu_engine.core.methods.catalog import CATALOG, method_info

_MODULES = (
    "piu_fr",
    "retrain",
    "finetune",
    "neggrad",
    "scrub",
    "random_label",
    "bad_teacher",
    "salun",
    "perturb",
    "l1_sparse",
    "regun",
)

_RUNS = {}
for _name in _MODULES:
    _RUNS.update(importlib.import_module(f"piu_engine.core.methods.{_name}").RUNS)
if set(_RUNS) != set(CATALOG):  # pragma: no cover - a developer error caught at import
    raise RuntimeError(f"methods without a run or a catalog entry: {sorted(set(_RUNS) ^ set(CATALOG))}")

# Every run is guarded: divergence names the method, and a non-finite model is never returned.
METHODS: dict[str, MethodSpec] = {name: MethodSpec(info, guarded(name, _RUNS[name])) for name, info in CATALOG.items()}


def get_method(name: str) -> MethodSpec:
    method_info(name)  # the catalog's error for an unknown name
    return METHODS[name]
