"""MUCAC (CelebA-HQ faces with male / smiling / young attributes).

root holds ``CelebAMask-HQ/CelebA-HQ-img/{i}.jpg`` and the two text files
``CelebA-HQ-identity.txt`` and ``CelebA-HQ-attribute.txt`` (in root or in
``root/CelebAMask-HQ/``). Splits follow the benchmark's identity-id ranges,
so no person is in two splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from piu_engine.common.errors import DatasetError
from piu_engine.core.config import DatasetConfig
from piu_engine.core.data import local, store
from piu_engine.core.data.types import FaceDataset, Split, Task
from piu_engine.core.presets import Preset

LABEL = "MUCAC"
HINT = (
    "Get the CelebAMask-HQ release and the MUCAC files CelebA-HQ-identity.txt and "
    "CelebA-HQ-attribute.txt (next to CelebAMask-HQ/ or inside it)",
    "path to the folder that contains CelebAMask-HQ",
)

IMAGE_DIR = Path("CelebAMask-HQ") / "CelebA-HQ-img"
IDENTITY_FILE = "CelebA-HQ-identity.txt"
ATTRIBUTE_FILE = "CelebA-HQ-attribute.txt"
NUM_ATTRIBUTES = 40
# 1-based column after the file name in the attribute file.
ATTRIBUTE_COLUMNS = {"male": 21, "smiling": 32, "young": 40}

TEST_BELOW = 190
UNSEEN_FROM = 4855
PAPER_FORGET_RANGE = (190, 1250)


def _split_of(identity: int) -> Split:
    if identity < TEST_BELOW:
        return Split.TEST
    if identity < UNSEEN_FROM:
        return Split.TRAIN
    return Split.UNSEEN


def _find_text(root: Path, name: str, kind: str) -> Path:
    for candidate in (root / name, root / "CelebAMask-HQ" / name):
        if candidate.is_file():
            return candidate
    raise local.not_found(LABEL, kind, f"{root / name} (or {root / 'CelebAMask-HQ' / name})", HINT)


def _read_identities(path: Path) -> dict[str, int]:
    """file name -> identity id; lines that are not ``name id`` (headers) are skipped."""
    out: dict[str, int] = {}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
        elif line_no > 2:
            raise DatasetError(f"MUCAC: {path} line {line_no}: expected 'file_name identity_id', got {line.strip()!r}")
    return out


def _read_attributes(path: Path) -> dict[str, list[int]]:
    """file name -> 40 values in {-1, 1}, after the file's 2 header lines."""
    out: dict[str, list[int]] = {}
    lines = path.read_text().splitlines()
    for line_no, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != NUM_ATTRIBUTES + 1:
            raise DatasetError(
                f"MUCAC: {path} line {line_no}: expected a file name and {NUM_ATTRIBUTES} values, "
                f"got {len(parts)} fields"
            )
        try:
            values = [int(v) for v in parts[1:]]
        except ValueError:
            raise DatasetError(f"MUCAC: {path} line {line_no}: attribute values must be -1 or 1") from None
        out[parts[0]] = values
    return out


def _image_number(name: str) -> int:
    stem = Path(name).stem
    if not stem.isdigit():
        raise DatasetError(f"MUCAC: image name {name!r} is not '<number>.jpg'")
    return int(stem)


def load(cfg: DatasetConfig, preset: Preset, cache_dir: Path) -> FaceDataset:
    root = local.dataset_root(cfg, LABEL, HINT)
    image_dir = local.require(root / IMAGE_DIR, LABEL, cfg.kind, HINT)
    ids = _read_identities(_find_text(root, IDENTITY_FILE, cfg.kind))
    attrs = _read_attributes(_find_text(root, ATTRIBUTE_FILE, cfg.kind))
    if not ids:
        raise DatasetError(f"MUCAC: no 'file_name identity_id' lines in {IDENTITY_FILE}")
    no_attrs = sorted(set(ids) - set(attrs), key=_image_number)
    if no_attrs:
        raise DatasetError(
            f"MUCAC: {len(no_attrs)} image(s) have an identity but no attributes: {local.first_few(no_attrs)}"
        )

    names = sorted(ids, key=_image_number)
    paths = [image_dir / n for n in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(
            f"MUCAC: {len(missing)} image file(s) listed in {IDENTITY_FILE} are missing: {local.first_few(missing)}"
        )

    chosen = list(ATTRIBUTE_COLUMNS) if cfg.attribute == "all" else [cfg.attribute]
    bits = np.array([[attrs[n][ATTRIBUTE_COLUMNS[a] - 1] > 0 for a in chosen] for n in names], dtype=np.int64)
    bits = bits.reshape(len(names), len(chosen))
    if cfg.attribute == "all":
        task, labels, label_names = Task.MULTILABEL, torch.tensor(bits, dtype=torch.float32), chosen
    else:
        a = cfg.attribute
        task, labels, label_names = Task.MULTICLASS, torch.tensor(bits[:, 0], dtype=torch.int64), [f"not_{a}", a]

    size = local.image_size(cfg, preset)
    images = store.cached_images(cache_dir, local.key_parts(cfg, root), paths, size)
    return FaceDataset(
        name="mucac" if cfg.attribute == "all" else f"mucac-{cfg.attribute}",
        task=task,
        images=images,
        labels=labels,
        identities=np.asarray([str(ids[n]) for n in names], dtype=object),
        splits=np.asarray([_split_of(ids[n]).value for n in names], dtype=object),
        sources=[str(p) for p in paths],
        label_names=label_names,
        row_order=np.asarray([_image_number(n) for n in names], dtype=np.int64),
    )


def paper_forget_identities(ds: FaceDataset) -> list[str]:
    """The published forget set: training identities with 190 <= id < 1250."""
    lo, hi = PAPER_FORGET_RANGE
    train = ds.identities[ds.indices(Split.TRAIN)]
    return [str(i) for i in sorted({int(x) for x in train if lo <= int(x) < hi})]
