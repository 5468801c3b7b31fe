"""The red banner shown on every screen while the daemon is not running or reports a problem."""

from __future__ import annotations

from textual.widgets import Static

from piu_tui.viewmodel.views import DaemonStatus


class DaemonBanner(Static):
    """Follows the app's ``status``; hidden while the daemon serves normally."""

    def on_mount(self) -> None:
        self.watch(self.app, "status", self.show_status, init=True)

    def show_status(self, status: DaemonStatus | None) -> None:
        if status is None or not status.banner:
            self.set_class(False, "-visible")
            self.update("")
            return
        self.update(status.banner)
        self.set_class(True, "-visible")
