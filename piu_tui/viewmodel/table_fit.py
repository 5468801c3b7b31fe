"""Which columns of a plain table (identities, models, a person's history) fit a width.

Each screen names its columns and, least important first, how they give way
when the terminal is narrow: ``("shrink", key, floor)`` cuts a column (with
``…``) only as much as needed and never below ``floor``; ``("drop", key, 0)``
removes it. The same rules as the jobs table's
(:data:`piu_tui.viewmodel.columns.REDUCTIONS`), for rows of plain text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from piu_tui.viewmodel.columns import FittedColumn, Reductions, reduce_widths
from piu_tui.viewmodel.format import clip


@dataclass(frozen=True)
class PlainColumn:
    key: str
    header: str
    right: bool = False


def fit_plain(
    width: int,
    columns: Sequence[PlainColumn],
    reductions: Reductions,
    rows: Sequence[Mapping[str, str]],
) -> tuple[FittedColumn, ...]:
    """The columns to show in ``width`` cells, each as wide as its longest cell, cut or dropped to fit."""
    widths = {c.key: max([len(c.header), *(len(r.get(c.key, "")) for r in rows)]) for c in columns}
    reduce_widths(widths, width, reductions)
    return tuple(
        FittedColumn(c.key, clip(c.header, widths[c.key]), widths[c.key], c.right) for c in columns if c.key in widths
    )
