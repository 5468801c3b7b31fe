"""Identity-level unlearning splits and PIU-FR's unseen partition.

The unit of forgetting is a person: forget holds every training image of the
chosen identities, retain the rest of train minus anyone forgotten earlier.
The unseen pool is split by identity into a part PIU-FR may learn from and an
evaluation part the MIA is measured on, so no person sits in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from piu_engine.core.data.types import FaceDataset, Split


class SplitError(ValueError):
    pass


@dataclass
class UnlearningSplits:
    forget: np.ndarray
    retain: np.ndarray
    test: np.ndarray
    unseen_unlearn: np.ndarray
    unseen_eval: np.ndarray
    forget_identities: list[str]
    excluded: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def counts(self) -> dict[str, int]:
        return {
            name: int(len(getattr(self, name)))
            for name in ("forget", "retain", "test", "unseen_unlearn", "unseen_eval", "excluded")
        }


def choose_forget_identities(ds: FaceDataset, count: int, seed: int) -> list[str]:
    """``count`` training identities drawn at random (seeded)."""
    train_ids = ds.identities_in(Split.TRAIN)
    if not 0 < count < len(train_ids):
        raise SplitError(f"cannot forget {count} of {len(train_ids)} training identities")
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(train_ids, size=count, replace=False).tolist())


def partition_unseen(ds: FaceDataset, unlearn_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split unseen samples by identity into (unlearning part, evaluation part)."""
    unseen = ds.indices(Split.UNSEEN)
    ids = sorted(set(ds.identities[unseen].tolist()))
    if len(ids) < 2:
        raise SplitError("the unseen pool needs at least two identities")
    rng = np.random.default_rng(seed + 7919)
    order = rng.permutation(len(ids))
    k = min(len(ids) - 1, max(1, int(round(unlearn_fraction * len(ids)))))
    unlearn_ids = {ids[i] for i in order[:k]}
    mask = np.array([i in unlearn_ids for i in ds.identities[unseen]])
    return unseen[mask], unseen[~mask]


def make_splits(
    ds: FaceDataset,
    forget_identities: list[str],
    already_forgotten: list[str] = (),
    unseen_unlearn_fraction: float = 0.5,
    seed: int = 0,
    forget_indices: np.ndarray | None = None,
) -> UnlearningSplits:
    """Build the splits; ``forget_indices`` overrides identity selection (paper protocol)."""
    train = ds.indices(Split.TRAIN)
    train_ids = set(ds.identities[train].tolist())
    unknown = sorted(set(forget_identities) - train_ids)
    if unknown:
        raise SplitError(f"not training identities of {ds.name}: {', '.join(unknown[:10])}")
    gone = set(already_forgotten) - set(forget_identities)
    if forget_indices is None:
        wanted = set(forget_identities)
        forget = train[np.array([i in wanted for i in ds.identities[train]], dtype=bool)]
    else:
        forget = np.asarray(forget_indices, dtype=np.int64)
    is_forget = np.zeros(len(ds), dtype=bool)
    is_forget[forget] = True
    is_gone = np.array([i in gone for i in ds.identities], dtype=bool)
    retain = train[~is_forget[train] & ~is_gone[train]]
    excluded = train[is_gone[train] & ~is_forget[train]]
    unlearn, evaluation = partition_unseen(ds, unseen_unlearn_fraction, seed)
    if len(forget) == 0:
        raise SplitError("the forget set is empty")
    return UnlearningSplits(
        forget=forget,
        retain=retain,
        test=ds.indices(Split.TEST),
        unseen_unlearn=unlearn,
        unseen_eval=evaluation,
        forget_identities=sorted(set(ds.identities[forget].tolist())),
        excluded=excluded,
    )


def label_buckets(ds: FaceDataset, forget: np.ndarray, pool: np.ndarray) -> list[np.ndarray]:
    """For each forget sample, the pool samples with its label (the whole pool
    for a label the pool lacks): PIU-FR draws its partner from it, ReGUn
    averages the original's outputs over it."""
    if len(pool) == 0:
        raise SplitError("the unseen unlearning pool is empty")
    classes = ds.class_index()
    buckets = {int(c): pool[classes[pool] == c] for c in np.unique(classes[pool])}
    return [buckets.get(int(classes[i]), pool) for i in forget]


def label_matched_partners(ds: FaceDataset, forget: np.ndarray, pool: np.ndarray, seed: int) -> np.ndarray:
    """For each forget sample, a random pool sample with the same label.

    PIU-FR's pairing: unseen batch i lines up with forget batch i. A label the
    pool lacks falls back to a random pool sample.
    """
    rng = np.random.default_rng(seed + 104729)
    return np.array([b[rng.integers(len(b))] for b in label_buckets(ds, forget, pool)], dtype=np.int64)
