"""SCRUB (Kurmanji et al., 2023): the student moves away from the frozen
teacher on forget ("max" steps) and stays close to it on retain ("min" steps)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from piu_engine.core.losses import distill_kl, task_loss
from piu_engine.core.methods.catalog import ScrubParams
from piu_engine.core.methods.base import UnlearnContext
from piu_engine.core.tensors import index_batches, n_batches
from piu_engine.core.train import sgd


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


RUNS = {
    "scrub": run,
}
