"""Dataset tensors on the training device and the batches drawn from them.

Images stay uint8 on the device; a batch is gathered by index, converted to
float there, and optionally augmented there. No DataLoader, no per-image
Python work, no host-to-device copy per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from piu_engine.core.augment import augment_batch
from piu_engine.core.data.types import FaceDataset, Task


@dataclass
class TensorData:
    images: torch.Tensor  # uint8 [N, 3, H, W] on device
    labels: torch.Tensor  # int64 [N] or float32 [N, K] on device
    task: Task
    num_outputs: int
    device: torch.device
    channels_last: bool = False

    @classmethod
    def from_dataset(cls, ds: FaceDataset, device: torch.device) -> TensorData:
        pin = device.type == "cuda"
        images = ds.images.pin_memory() if pin else ds.images
        labels = ds.labels.pin_memory() if pin else ds.labels
        return cls(
            images=images.to(device, non_blocking=True),
            labels=labels.to(device, non_blocking=True),
            task=ds.task,
            num_outputs=ds.num_outputs,
            device=device,
            channels_last=device.type == "cuda",
        )

    def batch(
        self,
        idx: torch.Tensor,
        augment: bool = False,
        gen: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images.index_select(0, idx).float().div_(255.0)
        if augment:
            x = augment_batch(x, gen)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.labels.index_select(0, idx) if labels is None else labels
        return x, y


def to_index(idx: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(idx), dtype=torch.long, device=device)


def index_batches(
    idx: torch.Tensor, batch_size: int, shuffle: bool, gen: torch.Generator | None = None
) -> Iterator[torch.Tensor]:
    """Yield index slices of ``idx`` (shuffled with ``gen`` when asked), cut by :func:`batch_slices`."""
    if shuffle:
        order = torch.randperm(len(idx), generator=gen, device=gen.device if gen is not None else "cpu")
        idx = idx[order.to(idx.device)]
    for sl in batch_slices(len(idx), batch_size):
        yield idx[sl]


def n_batches(n: int, batch_size: int) -> int:
    """How many batches :func:`batch_slices` cuts ``n`` items into."""
    full = (n + batch_size - 1) // batch_size
    return full - 1 if full > 1 and n % batch_size == 1 else full


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Consecutive batches of ``batch_size``; a lone last item joins the batch
    before it, since a step on one image (its gradient and its BatchNorm
    statistics) is mostly noise."""
    count = n_batches(n, batch_size)
    return [slice(i * batch_size, n if i == count - 1 else (i + 1) * batch_size) for i in range(count)]


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen
