"""Retrain from scratch on retain with the original recipe: the gold standard."""
from __future__ import annotations

from dataclasses import dataclass, replace

from piu_engine.methods.base import MethodSpec, UnlearnContext
from piu_engine.train import fit


@dataclass(frozen=True)
class RetrainParams:
    epochs: int = 0  # 0 = the original recipe's epochs

    def check(self):
        return "epochs must be >= 0" if self.epochs < 0 else None


def run(ctx: UnlearnContext, p: RetrainParams):
    model = ctx.new_model()
    recipe = ctx.recipe if not p.epochs else replace(ctx.recipe, epochs=p.epochs)
    fit(model, ctx.data, ctx.splits.retain, recipe, ctx.seed + 1, ctx.control, phase="retrain")
    return model


SPECS = [MethodSpec("retrain", RetrainParams, run, "train from scratch on retain (original recipe)")]
