"""Under the title: the daemon, its device, the current models and the queue (wraps when narrow)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from piu_tui.viewmodel.views import DaemonStatus, DashboardView


class ServiceSummary(Static):
    def show(self, view: DashboardView | None, status: DaemonStatus | None) -> None:
        text = Text()
        if status is None:
            text.append("reading the service state…", style="dim")
            self.update(text)
            return
        if status.alive:
            text.append("● ", style="bold green")
            text.append(status.summary)
        else:
            text.append("● ", style="bold red")
            text.append(status.summary, style="bold")
        text.append("  device ", style="dim")
        text.append(status.device or "-", style="bold")
        text.append("\n")
        if view is not None and view.fresh:
            text.append("model ", style="dim")
            text.append(view.models_text, style="bold")
            text.append("  queue ", style="dim")
            text.append(str(view.queue_length), style="bold")
            text.append("  jobs ", style="dim")
            text.append(view.counts_text)
        else:
            text.append("no state read yet", style="dim")
        self.update(text)
