"""The live loss curve of the run's latest phase."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline


class LossCurve(Vertical):
    def compose(self) -> ComposeResult:
        yield Label("loss: no values yet", classes="loss-label")
        yield Sparkline([], summary_function=max)

    def show(self, caption: str, losses: Sequence[float]) -> None:
        self.query_one(".loss-label", Label).update(caption or "loss: no values yet")
        spark = self.query_one(Sparkline)
        data = list(losses)
        if spark.data != data:
            spark.data = data
