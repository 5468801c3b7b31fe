"""What the dashboard does with its list of jobs: filter, sort, the summary of
the selected job, and cancel/retry requests the daemon has not confirmed yet.

Pure functions of views (no Textual, no I/O), so the screens stay thin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from piu_engine.service.jobstate import ACTIVE_STATES, JobState

from piu_tui.viewmodel.columns import SortOrder
from piu_tui.viewmodel.format import num
from piu_tui.viewmodel.views import DashboardView, JobDetailView, JobView

# ------------------------------------------------------------------ asked, not yet confirmed
PENDING_LABELS = {"cancel": "cancelling", "retry": "retrying"}


@dataclass(frozen=True)
class Pending:
    """A cancel or retry the admin asked for; shown in the row until the state shows it done."""

    op: str  # cancel | retry

    def confirmed_by(self, job: JobView) -> bool:
        if self.op == "cancel":
            return job.state not in ACTIVE_STATES  # cancelled (or it ended on its own meanwhile)
        return job.state in ACTIVE_STATES  # back in the queue, or already running again


def with_pending(view: DashboardView, pending: Mapping[str, Pending]) -> DashboardView:
    """``view`` with the jobs that wait for a cancel or retry marked, and those keys greyed out."""
    if not pending:
        return view
    jobs = tuple(
        dataclasses.replace(j, pending=PENDING_LABELS[p.op], can_cancel=False, can_retry=False)
        if (p := pending.get(j.id)) is not None and not p.confirmed_by(j)
        else j
        for j in view.jobs
    )
    return dataclasses.replace(view, jobs=jobs)


def detail_with_pending(view: JobDetailView, pending: Mapping[str, Pending]) -> JobDetailView:
    """The job detail with an unconfirmed cancel or retry in its title, and those keys greyed out."""
    job = view.job
    p = pending.get(view.job_id) if job is not None else None
    if job is None or p is None or p.confirmed_by(job):
        return view
    label = PENDING_LABELS[p.op]
    return dataclasses.replace(
        view,
        job=dataclasses.replace(job, pending=label, can_cancel=False, can_retry=False),
        title=view.title.replace(f"  {job.state.upper()}  ", f"  {label.upper()}  ", 1),
        info=(f"{label}: asked, waiting for the daemon to confirm", *view.info),
    )


def still_pending(view: DashboardView, pending: Mapping[str, Pending]) -> dict[str, Pending]:
    """The requests the freshly read state does not show done yet (a job gone from the state is dropped)."""
    jobs = {j.id: j for j in view.jobs}
    return {k: p for k, p in pending.items() if k in jobs and not p.confirmed_by(jobs[k])}


# ------------------------------------------------------------------ filter and sort
def job_matches(job: JobView, text: str) -> bool:
    """Every word of ``text`` is in the id, state, method, dataset, file or one of the identities."""
    fields = [job.id, job.state_text, job.method, job.dataset, job.file_name, job.gate, *job.identities]
    hay = " ".join(fields).lower()
    return all(word in hay for word in text.lower().split())


def filter_jobs(jobs: Sequence[JobView], text: str) -> tuple[JobView, ...]:
    return tuple(j for j in jobs if job_matches(j, text)) if text.strip() else tuple(jobs)


STATE_ORDER = {s: i for i, s in enumerate(("running", "queued", "failed", "rejected", "cancelled", "done"))}


def sort_value(job: JobView, key: str) -> Any:
    """What a column sorts by: numbers as numbers, None when the cell is empty."""
    if key in ("test_acc", "mia", "nomus"):
        try:
            return float(getattr(job, key))
        except ValueError:
            return None
    if key == "elapsed":
        return num(job.elapsed_s)
    if key == "eta":
        return num(job.eta_s)
    if key == "state":
        return STATE_ORDER.get(str(job.state), 99)
    if key == "identities":
        return len(job.identities)
    if key == "progress":
        return job.fraction
    if key == "id":
        return job.id
    return str(getattr(job, key, "")) or None


def sort_jobs(jobs: Sequence[JobView], order: SortOrder) -> tuple[JobView, ...]:
    """``jobs`` by one column (empty cells last either way); the daemon's order when none is chosen."""
    if order.key is None:
        return tuple(jobs)
    key = order.key
    filled = [j for j in jobs if sort_value(j, key) is not None]
    empty = [j for j in jobs if sort_value(j, key) is None]
    return tuple(sorted(filled, key=lambda j: sort_value(j, key), reverse=order.reverse)) + tuple(empty)


