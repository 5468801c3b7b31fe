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


def augment_batch(
    x: torch.Tensor,
    gen: torch.Generator,
    shear_deg: float = 10.0,
    scale: tuple[float, float] = (0.8, 1.2),
    jitter: float = 0.2,
) -> torch.Tensor:
    """Augment a float batch [B, 3, H, W] in [0, 1]; ``gen`` lives on x's device.

    Two passes over the pixels instead of a dozen: the flip is folded into the
    affine warp (one ``grid_sample``), and brightness, contrast and saturation,
    all linear in the pixel values, into one 3×3 colour matrix and offset per
    image.
    """
    b, device, dtype = x.shape[0], x.device, x.dtype
    flip = torch.where(torch.rand(b, generator=gen, device=device) < 0.5, -1.0, 1.0).to(dtype)
    shear = torch.tan(_uniform(b, -shear_deg, shear_deg, gen, device) * (math.pi / 180.0))
    inv_scale = 1.0 / _uniform(b, scale[0], scale[1], gen, device)
    theta = torch.zeros(b, 2, 3, device=device, dtype=dtype)
    theta[:, 0, 0] = inv_scale * flip  # sampling x at -x' mirrors the output
    theta[:, 0, 1] = inv_scale * shear * flip
    theta[:, 1, 1] = inv_scale
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # brightness k_b, then contrast k_c around the mean grey m, then saturation
    # k_s around each pixel's grey g(.):  out = k_s k_c k_b x + (1-k_s) k_c k_b g(x) + (1-k_c) k_b m
    lo, hi = 1.0 - jitter, 1.0 + jitter
    k_b = _uniform(b, lo, hi, gen, device).to(dtype)
    k_c = _uniform(b, lo, hi, gen, device).to(dtype)
    k_s = _uniform(b, lo, hi, gen, device).to(dtype)
    w = _GREY.to(device, dtype)
    m = torch.einsum("c,bchw->b", w, x) / (x.shape[2] * x.shape[3])
    eye = torch.eye(3, device=device, dtype=dtype)
    colour = (k_s * k_c * k_b)[:, None, None] * eye + ((1 - k_s) * k_c * k_b)[:, None, None] * w[None, None, :]
    offset = ((1 - k_c) * k_b * m)[:, None, None]
    out = torch.baddbmm(offset, colour, x.reshape(b, 3, -1)).view_as(x)
    return out.clamp_(0.0, 1.0)
