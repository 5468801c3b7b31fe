"""Crash-safe model checkpoints: temp file, fsync, atomic rename, SHA-256.

A reader either sees the old file or the complete new one, never a partial
write, and loading uses ``weights_only=True`` so a checkpoint cannot run code.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from piu_engine.common.errors import ChecksumError
from piu_engine.common.fsio import atomic_write_bytes, sha256_file


def save_checkpoint(state_dict: dict, path: Path, mode: int = 0o640) -> str:
    """Save a state dict atomically and return its SHA-256."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buf)
    data = buf.getvalue()
    atomic_write_bytes(Path(path), data, mode)
    return hashlib.sha256(data).hexdigest()


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
