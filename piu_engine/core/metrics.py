"""The benchmark's metrics, exactly as REFERENCE section 3 defines them.

Accuracy, the loss-based membership-inference attack (logistic regression,
10 stratified shuffle splits), forgetting score and NoMUS. Model outputs are
always computed in eval mode under no_grad, and the model's mode is restored.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from piu_engine.core.losses import predictions_correct, task_loss
from piu_engine.core.tensors import TensorData, index_batches, to_index


@torch.no_grad()
def per_sample(
    model: nn.Module, data: TensorData, indices: np.ndarray, batch_size: int = 256
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


def mia(
    member_losses: np.ndarray, nonmember_losses: np.ndarray, n_splits: int = 10, seed: int = 0
) -> tuple[float, float]:
    """Membership-inference accuracy (mean, std over splits) from per-sample losses.

    The larger side is randomly cut to the size of the smaller; the attacker is
    scikit-learn's default LogisticRegression scored by cross_val_score over
    StratifiedShuffleSplit(n_splits, test_size=0.1, random_state=0).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    # A diverged model yields inf/NaN losses: treat them as "very large" so the
    # attack still runs and the result shows what an attacker would see.
    member, nonmember = (
        np.nan_to_num(np.asarray(a, float), nan=1e4, posinf=1e4, neginf=0.0).clip(0, 1e4)
        for a in (member_losses, nonmember_losses)
    )
    n = min(len(member), len(nonmember))
    test_size = 0.1
    if math.ceil(test_size * 2 * n) < 2:  # each split's test part needs a member and a non-member: n >= 6
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    if len(member) > n:
        member = member[rng.permutation(len(member))[:n]]
    if len(nonmember) > n:
        nonmember = nonmember[rng.permutation(len(nonmember))[:n]]
    x = np.concatenate([member, nonmember]).reshape(-1, 1)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    cv = StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=0)
    scores = cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy")
    return float(scores.mean()), float(scores.std())


def threshold_mia(
    member_losses: torch.Tensor, nonmember_losses: torch.Tensor, repeats: int = 4, seed: int = 0
) -> torch.Tensor:
    """A cheap estimate of :func:`mia` for checks during training, on the device.

    On one feature (the loss) a logistic-regression attacker is a threshold,
    so this fits the most accurate threshold and side on one half of the
    samples and scores it on the other, both ways, over ``repeats`` random
    halvings, all halvings at once: one sort instead of scikit-learn fits, and
    no host sync until the caller reads the 0-dim result. Choosing the
    threshold for accuracy rather than log-loss makes it read at or a little
    above the logistic regression when the two sides differ, so a stop it
    allows is no earlier.
    """
    n = min(len(member_losses), len(nonmember_losses))
    dev = member_losses.device
    x = torch.cat([member_losses[:n], nonmember_losses[:n]]).float().nan_to_num(1e4, 1e4, 0.0)
    y = torch.cat([torch.ones(n, device=dev), torch.zeros(n, device=dev)])
    gen = torch.Generator(device="cpu").manual_seed(seed)
    orders = torch.stack([torch.randperm(2 * n, generator=gen) for _ in range(repeats)]).to(dev)
    first, second = orders[:, :n], orders[:, n:]
    fit, test = torch.cat([first, second]), torch.cat([second, first])  # each halving both ways
    return _threshold_accuracy(x[fit], y[fit], x[test], y[test]).mean()


def _threshold_accuracy(x_fit, y_fit, x_test, y_test) -> torch.Tensor:
    """Per row: accuracy on the test samples of the best "member iff loss <= t"
    (or ">= t") rule on the fit samples."""
    xs, order = torch.sort(x_fit, dim=1)
    ys = y_fit.gather(1, order)
    rows, n = ys.shape
    members_below = torch.cat([ys.new_zeros(rows, 1), torch.cumsum(ys, 1)], 1)  # among the k smallest
    k = torch.arange(n + 1, device=ys.device)
    nonmembers_above = (n - ys.sum(1, keepdim=True)) - (k - members_below)
    low_side = members_below + nonmembers_above  # correct when "member iff among the k smallest"
    best_low, best_high = low_side.max(1), (n - low_side).max(1)
    low_wins = best_low.values >= best_high.values
    cut = torch.where(low_wins, best_low.indices, best_high.indices).unsqueeze(1)
    edges = torch.cat([xs[:, :1] - 1, xs, xs[:, -1:] + 1], 1)
    t = (edges.gather(1, cut) + edges.gather(1, cut + 1)) / 2
    predicted = torch.where(low_wins.unsqueeze(1), x_test <= t, x_test > t)
    return (predicted.float() == y_test).float().mean(1)


def forgetting_score(mia_value: float) -> float:
    return abs(mia_value - 0.5)


def nomus(accuracy: float, fs: float, lam: float = 0.5) -> float:
    """NoMUS = lam * Acc + (1 - lam) * (1 - 2 * FS); 0 worst, 1 best."""
    return lam * accuracy + (1.0 - lam) * (1.0 - 2.0 * fs)
