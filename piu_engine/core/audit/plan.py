"""Which training identities each reference model sees, and the cache keys.

The design is Carlini et al.'s: for every identity an exact half of the K
models (K // 2) are drawn to train on it, so every person has the same
number of models that never saw them (K - K // 2) and each model sees about
half of the people. Everything here is a pure function of the data
fingerprint, the recipe, K and the pool seed, so a rebuild after a crash
plans the same pool and finds the models already trained.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from piu_engine.core.data.types import Split

if TYPE_CHECKING:  # the workbench imports the methods; only its type is needed here
    from piu_engine.core.workbench import Workbench

POOL_FORMAT = 1


def member_matrix(n_identities: int, k: int, seed: int) -> np.ndarray:
    """bool [k, n]: True where model m trains on identity j; every column has exactly k // 2 True."""
    if k < 2:
        raise ValueError(f"a reference pool needs at least 2 models, got {k}")
    if n_identities < 2:
        raise ValueError("a reference pool needs at least 2 training identities")
    rng = np.random.default_rng([seed, 1])
    for _ in range(100):  # redraw in the (tiny-data) case that some model would train on nobody
        ranks = rng.uniform(size=(k, n_identities)).argsort(0).argsort(0)
        members = ranks < k // 2
        if members.any(1).all():
            return members
    raise ValueError(f"cannot give each of {k} models a training identity out of {n_identities}")


def model_seeds(k: int, seed: int) -> list[int]:
    return [int(s) for s in np.random.default_rng([seed, 2]).integers(0, 2**31 - 1, size=k)]


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PoolPlan:
    """A reference pool before (or while) it is built."""

    key: str  # data fingerprint + recipe + K + pool seed
    k: int
    seed: int
    identities: list[str]  # the training identities, sorted; the members' columns
    members: np.ndarray  # bool [k, len(identities)]
    seeds: list[int]  # training seed of each model
    model_keys: list[str]  # per model: pool key + its seed + its member set
    directory: Path

    def member_identities(self, i: int) -> list[str]:
        return [p for p, m in zip(self.identities, self.members[i]) if m]

    def model_path(self, i: int) -> Path:
        return self.directory / f"model-{i:03d}-{self.model_keys[i][:16]}.pt"

    def scores_path(self, i: int) -> Path:
        """The sidecar with the model's per-person scores; written last, so its presence means done."""
        return self.model_path(i).with_suffix(".json")


def plan_pool(wb: Workbench, k: int = 16, seed: int = 0) -> PoolPlan:
    """The pool of ``k`` models for ``wb``'s dataset and recipe.

    The key reuses the workbench's own fingerprint of the original model (the
    dataset's config and bytes, preset, recipe, device, AMP, torch version,
    initial weights), so whatever invalidates a cached original model also
    invalidates its reference pool.
    """
    identities = wb.ds.identities_in(Split.TRAIN)
    members = member_matrix(len(identities), k, seed)
    seeds = model_seeds(k, seed)
    base = wb._original_key(seed)  # noqa: SLF001 - the one data+recipe fingerprint, shared on purpose
    key = _digest("reference-pool", POOL_FORMAT, base, k, seed)
    model_keys = []
    for i in range(k):
        who = hashlib.sha256("\n".join(p for p, m in zip(identities, members[i]) if m).encode()).hexdigest()
        model_keys.append(_digest("reference-model", key, i, seeds[i], who))
    directory = Path(wb.cache_dir) / "pools" / f"pool-{key}"
    return PoolPlan(key, k, seed, identities, members, seeds, model_keys, directory)
