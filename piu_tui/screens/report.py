"""A job's report (``report.txt``) in a scrollable screen."""
from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ScrollableContainer
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from piu_engine.service.state import StateMissing, StateReader
from piu_tui.actions import read_report
from piu_tui.messages import ReportLoaded


def load_report(db_path: Path, job_id: str) -> tuple[str, str]:
    """(title, text): the job's report.txt, or for a rejected request the reasons."""
    try:
        with StateReader(db_path) as reader:
            job = reader.job(job_id)
    except StateMissing:
        return job_id, "no service state yet"
    if job is None:
        return job_id, f"no job {job_id!r}"
    if job.report_dir:
        path = Path(job.report_dir) / "report.txt"
        if path.exists():
            return f"{job.id}: {path}", read_report(path)
    if job.state == "rejected":
        text = f"{job.file_name or job.id}: rejected, nothing was run.\n\n" + "".join(
            f"- {line}\n" for line in (job.error or "no reason recorded").splitlines())
        return f"{job.id}: rejected", text
    return job.id, f"{job.id} is {job.state}: no report yet (reports are written when a job ends)."


class ReportScreen(Screen):
    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"report of {self.job_id}", id="report-title")
        with ScrollableContainer(id="report-scroll"):
            yield Static("loading…", id="report-text", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#report-scroll").focus()
        self._load()

    @work(thread=True, exit_on_error=False, group="report")
    def _load(self) -> None:
        title, text = load_report(self.app.ws.db_path, self.job_id)
        self.post_message(ReportLoaded(title, text))

    @on(ReportLoaded)
    def _loaded(self, message: ReportLoaded) -> None:
        self.query_one("#report-title", Static).update(message.title)
        self.query_one("#report-text", Static).update(message.text)

    def action_back(self) -> None:
        self.app.pop_screen()
