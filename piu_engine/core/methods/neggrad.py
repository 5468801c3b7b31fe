"""Gradient-ascent family: NegGrad (ascent on forget), Advanced NegGrad
(-CE(forget) + CE(retain), 1:1) and NegGrad+ (a*CE(retain) - (1-a)*CE(forget))."""

from __future__ import annotations

from piu_engine.core.losses import task_loss
from piu_engine.core.methods.base import UnlearnContext, cycle_batches
from piu_engine.core.methods.catalog import AdvancedNegGradParams, NegGradParams, NegGradPlusParams
from piu_engine.core.tensors import index_batches, n_batches
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
        forget, retain = ctx.indices(ctx.splits.forget), ctx.indices(ctx.splits.retain)
        retain_stream = cycle_batches(retain, p.batch_size, gen) if w_retain and len(retain) else None
        opt = sgd(ctx.model.parameters(), p.lr, p.momentum)
        steps = n_batches(len(forget), p.batch_size)
        ph = ctx.phase(phase, p.epochs, steps)
        model, data = ctx.model, ctx.data

        def step(fb):
            x, y = data.batch(fb, augment=True, gen=gen)
            with ph.autocast(ctx.device):
                loss = -w_forget * task_loss(model(x), y, data.task)
                if retain_stream is not None:
                    xr, yr = data.batch(next(retain_stream), augment=True, gen=gen)
                    loss = loss + w_retain * task_loss(model(xr), yr, data.task)
            return loss

        model.train()
        train_steps(ph, model, opt, step, lambda epoch: index_batches(forget, p.batch_size, True, gen))
        return model

    return run


RUNS = {
    "neggrad": make_run("neggrad"),
    "advanced-neggrad": make_run("advanced-neggrad"),
    "neggrad-plus": make_run("neggrad-plus"),
}
