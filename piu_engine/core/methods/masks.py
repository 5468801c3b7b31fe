"""Weight masks from gradients, shared by SalUn and Masked Small Gradients:
the gradient of a loss on chosen images, the share of entries with the
largest or smallest score, and per-entry gradient scaling during training."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn

from piu_engine.core.losses import task_loss
from piu_engine.core.tensors import TensorData, index_batches, to_index


def loss_gradients(
    model: nn.Module,
    data: TensorData,
    params: Sequence[nn.Parameter],
    parts: Sequence[tuple[np.ndarray, float]],
    batch_size: int = 256,
) -> list[torch.Tensor]:
    """d/d``params`` of sum_k w_k * (mean task loss over images ``parts[k] = (idx, w_k)``).

    Eval mode and the test-time transform: it reads the model as it is and
    changes nothing (BatchNorm statistics included); the mode is restored."""
    was_training = model.training
    model.eval()
    grads = [torch.zeros_like(p) for p in params]
    try:
        for idx, weight in parts:
            for b in index_batches(to_index(idx, data.device), batch_size, shuffle=False):
                x, y = data.batch(b)
                loss = task_loss(model(x), y, data.task, reduction="none").sum() * (weight / len(idx))
                for g, d in zip(grads, torch.autograd.grad(loss, list(params)), strict=True):
                    g += d
    finally:
        model.train(was_training)
    return grads


def fraction_mask(scores: Sequence[torch.Tensor], fraction: float, largest: bool) -> list[torch.Tensor]:
    """Boolean masks marking exactly round(``fraction`` x all entries) of
    ``scores``, ranked together: those with the largest (or smallest) score."""
    flat = torch.cat([s.detach().flatten() for s in scores])
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    chosen[torch.topk(flat, round(fraction * flat.numel()), largest=largest, sorted=False).indices] = True
    return [m.view_as(s) for m, s in zip(chosen.split([s.numel() for s in scores]), scores, strict=True)]


@contextmanager
def scaled_gradients(params: Sequence[nn.Parameter], scales: Sequence[torch.Tensor]) -> Iterator[None]:
    """Multiply each parameter's gradient entry-wise by its scale while inside
    (0 freezes an entry, 0.1 gives it a tenth of the learning rate). A tensor
    hook, so it holds in any training loop, ``fit`` included; weight decay,
    added by the optimiser afterwards, is not scaled."""
    handles = [p.register_hook(lambda g, s=s: g * s) for p, s in zip(params, scales, strict=True)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
