"""A job's report (``report.txt``) in a scrollable screen.

Long lines wrap, so nothing is cut on an 80-column terminal; ``w`` turns
wrapping off to read the metric tables as columns (scroll sideways).
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ScrollableContainer
from textual.widgets import Footer, Header, Static

from piu_tui.messages import ReportLoaded
from piu_tui.screens.base import PiuScreen
from piu_tui.viewmodel.sources import load_report


class ReportScreen(PiuScreen):
    BINDINGS = [Binding("escape", "back", "Back"), Binding("w", "toggle_wrap", "Wrap")]

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"report of {self.job_id}", id="report-title")
        with ScrollableContainer(id="report-scroll"):
            yield Static("loading…", id="report-text", markup=False)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#report-scroll").focus()
        self._load()

    @work(thread=True, exit_on_error=False, group="report")
    def _load(self) -> None:
        title, text = load_report(self.piu_app.ws.db_path, self.job_id)
        self.post_message(ReportLoaded(title, text))

    @on(ReportLoaded)
    def _loaded(self, message: ReportLoaded) -> None:
        self.query_one("#report-title", Static).update(message.title)
        self.query_one("#report-text", Static).update(message.text)

    def action_toggle_wrap(self) -> None:
        self.query_one("#report-text").toggle_class("-nowrap")

    def action_back(self) -> None:
        self.app.pop_screen()
