"""Gradient-ascent family: NegGrad (ascent on forget), Advanced NegGrad
(-CE(forget) + CE(retain), 1:1) and NegGrad+ (a*CE(retain) - (1-a)*CE(forget)).

NegGrad's epoch is a pass over forget; the two with a retain term pass over
retain with forget cycled, as their sources count an epoch."""

from __future__ import annotations

from piu_engine.core.losses import task_loss
from piu_engine.core.methods.base import UnlearnContext, paired_batches
from piu_engine.core.methods.catalog import AdvancedNegGradParams, NegGradParams, NegGradPlusParams
from piu_engine.core.train import sgd, train_steps


def _weights(p: NegGradParams) -> tuple[float, float]:
    """(retain weight, forget weight) of the combined loss."""
    if isinstance(p, NegGradPlusParams):
        return p.alpha, 1.0 - p.alpha
    if isinstance(p, AdvancedNegGradParams):
        return p.retain_weight, p.forget_weight
    return 0.0, 1.0


def make_run(phase: str):
    def run(ctx: UnlearnContext, p: NegGradParams):
        w_retain, w_forget = _weights(p)
        gen = ctx.generator(11)
        forget = ctx.indices(ctx.splits.forget)
        retain = ctx.indices(ctx.splits.retain) if w_retain else None
        steps, batches = paired_batches(forget, retain, p.batch_size, gen, over_retain=True)
        opt = sgd(ctx.model.parameters(), p.lr, p.momentum)
        ph = ctx.phase(phase, p.epochs, steps)
        model, data = ctx.model, ctx.data

        def step(pair):
            fb, rb = pair
            x, y = data.batch(fb, augment=True, gen=gen)
            with ph.autocast(ctx.device):
                loss = -w_forget * task_loss(model(x), y, data.task)
                if rb is not None:
                    xr, yr = data.batch(rb, augment=True, gen=gen)
                    loss = loss + w_retain * task_loss(model(xr), yr, data.task)
            return loss

        model.train()
        train_steps(ph, model, opt, step, batches)
        return model

    return run


RUNS = {
    "neggrad": make_run("neggrad"),
    "advanced-neggrad": make_run("advanced-neggrad"),
    "neggrad-plus": make_run("neggrad-plus"),
}
