"""The command palette's provider: screens and job actions, searched by name.

The commands themselves come from :mod:`piu_tui.viewmodel.commands`; this
only matches them against what is typed and runs the chosen one.
"""

from __future__ import annotations

from functools import partial
from typing import cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from piu_tui.host import PiuHost
from piu_tui.viewmodel.commands import PaletteCommand, discovery_commands, palette_commands


class PiuCommands(Provider):
    @property
    def piu_app(self) -> PiuHost:
        return cast("PiuHost", self.app)

    def _selected_id(self) -> str | None:
        """The job the palette was opened over: the dashboard's selection or the detail screen's job."""
        job = getattr(self.screen, "selected_job", None)
        return getattr(job, "id", None) or getattr(self.screen, "job_id", None)

    def _jobs(self):
        view = self.piu_app.dashboard
        return view.jobs if view is not None else ()

    def _run(self, command: PaletteCommand) -> None:
        self.piu_app.run_palette_command(command)

    async def discover(self) -> Hits:
        for c in discovery_commands(self._jobs(), self._selected_id()):
            yield DiscoveryHit(c.title, partial(self._run, c), help=c.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for c in palette_commands(self._jobs(), self._selected_id()):
            score = matcher.match(c.title)
            if score > 0:
                yield Hit(score, matcher.highlight(c.title), partial(self._run, c), help=c.help)
