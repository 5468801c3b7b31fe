"""SCRUB (Kurmanji et al., 2023): the student moves away from the frozen
teacher on forget ("max" steps) and stays close to it on retain ("min" steps)."""

from __future__ import annotations

import itertools

import torch

from piu_engine.core.losses import distill_kl, task_loss
from piu_engine.core.methods.base import UnlearnContext
from piu_engine.core.methods.catalog import ScrubParams
from piu_engine.core.tensors import index_batches, n_batches
from piu_engine.core.train import sgd, train_steps


def run(ctx: UnlearnContext, p: ScrubParams):
    model, teacher, data = ctx.model, ctx.original, ctx.data
    gen = ctx.generator(21)
    forget, retain = ctx.indices(ctx.splits.forget), ctx.indices(ctx.splits.retain)
    opt = sgd(model.parameters(), p.lr, p.momentum, p.weight_decay)
    f_steps, r_steps = n_batches(len(forget), p.batch_size), n_batches(len(retain), p.batch_size)
    # Progress counts a max+min epoch; later epochs (min only) end early.
    ph = ctx.phase("scrub", p.epochs, f_steps + r_steps)

    def batches(epoch):
        """("max", forget batch)... while epoch <= msteps, then ("min", retain batch)..."""
        max_pass = index_batches(forget, p.batch_size, True, gen) if epoch <= p.msteps else ()
        return itertools.chain(
            zip(itertools.repeat("max"), max_pass),
            zip(itertools.repeat("min"), index_batches(retain, p.batch_size, True, gen)),
        )

    def step(item):
        kind, b = item
        x, y = data.batch(b, augment=True, gen=gen)
        with torch.no_grad(), ph.autocast(ctx.device):
            t_logits = teacher(x)
        with ph.autocast(ctx.device):
            logits = model(x)
            if kind == "max":
                return -distill_kl(logits, t_logits, p.temperature, data.task)
            return p.gamma * task_loss(logits, y, data.task) + p.alpha * distill_kl(
                logits, t_logits, p.temperature, data.task
            )

    model.train()
    train_steps(ph, model, opt, step, batches)
    return model


RUNS = {
    "scrub": run,
}
