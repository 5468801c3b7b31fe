"""JAFFE (Japanese female facial expressions, 7 classes) from its TIFF files.

File names such as ``KA.AN1.39.tiff`` carry the subject (``KA``) and the
expression (``AN``). The published split ignores subjects; this loader splits
by subject so that a forgotten person is never also a test person.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from piu_engine.common.errors import DatasetError
from piu_engine.core.config import DatasetConfig
from piu_engine.core.data import local, store
from piu_engine.core.data.identity_split import assign_identity_splits
from piu_engine.core.data.types import FaceDataset, Task
from piu_engine.core.presets import Preset

LABEL = "JAFFE"
HINT = ("Get the JAFFE release", "path to the folder holding its *.tiff files, e.g. KA.AN1.39.tiff")
EXPRESSIONS = ("AN", "DI", "FE", "HA", "NE", "SA", "SU")
LABEL_NAMES = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]


def parse_name(name: str) -> tuple[str, int] | None:
    """(subject, expression index) from ``KA.AN1.39.tiff``; None when it does not fit."""
    parts = name.split(".")
    if len(parts) < 3 or len(parts[0]) != 2 or not parts[0].isalpha():
        return None
    code = parts[1][:2].upper()
    if code not in EXPRESSIONS:
        return None
    return parts[0].upper(), EXPRESSIONS.index(code)


def load(cfg: DatasetConfig, preset: Preset, cache_dir: Path) -> FaceDataset:
    root = local.dataset_root(cfg, LABEL, HINT)
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in (".tif", ".tiff"))
    if not files:
        raise local.not_found(LABEL, cfg.kind, root / "*.tiff", HINT)
    parsed = [parse_name(p.name) for p in files]
    bad = [p.name for p, info in zip(files, parsed) if info is None]
    if bad:
        raise DatasetError(
            f"JAFFE: {len(bad)} file name(s) in {root} are not SUBJECT.EXPRn.k.tiff with an expression "
            f"in {', '.join(EXPRESSIONS)}: {local.first_few(bad)}"
        )
    subjects = [s for s, _ in parsed]
    split_of = assign_identity_splits(subjects, cfg.test_fraction, cfg.unseen_fraction)
    size = local.image_size(cfg, preset)
    images = store.cached_images(cache_dir, local.key_parts(cfg, root), files, size)
    return FaceDataset(
        name="jaffe",
        task=Task.MULTICLASS,
        images=images,
        labels=torch.tensor([e for _, e in parsed], dtype=torch.int64),
        identities=np.asarray(subjects, dtype=object),
        splits=np.asarray([split_of[s].value for s in subjects], dtype=object),
        sources=[str(p) for p in files],
        label_names=list(LABEL_NAMES),
        row_order=np.arange(len(files)),
    )
