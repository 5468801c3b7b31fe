"""Dashboard: daemon, device, current model, queue, and the jobs table.

Fed by the app's poll (``app.dashboard`` / ``app.status``); the filter (``/``)
and the sort order (``s``, or a click on a header) are this screen's own and
applied by the view-model's pure functions.
"""

from __future__ import annotations

from textual import on
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input, Static

from piu_tui.screens.base import PiuScreen
from piu_tui.viewmodel.columns import SortOrder
from piu_tui.viewmodel.jobs import empty_text, filter_jobs, next_sort, sort_jobs, toggle_sort
from piu_tui.viewmodel.views import DaemonStatus, DashboardView, JobView, job_action_state
from piu_tui.widgets.daemon_banner import DaemonBanner
from piu_tui.widgets.job_summary import JobSummary
from piu_tui.widgets.jobs_table import JobsTable
from piu_tui.widgets.service_summary import ServiceSummary


class DashboardScreen(PiuScreen):
    BINDINGS = [
        Binding("enter", "open_job", "Open", priority=True),
        Binding("c", "cancel_job", "Cancel"),
        Binding("r", "retry_job", "Retry"),
        Binding("o", "open_report", "Report"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("s", "sort", "Sort", show=False),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
        Binding("y", "copy_id", "Copy id", show=False),
        Binding("Y", "copy_sha", "Copy SHA-256", show=False),
        Binding("p", "copy_report_path", "Copy report path", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sort = SortOrder()

    def compose(self) -> ComposeResult:
        yield Header()
        yield DaemonBanner(id="banner")
        yield ServiceSummary(id="summary")
        yield Input(
            placeholder="filter jobs: id, state, method, person… (enter: to the table, escape: clear)", id="jobs-filter"
        )
        yield JobsTable(id="jobs")
        yield Static("", id="jobs-empty")
        yield JobSummary(id="job-summary")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#jobs-filter").display = False
        self.watch(self.app, "dashboard", self._show, init=True)
        self.watch(self.app, "status", self._show_status, init=True)
        self.query_one(JobsTable).focus()

    # -- rendering -------------------------------------------------------------
    @property
    def filter_text(self) -> str:
        return self.query_one("#jobs-filter", Input).value

    def _show(self, view: DashboardView | None) -> None:
        self.query_one(ServiceSummary).show(view, self.piu_app.status)
        self._render_jobs()

    def _render_jobs(self) -> None:
        view = self.piu_app.dashboard
        table = self.query_one(JobsTable)
        empty = self.query_one("#jobs-empty", Static)
        if view is None:
            empty.display = False
            return
        jobs = sort_jobs(filter_jobs(view.jobs, self.filter_text), self.sort)
        table.show_jobs(jobs, self.sort)
        empty.display = not jobs
        table.display = bool(jobs)
        if not jobs:
            empty.update(empty_text(len(view.jobs), self.filter_text))
        self._show_selected()

    def _show_selected(self) -> None:
        self.query_one(JobSummary).show(self.selected_job)
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
        self._show_selected()

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:  # mouse click on a highlighted row
        self.action_open_job()

    @on(DataTable.HeaderSelected)
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        self.sort = toggle_sort(self.sort, str(event.column_key.value))
        self._render_jobs()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":
            return self.is_mounted and (bool(self.filter_text) or self.query_one("#jobs-filter").display)
        return job_action_state(action, self.selected_job if self.is_mounted else None)

    def action_open_job(self) -> None:
        if self.query_one("#jobs-filter").has_focus:  # the filter's own enter: on to the table
            raise SkipAction()
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

    def action_copy_id(self) -> None:
        self.piu_app.copy_job_field(self.selected_job, "copy_id")

    def action_copy_sha(self) -> None:
        self.piu_app.copy_job_field(self.selected_job, "copy_sha")

    def action_copy_report_path(self) -> None:
        self.piu_app.copy_job_field(self.selected_job, "copy_report_path")

    # -- filter and sort ---------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one("#jobs-filter", Input)
        box.display = True
        box.focus()
        self.refresh_bindings()

    def action_clear_filter(self) -> None:
        box = self.query_one("#jobs-filter", Input)
        box.value = ""
        box.display = False
        self.query_one(JobsTable).focus()
        self._render_jobs()

    @on(Input.Changed, "#jobs-filter")
    def _filter_changed(self) -> None:
        self._render_jobs()

    @on(Input.Submitted, "#jobs-filter")
    def _filter_done(self) -> None:
        self.query_one(JobsTable).focus()

    def action_sort(self) -> None:
        self.sort = next_sort(self.sort, [c.key for c in self.query_one(JobsTable).layout_columns])
        self._render_jobs()

    def action_reverse_sort(self) -> None:
        if self.sort.key is not None:
            self.sort = SortOrder(self.sort.key, not self.sort.reverse)
            self._render_jobs()
