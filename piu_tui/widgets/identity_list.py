"""The identities of one request and what became of each."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from piu_tui.viewmodel.views import IdentityLine

STATUS_STYLES = {"forgotten": "green", "already forgotten": "green dim", "requested": "yellow"}


class IdentityList(Static):
    def show(self, lines: Sequence[IdentityLine]) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"Identities ({len(lines)})\n", style="bold")
        width = max((len(i.identity) for i in lines), default=0)
        for i, line in enumerate(lines):
            text.append(f"{line.identity:<{width}} ")
            text.append(f"{line.images:>4} img ", style="dim")
            text.append(line.status, style=STATUS_STYLES.get(line.status, ""))
            if line.version:
                text.append(f" {line.version}", style="dim")
            if i < len(lines) - 1:
                text.append("\n")
        self.update(text)
