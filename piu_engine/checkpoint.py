"""Crash-safe model checkpoints: temp file, fsync, atomic rename, SHA-256.

A reader either sees the old file or the complete new one, never a partial
write, and loading uses ``weights_only=True`` so a checkpoint cannot run code.
"""
from __future__ import annotations

import hashlib
import io
import os
import stat
import tempfile
from pathlib import Path

import torch


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


PRIVATE_DIR_MODE = 0o750  # caches, models and state hold people's photos or what was learnt from them


def private_dirs(path: Path) -> Path:
    """Create ``path`` and its missing parents readable by the owner and group only."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            continue
        # whatever the umask; a setgid bit inherited from a shared-group parent stays,
        # so files below keep that group and its members can still read them
        os.chmod(d, PRIVATE_DIR_MODE | (d.stat().st_mode & stat.S_ISGID))
    return path


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one."""
    path = Path(path)
    private_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(state_dict: dict, path: Path, mode: int = 0o640) -> str:
    """Save a state dict atomically and return its SHA-256."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buf)
    data = buf.getvalue()
    atomic_write_bytes(Path(path), data, mode)
    return hashlib.sha256(data).hexdigest()


class ChecksumError(RuntimeError):
    pass


def load_checkpoint(path: Path, expected_sha256: str | None = None) -> dict:
    """Load a state dict (tensors only); verify its checksum when one is given."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ChecksumError(f"checkpoint {path} has SHA-256 {actual}, expected {expected_sha256}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return state
