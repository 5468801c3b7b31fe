"""SalUn (Fan et al., ICLR 2024): random-label unlearning confined to the
weights the forget set's loss is most sensitive to, so the rest of the
network, and what it knows about everyone else, stays exactly as it was."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from piu_engine.core.losses import task_loss
from piu_engine.core.methods.base import UnlearnContext
from piu_engine.core.methods.catalog import SalUnParams
from piu_engine.core.methods.masks import fraction_mask, loss_gradients, scaled_gradients
from piu_engine.core.methods.random_label import wrong_labels
from piu_engine.core.tensors import TensorData, index_batches, n_batches
from piu_engine.core.train import sgd, train_steps


def saliency_mask(model: nn.Module, data: TensorData, forget: np.ndarray, fraction: float) -> list[torch.Tensor]:
    """One mask per parameter: the ``fraction`` of all weights with the largest
    |gradient of CE(forget)|, ranked over the whole network."""
    params = list(model.parameters())
    grads = loss_gradients(model, data, params, [(forget, 1.0)])
    return fraction_mask([g.abs() for g in grads], fraction, largest=True)


def run(ctx: UnlearnContext, p: SalUnParams):
    model, data = ctx.model, ctx.data
    masks = saliency_mask(model, data, ctx.splits.forget, p.mask_fraction)
    gen = ctx.generator(61)
    mixed, is_forget = ctx.mixed_with_forget(ctx.splits.retain)
    # No weight decay: with momentum and a zero gradient an unmasked weight never moves.
    opt = sgd(model.parameters(), p.lr, p.momentum)
    ph = ctx.phase("salun", p.epochs, n_batches(len(mixed), p.batch_size))

    def step(b):
        x, y = data.batch(b, augment=True, gen=gen)
        flip = is_forget[b] if y.dim() == 1 else is_forget[b][:, None]
        y = torch.where(flip, wrong_labels(y, data.task, data.num_outputs, gen), y)
        with ph.autocast(ctx.device):
            return task_loss(model(x), y, data.task)

    model.train()
    with scaled_gradients(
        list(model.parameters()), [m.to(q.dtype) for m, q in zip(masks, model.parameters(), strict=True)]
    ):
        train_steps(ph, model, opt, step, lambda epoch: index_batches(mixed, p.batch_size, True, gen))
    return model


RUNS = {
    "salun": run,
}
