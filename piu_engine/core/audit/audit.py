"""Auditing a target model, person by person, against a reference pool.

``audit_request`` is the entry point for one forget request: the people it
forgot are tested; the never-seen people nobody trained or unlearned on
(the test identities and the unseen *evaluation* part, never the part an
unlearning method may learn from) calibrate the verdicts.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch.nn as nn

from piu_engine.common.events import EventSink, ProgressEvent, no_events
from piu_engine.core.audit import calibrate, lira, stats
from piu_engine.core.audit.reference import ReferencePool
from piu_engine.core.audit.result import AuditResult, Calibration, HoldoutCheck, PersonAudit, SetSummary
from piu_engine.core.audit.scores import person_scores
from piu_engine.core.data.splits import UnlearningSplits
from piu_engine.core.data.types import FaceDataset, Split

if TYPE_CHECKING:  # the workbench imports the methods; only its type is needed here
    from piu_engine.core.workbench import Workbench

PHASE = "audit"


def never_seen_people(ds: FaceDataset, splits: UnlearningSplits) -> list[str]:
    """Test identities plus the unseen evaluation part: no model trained on them, no method used them."""
    return sorted(set(ds.identities[splits.test].tolist()) | set(ds.identities[splits.unseen_eval].tolist()))


def _check_calibration(ds: FaceDataset, splits: UnlearningSplits | None, calibration: list[str]) -> None:
    bad = set(calibration) & set(ds.identities_in(Split.TRAIN))
    if splits is not None:
        bad |= set(calibration) & set(ds.identities[splits.unseen_unlearn].tolist())
    if bad:
        raise ValueError(
            f"calibration people must be never-seen and untouched by unlearning; "
            f"{len(bad)} are not, e.g. {sorted(bad)[:3]}"
        )


def audit_model(
    wb: Workbench,
    pool: ReferencePool,
    model: nn.Module,
    people: list[str],
    calibration: list[str],
    *,
    fpr: float = 0.05,
    rule: str = "t-interval",
    holdout_fraction: float = 0.0,
    n_boot: int = 1000,
    seed: int = 0,
    low_fpr: float = 0.01,
    min_out_for_own_std: int = lira.MIN_OUT_FOR_OWN_STD,
    shrink: bool = True,
    splits: UnlearningSplits | None = None,
    on_event: EventSink = no_events,
) -> AuditResult:
    """Per-person offline LiRA verdicts for ``people`` on ``model``.

    ``calibration`` people (never seen) fix the thresholds; with
    ``holdout_fraction`` > 0 a seeded part of them is kept out of the fit
    and judged as if audited (``result.holdout``: the calibration check),
    and the AUC then compares with those held-out people. ``shrink``: see
    :mod:`piu_engine.core.audit.lira` (False: plain offline LiRA). Emits one
    ``audit`` event with the headline figures when done.
    """
    start = time.perf_counter()
    _check_calibration(wb.ds, splits, calibration)
    people = list(dict.fromkeys(people))
    if not people:
        raise ValueError("no people to audit")
    fit, held = calibrate.split_people(calibration, holdout_fraction, seed)
    everyone = sorted(set(people) | set(calibration))
    score, photos = person_scores(model, wb.data, wb.ds.identities, everyone)

    def z_of(who: list[str]) -> tuple[np.ndarray, lira.OutStats]:
        st = lira.out_stats(pool, who, min_out_for_own_std, shrink)
        return lira.zscores(np.array([score[p] for p in who]), st), st

    zp, st = z_of(list(people))
    zf, st_fit = z_of(fit)
    zh = z_of(held)[0] if held else np.zeros(0)
    loc, scale, lower, upper = calibrate.thresholds(zf, fpr, rule)
    pvals = calibrate.empirical_p(zp, zf)
    verdicts = calibrate.verdicts(zp, lower, upper)
    per_person = [
        PersonAudit(
            p,
            photos[p],
            score[p],
            float(st.mean[i]),
            float(st.std[i]),
            int(st.n_out[i]),
            float(zp[i]),
            float(pvals[i]),
            verdicts[i],
        )
        for i, p in enumerate(people)
    ]
    neg = zh if held else zf
    fig = stats.figures(zp, zf, neg, fpr, rule, low_fpr)
    ci = stats.bootstrap(zp, zf, zh if held else None, fpr, rule, low_fpr, n_boot, seed, z_holdout=zh if held else None)
    summary = SetSummary(
        len(people),
        len(neg),
        fig.flagged,
        ci["flagged"],
        fig.recognisable,
        fig.forgotten,
        fig.auc,
        ci["auc"],
        fig.tpr,
        ci["tpr"],
        low_fpr,
        auc_recognisable=fig.auc_high,
        auc_recognisable_ci=ci["auc_high"],
        excess_flag_p=calibrate.excess_flag_p(int(round(fig.flagged * len(people))), len(people), fpr),
    )
    holdout = None
    if held:
        holdout = HoldoutCheck(
            len(held), float(calibrate.flagged(zh, lower, upper).mean()), ci["holdout"], held, [float(v) for v in zh]
        )
    cal = Calibration(
        rule, fpr, len(fit), loc, scale, lower, upper, fit, [float(v) for v in zf], st_fit.variance, st_fit.shrinkage
    )
    result = AuditResult(
        per_person,
        cal,
        summary,
        holdout,
        {"key": pool.key, "k": pool.k, "seed": pool.seed},
        fpr,
        seed,
        n_boot,
        time.perf_counter() - start,
    )
    on_event(
        ProgressEvent(
            PHASE,
            1,
            1,
            1,
            1,
            None,
            {"people": len(people), "flagged": fig.flagged, "auc": fig.auc, "seconds": result.seconds},
            "done",
        )
    )
    return result


def audit_request(
    wb: Workbench,
    pool: ReferencePool,
    model: nn.Module,
    splits: UnlearningSplits,
    people: list[str] | None = None,
    **options,
) -> AuditResult:
    """Audit the people a request forgot (default: all of ``splits.forget_identities``),
    calibrated on :func:`never_seen_people`. ``options`` go to :func:`audit_model`."""
    return audit_model(
        wb,
        pool,
        model,
        list(people or splits.forget_identities),
        never_seen_people(wb.ds, splits),
        splits=splits,
        **options,
    )
