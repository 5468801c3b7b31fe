"""The benchmark's metrics, exactly as REFERENCE section 3 defines them.

Accuracy, the loss-based membership-inference attack (logistic regression,
10 stratified shuffle splits), forgetting score and NoMUS. Model outputs are
always computed in eval mode under no_grad, and the model's mode is restored.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from piu_engine.losses import predictions_correct, task_loss
from piu_engine.tensors import TensorData, index_batches, to_index


@torch.no_grad()
def per_sample(model: nn.Module, data: TensorData, indices: np.ndarray, batch_size: int = 256
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample loss and correctness on ``indices`` (test-time transform only)."""
    was_training = model.training
    model.eval()
    losses, correct = [], []
    try:
        for b in index_batches(to_index(indices, data.device), batch_size, shuffle=False):
            x, y = data.batch(b)
            logits = model(x)
            losses.append(task_loss(logits, y, data.task, reduction="none").float().cpu())
            correct.append(predictions_correct(logits, y, data.task).cpu())
    finally:
        model.train(was_training)
    if not losses:
        return np.zeros(0), np.zeros(0)
    return torch.cat(losses).numpy(), torch.cat(correct).numpy()


def mia(member_losses: np.ndarray, nonmember_losses: np.ndarray, n_splits: int = 10,
        seed: int = 0) -> tuple[float, float]:
    """Membership-inference accuracy (mean, std over splits) from per-sample losses.

    The larger side is randomly cut to the size of the smaller; the attacker is
    scikit-learn's default LogisticRegression scored by cross_val_score over
    StratifiedShuffleSplit(n_splits, test_size=0.1, random_state=0).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    # A diverged model yields inf/NaN losses: treat them as "very large" so the
    # attack still runs and the result shows what an attacker would see.
    member, nonmember = (np.nan_to_num(np.asarray(a, float), nan=1e4, posinf=1e4, neginf=0.0).clip(0, 1e4)
                         for a in (member_losses, nonmember_losses))
    n = min(len(member), len(nonmember))
    if n < 5:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    if len(member) > n:
        member = member[rng.permutation(len(member))[:n]]
    if len(nonmember) > n:
        nonmember = nonmember[rng.permutation(len(nonmember))[:n]]
    x = np.concatenate([member, nonmember]).reshape(-1, 1)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    cv = StratifiedShuffleSplit(n_splits=n_splits, test_size=0.1, random_state=0)
    scores = cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy")
    return float(scores.mean()), float(scores.std())


def forgetting_score(mia_value: float) -> float:
    return abs(mia_value - 0.5)


def nomus(accuracy: float, fs: float, lam: float = 0.5) -> float:
    """NoMUS = lam * Acc + (1 - lam) * (1 - 2 * FS); 0 worst, 1 best."""
    return lam * accuracy + (1.0 - lam) * (1.0 - 2.0 * fs)
