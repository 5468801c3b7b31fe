"""Training augmentation as batched tensor ops on the training device.

REFERENCE's recipe (horizontal flip, affine with shear 10 degrees and scale
0.8-1.2, colour jitter 0.2) applied to a whole batch at once, so a GPU run
never waits on per-image Python code on the CPU.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_GREY = torch.tensor([0.299, 0.587, 0.114])


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def augment_batch(x: torch.Tensor, gen: torch.Generator, shear_deg: float = 10.0,
                  scale: tuple[float, float] = (0.8, 1.2), jitter: float = 0.2) -> torch.Tensor:
    """Augment a float batch [B, 3, H, W] in [0, 1]; ``gen`` lives on x's device."""
    b, device = x.shape[0], x.device
    flip = torch.rand(b, generator=gen, device=device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)

    shear = torch.tan(_uniform(b, -shear_deg, shear_deg, gen, device) * (math.pi / 180.0))
    inv_scale = 1.0 / _uniform(b, scale[0], scale[1], gen, device)
    theta = torch.zeros(b, 2, 3, device=device, dtype=x.dtype)
    theta[:, 0, 0] = inv_scale
    theta[:, 0, 1] = inv_scale * shear
    theta[:, 1, 1] = inv_scale
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    lo, hi = 1.0 - jitter, 1.0 + jitter
    brightness = _uniform(b, lo, hi, gen, device)[:, None, None, None]
    contrast = _uniform(b, lo, hi, gen, device)[:, None, None, None]
    saturation = _uniform(b, lo, hi, gen, device)[:, None, None, None]
    x = x * brightness
    grey = (x * _GREY.to(device, x.dtype)[None, :, None, None]).sum(1, keepdim=True)
    x = (x - grey.mean((2, 3), keepdim=True)) * contrast + grey.mean((2, 3), keepdim=True)
    grey = (x * _GREY.to(device, x.dtype)[None, :, None, None]).sum(1, keepdim=True)
    x = (x - grey) * saturation + grey
    return x.clamp_(0.0, 1.0)
