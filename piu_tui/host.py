"""What screens and the palette may ask of the app that shows them.

The app imports its screens; typing them against this protocol instead of
:class:`piu_tui.app.PiuApp` keeps that the only direction of import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from piu_engine.service.workspace import Workspace

from piu_tui.actions import Services
from piu_tui.viewmodel.commands import PaletteCommand
from piu_tui.viewmodel.jobs import Pending
from piu_tui.viewmodel.views import DaemonStatus, DashboardView, JobView


class PiuHost(Protocol):
    """The workspace, services, clock, the latest state read, and the app's job actions."""

    ws: Workspace
    clock: Callable[[], float]
    poll_interval: float
    services: Services
    pending: dict[str, Pending]
    dashboard: DashboardView | None
    status: DaemonStatus | None

    def open_job(self, job_id: str, waiting_file: str | None = None) -> None: ...
    def open_report(self, job_id: str) -> None: ...
    def find_job(self, job_id: str) -> JobView | None: ...
    def copy_job_field(self, job: JobView | None, action: str) -> None: ...
    def run_palette_command(self, command: PaletteCommand) -> None: ...
    def run_action_now(self, action: str) -> None: ...
    def poll_now(self) -> None: ...
    def request_cancel(self, job: JobView | None) -> None: ...
    def request_retry(self, job: JobView | None) -> None: ...
