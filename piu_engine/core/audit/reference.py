"""A built reference pool as read back from disk: per model and person the
score, and who each model trained on. numpy only: auditing needs no
reference-model weights, only the scores computed when each was trained."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from piu_engine.core.audit.manifest import read_manifest


class PoolIncomplete(RuntimeError):
    """Some reference models of the pool are not trained yet (build_pool resumes)."""


@dataclass
class ReferencePool:
    path: Path
    key: str
    k: int
    seed: int
    model_seeds: list[int]
    identities: list[str]  # every scored person (training, test and unseen), sorted
    members: np.ndarray  # bool [k, len(identities)]; never-seen people are False everywhere
    scores: np.ndarray  # float [k, len(identities)]: mean phi of the person on model m
    created: str
    completed: str | None
    train_seconds: list[float]
    score_seconds: list[float]
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # derived figures (lira)

    def __post_init__(self) -> None:
        self._index = {p: j for j, p in enumerate(self.identities)}

    def column(self, person: str) -> int:
        try:
            return self._index[person]
        except KeyError:
            raise KeyError(f"{person!r} is not scored by reference pool {self.key}") from None

    @property
    def n_out_design(self) -> int:
        """Models that never saw a training person: K - K // 2 for every one of them."""
        return self.k - self.k // 2

    @property
    def build_seconds(self) -> float:
        """Wall-clock of training and scoring all K models, as each recorded it."""
        return float(sum(self.train_seconds) + sum(self.score_seconds))

    def summary(self) -> dict[str, Any]:
        """What a UI shows: size, seeds, members (training identities x models) and times."""
        train = self.manifest.get("identities", [])
        return {
            "key": self.key,
            "k": self.k,
            "seed": self.seed,
            "model_seeds": self.model_seeds,
            "created": self.created,
            "completed": self.completed,
            "path": str(self.path),
            "identities": train,
            "members": self.manifest.get("members", []),
            "build_seconds": self.build_seconds,
        }

    @classmethod
    def read(cls, pool_dir: Path) -> ReferencePool:
        """Open a finished pool; :class:`PoolIncomplete` if models are missing."""
        pool_dir = Path(pool_dir)
        manifest = read_manifest(pool_dir)
        if manifest is None:
            raise PoolIncomplete(f"no reference pool at {pool_dir} (build it first)")
        models = manifest["models"]
        total = len(models)
        sidecars = [pool_dir / m["scores_file"] for m in models]
        missing = [
            m["index"] for m, s in zip(models, sidecars) if not (s.exists() and (pool_dir / m["model_file"]).exists())
        ]
        if missing:
            raise PoolIncomplete(
                f"reference pool {manifest['key']}: {total - len(missing)} of {total} models "
                f"trained (missing {missing[:8]})"
            )
        scores = [json.loads(s.read_text()) for s in sidecars]
        people = sorted(scores[0]["scores"])
        col = {p: j for j, p in enumerate(people)}
        matrix = np.full((len(models), len(people)), np.nan)
        for m, sc in enumerate(scores):
            for p, v in sc["scores"].items():
                matrix[m, col[p]] = np.nan if v is None else v
        members = np.zeros_like(matrix, dtype=bool)
        for j, p in enumerate(manifest["identities"]):
            members[:, col[p]] = [bool(row[j]) for row in manifest["members"]]
        return cls(
            pool_dir,
            manifest["key"],
            int(manifest["k"]),
            int(manifest["seed"]),
            list(manifest["model_seeds"]),
            people,
            members,
            matrix,
            manifest["created"],
            manifest.get("completed"),
            [float(s["train_seconds"]) for s in scores],
            [float(s["score_seconds"]) for s in scores],
            manifest,
        )
