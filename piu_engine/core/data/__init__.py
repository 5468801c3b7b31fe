"""Dataset loaders behind one entry point, :func:`load_dataset`.

Each loader module exposes ``load(cfg, preset, cache_dir) -> FaceDataset`` and
reads only local files: nothing is ever downloaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from piu_engine.common.errors import DatasetError
from piu_engine.core.config import DatasetConfig
from piu_engine.core.data.types import FaceDataset, Split, Task
from piu_engine.core.presets import Preset

LOADERS = {
    "synthetic": "piu_engine.core.data.synthetic",
    "mufac": "piu_engine.core.data.mufac",
    "mucac": "piu_engine.core.data.mucac",
    "jaffe": "piu_engine.core.data.jaffe",
    "folder": "piu_engine.core.data.folder",
}


def load_dataset(cfg: DatasetConfig, preset: Preset, cache_dir: Path, name: str = "") -> FaceDataset:
    """Load with the loader of ``cfg.kind``; ``name`` is the dataset's key in
    config.toml, which messages then use instead of the loader's own name."""
    module = importlib.import_module(LOADERS[cfg.kind])
    ds = module.load(cfg, preset, Path(cache_dir))
    if name:
        ds.name = name
    return ds


__all__ = ["DatasetError", "FaceDataset", "Split", "Task", "load_dataset", "LOADERS"]
