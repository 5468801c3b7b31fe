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
from piu_tui.viewmodel.views import METRIC_COLUMNS, ModelsView, VersionView
from piu_tui.widgets.daemon_banner import DaemonBanner

COLUMNS = (
    ("dataset", "dataset"),
    ("lineage", "version"),
    ("source", "source"),
    ("method", "method"),
    ("forgotten", "forgotten"),
    ("new", "newly forgotten"),
    *((k, label) for k, label in METRIC_COLUMNS if k in ("test_acc", "mia", "nomus")),
    ("created", "created"),
)


class ModelsScreen(PolledScreen):
    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self) -> None:
        super().__init__()
        self.view: ModelsView | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield DaemonBanner(id="banner")
        yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="model-detail")
        yield Static("", id="pool-detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.focus()

    def fetch(self) -> ModelsUpdated:
        ws = self.piu_app.ws
        return ModelsUpdated(load_models(ws.db_path, self.piu_app.clock, ws.cfg.resolve(ws.cfg.engine.cache_dir)))

    @on(ModelsUpdated)
    def _updated(self, message: ModelsUpdated) -> None:
        if message.view == self.view:
            return
        self.view = message.view
        self.query_one("#pool-detail", Static).update("\n".join(self.view.pools))
        table = self.query_one(DataTable)
        selected = None
        if table.row_count:
            selected = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        table.clear()
        index = {k: i for i, (k, _) in enumerate(METRIC_COLUMNS)}
        for v in self.view.versions:
            label = Text(v.lineage + (" *" if v.current else ""), style="bold" if v.current else "")
            if v.pruned:
                label.append(" (file pruned)", style="dim")
            table.add_row(
                v.dataset,
                label,
                v.source,
                v.method,
                str(v.forgotten_total),
                names_preview(v.new_forgotten) if v.new_forgotten else "-",
                v.metrics[index["test_acc"]],
                v.metrics[index["mia"]],
                v.metrics[index["nomus"]],
                v.created,
                key=v.key,
            )
        keys = [v.key for v in self.view.versions]
        if selected in keys:
            table.move_cursor(row=keys.index(selected), animate=False)
        elif keys:
            table.move_cursor(row=len(keys) - 1, animate=False)
        self._show_detail()

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_detail()

    def _selected(self) -> VersionView | None:
        table = self.query_one(DataTable)
        if self.view is None or not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
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
