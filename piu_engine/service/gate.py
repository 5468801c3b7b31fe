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
a number is reported as not gated. The decision and every figure it rests
on go into the job's report.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from piu_engine.service.settings import GateConfig


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

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "enabled": self.enabled, "checks": [asdict(c) for c in self.checks]}

    def failures(self) -> list[str]:
        return [c.note for c in self.checks if c.gated and not c.passed]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def _count(metrics: dict, counts: dict, *keys: str) -> int | None:
    for key in keys:
        for src in (metrics, counts):
            v = src.get(key)
            if isinstance(v, int) and not isinstance(v, bool):
                return v
    return None


def evaluate(gate: GateConfig, parent: dict[str, Any], model: dict[str, Any],
             counts: dict[str, Any] | None = None) -> GateResult:
    counts = counts or {}
    checks: list[Check] = []

    # -- MIA -----------------------------------------------------------
    mia = _num(model.get("mia"))
    samples = {
        "forget_images": _count(model, counts, "n_forget", "forget"),
        "unseen_eval_images": _count(model, counts, "n_unseen_eval", "unseen_eval"),
        "forget_identities": _count(model, counts, "n_forget_identities", "forget_identities"),
        "unseen_identities": _count(model, counts, "n_unseen_identities", "unseen_identities"),
    }
    threshold = f"0.5 +- {gate.mia_tolerance}"
    need = (f"needs >= {gate.min_mia_samples} images and >= {gate.min_mia_identities} identities on each side")
    shown = ", ".join(f"{k}={v}" for k, v in samples.items())
    if mia is None:
        checks.append(Check("mia", False, True, None, threshold, samples, "not gated: MIA not available"))
    elif any(v is None for v in samples.values()):
        checks.append(Check("mia", False, True, mia, threshold, samples,
                            f"not gated: sample counts not reported ({shown})"))
    elif (min(samples["forget_images"], samples["unseen_eval_images"]) < gate.min_mia_samples
          or min(samples["forget_identities"], samples["unseen_identities"]) < gate.min_mia_identities):
        checks.append(Check("mia", False, True, mia, threshold, samples,
                            f"not gated: too few samples ({shown}; {need})"))
    else:
        ok = abs(mia - 0.5) <= gate.mia_tolerance + 1e-12
        checks.append(Check("mia", True, ok, mia, threshold, samples,
                            f"MIA {mia:.4f} {'within' if ok else 'outside'} {threshold} ({shown})"))

    # -- test accuracy ---------------------------------------------------
    acc, parent_acc = _num(model.get("test_acc")), _num(parent.get("test_acc"))
    n_test = _count(model, counts, "n_test", "test")
    tsamples = {"test_images": n_test}
    if acc is None or parent_acc is None:
        checks.append(Check("test_acc", False, True, acc, "", tsamples,
                            "not gated: test accuracy of the new or the parent model not available"))
    else:
        floor = parent_acc - gate.max_test_acc_drop
        threshold = f">= {floor:.4f} (parent {parent_acc:.4f} - {gate.max_test_acc_drop})"
        if n_test is not None and n_test < gate.min_test_samples:
            checks.append(Check("test_acc", False, True, acc, threshold, tsamples,
                                f"not gated: too few samples (test_images={n_test}; needs >= {gate.min_test_samples})"))
        else:
            ok = acc >= floor - 1e-12
            checks.append(Check("test_acc", True, ok, acc, threshold, tsamples,
                                f"test accuracy {acc:.4f} {'meets' if ok else 'is below'} {threshold} "
                                f"(test_images={n_test if n_test is not None else 'not reported'})"))

    if not gate.enabled:
        for c in checks:
            if c.gated:
                c.note = f"not gated (gate disabled): {c.note}"
            c.gated, c.passed = False, True
        return GateResult(True, False, checks)
    return GateResult(all(c.passed for c in checks), True, checks)
