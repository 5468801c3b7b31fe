"""The dashboard's jobs table; rows update in place while jobs run.

Which columns show and how wide they are comes from
:func:`piu_tui.viewmodel.columns.fit_columns` for the table's width; the
table re-fits when the terminal is resized. Colours are the only thing
decided here.
"""

from __future__ import annotations

from collections.abc import Sequence

from piu_engine.service.jobstate import JobState
from rich.text import Text

from piu_tui.viewmodel.columns import BAR, FittedColumn, SortOrder, cell_text, fit_columns, progress_bar
from piu_tui.viewmodel.jobs import gate_tone
from piu_tui.viewmodel.views import JobView
from piu_tui.widgets.job_summary import TONE_STYLES
from piu_tui.widgets.row_table import RowTable, cell

STATE_STYLES: dict[JobState, str] = {
    JobState.RUNNING: "bold cyan",
    JobState.QUEUED: "yellow",
    JobState.DONE: "green",
    JobState.FAILED: "bold red",
    JobState.REJECTED: "magenta",
    JobState.CANCELLED: "dim",
}
PROGRESS_STYLES: dict[JobState, str] = {
    JobState.FAILED: "red",
    JobState.REJECTED: "magenta",
    JobState.CANCELLED: "dim",
    JobState.DONE: "green",
}
PENDING_STYLE = "bold yellow reverse"


def render_cell(job: JobView, col: FittedColumn) -> Text:
    text = cell_text(job, col.key, col.width)
    if col.key == "state":
        return cell(text, PENDING_STYLE if job.pending else STATE_STYLES.get(job.state, ""))
    if col.key == "gate":
        return cell(text, TONE_STYLES[gate_tone(job.gate)] if job.gate else "")
    if col.key == "progress":
        filled = progress_bar(job, col.width)
        if filled is None:
            return cell(text, PROGRESS_STYLES.get(job.state, ""))
        bar = Text()
        bar.append("█" * filled, style="cyan")
        bar.append("░" * (BAR - filled), style="dim")
        bar.append(" " + text)
        return cell(bar)
    return cell(text, right=col.right)


class JobsTable(RowTable):
    """Rows keyed by job id; the cursor stays on its job across updates and re-fits."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._jobs: tuple[JobView, ...] = ()
        self._sort = SortOrder()

    @property
    def selected_job_id(self) -> str | None:
        return self.selected_key

    def on_resize(self) -> None:
        self.show_jobs(self._jobs, self._sort)

    def show_jobs(self, jobs: Sequence[JobView], sort: SortOrder | None = None) -> None:
        jobs = tuple(jobs)
        self._jobs = jobs
        if sort is not None:
            self._sort = sort
        layout = fit_columns(self.available_width, jobs, self._sort)
        keys = [j.id for j in jobs]
        current = [str(r.key.value) for r in self.ordered_rows]
        if layout == self.layout_columns and keys == current:  # same rows and columns: changed cells only
            for job in jobs:
                old = self.get_row(job.id)
                for col, was in zip(layout, old, strict=True):
                    new = render_cell(job, col)
                    if new != was:
                        self.update_cell(job.id, col.key, new)
            return
        self.refill(layout, ((job.id, [render_cell(job, col) for col in layout]) for job in jobs))
