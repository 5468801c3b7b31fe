"""The lines under the jobs table about the selected job (its gate, why it was rejected)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from piu_tui.viewmodel.jobs import job_summary
from piu_tui.viewmodel.views import JobView

TONE_STYLES = {
    "": "",
    "title": "bold",
    "muted": "dim",
    "good": "bold green",
    "bad": "bold red",
    "warn": "bold yellow",
}


def styled(lines: tuple[tuple[tuple[str, str], ...], ...]) -> Text:
    """Toned segments from the view-model as Rich text (the tone-to-colour map is the only thing decided here)."""
    text = Text()
    for i, line in enumerate(lines):
        if i:
            text.append("\n")
        for part, tone in line:
            text.append(part, style=TONE_STYLES.get(tone, ""))
    return text


class JobSummary(Static):
    def show(self, job: JobView | None) -> None:
        self.update(styled(job_summary(job)))
