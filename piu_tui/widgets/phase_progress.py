"""One progress bar per phase of a run (the engine's phases, in the order they ran)."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar, Static

from piu_tui.viewmodel.views import PhaseView


class PhaseRow(Horizontal):
    def __init__(self, phase: PhaseView) -> None:
        super().__init__(classes=f"phase -{phase.state}")
        self.phase = phase

    def compose(self) -> ComposeResult:
        yield Label(self.phase.name, classes="phase-name")
        yield ProgressBar(total=100, show_eta=False, show_percentage=True)
        yield Label(self.phase.state, classes="phase-state")

    def on_mount(self) -> None:
        self.query_one(ProgressBar).update(progress=round(100 * self.phase.fraction, 1))

    def show(self, phase: PhaseView) -> None:
        self.phase = phase
        self.set_classes(f"phase -{phase.state}")
        self.query_one(ProgressBar).update(progress=round(100 * phase.fraction, 1))
        self.query_one(".phase-state", Label).update(phase.state)


class PhaseProgress(Vertical):
    def compose(self) -> ComposeResult:
        yield Static("no progress reported yet", classes="empty")

    def show(self, phases: Sequence[PhaseView]) -> None:
        rows = list(self.query(PhaseRow))
        self.query_one(".empty", Static).display = not phases
        if [r.phase.name for r in rows] == [p.name for p in phases]:
            for row, phase in zip(rows, phases, strict=True):
                if row.phase != phase:
                    row.show(phase)
            return
        for row in rows:
            row.remove()
        if phases:
            self.mount_all([PhaseRow(p) for p in phases])
