"""Checks shared by the loaders that read a local dataset folder.

Every missing path is reported the same way: which file or folder was
expected, and where the user must put the data, because PIU never downloads.
"""

from __future__ import annotations

import os
from pathlib import Path

from piu_engine.common.errors import DatasetError
from piu_engine.core.config import DatasetConfig
from piu_engine.core.presets import Preset


def advice(kind: str, hint: tuple[str, str]) -> str:
    """hint = (how to get the data, what root must point at)."""
    get, root_is = hint
    return (
        f'{get}, and set root = "<{root_is}>" in a [datasets.NAME] table with '
        f'kind = "{kind}" in config.toml; PIU never downloads data.'
    )


def not_found(label: str, kind: str, expected: Path | str, hint: tuple[str, str]) -> DatasetError:
    return DatasetError(f"{label} not found: expected {expected}. {advice(kind, hint)}")


def dataset_root(cfg: DatasetConfig, label: str, hint: tuple[str, str]) -> Path:
    """The configured root as an absolute folder that exists."""
    if not cfg.root:
        raise DatasetError(f"{label}: no root configured. {advice(cfg.kind, hint)}")
    root = Path(os.path.expanduser(cfg.root)).absolute()
    if not root.is_dir():
        raise not_found(label, cfg.kind, root, hint)
    return root


def require(path: Path, label: str, kind: str, hint: tuple[str, str]) -> Path:
    if not path.exists():
        raise not_found(label, kind, path, hint)
    return path


def image_size(cfg: DatasetConfig, preset: Preset) -> int:
    return int(cfg.image_size or preset.image_size)


def first_few(items, n: int = 5) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f" (and {len(items) - n} more)" if len(items) > n else "")


def key_parts(cfg: DatasetConfig, root: Path, **extra) -> dict:
    """What identifies a loader's image list in the decoded-image cache."""
    return {"kind": cfg.kind, "root": str(root), **extra}
