"""Dataset loaders behind one entry point, :func:`load_dataset`.

Each loader module exposes ``load(cfg, preset, cache_dir) -> FaceDataset`` and
reads only local files: nothing is ever downloaded.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from piu_engine.config import DatasetConfig
from piu_engine.data.types import FaceDataset, Split, Task
from piu_engine.presets import Preset

LOADERS = {
    "synthetic": "piu_engine.data.synthetic",
    "mufac": "piu_engine.data.mufac",
    "mucac": "piu_engine.data.mucac",
    "jaffe": "piu_engine.data.jaffe",
    "folder": "piu_engine.data.folder",
}


class DatasetError(ValueError):
    """A dataset is missing or not in the expected on-disk format."""


def load_dataset(cfg: DatasetConfig, preset: Preset, cache_dir: Path, name: str = "") -> FaceDataset:
    """Load with the loader of ``cfg.kind``; ``name`` is the dataset's key in
    config.toml, which messages then use instead of the loader's own name."""
    module = importlib.import_module(LOADERS[cfg.kind])
    ds = module.load(cfg, preset, Path(cache_dir))
    if name:
        ds.name = name
    return ds


__all__ = ["DatasetError", "FaceDataset", "Split", "Task", "load_dataset", "LOADERS"]
