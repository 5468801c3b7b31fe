"""What the screens share: a typed handle on the app, and a chained-timer poll."""

from __future__ import annotations

from typing import cast

from textual import on, work
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from piu_tui.host import PiuHost

SCREEN_POLL = "poll-screen"
FINISHED = (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED)


class PiuScreen(Screen):
    """A screen of the PIU app (:class:`~piu_tui.host.PiuHost`), the only app that shows it."""

    @property
    def piu_app(self) -> PiuHost:
        """``self.app``, typed: the workspace, services, clock and the app's actions."""
        return cast("PiuHost", self.app)


class PolledScreen(PiuScreen):
    """A screen that re-reads its data in a thread worker about once a second.

    Subclasses implement :meth:`fetch` (runs in the worker thread, returns the
    message to post, or None to keep what is shown) and handle that message.
    The next poll is armed only when the previous one has finished, so polls
    never overlap; a screen hidden under another skips its reads until it is
    shown again.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._poll_timer: Timer | None = None
        self._poll_worker: Worker | None = None

    def fetch(self) -> Message | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_mount(self) -> None:
        self.poll_now()

    def on_screen_resume(self) -> None:
        if self._poll_worker is None:
            self.poll_now()

    def poll_now(self) -> None:
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None
        if not self.is_current:  # covered by another screen: look again later
            self._arm()
            return
        self._poll_worker = self._poll()

    def _arm(self) -> None:
        self._poll_timer = self.set_timer(self.piu_app.poll_interval, self.poll_now)

    @work(thread=True, exclusive=True, exit_on_error=False, group=SCREEN_POLL)
    def _poll(self) -> None:
        message = self.fetch()
        if message is not None:
            self.post_message(message)

    @on(Worker.StateChanged)
    def _poll_finished(self, event: Worker.StateChanged) -> None:
        if event.worker is self._poll_worker and event.state in FINISHED:
            self._poll_worker = None
            self._arm()
