"""What the command palette (``ctrl+p``) offers: go to a screen, and every job action.

Built from the views with the same rules as the keys (a job that cannot be
cancelled offers no "Cancel"), so the palette never offers what a key would
refuse. The palette provider only searches and runs these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from piu_tui.viewmodel.views import JOB_ACTIONS, JobView


@dataclass(frozen=True)
class PaletteCommand:
    title: str
    help: str
    action: str  # an app action (dashboard, identities, ...) or a job action (see JOB_ACTIONS)
    job_id: str = ""


SCREEN_COMMANDS: tuple[PaletteCommand, ...] = (
    PaletteCommand("Go to dashboard", "the daemon, the queue and every job", "dashboard"),
    PaletteCommand("Go to identities", "who is present, queued, being forgotten or forgotten", "identities"),
    PaletteCommand("Go to models", "model versions, their lineage and what each forgot", "models"),
    PaletteCommand("Submit a new forget request", "the request form (n)", "new_request"),
    PaletteCommand("Help for this screen", "its keys and what they do (?)", "help"),
)

JOB_COMMAND_TITLES: dict[str, tuple[str, str]] = {  # action -> (title, help), {id} and {state} filled in
    "open_job": ("Open job {id}", "{state}: identities, progress, metrics, log"),
    "cancel_job": ("Cancel job {id}", "{state}: asks first, like `piu cancel {id}`"),
    "retry_job": ("Retry job {id}", "{state}: queue it again, like `piu retry {id}`"),
    "open_report": ("Show the report of {id}", "report.txt, or why it was rejected"),
    "copy_id": ("Copy the request id {id}", "to the clipboard"),
    "copy_sha": ("Copy the SHA-256 of {id}", "of the model it produced, to the clipboard"),
    "copy_report_path": ("Copy the report path of {id}", "to the clipboard"),
}

#: What each copy action puts on the clipboard, and how the notice names it.
COPY_FIELDS: dict[str, str] = {"copy_id": "request id", "copy_sha": "SHA-256", "copy_report_path": "report path"}


def copy_value(job: JobView, action: str) -> str:
    """The text a copy action copies ("" when the job has none yet)."""
    return {"copy_id": job.id, "copy_sha": job.sha256, "copy_report_path": job.report_path}.get(action, "")


def job_commands(job: JobView) -> list[PaletteCommand]:
    """The palette's commands for one job: those its state allows."""
    out = []
    for action, (title, help_text) in JOB_COMMAND_TITLES.items():
        if JOB_ACTIONS[action](job):
            fill = {"id": job.id, "state": job.state_text}
            out.append(PaletteCommand(title.format(**fill), help_text.format(**fill), action, job.id))
    return out


def palette_commands(jobs: Sequence[JobView], selected_id: str | None = None) -> list[PaletteCommand]:
    """The screens, then the selected job's commands, then every other job's."""
    ordered = sorted(jobs, key=lambda j: j.id != selected_id)
    return [*SCREEN_COMMANDS, *(c for j in ordered for c in job_commands(j))]


def discovery_commands(jobs: Sequence[JobView], selected_id: str | None = None) -> list[PaletteCommand]:
    """Shown before anything is typed: the screens and the selected job's commands."""
    chosen = [c for j in jobs if j.id == selected_id for c in job_commands(j)]
    return [*SCREEN_COMMANDS, *chosen]
