"""Random labels: train on forget images relabelled at random (never with
their true label), interleaved 1:1 with retain batches to keep utility."""

from __future__ import annotations

import torch

from piu_engine.core.data.types import Task
from piu_engine.core.losses import task_loss
from piu_engine.core.methods.base import UnlearnContext, cycle_batches
from piu_engine.core.methods.catalog import RandomLabelParams
from piu_engine.core.tensors import index_batches, n_batches
from piu_engine.core.train import sgd, train_steps


def wrong_labels(y: torch.Tensor, task: Task, num_outputs: int, gen: torch.Generator) -> torch.Tensor:
    if task is Task.MULTILABEL:
        return torch.randint(0, 2, y.shape, generator=gen, device=y.device).float()
    shift = torch.randint(1, max(2, num_outputs), y.shape, generator=gen, device=y.device)
    return (y + shift) % num_outputs


def run(ctx: UnlearnContext, p: RandomLabelParams):
    model, data = ctx.model, ctx.data
    gen = ctx.generator(31)
    forget, retain = ctx.indices(ctx.splits.forget), ctx.indices(ctx.splits.retain)
    retain_stream = cycle_batches(retain, p.batch_size, gen) if len(retain) and p.retain_weight else None
    opt = sgd(model.parameters(), p.lr, p.momentum)
    ph = ctx.phase("random-label", p.epochs, n_batches(len(forget), p.batch_size))

    def step(fb):
        x, y = data.batch(fb, augment=True, gen=gen)
        y = wrong_labels(y, data.task, data.num_outputs, gen)
        with ph.autocast(ctx.device):
            loss = task_loss(model(x), y, data.task)
            if retain_stream is not None:
                xr, yr = data.batch(next(retain_stream), augment=True, gen=gen)
                loss = loss + p.retain_weight * task_loss(model(xr), yr, data.task)
        return loss

    model.train()
    train_steps(ph, model, opt, step, lambda epoch: index_batches(forget, p.batch_size, True, gen))
    return model


RUNS = {
    "random-label": run,
}