def toggle_sort(order: SortOrder, key: str) -> SortOrder:
    """A click on a header: sort by it, again reverses, a third time back to the daemon's order."""
    if order.key != key:
        return SortOrder(key)
    return SortOrder(key, True) if not order.reverse else SortOrder()


def next_sort(order: SortOrder, keys: Sequence[str]) -> SortOrder:
    """``s``: the next shown column, after the last one the daemon's order again."""
    if order.key is None or order.key not in keys:
        return SortOrder(keys[0]) if keys and order.key is None else SortOrder()
    i = list(keys).index(order.key) + 1
    return SortOrder(keys[i], order.reverse) if i < len(keys) else SortOrder()


# ------------------------------------------------------------------ words for the screen
def empty_text(total: int, filter_text: str) -> str:
    """What the dashboard says where the table would be when it has no rows."""
    if total == 0:
        return "No jobs yet. Press n to submit a forget request (or drop a manifest into the spool)."
    return f"No job matches “{filter_text.strip()}”. Press escape to clear the filter."


GATE_TONES = {"passed": "good", "failed": "bad", "not gated": "warn"}


def gate_tone(gate: str) -> str:
    """How to colour a gate decision: passed good, failed bad, not gated a warning."""
    return GATE_TONES.get(gate, "muted")


Segment = tuple[str, str]  # (text, tone): tone is "", title, muted, good, bad, warn
STATE_TONES = {
    JobState.RUNNING: "title",
    JobState.QUEUED: "warn",
    JobState.DONE: "good",
    JobState.FAILED: "bad",
    JobState.REJECTED: "bad",
    JobState.CANCELLED: "muted",
}


def job_summary(job: JobView | None) -> tuple[tuple[Segment, ...], ...]:
    """The lines under the jobs table about the selected job: what it is, its gate, why it failed.

    A rejected request shows its file and every reason, so the admin sees why
    without opening anything; the screen wraps long lines.
    """
    if job is None:
        return ((("no job selected", "muted"),),)
    head: list[Segment] = [(job.id, "title"), ("  ", ""), (job.state_text.upper(), STATE_TONES.get(job.state, ""))]
    if job.method != "-":
        head.append((f"  {job.method} on {job.dataset}", ""))
    if job.gate:
        head += [("  gate ", "muted"), (job.gate, gate_tone(job.gate))]
    if job.file_name:
        head += [("  file ", "muted"), (job.file_name, "")]
    if job.requested_by:
        head += [("  by ", "muted"), (job.requested_by, "")]
    lines: list[tuple[Segment, ...]] = [tuple(head)]
    if job.pending:
        lines.append(((f"{job.pending}: asked, waiting for the daemon to confirm", "warn"),))
    if job.state == JobState.REJECTED:
        lines.append(((f"rejected {job.file_name or 'manifest'}: nothing was run. Reasons:", "bad"),))
        lines += [((f"- {r}", "bad"),) for r in job.reasons or ("no reason recorded",)]
    elif job.state == JobState.FAILED and job.reasons:
        lines += [((r, "bad"),) for r in job.reasons[:3]]
    elif job.state == JobState.CANCELLED and job.reasons:
        lines.append(((job.reasons[0], "muted"),))
    return tuple(lines)


def summary_plain(job: JobView | None) -> str:
    """:func:`job_summary` as plain text (for the job detail header, logs and tests)."""
    return "\n".join("".join(text for text, _ in line) for line in job_summary(job))
