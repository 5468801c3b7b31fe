"""The one in-memory description every dataset loader produces.

A loader returns a :class:`FaceDataset`: per sample its image source, its
label(s), its identity and its split, plus the decoded images as one uint8
tensor so that training never touches image files again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import torch


class Split(str, Enum):
    """Where a sample sits in the dataset's own protocol (before forgetting)."""

    TRAIN = "train"
    TEST = "test"
    UNSEEN = "unseen"


class Task(str, Enum):
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"


@dataclass
class FaceDataset:
    """Decoded images plus per-sample metadata, all aligned by index.

    images:      uint8 tensor [N, C, H, W] (C = 3; grayscale is replicated)
    labels:      int64 [N] for multiclass, float32 [N, K] in {0, 1} for multilabel
    identities:  N identity strings (the unit of forgetting)
    splits:      N values of :class:`Split`
    sources:     N image sources (file path, or a synthetic recipe string)
    label_names: class names (multiclass) or attribute names (multilabel)
    row_order:   N ints, the sample's position in the source listing; the
                 paper protocol ("first 1,500 rows of the train CSV") uses it
    """

    name: str
    task: Task
    images: torch.Tensor
    labels: torch.Tensor
    identities: np.ndarray
    splits: np.ndarray
    sources: list[str]
    label_names: list[str]
    row_order: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        n = len(self.identities)
        self.identities = np.asarray(self.identities, dtype=object)
        self.splits = np.asarray([Split(s).value for s in self.splits], dtype=object)
        if self.row_order is None:
            self.row_order = np.arange(n)
        self.row_order = np.asarray(self.row_order, dtype=np.int64)
        sizes = {
            "images": int(self.images.shape[0]),
            "labels": int(self.labels.shape[0]),
            "identities": n,
            "splits": len(self.splits),
            "sources": len(self.sources),
            "row_order": len(self.row_order),
        }
        if len(set(sizes.values())) != 1:
            raise ValueError(f"dataset {self.name!r}: misaligned fields {sizes}")
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"dataset {self.name!r}: images must be uint8 [N, C, H, W]")

    def __len__(self) -> int:
        return len(self.identities)

    @property
    def num_outputs(self) -> int:
        return len(self.label_names)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def indices(self, split: Split) -> np.ndarray:
        return np.flatnonzero(self.splits == Split(split).value)

    def identities_in(self, split: Split) -> list[str]:
        return sorted(set(self.identities[self.indices(split)].tolist()))

    def class_index(self) -> np.ndarray:
        """One integer class per sample, used for label matching and
        stratification (multilabel: the attribute bit pattern)."""
        if self.task is Task.MULTICLASS:
            return self.labels.numpy().astype(np.int64)
        bits = self.labels.numpy().astype(np.int64)
        return (bits * (1 << np.arange(bits.shape[1]))).sum(axis=1)
