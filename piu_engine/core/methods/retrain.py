"""Retrain from scratch on retain with the original recipe: the gold standard."""

from __future__ import annotations

from dataclasses import replace

from piu_engine.core.methods.base import UnlearnContext
from piu_engine.core.methods.catalog import RetrainParams
from piu_engine.core.train import fit


def run(ctx: UnlearnContext, p: RetrainParams):
    model = ctx.new_model()
    recipe = ctx.recipe if not p.epochs else replace(ctx.recipe, epochs=p.epochs)
    fit(model, ctx.data, ctx.splits.retain, recipe, ctx.seed + 1, ctx.control, phase="retrain")
    return model


RUNS = {
    "retrain": run,
}
