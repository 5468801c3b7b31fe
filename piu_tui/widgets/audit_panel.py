"""The per-person audit of a job: each forgotten person's verdict and the
never-seen people's z as a text histogram (every string comes formatted
from :func:`piu_tui.viewmodel.audit.audit_view`)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from piu_tui.viewmodel.views import AuditView

VERDICT_STYLES = {
    "indistinguishable": "green",
    "still recognisable": "bold red",
    "conspicuously forgotten": "bold yellow",
    "not measured": "bold magenta",
}


class AuditPanel(Static):
    def show(self, view: AuditView | None) -> None:
        text = Text()
        if view is None:
            self.update(text)
            return
        text.append(view.headline, style="bold" if view.state == "audited" else "dim")
        if view.question:
            text.append(f"\n{view.question}", style="italic")
        for p in view.people:
            text.append(f"\n{p.key} ", style="bold reverse")
            text.append(f" {p.identity}  ")
            text.append(p.verdict.upper(), style=VERDICT_STYLES.get(p.verdict, ""))
            text.append(f"  z {p.z}  p {p.p}  score {p.score}")
            if p.before:
                text.append(f"\n   before: {p.before}", style="dim")
        if view.more:
            text.append(f"\n… and {view.more} more (see the report)", style="dim")
        if view.histogram:
            caption, *rows = view.histogram
            text.append(f"\n{caption}", style="dim")
            for row in rows:
                text.append("\n")
                text.append(row, style="cyan")
        for line in (view.summary, view.gate, view.picture):
            if line:
                text.append(f"\n{line}", style="dim")
        self.update(text)
