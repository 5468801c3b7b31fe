"""Identities of a dataset and their state: present, queued, forgetting, forgotten (by which job, when).

The table has the focus (so single-letter keys work); ``/`` goes to the
filter, ``enter`` opens the person's history.
"""

from __future__ import annotations

from textual import on
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Header, Input, Select, Static

from piu_tui.messages import IdentitiesUpdated
from piu_tui.screens.base import PolledScreen
from piu_tui.viewmodel.sources import load_identities
from piu_tui.viewmodel.table_fit import PlainColumn
from piu_tui.viewmodel.views import IdentitiesView
from piu_tui.widgets.daemon_banner import DaemonBanner
from piu_tui.widgets.row_table import RowTable

STATE_STYLES = {"present": "", "queued": "yellow", "forgetting": "bold cyan", "forgotten": "green"}
COLUMNS = (
    PlainColumn("identity", "identity"),
    PlainColumn("images", "images", right=True),
    PlainColumn("state", "state"),
    PlainColumn("job", "job"),
    PlainColumn("version", "version"),
    PlainColumn("when", "when"),
)
#: Narrow terminal: "when" keeps its date and time, long job ids and names are cut, then the version goes.
REDUCTIONS = (
    ("shrink", "when", 17),
    ("shrink", "job", 12),
    ("shrink", "identity", 16),
    ("drop", "version", 0),
    ("drop", "when", 0),
)


class IdentitiesScreen(PolledScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("enter", "open_person", "History", priority=True),
        Binding("slash", "filter", "Filter", key_display="/"),
    ]

    def __init__(self, dataset: str | None = None) -> None:
        super().__init__()
        self.dataset = dataset
        self.view: IdentitiesView | None = None
        self._shown: tuple = ()

    def compose(self) -> ComposeResult:
        yield Header()
        yield DaemonBanner(id="banner")
        with Horizontal(id="identities-bar"):
            yield Select[str]([], prompt="dataset", allow_blank=True, id="identities-dataset")
            yield Input(placeholder="/ filter: part of a name, a state or a job id", id="identities-filter")
        yield Static("", id="identities-count")
        yield RowTable(id="identities-table")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(RowTable).focus()

    def fetch(self) -> IdentitiesUpdated:
        app = self.piu_app
        configured = sorted(app.ws.cfg.datasets)

        def fallback(dataset: str) -> list[tuple[str, int | None]]:
            info = app.services.submitter.identity_lookup.info(dataset)
            return [(i, info.images_per_identity.get(i)) for i in info.train_identities]

        return IdentitiesUpdated(load_identities(app.ws.db_path, self.dataset, configured, app.clock, fallback))

    @on(IdentitiesUpdated)
    def _updated(self, message: IdentitiesUpdated) -> None:
        view = message.view
        select = self.query_one(Select)
        if self.view is None or self.view.datasets != view.datasets:
            with select.prevent(Select.Changed):
                select.set_options([(d, d) for d in view.datasets])
                if view.dataset:
                    select.value = view.dataset
        self.dataset = view.dataset
        self.view = view
        self._render_rows()

    @on(Input.Changed, "#identities-filter")
    def _filter(self) -> None:
        self._render_rows()

    @on(Input.Submitted, "#identities-filter")
    def _filter_done(self) -> None:
        self.query_one(RowTable).focus()

    @on(Select.Changed, "#identities-dataset")
    def _dataset(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self.dataset:
            self.dataset = event.value
            self.poll_now()

    def _render_rows(self) -> None:
        if self.view is None:
            return
        text = self.query_one(Input).value
        rows = self.view.filtered(text)
        key = (self.view.dataset, rows)
        self.query_one("#identities-count", Static).update(self.view.count_line(len(rows), text))
        if key == self._shown:
            return
        self._shown = key
        self.query_one(RowTable).show_rows(
            COLUMNS,
            REDUCTIONS,
            [
                (
                    r.identity,
                    {
                        "identity": r.identity,
                        "images": r.images,
                        "state": r.state,
                        "job": r.job_id or "-",
                        "version": r.version or "-",
                        "when": r.when or "-",
                    },
                )
                for r in rows
            ],
            {r.identity: {"state": STATE_STYLES.get(r.state, "")} for r in rows},
        )

    def action_filter(self) -> None:
        self.query_one(Input).focus()

    def action_open_person(self) -> None:
        from piu_tui.screens.person import PersonScreen

        table = self.query_one(RowTable)
        if not table.has_focus:  # enter belongs to the filter or the dataset list
            raise SkipAction()
        identity = table.selected_key
        if identity is not None and self.dataset:
            self.app.push_screen(PersonScreen(self.dataset, identity))

    def action_back(self) -> None:
        if self.query_one(Input).has_focus:  # escape in the filter: back to the table
            self.query_one(RowTable).focus()
            return
        self.app.pop_screen()
