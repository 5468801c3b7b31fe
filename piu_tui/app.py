"""``piu tui``: the admin's terminal UI for the forget-request service.

The app reads the daemon's SQLite state read-only in thread workers on a
chained timer (one poll at a time, re-armed when the previous one finished)
and never writes the database: new requests, cancel and retry go through
the service's in-process client, as ``piu submit|cancel|retry`` do.

Every dependency is injected (workspace, clock, poll interval, the control
runner), so tests build an un-run app and drive it with ``App.run_test``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from piu_engine.service.workspace import Workspace
from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from piu_tui.actions import ActionResult, ControlRunner, Services
from piu_tui.messages import ActionFinished, DashboardUpdated
from piu_tui.palette import PiuCommands
from piu_tui.threads import DaemonThreadExecutor
from piu_tui.viewmodel.build import error_status
from piu_tui.viewmodel.commands import COPY_FIELDS, PaletteCommand, copy_value
from piu_tui.viewmodel.jobs import Pending, still_pending, with_pending
from piu_tui.viewmodel.sources import StateSource
from piu_tui.viewmodel.views import DaemonStatus, DashboardView, JobView

DASHBOARD_POLL = "poll-dashboard"
FINISHED = (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED)


class PiuApp(App[int]):
    TITLE = "PIU"
    SUB_TITLE = "identity unlearning service"
    CSS_PATH = [
        "styles/app.tcss",
        "styles/dashboard.tcss",
        "styles/job_detail.tcss",
        "styles/identities.tcss",
        "styles/models.tcss",
        "styles/submit.tcss",
        "styles/dialogs.tcss",
    ]
    COMMANDS = App.COMMANDS | {PiuCommands}  # ctrl+p: screens, job actions, themes
    # Short words, in this order, so the dashboard's footer fits 80 columns; `?` lists them in full.
    BINDINGS = [
        Binding("n", "new_request", "New", tooltip="New forget request"),
        Binding("i", "identities", "Idents", tooltip="Identities"),
        Binding("m", "models", "Models"),
        Binding("d", "dashboard", "Dash", tooltip="Dashboard"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    #: The last state read successfully (kept while the daemon or the database is gone).
    dashboard: reactive[DashboardView | None] = reactive(None, always_update=False)
    #: The daemon's status from the latest poll (drives the banner on every screen).
    status: reactive[DaemonStatus | None] = reactive(None, always_update=False)

    def __init__(
        self,
        ws: Workspace,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 1.0,
        control: ControlRunner | None = None,
    ) -> None:
        super().__init__()
        self.ws = ws
        self.clock = clock
        self.poll_interval = poll_interval
        self.services = Services(ws, control)
        self.source = StateSource(ws.db_path, clock)
        self._poll_timer: Timer | None = None
        self._poll_worker: Worker | None = None
        #: cancels and retries asked for, shown in their rows until the state confirms them
        self.pending: dict[str, Pending] = {}
        self._read: DashboardView | None = None  # the last state read, before the pending marks

    # -- screens -----------------------------------------------------------
    def get_default_screen(self) -> Screen:
        from piu_tui.screens.dashboard import DashboardScreen

        return DashboardScreen()

    def on_load(self) -> None:
        asyncio.get_running_loop().set_default_executor(DaemonThreadExecutor())  # `q` never waits for a read

    def on_mount(self) -> None:
        self.poll_now()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        from piu_tui.screens.identities import IdentitiesScreen
        from piu_tui.screens.models import ModelsScreen
        from piu_tui.screens.submit import SubmitScreen

        screen = self.screen
        if isinstance(screen, ModalScreen) and action in ("dashboard", "identities", "models", "new_request"):
            return False  # a dialog or the help is open: close it first
        if action == "dashboard":
            return len(self.screen_stack) > 1
        if action == "identities":
            return not isinstance(screen, IdentitiesScreen)
        if action == "models":
            return not isinstance(screen, ModelsScreen)
        if action == "new_request":
            return not isinstance(screen, SubmitScreen)
        return True

    def _show(self, screen: Screen) -> None:
        """Push ``screen``; a list screen (identities, models) replaces another one, so the stack stays short."""
        from piu_tui.screens.identities import IdentitiesScreen
        from piu_tui.screens.models import ModelsScreen

        if isinstance(self.screen, (IdentitiesScreen, ModelsScreen)) and isinstance(
            screen, (IdentitiesScreen, ModelsScreen)
        ):
            self.switch_screen(screen)
        else:
            self.push_screen(screen)

    def action_dashboard(self) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()

    def action_identities(self) -> None:
        from piu_tui.screens.identities import IdentitiesScreen

        self._show(IdentitiesScreen())

    def action_models(self) -> None:
        from piu_tui.screens.models import ModelsScreen

        self._show(ModelsScreen())

    def action_new_request(self) -> None:
        from piu_tui.screens.submit import SubmitScreen

        self.push_screen(SubmitScreen())

    def action_help(self) -> None:
        from piu_tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(type(self.screen).__name__))

    def open_job(self, job_id: str, waiting_file: str | None = None) -> None:
        """Show a job; ``waiting_file`` is the manifest just written, shown until the daemon takes it."""
        from piu_tui.screens.job_detail import JobDetailScreen

        self.push_screen(JobDetailScreen(job_id, waiting_file))

    def open_report(self, job_id: str) -> None:
        from piu_tui.screens.report import ReportScreen

        self.push_screen(ReportScreen(job_id))

    def find_job(self, job_id: str) -> JobView | None:
        view = self.dashboard
        return next((j for j in view.jobs if j.id == job_id), None) if view is not None else None

    def copy_job_field(self, job: JobView | None, action: str) -> None:
        """Put the job's id, SHA-256 or report path on the clipboard (OSC 52: works over SSH)."""
        if job is None:
            return
        what, text = COPY_FIELDS[action], copy_value(job, action)
        if not text:
            self.notify(f"{job.id} has no {what} yet", severity="warning")
            return
        self.copy_to_clipboard(text)
        self.notify(text, title=f"copied the {what} of {job.id}")

    def run_palette_command(self, command: PaletteCommand) -> None:
        """Run what the palette chose: a screen action, or an action on its job."""
        if not command.job_id:
            self.run_action_now(command.action)
            return
        job = self.find_job(command.job_id)
        if command.action == "open_job":
            self.open_job(command.job_id)
        elif command.action == "open_report":
            self.open_report(command.job_id)
        elif command.action == "cancel_job":
            self.request_cancel(job)
        elif command.action == "retry_job":
            self.request_retry(job)
        else:
            self.copy_job_field(job, command.action)

    def run_action_now(self, action: str) -> None:
        getattr(self, f"action_{action}")()

    # -- polling: a chained timer, one read at a time in a thread -------------
    def poll_now(self) -> None:
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None
        self._poll_worker = self._poll_dashboard()

    @work(thread=True, exclusive=True, exit_on_error=False, group=DASHBOARD_POLL)
    def _poll_dashboard(self) -> None:
        self.post_message(DashboardUpdated(self.source.dashboard()))

    @on(DashboardUpdated)
    def _dashboard_updated(self, message: DashboardUpdated) -> None:
        view = message.view
        self.status = view.status
        if view.fresh:
            self._read = view
            self.pending = still_pending(view, self.pending)
            self.dashboard = with_pending(view, self.pending)

    def _mark_pending(self, job_id: str, pending: Pending | None) -> None:
        """Show (or stop showing) an unconfirmed cancel or retry in the job's row, at once."""
        if pending is None:
            self.pending.pop(job_id, None)
        else:
            self.pending[job_id] = pending
        if self._read is not None:
            self.dashboard = with_pending(self._read, self.pending)
        shown = getattr(self.screen, "pending_changed", None)  # a job detail shows it in its title
        if callable(shown):
            shown()

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.ERROR:  # worker errors end up here, whoever ran them
            self.log.error(f"worker {worker.name or worker.group} failed: {worker.error!r}")
            if not worker.group.startswith("poll"):  # a failing poll shows in the banner, not as toasts
                self.notify(f"{type(worker.error).__name__}: {worker.error}", title="error", severity="error")
        if worker is self._poll_worker and event.state in FINISHED:
            self._poll_worker = None
            if event.state == WorkerState.ERROR and worker.error is not None:
                self.status = error_status(worker.error, self.status)
            self._poll_timer = self.set_timer(self.poll_interval, self.poll_now)

    # -- cancel / retry ---------------------------------------------------------
    def request_cancel(self, job: JobView | None) -> None:
        from piu_tui.screens.confirm import ConfirmScreen

        if job is None:
            return
        if not job.can_cancel:
            self.notify(f"{job.id} is {job.state}; only queued or running jobs can be cancelled", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._mark_pending(job.id, Pending("cancel"))
                self._control("cancel", job.id)

        self.push_screen(ConfirmScreen(f"Cancel {job.id} ({job.state})?"), answered)

    def request_retry(self, job: JobView | None) -> None:
        if job is None:
            return
        if not job.can_retry:
            self.notify(f"{job.id} is {job.state}; only failed or cancelled jobs can be retried", severity="warning")
            return
        self._mark_pending(job.id, Pending("retry"))
        self._control("retry", job.id)

    @work(thread=True, exit_on_error=False, group="control")
    def _control(self, op: str, job_id: str) -> None:
        try:
            result = self.services.control(op, job_id)
        except Exception as exc:  # noqa: BLE001 - reported like any failed command
            result = ActionResult(False, f"{type(exc).__name__}: {exc}")
        self.post_message(ActionFinished(op, job_id, result))

    @on(ActionFinished)
    def _action_finished(self, message: ActionFinished) -> None:
        r = message.result
        if not r.ok:  # refused: the row shows the state as it is again
            self._mark_pending(message.job_id, None)
        self.notify(
            r.message or f"{message.action} {message.job_id}: {'done' if r.ok else 'failed'}",
            title=f"{message.action} {message.job_id}",
            severity="information" if r.ok else "error",
        )
        self.poll_now()
        refresh = getattr(self.screen, "poll_now", None)
        if callable(refresh):
            refresh()
