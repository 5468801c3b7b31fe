"""The dashboard's jobs table; rows update in place while jobs run."""

from __future__ import annotations

from collections.abc import Sequence

from piu_engine.service.jobstate import JobState
from rich.text import Text
from textual.widgets import DataTable

from piu_tui.viewmodel.format import clip
from piu_tui.viewmodel.views import JobView

STATE_STYLES: dict[JobState, str] = {
    JobState.RUNNING: "bold cyan",
    JobState.QUEUED: "yellow",
    JobState.DONE: "green",
    JobState.FAILED: "bold red",
    JobState.REJECTED: "magenta",
    JobState.CANCELLED: "dim",
}
# (key, header, clip width); cells carry their own one-space gap so the table fits 100 columns
COLUMNS = (
    ("id", "request", 16),
    ("state", "state", 9),
    ("identities", "identities", 18),
    ("method", "method", 11),
    ("progress", "progress", 16),
    ("test_acc", "test", 5),
    ("mia", "MIA", 5),
    ("nomus", "NoMUS", 5),
    ("elapsed", "elapsed", 7),
    ("eta", "ETA", 7),
)
BAR = 4


def cell(text: str | Text, style: str = "", right: bool = False) -> Text:
    t = Text(" ")
    t.append_text(text if isinstance(text, Text) else Text(text, style=style))
    if right:
        t.justify = "right"
    return t


def progress_cell(job: JobView) -> Text:
    if job.state == JobState.RUNNING and job.fraction is not None:
        filled = round(max(0.0, min(1.0, job.fraction)) * BAR)
        phase = job.phase.split(":")[-1] if job.phase else "starting"
        t = Text()
        t.append("█" * filled, style="cyan")
        t.append("░" * (BAR - filled), style="dim")
        t.append(f"{100 * job.fraction:4.0f}% {clip(phase, 6)}")
        return cell(t)
    style = {
        JobState.FAILED: "red",
        JobState.REJECTED: "magenta",
        JobState.CANCELLED: "dim",
        JobState.DONE: "green",
    }.get(job.state, "")
    return cell(clip(job.progress_text, 16), style)


def row_cells(job: JobView) -> list[Text]:
    width = {key: w for key, _, w in COLUMNS}
    return [
        cell(clip(job.id, width["id"])),
        cell(job.state, STATE_STYLES.get(job.state, "")),
        cell(clip(job.identities_text, width["identities"])),
        cell(clip(job.method, width["method"])),
        progress_cell(job),
        cell(job.test_acc, right=True),
        cell(job.mia, right=True),
        cell(job.nomus, right=True),
        cell(job.elapsed, right=True),
        cell(job.eta, right=True),
    ]


class JobsTable(DataTable):
    """Rows keyed by job id; the cursor stays on its job across updates."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, cell_padding=0, **kwargs)

    def on_mount(self) -> None:
        for key, label, _ in COLUMNS:
            self.add_column(cell(label), key=key)

    @property
    def selected_job_id(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            row_key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - no rows / cursor out of range
            return None
        return None if row_key is None else str(row_key.value)

    def show_jobs(self, jobs: Sequence[JobView]) -> None:
        keys = [j.id for j in jobs]
        current = [str(r.key.value) for r in self.ordered_rows]
        if keys == current:  # same rows in the same order: update changed cells only
            for job in jobs:
                old = self.get_row(job.id)
                for (col, _, _), new, was in zip(COLUMNS, row_cells(job), old, strict=True):
                    if new != was:
                        self.update_cell(job.id, col, new, update_width=True)
            return
        selected = self.selected_job_id
        self.clear()
        for job in jobs:
            self.add_row(*row_cells(job), key=job.id)
        if selected in keys:
            self.move_cursor(row=keys.index(selected), animate=False)
