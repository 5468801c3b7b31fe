"""The states a job moves through, as one type instead of string literals.

``queued -> running -> done | failed | cancelled``; a manifest that fails its
checks is ``rejected`` at once. A ``str`` subclass, so the state database,
JSON output and folder names (``jobs/done/``) keep the plain value.
"""

from __future__ import annotations

from enum import Enum


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"

    def __str__(self) -> str:  # f-strings and logs show the value, as the database holds it
        return self.value

    def __format__(self, spec: str) -> str:  # padding works as for the plain value
        return self.value.__format__(spec)

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = (JobState.DONE, JobState.FAILED, JobState.REJECTED, JobState.CANCELLED)
ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)
# A finished job that ran (or was stopped) and so has a report folder under jobs/<state>/.
REPORTED_STATES = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
