"""Dashboard: daemon, device, current model, queue, and the jobs table."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header

from piu_tui.screens.base import PiuScreen
from piu_tui.viewmodel.views import DaemonStatus, DashboardView, JobView, job_action_state
from piu_tui.widgets.daemon_banner import DaemonBanner
from piu_tui.widgets.jobs_table import JobsTable
from piu_tui.widgets.service_summary import ServiceSummary


class DashboardScreen(PiuScreen):
    """Fed by the app's poll (``app.dashboard`` / ``app.status``)."""

    BINDINGS = [
        Binding("enter", "open_job", "Open", priority=True),
        Binding("c", "cancel_job", "Cancel"),
        Binding("r", "retry_job", "Retry"),
        Binding("o", "open_report", "Report"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield DaemonBanner(id="banner")
        yield ServiceSummary(id="summary")
        yield JobsTable(id="jobs")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.watch(self.app, "dashboard", self._show, init=True)
        self.watch(self.app, "status", self._show_status, init=True)

    # -- rendering -------------------------------------------------------------
    def _show(self, view: DashboardView | None) -> None:
        self.query_one(ServiceSummary).show(view, self.piu_app.status)
        if view is not None:
            self.query_one(JobsTable).show_jobs(view.jobs)
        self.refresh_bindings()

    def _show_status(self, _status: DaemonStatus | None) -> None:
        self.query_one(ServiceSummary).show(self.piu_app.dashboard, self.piu_app.status)

    # -- the selected job --------------------------------------------------------
    @property
    def selected_job(self) -> JobView | None:
        view = self.piu_app.dashboard
        job_id = self.query_one(JobsTable).selected_job_id
        if view is None or job_id is None:
            return None
        return next((j for j in view.jobs if j.id == job_id), None)

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self.refresh_bindings()

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:  # mouse click on a highlighted row
        self.action_open_job()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return job_action_state(action, self.selected_job if self.is_mounted else None)

    def action_open_job(self) -> None:
        job = self.selected_job
        if job is not None:
            self.piu_app.open_job(job.id)

    def action_cancel_job(self) -> None:
        self.piu_app.request_cancel(self.selected_job)

    def action_retry_job(self) -> None:
        self.piu_app.request_retry(self.selected_job)

    def action_open_report(self) -> None:
        job = self.selected_job
        if job is not None:
            self.piu_app.open_report(job.id)
