"""One evaluation of a model on a request's splits, the same for every method."""

from __future__ import annotations

import numpy as np
import torch.nn as nn

from piu_engine.core.config import MetricsConfig
from piu_engine.core.data.splits import UnlearningSplits
from piu_engine.core.metrics import forgetting_score, mia, nomus, per_sample
from piu_engine.core.tensors import TensorData


def forget_set_metrics(
    model: nn.Module,
    data: TensorData,
    forget: np.ndarray,
    unseen_losses: np.ndarray,
    metrics: MetricsConfig,
    identities: np.ndarray | None = None,
    seed: int = 0,
) -> dict:
    """Forget accuracy and MIA of one request's own forget images against
    already computed unseen-evaluation losses (no test/retain pass)."""
    loss, correct = per_sample(model, data, forget)
    m, s = mia(loss, unseen_losses, metrics.mia_splits, seed)
    out = {
        "forget_acc": float(correct.mean()) if len(correct) else float("nan"),
        "mia": m,
        "mia_std": s,
        "forgetting_score": forgetting_score(m),
        "n_forget": int(len(forget)),
    }
    if identities is not None:
        out["n_forget_identities"] = len(set(identities[forget].tolist()))
    return out


def evaluate(
    model: nn.Module,
    data: TensorData,
    splits: UnlearningSplits,
    metrics: MetricsConfig,
    identities: np.ndarray | None = None,
    seed: int = 0,
) -> dict:
    """Accuracies, MIA (forget vs the evaluation part of unseen), FS and NoMUS.

    Sample counts are part of the result: a figure resting on a handful of
    images is noise, and reports say so.
    """
    out: dict = {}
    losses: dict[str, np.ndarray] = {}
    for name in ("test", "forget", "retain", "unseen_eval"):
        idx = getattr(splits, name)
        loss, correct = per_sample(model, data, idx)
        losses[name] = loss
        out[f"{'unseen' if name == 'unseen_eval' else name}_acc"] = (
            float(correct.mean()) if len(correct) else float("nan")
        )
    m, s = mia(losses["forget"], losses["unseen_eval"], metrics.mia_splits, seed)
    out["mia"], out["mia_std"] = m, s
    out["forgetting_score"] = forgetting_score(m)
    out["nomus"] = nomus(out["test_acc"], out["forgetting_score"], metrics.nomus_lambda)
    out["n_forget"] = int(len(splits.forget))
    out["n_unseen_eval"] = int(len(splits.unseen_eval))
    out["n_test"] = int(len(splits.test))
    if identities is not None:
        out["n_forget_identities"] = len(set(identities[splits.forget].tolist()))
        out["n_unseen_identities"] = len(set(identities[splits.unseen_eval].tolist()))
    return out
