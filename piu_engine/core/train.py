"""Training loops: the original-model / retrain recipe, and the step
bookkeeping (progress events, stop requests, autocast) every method shares."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

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
        self.control.on_event(ProgressEvent(self.name, self.epochs, self.epochs, self.steps, self.steps,
                                            self.losses[-1] if self.losses else None, metrics, "done"))


def sgd(params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in params if p.requires_grad], lr=lr, momentum=momentum,
                           weight_decay=weight_decay)


def fit(model: nn.Module, data: TensorData, indices: np.ndarray, recipe: TrainRecipe, seed: int,
        control: RunControl, phase: str = "train", params=None) -> float:
    """Cross-entropy training on ``indices`` with ``recipe``; returns seconds."""
    start = time.perf_counter()
    idx = to_index(indices, data.device)
    gen = make_generator(data.device, seed)
    opt = sgd(params if params is not None else model.parameters(), recipe.lr, recipe.momentum,
              recipe.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(recipe.milestones), gamma=0.1)
    steps = n_batches(len(idx), recipe.batch_size)
    ph = Phase(control, phase, recipe.epochs, steps)
    model.train()
    for epoch in range(1, recipe.epochs + 1):
        for step, b in enumerate(index_batches(idx, recipe.batch_size, True, gen), start=1):
            x, y = data.batch(b, augment=recipe.augment, gen=gen)
            with ph.autocast(data.device):
                loss = task_loss(model(x), y, data.task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ph.tick(epoch, step, loss.detach())
        sched.step()
    ph.done()
    if data.device.type == "cuda":
        torch.cuda.synchronize(data.device)
    return time.perf_counter() - start
