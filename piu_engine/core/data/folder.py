"""The user's own faces: one sub-folder per person plus a labels CSV.

Layout: ``root/<identity>/<image>`` and ``root/<labels_csv>`` with columns
``path,label`` (path relative to root, e.g. ``alice/001.jpg``) and an
optional ``split`` column (train / test / unseen). Without it people are split
by identity. Every image must be labelled and every labelled image must
exist, so that nothing is silently dropped or invented.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from piu_engine.common.errors import DatasetError
from piu_engine.core.config import DatasetConfig
from piu_engine.core.data import local, store
from piu_engine.core.data.identity_split import assign_identity_splits
from piu_engine.core.data.imageio import IMAGE_SUFFIXES
from piu_engine.core.data.types import FaceDataset, Split, Task
from piu_engine.core.presets import Preset

LABEL = "Image folder"
HINT = (
    "Put one sub-folder per person under a folder (<person>/<image>.jpg) with a labels CSV "
    "listing every image as path,label[,split]",
    "path to that folder",
)


def _listed_images(root: Path) -> set[str]:
    """Image files under the identity folders, as root-relative posix paths."""
    found = set()
    for person in root.iterdir():
        if not person.is_dir() or person.name.startswith("."):
            continue
        for p in person.rglob("*"):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
                found.add(p.relative_to(root).as_posix())
    return found


def _read_labels(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, skipinitialspace=True)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [c for c in ("path", "label") if c not in header]
        if missing:
            raise DatasetError(
                f"{csv_path}: missing column(s) {', '.join(missing)}; expected path,label[,split] "
                f"(header was {', '.join(header) or 'empty'})"
            )
        rows = []
        for line_no, row in enumerate(reader, start=2):
            clean = {k: (v or "").strip() for k, v in row.items() if k is not None}
            if not any(clean.values()):
                continue
            clean["line"] = str(line_no)
            rows.append(clean)
    return rows


def _normalise(path: str, csv_path: Path, line: str) -> str:
    pure = PurePosixPath(path.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or len(pure.parts) < 2:
        raise DatasetError(f"{csv_path} line {line}: path {path!r} must be relative to root as <person>/<image>")
    return pure.as_posix()


def load(cfg: DatasetConfig, preset: Preset, cache_dir: Path) -> FaceDataset:
    root = local.dataset_root(cfg, LABEL, HINT)
    csv_path = local.require(root / cfg.labels_csv, LABEL, cfg.kind, HINT)
    rows = _read_labels(csv_path)
    if not rows:
        raise DatasetError(f"{csv_path}: no rows; list every image as path,label")

    rel: list[str] = []
    seen: dict[str, str] = {}
    for row in rows:
        if not row["path"] or not row["label"]:
            raise DatasetError(f"{csv_path} line {row['line']}: empty path or label")
        p = _normalise(row["path"], csv_path, row["line"])
        if p in seen:
            raise DatasetError(f"{csv_path} line {row['line']}: {p} is listed twice (first on line {seen[p]})")
        seen[p] = row["line"]
        rel.append(p)

    on_disk = _listed_images(root)
    missing = [p for p in rel if not (root / p).is_file()]
    if missing:
        raise DatasetError(
            f"{csv_path}: {len(missing)} listed image(s) do not exist under {root}: {local.first_few(missing)}"
        )
    unlabelled = sorted(on_disk - set(rel))
    if unlabelled:
        raise DatasetError(
            f"{csv_path}: {len(unlabelled)} image(s) under {root} have no row in the CSV: {local.first_few(unlabelled)}"
        )

    identities = [PurePosixPath(p).parts[0] for p in rel]
    if "split" in rows[0]:
        splits = []
        for row in rows:
            try:
                splits.append(Split(row["split"].lower()).value)
            except ValueError:
                raise DatasetError(
                    f"{csv_path} line {row['line']}: split {row['split']!r} is not train, test or unseen"
                ) from None
    else:
        split_of = assign_identity_splits(identities, cfg.test_fraction, cfg.unseen_fraction)
        splits = [split_of[i].value for i in identities]

    label_names = sorted({row["label"] for row in rows})
    class_of = {name: i for i, name in enumerate(label_names)}
    paths = [root / p for p in rel]
    size = local.image_size(cfg, preset)
    images = store.cached_images(cache_dir, local.key_parts(cfg, root), paths, size)
    return FaceDataset(
        name=root.name or "folder",
        task=Task.MULTICLASS,
        images=images,
        labels=torch.tensor([class_of[row["label"]] for row in rows], dtype=torch.int64),
        identities=np.asarray(identities, dtype=object),
        splits=np.asarray(splits, dtype=object),
        sources=[str(p) for p in paths],
        label_names=label_names,
        row_order=np.arange(len(rows)),
    )
