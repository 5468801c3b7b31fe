"""One person's history: every request that named them and what became of it.

The identities screen opens it with ``enter``; an admin answering "was this
person forgotten, when, by which request?" finds it all on one screen.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from piu_engine.service.state import IdentityRow, JobRow

from piu_tui.viewmodel.build import identity_jobs
from piu_tui.viewmodel.format import first_line, fmt_when


@dataclass(frozen=True)
class PersonJob:
    job_id: str
    state: str
    method: str
    received: str
    version: str  # the version the job produced, "" when none
    note: str  # the first line of its error, or who asked and why


@dataclass(frozen=True)
class PersonView:
    dataset: str
    identity: str
    state: str  # present | queued | forgetting | forgotten | unknown
    headline: str
    jobs: tuple[PersonJob, ...]

    @property
    def empty_text(self) -> str:
        return f"no request has named {self.identity} yet: press n to submit one"


def person_view(dataset: str, identity: str, row: IdentityRow | None, jobs: Sequence[JobRow], now: float) -> PersonView:
    """``jobs``: every job of the service (those naming the person are picked here), newest first."""
    mine = sorted((j for j in jobs if j.dataset == dataset and identity in j.identities), key=lambda j: -j.created_at)
    waiting = identity_jobs(dataset, mine).get(identity)
    if row is None:
        state, headline = "unknown", f"{identity} is not a recorded identity of {dataset}"
    elif row.state == "forgotten":
        state = "forgotten"
        headline = f"forgotten in {dataset} v{row.version} by {row.job_id or '?'} on {fmt_when(row.forgotten_at, now)}"
    elif waiting is not None:
        state, headline = waiting[1], f"{waiting[1]} by {waiting[0]}"
    else:
        state, headline = "present", f"present in {dataset}: the current model still knows this person"
    images = "" if row is None or row.images is None else f" · {row.images} training images"
    rows = tuple(
        PersonJob(
            j.id,
            str(j.state),
            j.method or "-",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(j.created_at)),
            "" if j.version is None else f"v{j.version}",
            first_line(j.error, 40) or first_line(f"{j.requested_by or '-'}: {j.reason or '-'}", 40),
        )
        for j in mine
    )
    return PersonView(dataset, identity, state, headline + images, rows)
