"""Model versions: the lineage, what each version forgot, its metrics, and the reference pool."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from piu_tui.messages import ModelsUpdated
from piu_tui.screens.base import PolledScreen
from piu_tui.viewmodel.format import names_preview
from piu_tui.viewmodel.sources import load_models
from piu_tui.viewmodel.table_fit import PlainColumn
from piu_tui.viewmodel.views import METRIC_COLUMNS, ModelsView, VersionView
from piu_tui.widgets.daemon_banner import DaemonBanner
from piu_tui.widgets.row_table import RowTable

COLUMNS = (
    PlainColumn("dataset", "dataset"),
    PlainColumn("lineage", "version"),
    PlainColumn("source", "source"),
    PlainColumn("method", "method"),
    PlainColumn("forgotten", "forgotten", right=True),
    PlainColumn("new", "newly forgotten"),
    *(PlainColumn(k, label, right=True) for k, label in METRIC_COLUMNS if k in ("test_acc", "mia", "nomus")),
    PlainColumn("created", "created"),
)
#: Narrow terminal: the creation time loses its seconds, then the newly forgotten names are cut
#: (the detail below lists them all), then the source and the creation time go.
REDUCTIONS = (
    ("shrink", "created", 17),
    ("shrink", "new", 14),
    ("drop", "source", 0),
    ("shrink", "lineage", 12),
    ("drop", "created", 0),
    ("shrink", "new", 9),
    ("shrink", "dataset", 10),
    ("shrink", "method", 8),
    ("drop", "forgotten", 0),
)


class ModelsScreen(PolledScreen):
    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self) -> None:
        super().__init__()
        self.view: ModelsView | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield DaemonBanner(id="banner")
        yield RowTable(id="models-table")
        yield Static("", id="model-detail")
        yield Static("", id="pool-detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(RowTable).focus()

    def fetch(self) -> ModelsUpdated:
        ws = self.piu_app.ws
        cache = ws.cfg.resolve(ws.cfg.engine.cache_dir)
        return ModelsUpdated(load_models(ws.db_path, self.piu_app.clock, cache, ws.cfg.audit))

    @on(ModelsUpdated)
    def _updated(self, message: ModelsUpdated) -> None:
        if message.view == self.view:
            return
        self.view = message.view
        self.query_one("#pool-detail", Static).update("\n".join(self.view.pools))
        table = self.query_one(RowTable)
        had_rows = table.row_count > 0
        index = {k: i for i, (k, _) in enumerate(METRIC_COLUMNS)}
        rows = []
        styles = {}
        for v in self.view.versions:
            rows.append(
                (
                    v.key,
                    {
                        "dataset": v.dataset,
                        "lineage": v.lineage + (" *" if v.current else "") + (" (file pruned)" if v.pruned else ""),
                        "source": v.source,
                        "method": v.method,
                        "forgotten": str(v.forgotten_total),
                        "new": names_preview(v.new_forgotten) if v.new_forgotten else "-",
                        **{k: v.metrics[index[k]] for k in ("test_acc", "mia", "nomus")},
                        "created": v.created,
                    },
                )
            )
            styles[v.key] = {"lineage": "bold" if v.current else ("dim" if v.pruned else "")}
        table.show_rows(COLUMNS, REDUCTIONS, rows, styles)
        if not had_rows and rows:  # first look: the newest version
            table.move_cursor(row=len(rows) - 1, animate=False)
        self._show_detail()

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_detail()

    def _selected(self) -> VersionView | None:
        key = self.query_one(RowTable).selected_key
        if self.view is None or key is None:
            return None
        return next((v for v in self.view.versions if v.key == key), None)

    def _show_detail(self) -> None:
        v = self._selected()
        detail = self.query_one("#model-detail", Static)
        if v is None:
            detail.update("no model versions yet: run `piu train` or `piu model import FILE`")
            return
        text = Text()
        text.append(f"{v.dataset} v{v.version}", style="bold")
        text.append(
            f"  {v.source}"
            + (f" by {v.method}" if v.method != "-" else "")
            + (f", jobs {', '.join(v.jobs)}" if v.jobs else "")
            + ("  (current)" if v.current else "")
        )
        text.append("\n")
        text.append("metrics: ", style="dim")
        text.append("  ".join(f"{label} {val}" for (_, label), val in zip(METRIC_COLUMNS, v.metrics, strict=True)))
        text.append("\n")
        text.append(f"forgotten in this version ({len(v.new_forgotten)}): ", style="dim")
        text.append(", ".join(v.new_forgotten) or "-")
        text.append("\n")
        text.append(f"forgotten along the lineage ({v.forgotten_total}): ", style="dim")
        text.append(", ".join(v.all_forgotten) or "-")
        detail.update(text)

    def action_back(self) -> None:
        self.app.pop_screen()
