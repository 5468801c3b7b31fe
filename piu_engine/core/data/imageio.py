"""Decode image files into the uint8 [3, H, W] tensors every loader produces.

One decoder for all datasets, so that JPEG, PNG and TIFF, colour or
grayscale, all come out the same shape and type.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from piu_engine.common.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB with grayscale replicated; 16-bit and float images are scaled to 8 bits."""
    if img.mode in ("I", "F") or img.mode.startswith("I;"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() if arr.size and arr.max() > 0 else 1.0
        img = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def decode(path: str | Path, size: int) -> torch.Tensor:
    """Read one image and resize it to ``size`` x ``size`` (bilinear, antialiased)."""
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            img = _to_rgb(img)
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"cannot decode image {path}: {exc}") from exc
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def decode_all(paths: Sequence[str | Path], size: int) -> torch.Tensor:
    """Decode many files into one uint8 [N, 3, size, size] tensor.

    Pillow releases the GIL while decoding, so a few threads cut the one-off
    decode time of a large dataset.
    """
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    if not paths:
        return out

    def work(i: int) -> None:
        out[i] = decode(paths[i], size)

    workers = min(8, os.cpu_count() or 1, len(paths))
    if workers <= 1:
        for i in range(len(paths)):
            work(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, range(len(paths))))
    return out
