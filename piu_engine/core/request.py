"""The forget request and what it produced, as plain types without PyTorch.

Both sides of the process boundary use them: the service builds a
:class:`ForgetRequest`, the worker runs it (:mod:`piu_engine.core.forget`)
and sends a :class:`ForgetOutcome` back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

# The figures one evaluation gives, in the order tables show them (REFERENCE.md defines each).
METRIC_NAMES = ("test_acc", "forget_acc", "retain_acc", "unseen_acc", "mia", "mia_std", "forgetting_score", "nomus")
# How many images and people each figure rests on (a figure on a handful of images is noise).
SAMPLE_COUNT_NAMES = ("n_forget", "n_unseen_eval", "n_test", "n_forget_identities", "n_unseen_identities")


@dataclass
class ForgetRequest:
    dataset: str  # a configured dataset name
    groups: dict[str, list[str]]  # request_id -> identities it asks to forget (coalesced batch)
    already_forgotten: list[str] = field(default_factory=list)  # earlier versions in the lineage
    method: str = "piu-fr"
    params: dict[str, Any] = field(default_factory=dict)
    compare: list[str] = field(default_factory=list)
    seed: int = 0
    preset: str = ""  # "" = the bench preset in config

    @property
    def identities(self) -> list[str]:
        seen: dict[str, None] = {}
        for ids in self.groups.values():
            for i in ids:
                seen.setdefault(i, None)
        return list(seen)


def _number(value: Any) -> float | None:
    """A measured figure, or None when it was not measured (None, NaN, not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class Metrics:
    """One evaluation of one model on a request's splits; None = not measured.

    The same type on both sides of the process boundary: the worker sends
    :meth:`to_dict`, the service reads it back with :meth:`from_dict`, and
    figures it does not know (``extra``) travel unchanged.
    """

    test_acc: float | None = None
    forget_acc: float | None = None
    retain_acc: float | None = None
    unseen_acc: float | None = None
    mia: float | None = None
    mia_std: float | None = None
    forgetting_score: float | None = None
    nomus: float | None = None
    seconds: float | None = None  # wall-clock of the method that made the model
    n_forget: int | None = None
    n_unseen_eval: int | None = None
    n_test: int | None = None
    n_forget_identities: int | None = None
    n_unseen_identities: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Metrics:
        rest = dict(d or {})
        known = {}
        for f in fields(cls):
            if f.name != "extra" and f.name in rest:
                value = rest.pop(f.name)
                known[f.name] = _count(value) if f.name in SAMPLE_COUNT_NAMES else _number(value)
        return cls(**known, extra=rest)

    def to_dict(self) -> dict[str, Any]:
        """Every figure, an unmeasured one as None (null in JSON); counts and time when known."""
        out = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name in METRIC_NAMES or (f.name != "extra" and getattr(self, f.name) is not None)
        }
        return {**out, **self.extra}


@dataclass
class ForgetOutcome:
    parent: Metrics  # the parent model on this request's splits
    model: Metrics  # the new model
    baselines: dict[str, Metrics]  # compare method -> its model
    per_group: dict[str, Metrics]  # request_id -> the new model on that request's own forget set
    counts: dict[str, int]  # images per split the figures rest on
    seconds: float  # wall-clock of the unlearning method itself
    sha256: str  # of the written checkpoint
    method_params: dict[str, Any] = field(default_factory=dict)
    # The per-person audit of the new model and of its parent against the reference pool
    # ({"pool": ..., "model": AuditResult dict, "parent": AuditResult dict}); None: no pool.
    audit: dict[str, Any] | None = None
    method_notes: dict[str, Any] = field(default_factory=dict)  # e.g. the guide pool PIU-FR took its targets from

    def to_dict(self) -> dict[str, Any]:
        return {
            "audit": self.audit,
            "parent": self.parent.to_dict(),
            "model": self.model.to_dict(),
            "baselines": {k: m.to_dict() for k, m in self.baselines.items()},
            "per_group": {k: m.to_dict() for k, m in self.per_group.items()},
            "counts": dict(self.counts),
            "seconds": self.seconds,
            "sha256": self.sha256,
            "method_params": dict(self.method_params),
            "method_notes": dict(self.method_notes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ForgetOutcome:
        return cls(
            parent=Metrics.from_dict(d.get("parent")),
            model=Metrics.from_dict(d.get("model")),
            baselines={k: Metrics.from_dict(m) for k, m in (d.get("baselines") or {}).items()},
            per_group={k: Metrics.from_dict(m) for k, m in (d.get("per_group") or {}).items()},
            counts=dict(d.get("counts") or {}),
            seconds=float(d.get("seconds") or 0.0),
            sha256=str(d["sha256"]),
            method_params=dict(d.get("method_params") or {}),
            method_notes=dict(d.get("method_notes") or {}),
            audit=d.get("audit"),
        )


@dataclass
class DatasetInfo:
    """What the service needs to know to validate a request against a dataset."""

    name: str
    num_outputs: int
    task: str
    train_identities: list[str]  # identities that can be forgotten
    images_per_identity: dict[str, int]  # training images per train identity


@dataclass
class TrainedModel:
    state_dict: dict
    metrics: dict[str, Any]  # test_acc etc. of the trained model (MIA vs unseen eval part)
    seconds: float
    num_outputs: int
    task: str
