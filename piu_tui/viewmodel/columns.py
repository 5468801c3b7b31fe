"""Which columns of the jobs table fit a terminal width, and how wide each is.

The widget only paints what :func:`fit_columns` decides: the order in which
columns shrink or go when the terminal is narrow is a product decision, so
it lives here, in :data:`REDUCTIONS`, not in the widget. At 80 columns the
table keeps the request, its state, progress, MIA, NoMUS, elapsed and ETA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from piu_tui.viewmodel.format import clip, fmt_percent, names_preview
from piu_tui.viewmodel.views import JobView

BAR = 4  # cells of the progress bar of a running job
GAP = 1  # every cell starts with one space


@dataclass(frozen=True)
class JobColumn:
    key: str
    header: str
    short: str  # the header when the column is narrower than ``header``
    cap: int  # never wider than this
    right: bool = False


COLUMNS: tuple[JobColumn, ...] = (
    JobColumn("id", "request", "request", 28),
    JobColumn("state", "state", "state", 10),
    JobColumn("gate", "gate", "gate", 9),
    JobColumn("identities", "identities", "who", 26),
    JobColumn("method", "method", "meth", 12),
    JobColumn("progress", "progress", "progress", 24),
    JobColumn("test_acc", "test", "test", 5, right=True),
    JobColumn("mia", "MIA", "MIA", 5, right=True),
    JobColumn("nomus", "NoMUS", "NoMUS", 5, right=True),
    JobColumn("elapsed", "elapsed", "time", 7, right=True),
    JobColumn("eta", "ETA", "ETA", 6, right=True),
)
BY_KEY = {c.key: c for c in COLUMNS}

Reductions = Sequence[tuple[str, str, int]]  # (op, column key, floor), least important first

#: What goes first when the table is too wide, least important first: ("shrink", key, narrowest
#: width) takes only what is needed, never below that width; ("drop", key) removes the column.
REDUCTIONS: tuple[tuple[str, str, int], ...] = (
    ("drop", "gate", 0),  # in the summary under the table
    ("shrink", "progress", 16),  # the summary shows a failure's whole first line
    ("shrink", "identities", 14),
    ("drop", "test_acc", 0),  # MIA and NoMUS say more about forgetting
    ("shrink", "method", 7),
    ("shrink", "identities", 4),  # just the count
    ("shrink", "id", 12),
    ("shrink", "progress", 11),
    ("drop", "identities", 0),
    ("drop", "method", 0),
    ("shrink", "id", 8),
    ("drop", "eta", 0),
    ("drop", "elapsed", 0),
    ("drop", "nomus", 0),
    ("drop", "mia", 0),
)


@dataclass(frozen=True)
class SortOrder:
    key: str | None = None  # None: the daemon's order (running, queue, newest finished)
    reverse: bool = False


@dataclass(frozen=True)
class FittedColumn:
    key: str
    label: str  # header text, with the sort arrow
    width: int  # cells, without the leading gap
    right: bool


def header_label(col: JobColumn, width: int | None, sort: SortOrder) -> str:
    arrow = (" ▼" if sort.reverse else " ▲") if sort.key == col.key else ""
    label = col.header if width is None or len(col.header) + len(arrow) <= width else col.short
    return label + arrow


def natural_text(job: JobView, key: str) -> str:
    """A cell's text when there is room for all of it."""
    if key == "id":
        return job.id
    if key == "state":
        return job.state_text
    if key == "identities":
        return names_preview(job.identities, 24)
    if key == "progress":
        text = progress_text(job, 99)
        return ("█" * BAR + " " + text) if progress_bar(job, 99) is not None else text
    if key == "gate":
        return job.gate
    return str(getattr(job, key))


def reduce_widths(widths: dict[str, int], width: int, reductions: Reductions) -> None:
    """Apply ``reductions`` in order, in place, until the columns (with their gaps) fit ``width``."""

    def excess() -> int:
        return sum(w + GAP for w in widths.values()) - width

    for op, key, floor in reductions:
        if excess() <= 0:
            break
        if key not in widths:
            continue
        if op == "drop":
            del widths[key]
        else:
            widths[key] = max(min(widths[key], floor), widths[key] - excess())


def fit_columns(width: int, jobs: Sequence[JobView], sort: SortOrder = SortOrder()) -> tuple[FittedColumn, ...]:
    """The columns to show in ``width`` cells, each as wide as its content (up to its cap)."""
    widths: dict[str, int] = {}
    for col in COLUMNS:
        longest = max((len(natural_text(j, col.key)) for j in jobs), default=0)
        widths[col.key] = min(col.cap, max(longest, len(header_label(col, None, sort))))
    if not any(j.gate for j in jobs):
        widths.pop("gate")

    reduce_widths(widths, width, REDUCTIONS)
    return tuple(
        FittedColumn(c.key, header_label(c, widths[c.key], sort), widths[c.key], c.right)
        for c in COLUMNS
        if c.key in widths
    )


# ------------------------------------------------------------------ cell texts at a width
def identities_text(names: Sequence[str], width: int) -> str:
    """``3: ann, bob, +1`` when it fits, else ``3 people``, else just the count."""
    for text in (names_preview(names, width), f"{len(names)} {'person' if len(names) == 1 else 'people'}"):
        if len(text) <= width:
            return text
    return clip(str(len(names)), width)


def progress_text(job: JobView, width: int) -> str:
    """The progress cell's words (a running job's bar is drawn in front of them, see :func:`progress_bar`)."""
    if job.fraction is not None and str(job.state) == "running":
        phase = job.phase.split(":")[-1] if job.phase else "starting"
        room = width - (BAR + 1 if progress_bar(job, width) is not None else 0)
        return clip(f"{fmt_percent(job.fraction):>4} {phase}", room)
    return clip(job.progress_text, width)


def progress_bar(job: JobView, width: int) -> int | None:
    """Filled cells of the bar (of :data:`BAR`), None when there is no bar (not running, or too narrow)."""
    if job.fraction is None or str(job.state) != "running" or width < BAR + 6:
        return None
    return round(max(0.0, min(1.0, job.fraction)) * BAR)


def cell_text(job: JobView, key: str, width: int) -> str:
    if key == "identities":
        return identities_text(job.identities, width)
    if key == "progress":
        return progress_text(job, width)
    return clip(natural_text(job, key), width)
