"""Fine-tuning on retain (catastrophic forgetting), and CF-k with only the
last blocks trainable."""

from __future__ import annotations

from piu_engine.core.methods.base import UnlearnContext, trainable_only
from piu_engine.core.methods.catalog import FinetuneParams
from piu_engine.core.presets import TrainRecipe
from piu_engine.core.train import fit


def _recipe(p: FinetuneParams) -> TrainRecipe:
    return TrainRecipe(epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, momentum=p.momentum)


def run_finetune(ctx: UnlearnContext, p: FinetuneParams):
    fit(ctx.model, ctx.data, ctx.splits.retain, _recipe(p), ctx.seed + 2, ctx.control, phase="finetune")
    return ctx.model


TRAINABLE_CF_K = ("layer3.", "layer4.", "fc.")


def run_cf_k(ctx: UnlearnContext, p: FinetuneParams):
    with trainable_only(ctx.model, TRAINABLE_CF_K):
        fit(ctx.model, ctx.data, ctx.splits.retain, _recipe(p), ctx.seed + 3, ctx.control, phase="cf-k")
    return ctx.model


RUNS = {
    "finetune": run_finetune,
    "cf-k": run_cf_k,
}
