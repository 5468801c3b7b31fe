"""One person's history (from the identities screen): every request naming them."""

from __future__ import annotations

from piu_engine.service.jobstate import JobState
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Static

from piu_tui.messages import PersonUpdated
from piu_tui.screens.base import PolledScreen
from piu_tui.viewmodel.person import PersonView
from piu_tui.viewmodel.sources import load_person
from piu_tui.viewmodel.table_fit import PlainColumn
from piu_tui.widgets.daemon_banner import DaemonBanner
from piu_tui.widgets.jobs_table import STATE_STYLES
from piu_tui.widgets.row_table import RowTable

COLUMNS = (
    PlainColumn("job", "request"),
    PlainColumn("state", "state"),
    PlainColumn("method", "method"),
    PlainColumn("version", "version"),
    PlainColumn("received", "received"),
    PlainColumn("note", "note"),
)
#: Narrow terminal: the note is cut first (the job's detail has all of it), then "received".
REDUCTIONS = (
    ("shrink", "note", 16),
    ("shrink", "received", 17),
    ("shrink", "job", 12),
    ("drop", "received", 0),
    ("shrink", "note", 8),
)
PERSON_STYLES = {"forgotten": "bold green", "forgetting": "bold cyan", "queued": "bold yellow", "unknown": "bold red"}


class PersonScreen(PolledScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("enter", "open_job", "Open request", priority=True),
    ]

    def __init__(self, dataset: str, identity: str) -> None:
        super().__init__()
        self.dataset = dataset
        self.identity = identity
        self.view: PersonView | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield DaemonBanner(id="banner")
        yield Static(f"{self.identity}: loading…", id="person-title")
        yield RowTable(id="person-jobs")
        yield Static("", id="person-empty")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(RowTable).focus()

    def fetch(self) -> PersonUpdated:
        app = self.piu_app
        return PersonUpdated(load_person(app.ws.db_path, self.dataset, self.identity, app.clock))

    @on(PersonUpdated)
    def _updated(self, message: PersonUpdated) -> None:
        view = message.view
        if view == self.view:
            return
        self.view = view
        title = Text(f"{view.identity}  ", style="bold")
        title.append(view.state.upper(), style=PERSON_STYLES.get(view.state, "bold"))
        title.append(f"  {view.headline}")
        self.query_one("#person-title", Static).update(title)
        self.query_one(RowTable).show_rows(
            COLUMNS,
            REDUCTIONS,
            [
                (
                    j.job_id,
                    {
                        "job": j.job_id,
                        "state": j.state,
                        "method": j.method,
                        "version": j.version or "-",
                        "received": j.received,
                        "note": j.note,
                    },
                )
                for j in view.jobs
            ],
            {j.job_id: {"state": STATE_STYLES.get(JobState(j.state), "")} for j in view.jobs},
        )
        empty = self.query_one("#person-empty", Static)
        empty.update(view.empty_text)
        empty.display = not view.jobs

    def action_open_job(self) -> None:
        job_id = self.query_one(RowTable).selected_key
        if job_id is not None:
            self.piu_app.open_job(job_id)

    def action_back(self) -> None:
        self.app.pop_screen()
