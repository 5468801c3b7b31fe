"""A DataTable with a row cursor where Home and End go to the first and last row.

:meth:`RowTable.show_rows` fills it from plain rows and fits the columns to the
table's width (:func:`~piu_tui.viewmodel.table_fit.fit_plain`), again on every
resize, so it never needs a sideways scrollbar.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from piu_tui.viewmodel.columns import FittedColumn, Reductions
from piu_tui.viewmodel.format import clip
from piu_tui.viewmodel.table_fit import PlainColumn, fit_plain

Row = tuple[str, Mapping[str, str]]  # (row key, text per column key)


def cell(text: str | Text, style: str = "", right: bool = False) -> Text:
    """A cell's text with the one-space gap in front (the tables have no cell padding)."""
    t = Text(" ")
    t.append_text(text if isinstance(text, Text) else Text(text, style=style))
    if right:
        t.justify = "right"
    return t


class RowTable(DataTable):
    """DataTable binds Home/End to horizontal scrolling, which a row cursor never needs."""

    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        kwargs.setdefault("cell_padding", 0)
        super().__init__(**kwargs)
        self._plain: tuple[Sequence[PlainColumn], Reductions, Sequence[Row], Mapping[str, Mapping[str, str]]] | None = (
            None
        )
        self.layout_columns: tuple[FittedColumn, ...] = ()

    @property
    def available_width(self) -> int:
        """Cells the columns may use: the table's width less its vertical scrollbar."""
        width = self.size.width or self.app.size.width
        return max(20, width - self.styles.scrollbar_size_vertical)

    def on_resize(self) -> None:
        if self._plain is not None:
            self.show_rows(*self._plain)

    def show_rows(
        self,
        columns: Sequence[PlainColumn],
        reductions: Reductions,
        rows: Sequence[Row],
        styles: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Show ``rows`` in the columns that fit (``reductions``: see :mod:`~piu_tui.viewmodel.table_fit`);
        ``styles[row key][column key]`` colours a cell.

        The cursor stays on its row (by key) across updates.
        """
        styles = styles or {}
        self._plain = (columns, reductions, rows, styles)
        layout = fit_plain(self.available_width, columns, reductions, [r for _, r in rows])

        def cells(key: str, row: Mapping[str, str]) -> list[Text]:
            style = styles.get(key, {})
            return [cell(clip(row.get(c.key, ""), c.width), style.get(c.key, ""), c.right) for c in layout]

        self.refill(layout, ((key, cells(key, row)) for key, row in rows))

    def refill(self, layout: tuple[FittedColumn, ...], rows: Iterable[tuple[str, Sequence[Text]]]) -> None:
        """Replace every row (and the columns, when ``layout`` changed); the cursor stays on its row."""
        selected = self.selected_key
        if layout != self.layout_columns:
            self.clear(columns=True)
            for col in layout:
                self.add_column(cell(col.label, right=col.right), key=col.key, width=col.width + 1)
            self.layout_columns = layout
        else:
            self.clear()
        keys = []
        for key, cells in rows:
            self.add_row(*cells, key=key)
            keys.append(key)
        if selected in keys:
            self.move_cursor(row=keys.index(selected), animate=False)

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
