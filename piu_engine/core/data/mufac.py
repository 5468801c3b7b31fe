"""MUFAC (Korean family faces, 8 age classes) from its public release folder.

root = ``custom_korean_family_dataset_resolution_128/``. The benchmark's own
split maps to ours as: train CSV -> train, val CSV -> test, test CSV ->
unseen. A person (family_id, person_id) is the unit of forgetting.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from piu_engine.common.errors import DatasetError
from piu_engine.core.config import DatasetConfig
from piu_engine.core.data import local, store
from piu_engine.core.data.types import FaceDataset, Split, Task
from piu_engine.core.presets import Preset

LABEL = "MUFAC"
HINT = ("Download the MUFAC release and unpack it", "path to its custom_korean_family_dataset_resolution_128 folder")

# (csv, image folder, our split), in the order samples are listed.
PARTS = (
    ("custom_train_dataset.csv", "train_images", Split.TRAIN),
    ("custom_val_dataset.csv", "val_images", Split.TEST),
    ("custom_test_dataset.csv", "test_images", Split.UNSEEN),
)
COLUMNS = ("family_id", "person_id", "age_class", "image_path")
AGE_CLASSES = "abcdefgh"
LABEL_NAMES = ["0-6", "7-12", "13-19", "20-30", "31-45", "46-55", "56-66", "67-80"]

# The published benchmark forgets the first 1,500 rows of the train CSV.
PAPER_FORGET_ROWS = 1500


def _read_rows(csv_path: Path) -> list[dict[str, str]]:
    """Rows keyed by column name; an unnamed leading index column is ignored."""
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DatasetError(f"MUFAC: {csv_path} is empty") from None
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise DatasetError(
                f"MUFAC: {csv_path} lacks column(s) {', '.join(missing)}; "
                f"expected {', '.join(COLUMNS)} (header was {', '.join(header)})"
            )
        at = {c: header.index(c) for c in COLUMNS}
        rows = []
        for line_no, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            if len(cells) < len(header):
                raise DatasetError(
                    f"MUFAC: {csv_path} line {line_no}: expected {len(header)} columns, got {len(cells)}"
                )
            rows.append({c: cells[i].strip() for c, i in at.items()})
    return rows


def _image_file(root: Path, images_dir: Path, name: str) -> Path:
    direct = images_dir / name
    if direct.exists() or not (root / name).exists():
        return direct
    return root / name  # image_path already includes the folder


def load(cfg: DatasetConfig, preset: Preset, cache_dir: Path) -> FaceDataset:
    root = local.dataset_root(cfg, LABEL, HINT)
    paths: list[Path] = []
    labels: list[int] = []
    identities: list[str] = []
    splits: list[str] = []
    row_order: list[int] = []
    for csv_name, folder, split in PARTS:
        csv_path = local.require(root / csv_name, LABEL, cfg.kind, HINT)
        images_dir = local.require(root / folder, LABEL, cfg.kind, HINT)
        for i, row in enumerate(_read_rows(csv_path)):
            age = row["age_class"].lower()
            if len(age) != 1 or age not in AGE_CLASSES:
                raise DatasetError(f"MUFAC: {csv_path} row {i}: age_class {row['age_class']!r} is not one of a-h")
            paths.append(_image_file(root, images_dir, row["image_path"]))
            labels.append(AGE_CLASSES.index(age))
            identities.append(f"{row['family_id']}/{row['person_id']}")
            splits.append(split.value)
            row_order.append(i)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(
            f"MUFAC: {len(missing)} image file(s) listed in the CSVs are missing: {local.first_few(missing)}"
        )
    size = local.image_size(cfg, preset)
    images = store.cached_images(cache_dir, local.key_parts(cfg, root), paths, size)
    return FaceDataset(
        name="mufac",
        task=Task.MULTICLASS,
        images=images,
        labels=torch.tensor(labels, dtype=torch.int64),
        identities=np.asarray(identities, dtype=object),
        splits=np.asarray(splits, dtype=object),
        sources=[str(p) for p in paths],
        label_names=list(LABEL_NAMES),
        row_order=np.asarray(row_order, dtype=np.int64),
    )


def paper_forget_indices(ds: FaceDataset) -> np.ndarray:
    """Indices of the published forget split: the first 1,500 rows of the train CSV.

    The published split is image-level, so it can cut a person in two; the
    identities to forget are the identities of these images, and a product
    that forgets people should forget all of their training images.
    """
    train = ds.splits == Split.TRAIN.value
    return np.flatnonzero(train & (ds.row_order < PAPER_FORGET_ROWS))
