"""Small file helpers: private modes for files naming people, atomic writes."""
from __future__ import annotations

import os
from pathlib import Path

from piu_engine.checkpoint import atomic_write_bytes, fsync_dir

FILE_MODE = 0o640  # reports, manifests and the state database name real people
DIR_MODE = 0o750
UMASK = 0o027


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by the owner and group only."""
    path = Path(path)
    if not path.is_dir():
        missing = []
        p = path
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            try:
                d.mkdir(mode=DIR_MODE)
            except FileExistsError:
                continue
            os.chmod(d, DIR_MODE)
    return path


def write_private(path: Path, data: bytes | str) -> None:
    """Atomically write a file with :data:`FILE_MODE`."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    private_dir(Path(path).parent)
    atomic_write_bytes(Path(path), data, FILE_MODE)


def move(src: Path, dst: Path) -> None:
    """Rename within one filesystem and make the rename durable."""
    private_dir(Path(dst).parent)
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)


__all__ = ["FILE_MODE", "DIR_MODE", "UMASK", "private_dir", "write_private", "move", "atomic_write_bytes"]
