"""The one training loop every method runs (:func:`train_steps`), the
original-model / retrain recipe on top of it (:func:`fit`), and the step
bookkeeping they share: progress events, stop requests, autocast and the
non-finite guard (:class:`DivergedError`)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from piu_engine.common.errors import DivergedError
from piu_engine.common.events import EventSink, Interrupted, ProgressEvent, never_stop, no_events
from piu_engine.core.losses import task_loss
from piu_engine.core.presets import TrainRecipe
from piu_engine.core.tensors import TensorData, index_batches, make_generator, n_batches, to_index


@dataclass
class RunControl:
    """How a long run talks to its caller: events out, stop requests in."""

    on_event: EventSink = no_events
    should_stop: callable = never_stop
    amp: bool = False
    report_every: int = 5  # steps between progress events


class Phase:
    """One named phase of a run (e.g. 'train', 'piu-fr:stage1').

    ``tick`` is called after every optimiser step: it emits a progress event
    now and then and raises :class:`Interrupted` when a stop was requested, so
    every loop stops at a step boundary with consistent weights.
    """

    def __init__(self, control: RunControl, name: str, epochs: int, steps: int):
        self.control, self.name, self.epochs, self.steps = control, name, epochs, max(1, steps)
        self.losses: list[float] = []

    def autocast(self, device: torch.device):
        if self.control.amp and device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def tick(self, epoch: int, step: int, loss: torch.Tensor | float | None) -> None:
        if self.control.should_stop():
            raise Interrupted(f"stopped during {self.name}, epoch {epoch}, step {step}")
        last = step == self.steps
        if step % self.control.report_every == 0 or last:
            value = float(loss) if loss is not None else None  # one sync per report, not per step
            if value is not None:
                self.losses.append(value)
            self.control.on_event(ProgressEvent(self.name, epoch, self.epochs, step, self.steps, value))

    def done(self, **metrics) -> None:
        self.control.on_event(
            ProgressEvent(
                self.name,
                self.epochs,
                self.epochs,
                self.steps,
                self.steps,
                self.losses[-1] if self.losses else None,
                metrics,
                "done",
            )
        )


def sgd(params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in params if p.requires_grad], lr=lr, momentum=momentum, weight_decay=weight_decay)


def nonfinite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors in ``state`` holding a NaN or an infinity."""
    floats = [(name, t) for name, t in state.items() if torch.is_tensor(t) and t.is_floating_point()]
    if not floats:
        return []
    with torch.no_grad():
        ok = torch.stack([t.isfinite().all() for _, t in floats]).tolist()  # one sync for all
    return [name for (name, _), good in zip(floats, ok, strict=True) if not good]


def _names(bad: list[str]) -> str:
    return ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")


def check_finite_state(state: dict[str, torch.Tensor], method: str = "", phase: str = "") -> None:
    """Raise :class:`DivergedError` unless every floating tensor of ``state`` is finite."""
    bad = nonfinite_tensors(state)
    if bad:
        raise DivergedError(f"non-finite values in {_names(bad)}", method=method, phase=phase)


