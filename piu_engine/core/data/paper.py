"""The published forget protocols, for comparison with the papers' tables:
MUFAC forgets the first 1,500 rows of the train CSV, MUCAC the identities
190 <= id < 1250. Other datasets have no published identity protocol."""

from __future__ import annotations

from piu_engine.core.config import DatasetConfig
from piu_engine.core.data.splits import SplitError, UnlearningSplits, make_splits
from piu_engine.core.data.types import FaceDataset


def paper_splits(ds: FaceDataset, cfg: DatasetConfig, unseen_fraction: float, seed: int) -> UnlearningSplits:
    if cfg.kind == "mufac":
        from piu_engine.core.data.mufac import paper_forget_indices

        idx = paper_forget_indices(ds)
        ids = sorted(set(ds.identities[idx].tolist()))
        return make_splits(ds, ids, unseen_unlearn_fraction=unseen_fraction, seed=seed, forget_indices=idx)
    if cfg.kind == "mucac":
        from piu_engine.core.data.mucac import paper_forget_identities

        return make_splits(ds, paper_forget_identities(ds), unseen_unlearn_fraction=unseen_fraction, seed=seed)
    raise SplitError(f"protocol 'paper' exists only for mufac and mucac, not {cfg.kind!r}")
