"""PIU-FR: NegGrad + SCRUB hybrid driven by a label-matched unseen set.

Stage 1 pulls the model's outputs on each forget image towards the frozen
original's outputs on an unseen image with the same label, alternating
descent and ascent batch by batch (s_b = +1, -1, ...), so forgotten people
end up looking like people the model never saw. Optional stage 2 fine-tunes
on retain to recover utility. Optional early stopping ends stage 1 as soon as
an MIA measured on the *unlearning* part of unseen (never the evaluation
part) is within a tolerance of 0.5.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from piu_engine.data.splits import label_matched_partners
from piu_engine.losses import distill_kl
from piu_engine.methods.base import MethodSpec, UnlearnContext, positive
from piu_engine.metrics import mia, per_sample
from piu_engine.presets import TrainRecipe
from piu_engine.tensors import index_batches, n_batches
from piu_engine.train import fit, sgd


@dataclass(frozen=True)
class PiuFrParams:
    epochs: int = 10
    lr: float = 0.001
    momentum: float = 0.0
    temperature: float = 4.0
    batch_size: int = 64
    alternate: bool = True  # s_b = +1, -1, +1, ... ; False = descent only
    stage2: bool = False  # CE fine-tune on retain afterwards
    stage2_epochs: int = 2
    stage2_lr: float = 0.01
    stage2_momentum: float = 0.9
    early_stop: bool = False  # stop stage 1 once MIA(forget vs unseen-unlearn) ~ 0.5
    early_stop_tolerance: float = 0.03
    early_stop_every: int = 2  # steps between checks
    freeze_bn: bool = True  # keep the original BatchNorm statistics during stage 1

    def check(self):
        if self.early_stop_tolerance < 0:
            return "early_stop_tolerance must be >= 0"
        return positive(epochs=self.epochs, lr=self.lr, temperature=self.temperature,
                        batch_size=self.batch_size, early_stop_every=self.early_stop_every)


def _membership_gap(ctx: UnlearnContext) -> float:
    """|MIA - 0.5| between forget and the unlearning part of unseen."""
    f_loss, _ = per_sample(ctx.model, ctx.data, ctx.splits.forget)
    u_loss, _ = per_sample(ctx.model, ctx.data, ctx.splits.unseen_unlearn)
    value, _ = mia(f_loss, u_loss, n_splits=5, seed=ctx.seed)
    return abs(value - 0.5) if value == value else 0.0


def train_mode(model, freeze_bn: bool) -> None:
    """Training mode; with ``freeze_bn`` BatchNorm keeps the original's statistics,
    so a few hundred forget images cannot shift them for everyone."""
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def stage1(ctx: UnlearnContext, p: PiuFrParams) -> int:
    """Run stage 1; return the number of optimiser steps taken."""
    model, teacher, data = ctx.model, ctx.original, ctx.data
    partners = label_matched_partners(ctx.dataset, ctx.splits.forget, ctx.splits.unseen_unlearn, ctx.seed)
    forget, unseen = ctx.indices(ctx.splits.forget), ctx.indices(partners)
    gen = ctx.generator(51)
    # Teacher outputs on the paired unseen images never change: compute them once.
    with torch.no_grad():
        teacher_logits = torch.cat([teacher(data.batch(b)[0]).float()
                                    for b in index_batches(unseen, 256, shuffle=False)])
    opt = sgd(model.parameters(), p.lr, p.momentum)
    steps = n_batches(len(forget), p.batch_size)
    ph = ctx.phase("piu-fr:stage1", p.epochs, steps)
    taken = 0
    train_mode(model, p.freeze_bn)
    for epoch in range(1, p.epochs + 1):
        for step in range(1, steps + 1):
            sl = slice((step - 1) * p.batch_size, step * p.batch_size)
            x, _ = data.batch(forget[sl], augment=True, gen=gen)
            sign = -1.0 if (p.alternate and step % 2 == 0) else 1.0
            with ph.autocast(ctx.device):
                loss = sign * distill_kl(model(x), teacher_logits[sl], p.temperature, data.task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            taken += 1
            ph.tick(epoch, step, loss.detach())
            if p.early_stop and taken % p.early_stop_every == 0:
                gap = _membership_gap(ctx)
                train_mode(model, p.freeze_bn)
                if gap <= p.early_stop_tolerance:
                    ph.done(early_stopped_at_step=taken, membership_gap=gap)
                    return taken
    ph.done()
    return taken


def run(ctx: UnlearnContext, p: PiuFrParams):
    stage1(ctx, p)
    if p.stage2:
        recipe = TrainRecipe(epochs=p.stage2_epochs, batch_size=p.batch_size, lr=p.stage2_lr,
                             momentum=p.stage2_momentum)
        fit(ctx.model, ctx.data, ctx.splits.retain, recipe, ctx.seed + 5, ctx.control, phase="piu-fr:stage2")
    return ctx.model


SPECS = [MethodSpec("piu-fr", PiuFrParams, run,
                    "label-matched unseen distillation, alternating descent/ascent (+ optional retain stage)")]
