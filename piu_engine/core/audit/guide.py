"""Where models that never saw a person put them: PIU-FR's per-person targets.

The audit asks of each forgotten person whether their mean confidence sits
where reference models that never saw *that* person put them (people differ:
some are hard to recognise for everyone). An unlearning method that aims every
forgotten photo at one population-wide level leaves the hard people above
their own level and pushes the easy ones below it. The guide gives each person
their own level instead, from a **guide pool**: a second pool of reference
models with another seed, so that the audit is never judged by the models that
set the targets.

The level is in the unlearned model's own scale: the parent model trains on
twice the people a reference model does, so its never-seen people score higher
than on the references. That offset is measured on the people of the
*unlearning* part of unseen (never seen by the parent or by any reference
model; never the evaluation part the audit calibrates on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from piu_engine.core.audit import lira
from piu_engine.core.audit.reference import ReferencePool

MIN_REFERENCE_PEOPLE = 5  # fewer never-seen people give no offset worth trusting: no guidance


@dataclass(frozen=True)
class PersonLevels:
    levels: dict[str, float]  # per person: the parent-scale mean confidence of a never-seen person like them
    offset: float  # mean standardised score of never-seen people on the parent (the scale offset)
    reference_people: int
    pool_seed: int
    pool_k: int

    def summary(self) -> dict:
        return {
            "guide_pool_seed": self.pool_seed,
            "guide_pool_models": self.pool_k,
            "guide_people": len(self.levels),
            "guide_reference_people": self.reference_people,
            "guide_offset": self.offset,
        }


def never_seen_levels(pool: ReferencePool, people: list[str], reference: dict[str, float]) -> PersonLevels | None:
    """Each of ``people``'s level: their out-models' mean score plus ``offset`` of
    their out-models' spread, ``offset`` being the mean z of the ``reference``
    people (name -> mean confidence on the parent; never seen by anyone).
    None when there are too few reference people to measure the offset."""
    names = sorted(reference)
    if len(names) < MIN_REFERENCE_PEOPLE:
        return None
    ref = lira.out_stats(pool, names)
    offset = float(np.mean(lira.zscores(np.array([reference[p] for p in names]), ref)))
    own = lira.out_stats(pool, list(people))
    levels = {p: float(m + s * offset) for p, m, s in zip(people, own.mean, own.std)}
    return PersonLevels(levels, offset, len(names), pool.seed, pool.k)
