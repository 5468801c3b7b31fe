"""ReGUn (Mirlach et al., arXiv 2603.11210, 2026): pull the model's outputs
on forget images to what the original shows, on average, for never-seen
images of the same label, with CE on retain keeping utility.

The reference is built from the unseen *unlearning* part only (never the
evaluation part the MIA is measured on), bucketed by label with the same
code PIU-FR pairs its images with (:func:`label_buckets`)."""

from __future__ import annotations

import torch

from piu_engine.core.data.splits import label_buckets
from piu_engine.core.data.types import Task
from piu_engine.core.losses import distill_kl, task_loss
from piu_engine.core.methods.base import UnlearnContext, paired_batches
from piu_engine.core.methods.catalog import ReGUnParams
from piu_engine.core.tensors import index_batches
from piu_engine.core.train import sgd, train_steps

EPS = 1e-6  # keeps a class the reference never predicts out of log(0)


@torch.no_grad()
def reference_logits(ctx: UnlearnContext, temperature: float) -> torch.Tensor:
    """Per forget image (in ``splits.forget`` order), logits z with
    softmax(z / T) (multi-label: sigmoid) equal to the original's output at T
    averaged over the unseen-unlearning images with the image's label, so
    that :func:`distill_kl` distils towards that average."""
    data, pool, t = ctx.data, ctx.splits.unseen_unlearn, temperature
    pool_idx = ctx.indices(pool)
    logits = torch.cat([ctx.original(data.batch(b)[0]).float() for b in index_batches(pool_idx, 256, shuffle=False)])
    probs = torch.sigmoid(logits / t) if data.task is Task.MULTILABEL else torch.softmax(logits / t, dim=1)
    row = {int(i): k for k, i in enumerate(pool)}
    means: dict[int, torch.Tensor] = {}  # one average per bucket (buckets are shared arrays)
    targets = []
    for bucket in label_buckets(ctx.dataset, ctx.splits.forget, pool):
        if id(bucket) not in means:
            rows = torch.as_tensor([row[int(i)] for i in bucket], device=probs.device)
            means[id(bucket)] = probs.index_select(0, rows).mean(0)
        targets.append(means[id(bucket)])
    q = torch.stack(targets).clamp(EPS, 1 - EPS)
    return t * (torch.logit(q) if data.task is Task.MULTILABEL else q.log())


def run(ctx: UnlearnContext, p: ReGUnParams):
    model, data = ctx.model, ctx.data
    target = reference_logits(ctx, p.temperature)  # row k: forget image splits.forget[k]
    forget = ctx.indices(ctx.splits.forget)
    position = torch.full((int(forget.max()) + 1,), -1, dtype=torch.long, device=ctx.device)
    position[forget] = torch.arange(len(forget), device=ctx.device)
    gen = ctx.generator(101)
    retain = ctx.indices(ctx.splits.retain) if p.retain_weight else None
    steps, batches = paired_batches(forget, retain, p.batch_size, gen, over_retain=False)
    opt = sgd(model.parameters(), p.lr, p.momentum)
    ph = ctx.phase("regun", p.epochs, steps)

    def step(pair):
        fb, rb = pair
        x, _ = data.batch(fb, augment=True, gen=gen)
        with ph.autocast(ctx.device):
            loss = p.forget_weight * distill_kl(model(x), target[position[fb]], p.temperature, data.task)
            if rb is not None:
                xr, yr = data.batch(rb, augment=True, gen=gen)
                loss = loss + p.retain_weight * task_loss(model(xr), yr, data.task)
        return loss

    model.train()
    train_steps(ph, model, opt, step, batches)
    return model


RUNS = {
    "regun": run,
}
