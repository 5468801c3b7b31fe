"""Turning z into verdicts, calibrated on people nobody trained on.

The target model trains on twice the people a reference model does, so even
a never-seen person scores higher on it than on the references: z is not
N(0, 1) and a Gaussian p-value would be wrong. The thresholds are fitted on
the target model's z of never-seen people instead:

- ``t-interval`` (default): location and scale estimated from those people,
  thresholds = mean +/- t(n-1, 1 - fpr/2) * std * sqrt(1 + 1/n), the
  prediction interval for one more person; works with a dozen people.
- ``quantile``: order statistics of those people (conformal), assumption-free
  but it needs about 2 / fpr people before it can flag anyone.

The p-value is rank-based against the same people, whatever the rule.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from piu_engine.core.audit.result import FORGOTTEN, INDISTINGUISHABLE, RECOGNISABLE, UNMEASURED

RULES = ("t-interval", "quantile")


def thresholds_rows(
    z_rows: np.ndarray, fpr: float = 0.05, rule: str = "t-interval"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`thresholds` for each row of a [B, n] array of calibration z at once (the bootstrap)."""
    z = np.sort(np.atleast_2d(np.asarray(z_rows, float)), axis=1)
    n = z.shape[1]
    if not 0 < fpr < 1:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    if n < 3:
        raise ValueError(f"calibration needs at least 3 never-seen people, got {n}")
    loc, scale = z.mean(1), z.std(1, ddof=1)
    if rule == "t-interval":
        half = float(sps.t.ppf(1 - fpr / 2, n - 1)) * math.sqrt(1 + 1 / n) * scale
        return loc, scale, loc - half, loc + half
    if rule == "quantile":
        hi = math.ceil((n + 1) * (1 - fpr / 2))  # 1-based rank: P(new > z_(hi)) <= fpr / 2
        lo = math.floor((n + 1) * fpr / 2)
        lower = z[:, lo - 1] if lo >= 1 else np.full(len(z), -math.inf)
        upper = z[:, hi - 1] if hi <= n else np.full(len(z), math.inf)
        return loc, scale, lower, upper
    raise ValueError(f"unknown threshold rule {rule!r}; choose one of {', '.join(RULES)}")


def thresholds(z_calib: np.ndarray, fpr: float = 0.05, rule: str = "t-interval") -> tuple[float, float, float, float]:
    """(loc, scale, lower, upper) from never-seen people's z; +/-inf where none can be set."""
    z = np.asarray(z_calib, float)
    loc, scale, lower, upper = thresholds_rows(z[np.isfinite(z)][None, :], fpr, rule)
    return float(loc[0]), float(scale[0]), float(lower[0]), float(upper[0])


def verdicts(z: np.ndarray, lower: float, upper: float) -> list[str]:
    """A z that is not finite is ``not measured``, never ``indistinguishable``."""
    return [
        UNMEASURED
        if not np.isfinite(v)
        else RECOGNISABLE
        if v > upper
        else FORGOTTEN
        if v < lower
        else INDISTINGUISHABLE
        for v in np.asarray(z, float)
    ]


def flagged(z: np.ndarray, lower: float, upper: float) -> np.ndarray:
    z = np.asarray(z, float)
    return (z > upper) | (z < lower)


def empirical_p(z: np.ndarray, z_calib: np.ndarray) -> np.ndarray:
    """Two-sided rank p-value: 2 * min(upper tail, lower tail), each (1 + count) / (n + 1)."""
    c = np.sort(np.asarray(z_calib, float))
    z = np.asarray(z, float)
    n = len(c)
    above = n - np.searchsorted(c, z, side="left")  # calibration z >= z
    below = np.searchsorted(c, z, side="right")  # calibration z <= z
    return np.minimum(1.0, 2 * np.minimum(1 + above, 1 + below) / (n + 1))


def split_people(people: list[str], holdout_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(fit part, held-out part) of ``people``, seeded, both sorted."""
    people = sorted(people)
    if holdout_fraction <= 0:
        return people, []
    order = np.random.default_rng([seed, 3]).permutation(len(people))
    k = int(round(len(people) * holdout_fraction))
    held = {people[i] for i in order[:k]}
    return [p for p in people if p not in held], [p for p in people if p in held]


def excess_flag_p(n_flagged: int, n: int, fpr: float) -> float:
    """One-sided binomial p-value of ``n_flagged`` or more flags among ``n`` people if each is flagged with
    probability ``fpr`` (as a never-seen person is): small means more flagged people than chance gives."""
    return float(sps.binom.sf(n_flagged - 1, n, fpr)) if n_flagged > 0 else 1.0
