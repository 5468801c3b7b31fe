"""A cache of decoded images, so epochs and reruns never decode files again.

The cache key covers every input that changes the pixels: the loader, its
root, the image size and each file's relative path, byte size and mtime. A
file that changes gives a new key and so a fresh decode; a stale entry is
never served.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from piu_engine.common.errors import DatasetError
from piu_engine.common.fsio import atomic_write_bytes
from piu_engine.core.data import imageio

CACHE_FORMAT = 1


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def cache_key(key_parts: dict[str, Any], paths: Sequence[Path], size: int) -> str:
    """SHA-256 over the loader's identity, the size, and each file's path, size and mtime."""
    root = Path(key_parts["root"]) if key_parts.get("root") else None
    digest = hashlib.sha256()
    header = {"format": CACHE_FORMAT, "size": int(size), **{k: str(v) for k, v in key_parts.items()}}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for path in paths:
        path = Path(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise DatasetError(f"image file missing: {path}") from None
        digest.update(f"\n{_relative(path, root)}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def _read(path: Path, n: int, size: int) -> torch.Tensor | None:
    """The cached tensor, or None when the entry is unreadable or the wrong shape."""
    try:
        images = torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 - a damaged cache entry is rebuilt, never fatal
        return None
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or tuple(images.shape) != (n, 3, size, size):
        return None
    return images


def cached_images(cache_dir: Path, key_parts: dict[str, Any], paths: Sequence[Path], size: int) -> torch.Tensor:
    """uint8 [N, 3, size, size] images of ``paths``, decoded once and then read from cache."""
    paths = [Path(p) for p in paths]
    key = cache_key(key_parts, paths, size)
    entry = Path(cache_dir) / "images" / f"{key}.pt"
    if entry.exists():
        images = _read(entry, len(paths), size)
        if images is not None:
            return images
    images = imageio.decode_all(paths, size)
    buffer = io.BytesIO()
    torch.save(images, buffer)
    atomic_write_bytes(entry, buffer.getvalue())
    return images
