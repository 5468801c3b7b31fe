"""Structured progress events: how the engine reports, instead of printing.

The bench command renders them as progress bars, the daemon stores them in
SQLite, and the TUI draws them; the engine itself never prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ProgressEvent:
    phase: str  # e.g. "train", "piu-fr:stage1", "evaluate"
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    @property
    def fraction(self) -> float:
        """Progress through the phase, 0..1."""
        if not self.epochs or not self.steps:
            return 0.0
        return min(1.0, ((self.epoch - 1) * self.steps + self.step) / (self.epochs * self.steps))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EventSink = Callable[[ProgressEvent], None]


def no_events(_: ProgressEvent) -> None:
    return None


class Interrupted(Exception):
    """Raised at a step boundary when the caller asked the run to stop."""


def never_stop() -> bool:
    return False
