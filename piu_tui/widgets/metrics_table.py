"""Parent, new model and baselines side by side."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from piu_tui.viewmodel.views import METRIC_COLUMNS, MetricRow


class MetricsTable(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "none"
        self.zebra_stripes = True
        self.add_column("model", key="model")
        for key, label in METRIC_COLUMNS:
            self.add_column(label, key=key)

    def show(self, rows: Sequence[MetricRow]) -> None:
        current = [tuple(str(c) for c in self.get_row_at(i)) for i in range(self.row_count)]
        wanted = [(r.label, *r.values) for r in rows]
        if current == wanted:
            return
        self.clear()
        for r in rows:
            self.add_row(Text(r.label, style="bold"), *(Text(v, justify="right") for v in r.values))
