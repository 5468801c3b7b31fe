"""Small file helpers: private modes for files naming people, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

from piu_engine.common.fsio import atomic_write_bytes, fsync_dir, private_dirs

FILE_MODE = 0o640  # reports, manifests and the state database name real people
UMASK = 0o027


def write_private(path: Path, data: bytes | str) -> None:
    """Atomically write a file with :data:`FILE_MODE`."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    atomic_write_bytes(Path(path), data, FILE_MODE)


def move(src: Path, dst: Path) -> None:
    """Rename within one filesystem and make the rename durable."""
    private_dirs(Path(dst).parent)
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)


__all__ = ["FILE_MODE", "UMASK", "private_dirs", "write_private", "move", "atomic_write_bytes"]