class FiniteGuard:
    """Ends a phase with :class:`DivergedError` at the first non-finite loss or weight.

    On the CPU every loss is checked as it is computed, before its backward
    pass (reading a CPU scalar costs nothing). On an accelerator reading it
    would stall the queue every step, so the losses stay on the device and are
    checked together every ``report_every`` steps (where progress reporting
    syncs anyway) and at every epoch's end. The model's weights and buffers
    (BatchNorm statistics can overflow while the loss, computed from batch
    statistics, stays finite) are checked at every epoch's end and when the
    phase ends early, so a phase never returns a non-finite model.
    """

    def __init__(self, phase: Phase, model: nn.Module, device: torch.device):
        self.phase, self.model = phase, model
        self.eager = device.type == "cpu"
        self.pending: list[tuple[int, int, torch.Tensor]] = []
        self.last: tuple[int, int, torch.Tensor] | None = None

    def _diverged(self, detail: str, epoch: int, step: int, loss: float | None) -> DivergedError:
        return DivergedError(detail, phase=self.phase.name, epoch=epoch, step=step, loss=loss)

    def loss(self, epoch: int, step: int, loss: torch.Tensor) -> None:
        """Check (CPU) or queue (accelerator) one step's loss."""
        self.last = (epoch, step, loss.detach())
        if self.eager:
            value = float(self.last[2])
            if not math.isfinite(value):
                raise self._diverged("non-finite loss", epoch, step, value)
        else:
            self.pending.append(self.last)

    def flush(self) -> None:
        """Check the queued losses (one sync for all of them)."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        if bool(torch.stack([v.float().reshape(()) for *_, v in pending]).isfinite().all()):
            return
        for epoch, step, value in pending:
            if not math.isfinite(float(value)):
                raise self._diverged("non-finite loss", epoch, step, float(value))

    def weights(self) -> None:
        """Check the queued losses, then every floating tensor of the model (one sync)."""
        self.flush()
        bad = nonfinite_tensors(self.model.state_dict())
        if bad:
            epoch, step, loss = self.last if self.last is not None else (None, None, None)
            raise self._diverged(
                f"non-finite weights after the step: {_names(bad)}", epoch, step, None if loss is None else float(loss)
            )


StepFn = Callable[[Any], torch.Tensor]


def train_steps(
    phase: Phase,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: StepFn,
    batches: int | Callable[[int], Iterable[Any]],
    *,
    before_step: Callable[[int], None] | None = None,
    after_step: Callable[[int], dict | None] | None = None,
    after_epoch: Callable[[int], None] | None = None,
) -> int:
    """Run ``phase.epochs`` epochs of ``optimizer`` steps on ``model``; return the number taken.

    This is the only place a model is trained: a method supplies ``step``,
    which computes one step's loss (forward pass included, under
    ``phase.autocast`` where it wants mixed precision), and the loop does the
    rest: zero_grad / backward / step, progress events and stop requests
    (:meth:`Phase.tick`), and the non-finite guard (:class:`FiniteGuard`).

    - ``batches``: an int, the steps per epoch (``step`` then gets the step's
      number in its epoch, from 1), or ``epoch -> iterable``, the epoch's
      batches (``step`` gets each item). Iterables are consumed lazily, one
      item per step, so random draws happen in the same order as in a
      hand-written loop.
    - ``before_step(taken)``: called before each step with the steps taken so
      far (e.g. to set the learning rate).
    - ``after_step(taken)``: called after each step; returning a dict (even an
      empty one) ends the phase there, with those metrics on its 'done' event.
    - ``after_epoch(epoch)``: called after each epoch (e.g. an lr schedule).
    """
    guard = FiniteGuard(phase, model, next(model.parameters()).device)
    report_every = max(1, phase.control.report_every)
    taken = 0
    for epoch in range(1, phase.epochs + 1):
        items = range(1, batches + 1) if isinstance(batches, int) else batches(epoch)
        for n, item in enumerate(items, start=1):
            if before_step is not None:
                before_step(taken)
            loss = step(item)
            guard.loss(epoch, n, loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            taken += 1
            if n % report_every == 0:
                guard.flush()
            phase.tick(epoch, min(n, phase.steps), loss.detach())
            if after_step is not None:
                metrics = after_step(taken)
                if metrics is not None:
                    guard.weights()
                    phase.done(**metrics)
                    return taken
        guard.weights()
        if after_epoch is not None:
            after_epoch(epoch)
    phase.done()
    return taken


def fit(
    model: nn.Module,
    data: TensorData,
    indices: np.ndarray,
    recipe: TrainRecipe,
    seed: int,
    control: RunControl,
    phase: str = "train",
    params=None,
) -> float:
    """Cross-entropy training on ``indices`` with ``recipe``; returns seconds."""
    start = time.perf_counter()
    idx = to_index(indices, data.device)
    gen = make_generator(data.device, seed)
    opt = sgd(params if params is not None else model.parameters(), recipe.lr, recipe.momentum, recipe.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(recipe.milestones), gamma=0.1)
    ph = Phase(control, phase, recipe.epochs, n_batches(len(idx), recipe.batch_size))

    def step(b: torch.Tensor) -> torch.Tensor:
        x, y = data.batch(b, augment=recipe.augment, gen=gen)
        with ph.autocast(data.device):
            return task_loss(model(x), y, data.task)

    model.train()
    train_steps(
        ph,
        model,
        opt,
        step,
        lambda epoch: index_batches(idx, recipe.batch_size, True, gen),
        after_epoch=lambda epoch: sched.step(),
    )
    if data.device.type == "cuda":
        torch.cuda.synchronize(data.device)
    return time.perf_counter() - start
