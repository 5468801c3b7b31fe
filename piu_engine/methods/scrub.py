"""SCRUB (Kurmanji et al., 2023): the student moves away from the frozen
teacher on forget ("max" steps) and stays close to it on retain ("min" steps)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from piu_engine.losses import distill_kl, task_loss
from piu_engine.methods.base import MethodSpec, UnlearnContext, positive
from piu_engine.tensors import index_batches, n_batches
from piu_engine.train import sgd


@dataclass(frozen=True)
class ScrubParams:
    epochs: int = 3
    msteps: int = 2  # epochs that include a max pass over forget
    lr: float = 5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gamma: float = 0.99  # CE weight on retain
    alpha: float = 0.001  # KL weight on retain
    temperature: float = 4.0
    batch_size: int = 64

    def check(self):
        return positive(epochs=self.epochs, lr=self.lr, temperature=self.temperature,
                        batch_size=self.batch_size)


def run(ctx: UnlearnContext, p: ScrubParams):
    model, teacher, data = ctx.model, ctx.original, ctx.data
    gen = ctx.generator(21)
    forget, retain = ctx.indices(ctx.splits.forget), ctx.indices(ctx.splits.retain)
    opt = sgd(model.parameters(), p.lr, p.momentum, p.weight_decay)
    f_steps, r_steps = n_batches(len(forget), p.batch_size), n_batches(len(retain), p.batch_size)
    # Progress counts a max+min epoch; later epochs (min only) end early.
    ph = ctx.phase("scrub", p.epochs, f_steps + r_steps)
    model.train()
    for epoch in range(1, p.epochs + 1):
        step = 0
        if epoch <= p.msteps:
            for fb in index_batches(forget, p.batch_size, True, gen):
                x, _ = data.batch(fb, augment=True, gen=gen)
                with torch.no_grad(), ph.autocast(ctx.device):
                    t_logits = teacher(x)
                with ph.autocast(ctx.device):
                    loss = -distill_kl(model(x), t_logits, p.temperature, data.task)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                ph.tick(epoch, min(step, ph.steps), loss.detach())
        for rb in index_batches(retain, p.batch_size, True, gen):
            x, y = data.batch(rb, augment=True, gen=gen)
            with torch.no_grad(), ph.autocast(ctx.device):
                t_logits = teacher(x)
            with ph.autocast(ctx.device):
                logits = model(x)
                loss = p.gamma * task_loss(logits, y, data.task) + p.alpha * distill_kl(
                    logits, t_logits, p.temperature, data.task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            ph.tick(epoch, min(step, ph.steps), loss.detach())
    ph.done()
    return model


SPECS = [MethodSpec("scrub", ScrubParams, run, "SCRUB: max-KL on forget, CE + KL on retain")]
