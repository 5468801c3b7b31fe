"""Split people, never images, into train / test / unseen.

Forgetting removes a person, so a person whose photos sit in two splits
would be "forgotten" while still being measured on; the split is decided per
identity and is a pure function of the identity list and the seed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from piu_engine.common.errors import DatasetError
from piu_engine.core.data.types import Split


def assign_identity_splits(
    identities: Iterable[str], test_fraction: float, unseen_fraction: float, seed: int = 0
) -> dict[str, Split]:
    """Map each distinct identity to a split: at least one test and one unseen
    identity, the rest (at least one) train. Deterministic for a given set."""
    people = sorted(set(identities))
    n = len(people)
    if n < 3:
        raise DatasetError(f"need at least 3 identities to split into train, test and unseen; found {n}")
    n_test = max(1, int(round(n * test_fraction)))
    n_unseen = max(1, int(round(n * unseen_fraction)))
    while n_test + n_unseen > n - 1:  # keep at least one training identity
        if n_unseen >= n_test and n_unseen > 1:
            n_unseen -= 1
        elif n_test > 1:
            n_test -= 1
        else:
            break
    order = np.random.default_rng(seed).permutation(n)
    out: dict[str, Split] = {}
    for rank, idx in enumerate(order):
        if rank < n_test:
            out[people[idx]] = Split.TEST
        elif rank < n_test + n_unseen:
            out[people[idx]] = Split.UNSEEN
        else:
            out[people[idx]] = Split.TRAIN
    return out
