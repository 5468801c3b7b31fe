"""The one interface every unlearning method implements.

A method receives an :class:`UnlearnContext` (the model to change, the frozen
original, the data and splits, run control) and its typed parameters, and
returns the unlearned model. Timing, evaluation and reporting happen outside,
identically for all methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from piu_engine.common.errors import DivergedError
from piu_engine.core.data.splits import UnlearningSplits
from piu_engine.core.data.types import FaceDataset
from piu_engine.core.methods.catalog import MethodInfo
from piu_engine.core.presets import TrainRecipe
from piu_engine.core.tensors import TensorData, index_batches, make_generator, to_index
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

    @property
    def device(self) -> torch.device:
        return self.data.device

    def generator(self, salt: int = 0) -> torch.Generator:
        return make_generator(self.device, self.seed * 1000 + salt)

    def indices(self, which: np.ndarray) -> torch.Tensor:
        return to_index(which, self.device)

    def phase(self, name: str, epochs: int, steps: int) -> Phase:
        return Phase(self.control, name, epochs, steps)


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
