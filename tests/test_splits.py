"""Splits are by person: no identity leaks across forget/retain/test/unseen,
and PIU-FR's unseen partition keeps its two parts apart."""

import numpy as np
import pytest
from piu_engine.core.data.splits import SplitError, choose_forget_identities, label_matched_partners, make_splits
from piu_engine.core.data.synthetic import generate


@pytest.fixture(scope="module")
def ds():
    return generate(20, 6, 10, 5, 16, seed=3)


def ids(ds, idx):
    return set(ds.identities[idx].tolist())


def test_identity_level_splits_never_leak(ds):
    forget_ids = choose_forget_identities(ds, 5, seed=1)
    s = make_splits(ds, forget_ids, seed=1)
    parts = {name: ids(ds, getattr(s, name)) for name in ("forget", "retain", "test", "unseen_unlearn", "unseen_eval")}
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not parts[a] & parts[b], f"{a} and {b} share identities"
    assert parts["forget"] == set(forget_ids)
    # forget holds *all* training images of those people
    assert len(s.forget) == 5 * 5
    assert len(s.forget) + len(s.retain) == 20 * 5


def test_previously_forgotten_are_excluded_from_retain(ds):
    first = choose_forget_identities(ds, 3, seed=1)
    rest = [i for i in ds.identities_in("train") if i not in first][:2]
    s = make_splits(ds, rest, already_forgotten=first, seed=0)
    assert not ids(ds, s.retain) & set(first)
    assert ids(ds, s.excluded) == set(first)


def test_unknown_identity_is_an_error(ds):
    with pytest.raises(SplitError, match="nobody"):
        make_splits(ds, ["nobody"])
    test_person = ds.identities_in("test")[0]
    with pytest.raises(SplitError):
        make_splits(ds, [test_person])


def test_label_matched_pairing(ds):
    s = make_splits(ds, choose_forget_identities(ds, 5, seed=2), seed=2)
    partners = label_matched_partners(ds, s.forget, s.unseen_unlearn, seed=0)
    assert len(partners) == len(s.forget)
    assert set(partners.tolist()) <= set(s.unseen_unlearn.tolist())
    labels = ds.labels.numpy()
    pool_labels = set(labels[s.unseen_unlearn].tolist())
    matchable = np.array([labels[i] in pool_labels for i in s.forget])
    assert (labels[partners][matchable] == labels[s.forget][matchable]).all()


def test_synthetic_is_deterministic():
    a, b = generate(4, 1, 1, 3, 16, seed=5), generate(4, 1, 1, 3, 16, seed=5)
    assert (a.images == b.images).all() and (a.labels == b.labels).all()
    c = generate(4, 1, 1, 3, 16, seed=6)
    assert not (a.images == c.images).all()
