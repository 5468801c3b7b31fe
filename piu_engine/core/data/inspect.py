"""What a dataset holds, per split: images, people and label counts.

The first thing to look at before forgetting anyone: a split with no
unseen people or a class missing from test makes every later number moot.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from piu_engine.core.data.types import FaceDataset, Split, Task


def _label_counts(ds: FaceDataset, idx: np.ndarray) -> dict[str, int]:
    labels = ds.labels.numpy()[idx]
    if ds.task is Task.MULTILABEL:
        positives = (labels > 0.5).sum(axis=0) if len(idx) else np.zeros(ds.num_outputs)
        return {name: int(positives[k]) for k, name in enumerate(ds.label_names)}
    counts = np.bincount(labels.astype(np.int64), minlength=ds.num_outputs)
    return {name: int(counts[k]) for k, name in enumerate(ds.label_names)}


def _part(ds: FaceDataset, idx: np.ndarray) -> dict[str, Any]:
    return {
        "images": int(len(idx)),
        "identities": int(len(set(ds.identities[idx].tolist()))),
        "labels": _label_counts(ds, idx),
    }


def summarize(ds: FaceDataset) -> dict[str, Any]:
    """Counts per split and in total; multi-label counts are positives per attribute."""
    return {
        "dataset": ds.name,
        "task": ds.task.value,
        "image_size": ds.image_size,
        "label_names": list(ds.label_names),
        "splits": {s.value: _part(ds, ds.indices(s)) for s in Split},
        "total": _part(ds, np.arange(len(ds))),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text table: one column per split, one row per count."""
    columns = [*summary["splits"], "total"]
    parts = {**summary["splits"], "total": summary["total"]}
    label_kind = "positives" if summary["task"] == Task.MULTILABEL.value else "label"
    rows = [
        ("images", [parts[c]["images"] for c in columns]),
        ("identities", [parts[c]["identities"] for c in columns]),
    ]
    rows += [(f"{label_kind} {name}", [parts[c]["labels"][name] for c in columns]) for name in summary["label_names"]]
    first = max(len(r[0]) for r in rows)
    width = max(8, *(len(str(v)) for _, vals in rows for v in vals), *(len(c) for c in columns))
    head = (
        f"dataset {summary['dataset']} ({summary['task']}, {summary['image_size']} px, "
        f"{len(summary['label_names'])} {'attributes' if label_kind == 'positives' else 'classes'})"
    )
    lines = [head, "", " " * first + "".join(f"  {c:>{width}}" for c in columns)]
    lines.append("-" * len(lines[-1]))
    lines += [f"{name:<{first}}" + "".join(f"  {v:>{width}}" for v in vals) for name, vals in rows]
    return "\n".join(lines)
