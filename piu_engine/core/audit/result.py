"""What an audit returns, as plain dataclasses (standard library only), so
the service can store it and the TUI can draw it without numpy or PyTorch.

``to_dict`` gives strict-JSON-ready data (a threshold that could not be set,
i.e. +/-inf, or an unmeasured figure becomes None); ``from_dict`` reads it back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from piu_engine.common import jsonout

RECOGNISABLE = "still recognisable"
INDISTINGUISHABLE = "indistinguishable"
FORGOTTEN = "conspicuously forgotten"
UNMEASURED = "not measured"  # no finite score (e.g. a non-finite output): nothing can be said
VERDICTS = (RECOGNISABLE, INDISTINGUISHABLE, FORGOTTEN, UNMEASURED)

AUC_SCORE = "two-sided: |z - median(z of never-seen calibration people)|"


def _pick(cls, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass
class PersonAudit:
    """One person's offline LiRA test against the target model."""

    identity: str
    photos: int  # images the score averages over
    score: float  # mean phi = log(p/(1-p)) on the true label over the person's photos
    out_mean: float  # mean of that score over reference models that never saw the person
    out_std: float  # the standard deviation used (pooled or the person's own)
    n_out: int  # reference models that never saw the person
    z: float  # (score - out_mean) / out_std
    p_value: float  # empirical two-sided p against the never-seen calibration people
    verdict: str  # one of VERDICTS

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PersonAudit:
        return cls(**_pick(cls, data))


@dataclass
class Calibration:
    """Thresholds fitted on never-seen people's z on the target model."""

    rule: str  # "t-interval" (location/scale fitted, t prediction interval) or "quantile" (order statistics)
    fpr: float  # nominal two-sided false-positive rate
    n: int
    loc: float
    scale: float
    lower: float | None  # below: conspicuously forgotten (None: cannot be set with so few people)
    upper: float | None  # above: still recognisable
    identities: list[str] = field(default_factory=list)
    z: list[float] = field(default_factory=list)  # for drawing the distribution
    variance: str = "pooled"  # how out_std was estimated: "pooled" over people or "per-person"
    shrinkage: float = 1.0  # lambda the out-means were shrunk by (1: plain LiRA, 0: population attack)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(**_pick(cls, data))


@dataclass
class SetSummary:
    """Figures over the audited people, each with a seeded bootstrap 95% interval."""

    n_people: int
    n_never_seen: int  # never-seen people the AUC / TPR compare against
    flagged_fraction: float  # verdict other than indistinguishable
    flagged_ci: list[float | None]
    recognisable_fraction: float
    forgotten_fraction: float
    auc: float | None  # forgotten people vs never-seen people, score AUC_SCORE
    auc_ci: list[float | None]
    tpr_at_low_fpr: float | None  # at `low_fpr`; None when too few never-seen people
    tpr_ci: list[float | None]
    low_fpr: float = 0.01
    auc_score: str = AUC_SCORE
    # one-sided AUC of z (audited above never-seen): how much is still remembered, ignoring over-erasure
    auc_recognisable: float | None = None
    auc_recognisable_ci: list[float | None] = field(default_factory=lambda: [None, None])
    # P(at least this many flagged | each person flagged with probability fpr): a set-level test for a gate.
    # Per-person verdicts at 5% flag about 1 in 20 people who were never seen, so "nobody flagged" fails most
    # large requests even after retraining; gate a set on this p-value (or the flagged fraction) instead.
    excess_flag_p: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SetSummary:
        return cls(**_pick(cls, data))


@dataclass
class HoldoutCheck:
    """Never-seen people kept out of the threshold fit, judged by the same
    thresholds: their flagged fraction should sit near the nominal rate."""

    n: int
    flagged_fraction: float
    flagged_ci: list[float | None]
    identities: list[str] = field(default_factory=list)
    z: list[float] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HoldoutCheck:
        return cls(**_pick(cls, data))


@dataclass
class AuditResult:
    people: list[PersonAudit]
    calibration: Calibration
    summary: SetSummary
    holdout: HoldoutCheck | None
    pool: dict[str, Any]  # key, k, seed of the reference pool
    fpr: float
    seed: int  # of the bootstrap and the calibration split
    n_boot: int
    seconds: float

    @property
    def verdicts(self) -> dict[str, str]:
        return {p.identity: p.verdict for p in self.people}

    def to_dict(self) -> dict[str, Any]:
        return jsonout.plain(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditResult:
        return cls(
            people=[PersonAudit.from_dict(p) for p in data["people"]],
            calibration=Calibration.from_dict(data["calibration"]),
            summary=SetSummary.from_dict(data["summary"]),
            holdout=HoldoutCheck.from_dict(data["holdout"]) if data.get("holdout") else None,
            pool=dict(data.get("pool", {})),
            fpr=float(data["fpr"]),
            seed=int(data["seed"]),
            n_boot=int(data["n_boot"]),
            seconds=float(data["seconds"]),
        )
