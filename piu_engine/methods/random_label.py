"""Random labels: train on forget images relabelled at random (never with
their true label), interleaved 1:1 with retain batches to keep utility."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from piu_engine.data.types import Task
from piu_engine.losses import task_loss
from piu_engine.methods.base import MethodSpec, UnlearnContext, cycle_batches, positive
from piu_engine.tensors import index_batches, n_batches
from piu_engine.train import sgd


@dataclass(frozen=True)
class RandomLabelParams:
    epochs: int = 2
    lr: float = 0.001
    momentum: float = 0.9
    batch_size: int = 64
    retain_weight: float = 1.0

    def check(self):
        return positive(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)


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
    model.train()
    for epoch in range(1, p.epochs + 1):
        for step, fb in enumerate(index_batches(forget, p.batch_size, True, gen), start=1):
            x, y = data.batch(fb, augment=True, gen=gen)
            y = wrong_labels(y, data.task, data.num_outputs, gen)
            with ph.autocast(ctx.device):
                loss = task_loss(model(x), y, data.task)
                if retain_stream is not None:
                    xr, yr = data.batch(next(retain_stream), augment=True, gen=gen)
                    loss = loss + p.retain_weight * task_loss(model(xr), yr, data.task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ph.tick(epoch, step, loss.detach())
    ph.done()
    return model


SPECS = [MethodSpec("random-label", RandomLabelParams, run, "fine-tune forget on random wrong labels + retain")]
