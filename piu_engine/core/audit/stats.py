"""Set-level figures of an audit and their bootstrap intervals.

The AUC and TPR compare forgotten people with never-seen people on a
two-sided score, |z - median(z of the never-seen calibration people)|, since
both a remembered person (z high) and a conspicuously erased one (z low)
are what an attacker can tell apart. Intervals resample people (the audited,
the calibration and the comparison people) and refit the thresholds each
time, so they include the calibration's own uncertainty. Every figure is
computed for all bootstrap replicates at once (rows of a [B, n] array).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from piu_engine.core.audit.calibrate import thresholds_rows


def two_sided(z: np.ndarray, center: float) -> np.ndarray:
    return np.abs(np.asarray(z, float) - center)


def auc_rows(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Per row, P(pos > neg) + P(pos == neg) / 2 (Mann-Whitney, ties averaged)."""
    pos, neg = np.atleast_2d(pos), np.atleast_2d(neg)
    n_pos, n_neg = pos.shape[1], neg.shape[1]
    if n_pos == 0 or n_neg == 0:
        return np.full(len(pos), math.nan)
    ranks = rankdata(np.concatenate([pos, neg], 1), axis=1)
    return (ranks[:, :n_pos].sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    return float(auc_rows(np.asarray(pos, float)[None, :], np.asarray(neg, float)[None, :])[0])


def tpr_rows(pos: np.ndarray, neg: np.ndarray, fpr: float = 0.01) -> np.ndarray:
    """Per row, the share of ``pos`` above the threshold that lets at most ``fpr``
    of ``neg`` through; NaN with fewer than 1 / fpr negatives (no threshold means that rate)."""
    pos, neg = np.atleast_2d(pos), np.atleast_2d(neg)
    n_neg = neg.shape[1]
    if pos.shape[1] == 0 or n_neg * fpr < 1:
        return np.full(len(pos), math.nan)
    allowed = int(math.floor(n_neg * fpr + 1e-9))
    cut = -np.sort(-neg, axis=1)[:, allowed]
    return (pos > cut[:, None]).mean(1)


def tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float = 0.01) -> float:
    return float(tpr_rows(np.asarray(pos, float)[None, :], np.asarray(neg, float)[None, :], fpr)[0])


@dataclass
class SetFigures:
    flagged: np.ndarray  # per row
    recognisable: np.ndarray
    forgotten: np.ndarray
    auc: np.ndarray
    tpr: np.ndarray
    auc_high: np.ndarray  # one-sided: audited people's z above never-seen people's (remembering only)


def figures_rows(zp: np.ndarray, zf: np.ndarray, zn: np.ndarray, fpr: float, rule: str, low_fpr: float) -> SetFigures:
    """Figures for each row of audited [B, n_p], fit [B, n_f] and comparison [B, n_n] z."""
    _loc, _scale, lower, upper = thresholds_rows(zf, fpr, rule)
    hi, lo = zp > upper[:, None], zp < lower[:, None]
    c = np.median(zf, 1)[:, None]
    pos, neg = np.abs(zp - c), np.abs(zn - c)
    return SetFigures(
        (hi | lo).mean(1), hi.mean(1), lo.mean(1), auc_rows(pos, neg), tpr_rows(pos, neg, low_fpr), auc_rows(zp, zn)
    )


def figures(
    z_people: np.ndarray, z_fit: np.ndarray, z_neg: np.ndarray, fpr: float, rule: str, low_fpr: float
) -> SetFigures:
    """The point estimates (one row)."""
    rows = [np.asarray(a, float)[None, :] for a in (z_people, z_fit, z_neg)]
    f = figures_rows(*rows, fpr, rule, low_fpr)
    return SetFigures(
        *(float(getattr(f, k)[0]) for k in ("flagged", "recognisable", "forgotten", "auc", "tpr", "auc_high"))
    )


def _ci(values: np.ndarray) -> list[float | None]:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return [None, None]
    lo, hi = np.percentile(v, [2.5, 97.5])
    return [float(lo), float(hi)]


def _draw(rng: np.random.Generator, z: np.ndarray, n_boot: int) -> np.ndarray:
    z = np.asarray(z, float)
    return z[rng.integers(len(z), size=(n_boot, len(z)))] if len(z) else np.zeros((n_boot, 0))


def bootstrap(
    z_people: np.ndarray,
    z_fit: np.ndarray,
    z_neg: np.ndarray | None,
    fpr: float,
    rule: str,
    low_fpr: float,
    n_boot: int,
    seed: int,
    z_holdout: np.ndarray | None = None,
) -> dict[str, list[float | None]]:
    """95% percentile intervals of flagged, auc, tpr, auc_high (and of the held-out
    people's flagged fraction). ``z_neg`` None: the comparison people are the
    fit people, resampled together with them."""
    rng = np.random.default_rng([seed, 4])
    bp, bf = _draw(rng, z_people, n_boot), _draw(rng, z_fit, n_boot)
    bn = bf if z_neg is None else _draw(rng, z_neg, n_boot)
    ok = np.ptp(bf, axis=1) > 0  # a draw of one person repeated has no scale
    f = figures_rows(bp, bf, bn, fpr, rule, low_fpr)
    out = {
        "flagged": _ci(f.flagged[ok]),
        "auc": _ci(f.auc[ok]),
        "tpr": _ci(f.tpr[ok]),
        "auc_high": _ci(f.auc_high[ok]),
        "holdout": [None, None],
    }
    if z_holdout is not None and len(z_holdout):
        _, _, lower, upper = thresholds_rows(bf, fpr, rule)
        bh = _draw(rng, z_holdout, n_boot)
        out["holdout"] = _ci(((bh > upper[:, None]) | (bh < lower[:, None])).mean(1)[ok])
    return out
