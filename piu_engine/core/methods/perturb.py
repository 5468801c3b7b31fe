"""Perturb, then fine-tune on retain: two NeurIPS 2023 competition entries.

Masked Small Gradients re-initialises the convolution weights the forget/
retain gradient barely touches (they carry little of either) and relearns
them from retain; Gaussian noise shakes convolution weights so that the
fine-tune settles somewhere the forget people did not shape."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from piu_engine.core.methods.base import UnlearnContext
from piu_engine.core.methods.catalog import NoiseFinetuneParams, ReinitSmallGradParams
from piu_engine.core.methods.masks import fraction_mask, loss_gradients, scaled_gradients
from piu_engine.core.presets import TrainRecipe
from piu_engine.core.train import fit


def conv_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every convolution's weight, by module name."""
    return {name: m.weight for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


@torch.no_grad()
def reinitialise_smallest(
    weights: dict[str, nn.Parameter], scores: dict[str, torch.Tensor], fraction: float, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """In each weight, give the ``fraction`` of entries with the smallest score
    a fresh He (kaiming-normal, fan-out) value; return the masks of those entries."""
    masks = {}
    for name, w in weights.items():
        mask = fraction_mask([scores[name]], fraction, largest=False)[0]
        fresh = nn.init.kaiming_normal_(torch.empty_like(w), mode="fan_out", nonlinearity="relu", generator=gen)
        w[mask] = fresh[mask]
        masks[name] = mask
    return masks


@torch.no_grad()
def add_noise(model: nn.Module, sigma: float, layers: str, gen: torch.Generator) -> list[str]:
    """Add N(0, sigma^2) to convolution weights (``layers``: "stem" = conv1,
    "all"); return the names of the modules noised."""
    noised = {name: w for name, w in conv_weights(model).items() if layers == "all" or name == "conv1"}
    for w in noised.values():
        w.add_(torch.randn(w.shape, generator=gen, device=w.device, dtype=w.dtype) * sigma)
    return list(noised)


def _recipe(p: ReinitSmallGradParams | NoiseFinetuneParams) -> TrainRecipe:
    return TrainRecipe(
        epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay
    )


def run_reinit_small_grad(ctx: UnlearnContext, p: ReinitSmallGradParams):
    model, splits = ctx.model, ctx.splits
    weights = conv_weights(model)
    rng = np.random.default_rng(ctx.seed + 71)
    retain_sample = splits.retain[rng.permutation(len(splits.retain))[: len(splits.forget)]]
    grads = loss_gradients(model, ctx.data, list(weights.values()), [(retain_sample, 1.0), (splits.forget, -1.0)])
    scores = {name: g.abs() for name, g in zip(weights, grads, strict=True)}
    masks = reinitialise_smallest(weights, scores, p.reinit_fraction, ctx.generator(71))
    scales = [torch.where(masks[name], 1.0, p.rest_lr_factor).to(w.dtype) for name, w in weights.items()]
    with scaled_gradients(list(weights.values()), scales):
        fit(model, ctx.data, splits.retain, _recipe(p), ctx.seed + 7, ctx.control, phase="reinit-small-grad")
    return model


def run_noise_finetune(ctx: UnlearnContext, p: NoiseFinetuneParams):
    add_noise(ctx.model, p.sigma, p.noise_layers, ctx.generator(81))
    fit(ctx.model, ctx.data, ctx.splits.retain, _recipe(p), ctx.seed + 8, ctx.control, phase="noise-finetune")
    return ctx.model


RUNS = {
    "reinit-small-grad": run_reinit_small_grad,
    "noise-finetune": run_noise_finetune,
}
