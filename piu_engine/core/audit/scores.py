"""The membership statistic LiRA uses, per person.

Per photo: the logit-scaled confidence on the true label,
phi = log(p_y) - log(1 - p_y), computed stably from the logits (for classes,
logit_y - logsumexp of the other logits; for attributes, the signed logit
averaged over attributes) in eval mode with the test-time transform, then
clipped. Per person: the mean of phi over their photos.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from piu_engine.core.losses import logit_confidence
from piu_engine.core.tensors import TensorData, index_batches, to_index

PHI_CLIP = 30.0  # |phi| = 30 is p = 1 - 1e-13: beyond it float noise, not memory


@torch.no_grad()
def sample_phi(model: nn.Module, data: TensorData, indices: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """phi for each sample in ``indices`` (eval mode; the model's mode is restored)."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for b in index_batches(to_index(indices, data.device), batch_size, shuffle=False):
            x, y = data.batch(b)
            out.append(logit_confidence(model(x), y, data.task).cpu())
    finally:
        model.train(was_training)
    if not out:
        return np.zeros(0)
    return torch.cat(out).numpy().astype(np.float64).clip(-PHI_CLIP, PHI_CLIP)


def photos_of(identities: np.ndarray, people: list[str]) -> np.ndarray:
    """Indices of every image of ``people`` (an identity sits in one split only)."""
    wanted = set(people)
    return np.flatnonzero(np.fromiter((i in wanted for i in identities), bool, len(identities)))


def person_scores(
    model: nn.Module, data: TensorData, identities: np.ndarray, people: list[str]
) -> tuple[dict[str, float], dict[str, int]]:
    """(mean phi per person, photos per person) over all of each person's images."""
    idx = photos_of(identities, people)
    phi = sample_phi(model, data, idx)
    who = identities[idx].astype(str)
    names, inverse, counts = np.unique(who, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=phi, minlength=len(names)) / np.maximum(counts, 1)
    missing = sorted(set(people) - set(names.tolist()))
    if missing:
        raise ValueError(f"no images of {len(missing)} people to score, e.g. {missing[:3]}")
    return ({n: float(m) for n, m in zip(names.tolist(), means)}, {n: int(c) for n, c in zip(names.tolist(), counts)})
