"""The tail of a job's run log (its progress events and final error)."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import Log


class LogTail(Log):
    def __init__(self, **kwargs) -> None:
        super().__init__(max_lines=500, auto_scroll=True, **kwargs)
        self._shown: tuple[str, ...] = ()

    def show(self, lines: Sequence[str]) -> None:
        lines = tuple(lines)
        if lines == self._shown:
            return
        old = self._shown
        if old and lines[: len(old)] == old:
            self.write_lines(lines[len(old) :])
        else:
            self.clear()
            self.write_lines(lines)
        self._shown = lines
