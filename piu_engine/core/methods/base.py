"""The one interface every unlearning method implements.

A method receives an :class:`UnlearnContext` (the model to change, the frozen
original, the data and splits, run control) and its typed parameters, and
returns the unlearned model. Timing, evaluation and reporting happen outside,
identically for all methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from piu_engine.common.errors import DivergedError
from piu_engine.core.audit.reference import ReferencePool
from piu_engine.core.data.splits import UnlearningSplits
from piu_engine.core.data.types import FaceDataset
from piu_engine.core.methods.catalog import MethodInfo
from piu_engine.core.presets import TrainRecipe
from piu_engine.core.tensors import TensorData, index_batches, make_generator, n_batches, to_index
from piu_engine.core.train import Phase, RunControl, check_finite_state


@dataclass
class UnlearnContext:
    model: nn.Module  # starts as a copy of the original; the method changes it
    original: nn.Module  # frozen original model (teacher)
    data: TensorData
    dataset: FaceDataset
    splits: UnlearningSplits
    recipe: TrainRecipe  # the original training recipe (retrain uses it)
    new_model: Callable[[], nn.Module]  # a freshly initialised model (retrain, bad teacher)
    control: RunControl
    seed: int = 0
    guide: ReferencePool | None = None  # the guide pool, when built (PIU-FR's per-person targets)
    notes: dict[str, Any] = field(default_factory=dict)  # what the method found worth reporting

    @property
    def device(self) -> torch.device:
        return self.data.device

    def generator(self, salt: int = 0) -> torch.Generator:
        return make_generator(self.device, self.seed * 1000 + salt)

    def indices(self, which: np.ndarray) -> torch.Tensor:
        return to_index(which, self.device)

    def phase(self, name: str, epochs: int, steps: int) -> Phase:
        return Phase(self.control, name, epochs, steps)

    def mixed_with_forget(self, others: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(forget followed by ``others``, a lookup by dataset index that is True
        for a forget image): one set of batches holding both kinds."""
        mixed = np.concatenate([self.splits.forget, others])
        is_forget = np.zeros(int(mixed.max()) + 1, dtype=bool)
        is_forget[self.splits.forget] = True
        return self.indices(mixed), torch.as_tensor(is_forget, device=self.device)


@dataclass(frozen=True)
class MethodSpec:
    """A catalogued method and the function that runs it."""

    info: MethodInfo
    run: Callable[[UnlearnContext, Any], nn.Module]

    @property
    def name(self) -> str:
        return self.info.name

    def make_params(self, overrides: dict[str, Any] | None = None, key: str = "params") -> Any:
        return self.info.make_params(overrides, key)


def guarded(name: str, run: Callable[[UnlearnContext, Any], nn.Module]) -> Callable[[UnlearnContext, Any], nn.Module]:
    """``run``, with a :class:`DivergedError` from the training loop naming the
    method, and the model it returns checked for non-finite weights and buffers."""

    def run_guarded(ctx: UnlearnContext, params: Any) -> nn.Module:
        try:
            model = run(ctx, params)
        except DivergedError as exc:
            exc.for_method(name)
            raise
        check_finite_state(model.state_dict(), method=name, phase="result")
        return model

    run_guarded.__name__ = run_guarded.__qualname__ = f"guarded_{getattr(run, '__name__', 'run')}"
    run_guarded.__wrapped__ = run
    return run_guarded


@contextmanager
def trainable_only(model: nn.Module, prefixes: tuple[str, ...] | None) -> Iterator[list[nn.Parameter]]:
    """Freeze every parameter whose name does not start with one of ``prefixes``
    (None: train all) and yield the trainable ones; restore on exit. Frozen
    early layers also skip their share of the backward pass."""
    for name, param in model.named_parameters():
        param.requires_grad_(prefixes is None or name.startswith(prefixes))
    try:
        yield [q for q in model.parameters() if q.requires_grad]
    finally:
        for param in model.parameters():
            param.requires_grad_(True)


def cycle_batches(idx: torch.Tensor, batch_size: int, gen: torch.Generator):
    """Endless shuffled batches over ``idx`` (pairs a short set with a long one)."""
    while True:
        yield from index_batches(idx, batch_size, True, gen)


def paired_batches(
    forget: torch.Tensor, retain: torch.Tensor | None, batch_size: int, gen: torch.Generator, over_retain: bool
):
    """(steps per epoch, epoch -> (forget batch, retain batch or None) pairs) for
    a forget term plus an optional retain term.

    ``over_retain``: an epoch is a pass over retain, each batch with the next
    forget batch (forget cycled; NegGrad+ and the benchmark's Advanced
    NegGrad). Otherwise a pass over forget, each batch with the next retain
    batch from an endless cycle (None without ``retain``)."""
    if over_retain and retain is not None and len(retain):
        forget_stream = cycle_batches(forget, batch_size, gen)
        return n_batches(len(retain), batch_size), lambda epoch: (
            (next(forget_stream), rb) for rb in index_batches(retain, batch_size, True, gen)
        )
    stream = cycle_batches(retain, batch_size, gen) if retain is not None and len(retain) else None
    return n_batches(len(forget), batch_size), lambda epoch: (
        (fb, next(stream) if stream is not None else None) for fb in index_batches(forget, batch_size, True, gen)
    )
