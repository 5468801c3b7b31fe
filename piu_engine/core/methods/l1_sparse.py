"""l1-sparse (Jia et al., NeurIPS 2023): fine-tune on retain while an l1
penalty pushes weights towards a sparse model, which forgets more of what
only a few images taught it; the penalty fades so the run ends on plain CE."""

from __future__ import annotations

from piu_engine.core.losses import task_loss
from piu_engine.core.methods.base import UnlearnContext
from piu_engine.core.methods.catalog import L1SparseParams
from piu_engine.core.tensors import index_batches, n_batches
from piu_engine.core.train import sgd, train_steps


def gamma_at(p: L1SparseParams, taken: int, total: int) -> float:
    """The l1 coefficient before step ``taken`` (from 0) of ``total``: linear from gamma to 0."""
    return p.gamma * (1.0 - taken / max(1, total))


def run(ctx: UnlearnContext, p: L1SparseParams):
    model, data = ctx.model, ctx.data
    gen = ctx.generator(91)
    retain = ctx.indices(ctx.splits.retain)
    params = list(model.parameters())
    opt = sgd(params, p.lr, p.momentum)
    steps = n_batches(len(retain), p.batch_size)
    ph = ctx.phase("l1-sparse", p.epochs, steps)
    gamma = [p.gamma]

    def before_step(taken: int) -> None:
        gamma[0] = gamma_at(p, taken, p.epochs * steps)

    def step(b):
        x, y = data.batch(b, augment=True, gen=gen)
        with ph.autocast(ctx.device):
            loss = task_loss(model(x), y, data.task)
        return loss + gamma[0] * sum(q.abs().sum() for q in params)

    model.train()
    train_steps(
        ph, model, opt, step, lambda epoch: index_batches(retain, p.batch_size, True, gen), before_step=before_step
    )
    return model


RUNS = {
    "l1-sparse": run,
}
