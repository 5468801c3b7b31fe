"""Bad Teacher (Chundawat et al., 2023): the student distils the competent
original on retain samples and a randomly initialised incompetent teacher on
forget samples, from mixed batches."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from piu_engine.losses import distill_kl
from piu_engine.methods.base import MethodSpec, UnlearnContext, positive
from piu_engine.model import frozen_copy
from piu_engine.tensors import index_batches, n_batches
from piu_engine.train import sgd


@dataclass(frozen=True)
class BadTeacherParams:
    epochs: int = 1
    lr: float = 0.001
    momentum: float = 0.9
    batch_size: int = 64
    temperature: float = 1.0
    retain_fraction: float = 0.3  # share of retain mixed with forget, as in the paper

    def check(self):
        if not 0.0 < self.retain_fraction <= 1.0:
            return "retain_fraction must be in (0, 1]"
        return positive(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                        temperature=self.temperature)


def run(ctx: UnlearnContext, p: BadTeacherParams):
    model, good, data = ctx.model, ctx.original, ctx.data
    bad = frozen_copy(ctx.new_model())
    rng = np.random.default_rng(ctx.seed + 41)
    retain = ctx.splits.retain
    keep = rng.permutation(len(retain))[: max(1, int(round(p.retain_fraction * len(retain))))]
    mixed_np = np.concatenate([ctx.splits.forget, retain[keep]])
    is_forget_np = np.zeros(int(mixed_np.max()) + 1, dtype=bool)
    is_forget_np[ctx.splits.forget] = True
    mixed, is_forget = ctx.indices(mixed_np), torch.as_tensor(is_forget_np, device=ctx.device)
    gen = ctx.generator(41)
    opt = sgd(model.parameters(), p.lr, p.momentum)
    ph = ctx.phase("bad-teacher", p.epochs, n_batches(len(mixed), p.batch_size))
    model.train()
    for epoch in range(1, p.epochs + 1):
        for step, b in enumerate(index_batches(mixed, p.batch_size, True, gen), start=1):
            x, _ = data.batch(b, augment=True, gen=gen)
            with torch.no_grad(), ph.autocast(ctx.device):
                target = torch.where(is_forget[b][:, None], bad(x), good(x))
            with ph.autocast(ctx.device):
                loss = distill_kl(model(x), target, p.temperature, data.task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ph.tick(epoch, step, loss.detach())
    ph.done()
    return model


SPECS = [MethodSpec("bad-teacher", BadTeacherParams, run, "distil good teacher on retain, random teacher on forget")]
