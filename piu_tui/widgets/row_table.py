"""A DataTable with a row cursor where Home and End go to the first and last row."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable


class RowTable(DataTable):
    """DataTable binds Home/End to horizontal scrolling, which a row cursor never needs."""

    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(**kwargs)

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor, None when the table is empty."""
        if self.row_count == 0:
            return None
        try:
            row_key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - cursor out of range while rows change
            return None
        return None if row_key is None or row_key.value is None else str(row_key.value)
