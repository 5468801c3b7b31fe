"""Fine-tuning on retain (catastrophic forgetting), and CF-k with only the
last blocks trainable."""
from __future__ import annotations

from dataclasses import dataclass

from piu_engine.methods.base import MethodSpec, UnlearnContext, positive, trainable_only
from piu_engine.presets import TrainRecipe
from piu_engine.train import fit


@dataclass(frozen=True)
class FinetuneParams:
    epochs: int = 2
    lr: float = 0.001
    momentum: float = 0.9
    batch_size: int = 64

    def check(self):
        return positive(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)


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


SPECS = [
    MethodSpec("finetune", FinetuneParams, run_finetune, "cross-entropy fine-tune on retain"),
    MethodSpec("cf-k", FinetuneParams, run_cf_k, "fine-tune layer3, layer4 and fc on retain"),
]
