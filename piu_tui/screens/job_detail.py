"""Job detail: identities, phase progress, loss curve, metrics, the per-person audit, log tail."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, Label, Static

from piu_tui.messages import JobDetailUpdated
from piu_tui.screens.base import PolledScreen
from piu_tui.viewmodel.jobs import detail_with_pending
from piu_tui.viewmodel.sources import JobDetailSource
from piu_tui.viewmodel.views import JobDetailView, job_action_state
from piu_tui.widgets.audit_panel import AuditPanel
from piu_tui.widgets.daemon_banner import DaemonBanner
from piu_tui.widgets.identity_list import IdentityList
from piu_tui.widgets.log_tail import LogTail
from piu_tui.widgets.loss_curve import LossCurve
from piu_tui.widgets.metrics_table import MetricsTable
from piu_tui.widgets.phase_progress import PhaseProgress


class JobDetailScreen(PolledScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("c", "cancel_job", "Cancel"),
        Binding("r", "retry_job", "Retry"),
        Binding("o", "open_report", "Report"),
    ]

    def __init__(self, job_id: str, waiting_file: str | None = None) -> None:
        super().__init__()
        self.job_id = job_id
        self.waiting_file = waiting_file
        self.view: JobDetailView | None = None  # what is shown: the state read, with an unconfirmed cancel/retry
        self._read: JobDetailView | None = None  # the state as last read
        self._source: JobDetailSource | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield DaemonBanner(id="banner")
        with VerticalScroll(id="detail"):
            yield Static(f"{self.job_id}: loading…", id="job-title")
            yield Static("", id="job-info")
            with Horizontal(id="job-top"):
                yield IdentityList(id="job-identities")
                with Vertical(id="job-run"):
                    yield PhaseProgress(id="phases")
                    yield LossCurve(id="loss")
            yield Label("Metrics: parent and new model, baselines", classes="section")
            yield MetricsTable(id="metrics")
            yield Label("Per-person audit", classes="section")
            yield AuditPanel(id="audit")
            yield Label("Log", classes="section")
            yield LogTail(id="log")
        yield Footer(compact=True)

    def fetch(self) -> JobDetailUpdated | None:
        if self._source is None:
            self._source = JobDetailSource(
                self.piu_app.ws.db_path, self.job_id, self.piu_app.clock, waiting_file=self.waiting_file
            )
        view = self._source.load()
        return None if view is None else JobDetailUpdated(view)

    @on(JobDetailUpdated)
    def _updated(self, message: JobDetailUpdated) -> None:
        self._read = message.view
        self.pending_changed()

    def pending_changed(self) -> None:
        """Show the last read state again, marked with what the admin asked and the daemon has not done."""
        if self._read is None:
            return
        view = detail_with_pending(self._read, self.piu_app.pending)
        if view == self.view:
            return
        self.view = view
        self.query_one("#job-title", Static).update(view.title)
        self.query_one("#job-title").set_classes(f"-{view.job.state}" if view.job else "-missing")
        self.query_one("#job-info", Static).update("\n".join(view.info))
        self.query_one(IdentityList).show(view.identities)
        self.query_one(PhaseProgress).show(view.phases)
        self.query_one(LossCurve).show(view.loss_text, view.losses)
        self.query_one(MetricsTable).show(view.metrics)
        self.query_one(AuditPanel).show(view.audit)
        self.query_one(LogTail).show(view.log)
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return job_action_state(action, self.view.job if self.view is not None else None)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_cancel_job(self) -> None:
        self.piu_app.request_cancel(self.view.job if self.view else None)

    def action_retry_job(self) -> None:
        self.piu_app.request_retry(self.view.job if self.view else None)

    def action_open_report(self) -> None:
        self.piu_app.open_report(self.job_id)
