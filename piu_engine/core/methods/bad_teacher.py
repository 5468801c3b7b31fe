"""Bad Teacher (Chundawat et al., 2023): the student distils the competent
original on retain samples and a randomly initialised incompetent teacher on
forget samples, from mixed batches."""

from __future__ import annotations

import numpy as np
import torch

from piu_engine.core.losses import distill_kl
from piu_engine.core.methods.base import UnlearnContext
from piu_engine.core.methods.catalog import BadTeacherParams
from piu_engine.core.model import frozen_copy
from piu_engine.core.tensors import index_batches, n_batches
from piu_engine.core.train import sgd, train_steps


def run(ctx: UnlearnContext, p: BadTeacherParams):
    model, good, data = ctx.model, ctx.original, ctx.data
    bad = frozen_copy(ctx.new_model())
    rng = np.random.default_rng(ctx.seed + 41)
    retain = ctx.splits.retain
    keep = rng.permutation(len(retain))[: max(1, int(round(p.retain_fraction * len(retain))))]
    mixed, is_forget = ctx.mixed_with_forget(retain[keep])
    gen = ctx.generator(41)
    opt = sgd(model.parameters(), p.lr, p.momentum)
    ph = ctx.phase("bad-teacher", p.epochs, n_batches(len(mixed), p.batch_size))

    def step(b):
        x, _ = data.batch(b, augment=True, gen=gen)
        with torch.no_grad(), ph.autocast(ctx.device):
            target = torch.where(is_forget[b][:, None], bad(x), good(x))
        with ph.autocast(ctx.device):
            return distill_kl(model(x), target, p.temperature, data.task)

    model.train()
    train_steps(ph, model, opt, step, lambda epoch: index_batches(mixed, p.batch_size, True, gen))
    return model


RUNS = {
    "bad-teacher": run,
}
