"""The offline LiRA statistic per person (Carlini et al. 2022).

For each person: the mean and spread of their score over the reference
models that never saw them, and the target's standardised distance from it,
z = (score - mean) / std.

Two remedies for a small pool, both estimated from the pool itself:
- the std is pooled over the pool's training people (Carlini's "global
  variance") unless there are at least ``min_out_for_own_std`` out-models;
- the person's out-mean is shrunk towards the mean over people by the share
  of its spread that is real (empirical Bayes: lambda = between-person
  variance / (that + within-person variance / n_out)). With many consistent
  models lambda is near 1 and this is plain LiRA; when the pool cannot tell
  people's difficulty apart (a handful of noisy models) lambda is near 0 and
  z falls back to the target's own score, the population attack, instead of
  adding the noise of a two-model mean. ``shrink=False`` gives plain LiRA.

Never-seen people (test, unseen) are out for every reference model. So that
they stand in for a forgotten person exactly (same number of out-models,
same noise in the mean), each is compared with a fixed random K - K // 2 of
the models, drawn from the pool seed and their name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from piu_engine.core.audit.reference import ReferencePool

MIN_OUT_FOR_OWN_STD = 32


@dataclass
class OutStats:
    mean: np.ndarray
    std: np.ndarray
    n_out: np.ndarray
    variance: str  # "pooled" or "per-person"
    shrinkage: float  # lambda applied to the out-means (1 = plain LiRA)


@dataclass(frozen=True)
class PoolSpread:
    within_std: float  # of one model's score around the person's out-mean (pooled)
    between_std: float  # of people's true out-means
    grand_mean: float  # of people's out-means
    shrinkage: float  # lambda for a person with the design's number of out-models


def _stable_seed(pool: ReferencePool, person: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{pool.seed}\0{person}".encode()).digest()[:8], "little")


def out_models(pool: ReferencePool, person: str) -> np.ndarray:
    """Indices of the models the person is compared with."""
    j = pool.column(person)
    outs = np.flatnonzero(~pool.members[:, j])
    if len(outs) == pool.k and pool.k > pool.n_out_design:  # never seen by any model: match the design
        rng = np.random.default_rng(_stable_seed(pool, person))
        outs = np.sort(rng.choice(pool.k, size=pool.n_out_design, replace=False))
    return outs


def _out_scores(pool: ReferencePool, person: str) -> np.ndarray:
    s = pool.scores[out_models(pool, person), pool.column(person)]
    return s[np.isfinite(s)]


def spread(pool: ReferencePool) -> PoolSpread:
    """Variance components of out-model scores over the pool's training people (computed once per pool)."""
    if "spread" in pool.cache:
        return pool.cache["spread"]
    ss, dof, means = 0.0, 0, []
    for j in np.flatnonzero(pool.members.any(0)):
        s = _out_scores(pool, pool.identities[j])
        if len(s) >= 2:
            ss += float(((s - s.mean()) ** 2).sum())
            dof += len(s) - 1
            means.append(s.mean())
    if dof == 0 or len(means) < 2:
        raise ValueError("the reference pool has too few out-models to estimate a variance")
    within2 = ss / dof
    between2 = max(float(np.var(means, ddof=1)) - within2 / pool.n_out_design, 0.0)
    lam = between2 / (between2 + within2 / pool.n_out_design) if between2 > 0 else 0.0
    pool.cache["spread"] = PoolSpread(
        float(np.sqrt(within2)), float(np.sqrt(between2)), float(np.mean(means)), float(lam)
    )
    return pool.cache["spread"]


def out_stats(
    pool: ReferencePool, people: list[str], min_out_for_own_std: int = MIN_OUT_FOR_OWN_STD, shrink: bool = True
) -> OutStats:
    sp = spread(pool)
    own = pool.n_out_design >= min_out_for_own_std
    mean, std = np.empty(len(people)), np.empty(len(people))
    n = np.empty(len(people), dtype=int)
    for i, person in enumerate(people):
        s = _out_scores(pool, person)
        n[i] = len(s)
        raw = s.mean() if len(s) else sp.grand_mean
        if shrink and len(s):
            w2, b2 = sp.within_std**2, sp.between_std**2
            lam = b2 / (b2 + w2 / len(s)) if b2 > 0 else 0.0
            mean[i] = sp.grand_mean + lam * (raw - sp.grand_mean)
        else:
            mean[i] = raw
        std[i] = max(float(s.std(ddof=1)), 1e-6) if own and len(s) >= 2 else sp.within_std
    return OutStats(mean, std, n, "per-person" if own else "pooled", sp.shrinkage if shrink else 1.0)


def zscores(scores: np.ndarray, stats: OutStats) -> np.ndarray:
    return (np.asarray(scores, float) - stats.mean) / stats.std
