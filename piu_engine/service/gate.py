"""Acceptance gate: does a new model version become current?

Two checks, each on a statistic only when it rests on enough data:

* MIA (forget images vs the evaluation part of unseen): ``|mia - 0.5| <=
  gate.mia_tolerance``. Gated only when both sides have at least
  ``gate.min_mia_samples`` images **and** ``gate.min_mia_identities``
  identities. A request for one person with six photos therefore reports its
  MIA as "not gated: too few samples (...)" instead of failing on noise.
* Test accuracy: ``test_acc >= parent test_acc - gate.max_test_acc_drop``,
  gated when the test split has at least ``gate.min_test_samples`` images
  (when the engine does not report the test size, the check is gated).

A check that is not gated never fails a job. A metric that is missing or not
a number is reported as not gated. The decision is ``passed`` only when at
least one check was gated and every gated check passed; with nothing gated
it is ``not gated`` (the model is kept, and nobody reads that as a pass).
The decision and every figure it rests on go into the job's report.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from piu_engine.core.request import Metrics
from piu_engine.service.settings import GateConfig

PASSED, FAILED, NOT_GATED = "passed", "failed", "not gated"


@dataclass
class Check:
    name: str
    gated: bool
    passed: bool  # True when not gated
    value: float | None
    threshold: str
    samples: dict[str, int | None]
    note: str


@dataclass
class GateResult:
    passed: bool
    enabled: bool
    checks: list[Check] = field(default_factory=list)

    @property
    def decision(self) -> str:
        """passed | failed | not gated: what status, report and TUI show."""
        if not self.passed:
            return FAILED
        return PASSED if any(c.gated for c in self.checks) else NOT_GATED

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "decision": self.decision,
            "enabled": self.enabled,
            "checks": [asdict(c) for c in self.checks],
        }

    def failures(self) -> list[str]:
        return [c.note for c in self.checks if c.gated and not c.passed]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _not_audited(why: str, samples: dict[str, Any] | None = None) -> Check:
    """The audit check when it cannot decide: never gated, so never read as a pass."""
    return Check("audit", False, True, None, "", samples or {}, f"not audited: {why}")


def _audit_check(gate: GateConfig, audit: dict[str, Any] | None) -> Check:
    """Each forgotten person's verdict against the reference pool, or why there is none."""
    if not audit:
        return _not_audited("no reference pool for this dataset (build one with `piu audit pool`)")
    if audit.get("error"):
        return _not_audited(audit["error"])
    people = (audit.get("model") or {}).get("people") or []
    pool = audit.get("pool") or {}
    samples = {"people": len(people), "pool_models": pool.get("k")}
    unmeasured = [p["identity"] for p in people if not _finite(p.get("z"))]
    allowed = set(gate.audit_verdicts)
    bad = [
        f"{p['identity']} {p['verdict']} (z {p['z']:+.2f})"
        for p in people
        if _finite(p.get("z")) and p["verdict"] not in allowed
    ]
    if unmeasured and not bad:  # a person without a score can be neither passed nor failed on it
        who = ", ".join(unmeasured[:5])
        return _not_audited(f"no finite score for {len(unmeasured)} of {len(people)} people ({who})", samples)
    threshold = f"every person {' or '.join(sorted(allowed))}"
    if bad:
        return Check(
            "audit",
            True,
            False,
            len(bad) / max(1, len(people)),
            threshold,
            samples,
            f"{len(bad)} of {len(people)} forgotten people not indistinguishable from never-seen people: "
            + ", ".join(bad[:5])
            + (" ..." if len(bad) > 5 else "")
            + (f"; not measured: {', '.join(unmeasured[:5])}" if unmeasured else ""),
        )
    return Check(
        "audit",
        True,
        True,
        0.0,
        threshold,
        samples,
        f"all {len(people)} forgotten people indistinguishable from never-seen people (pool of {pool.get('k')} models)",
    )


def evaluate(gate: GateConfig, parent: Metrics, model: Metrics, audit: dict[str, Any] | None = None) -> GateResult:
    checks: list[Check] = []

    # -- MIA -----------------------------------------------------------
    mia = model.mia
    samples = {
        "forget_images": model.n_forget,
        "unseen_eval_images": model.n_unseen_eval,
        "forget_identities": model.n_forget_identities,
        "unseen_identities": model.n_unseen_identities,
    }
    threshold = f"0.5 +- {gate.mia_tolerance}"
    need = f"needs >= {gate.min_mia_samples} images and >= {gate.min_mia_identities} identities on each side"
    shown = ", ".join(f"{k}={v}" for k, v in samples.items())
    if mia is None:
        checks.append(Check("mia", False, True, None, threshold, samples, "not gated: MIA not available"))
    elif (
        model.n_forget is None
        or model.n_unseen_eval is None
        or model.n_forget_identities is None
        or model.n_unseen_identities is None
    ):
        checks.append(
            Check("mia", False, True, mia, threshold, samples, f"not gated: sample counts not reported ({shown})")
        )
    elif (
        min(model.n_forget, model.n_unseen_eval) < gate.min_mia_samples
        or min(model.n_forget_identities, model.n_unseen_identities) < gate.min_mia_identities
    ):
        checks.append(
            Check("mia", False, True, mia, threshold, samples, f"not gated: too few samples ({shown}; {need})")
        )
    else:
        ok = abs(mia - 0.5) <= gate.mia_tolerance + 1e-12
        checks.append(
            Check(
                "mia",
                True,
                ok,
                mia,
                threshold,
                samples,
                f"MIA {mia:.4f} {'within' if ok else 'outside'} {threshold} ({shown})",
            )
        )

    # -- test accuracy ---------------------------------------------------
    acc, parent_acc = model.test_acc, parent.test_acc
    n_test = model.n_test
    tsamples = {"test_images": n_test}
    if acc is None or parent_acc is None:
        checks.append(
            Check(
                "test_acc",
                False,
                True,
                acc,
                "",
                tsamples,
                "not gated: test accuracy of the new or the parent model not available",
            )
        )
    else:
        floor = parent_acc - gate.max_test_acc_drop
        threshold = f">= {floor:.4f} (parent {parent_acc:.4f} - {gate.max_test_acc_drop})"
        if n_test is not None and n_test < gate.min_test_samples:
            checks.append(
                Check(
                    "test_acc",
                    False,
                    True,
                    acc,
                    threshold,
                    tsamples,
                    f"not gated: too few samples (test_images={n_test}; needs >= {gate.min_test_samples})",
                )
            )
        else:
            ok = acc >= floor - 1e-12
            checks.append(
                Check(
                    "test_acc",
                    True,
                    ok,
                    acc,
                    threshold,
                    tsamples,
                    f"test accuracy {acc:.4f} {'meets' if ok else 'is below'} {threshold} "
                    f"(test_images={n_test if n_test is not None else 'not reported'})",
                )
            )

    checks.append(_audit_check(gate, audit))

    if not gate.enabled:
        for c in checks:
            if c.gated:
                c.note = f"not gated (gate disabled): {c.note}"
            c.gated, c.passed = False, True
        return GateResult(True, False, checks)
    return GateResult(all(c.passed for c in checks), True, checks)
