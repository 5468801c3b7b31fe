"""The gap to retrain as SalUn and LoTUS (CVPR 2025) report it: the mean
absolute difference to the retrained model over forget, retain and test
accuracy and the MIA. 0 means "behaves like retraining" on all four."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

GAP_KEYS = ("forget_acc", "retain_acc", "test_acc", "mia")


def gap_to_retrain(
    metrics: Mapping[str, float | None], retrain: Mapping[str, float | None], keys: Sequence[str] = GAP_KEYS
) -> float | None:
    """Mean |metrics[k] - retrain[k]| over ``keys``; None when any is missing or not finite."""
    diffs = []
    for k in keys:
        a, b = metrics.get(k), retrain.get(k)
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            return None
        diffs.append(abs(float(a) - float(b)))
    return sum(diffs) / len(diffs)
