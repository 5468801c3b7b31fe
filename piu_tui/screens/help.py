"""``?``: every key and what it does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """\
[b]PIU service[/b]: the daemon's state, read-only, about once a second.

  [b]enter[/b]   open the selected job     [b]d[/b]   dashboard
  [b]escape[/b]  back                      [b]i[/b]   identities (type to filter)
  [b]c[/b]       cancel the job (asks)     [b]m[/b]   models: versions, lineage
  [b]r[/b]       retry a failed/cancelled  [b]n[/b]   new forget request
  [b]o[/b]       open the job's report     [b]?[/b]   this help      [b]q[/b]  quit

[b]New request[/b]: type to filter identities, [b]space[/b] selects, [b]tab[/b] moves
to the next field, [b]ctrl+s[/b] submits (checked like `piu validate`).
Cancel and retry run `piu cancel ID` / `piu retry ID`.

A red banner means the daemon is not running: the screens keep the last
known state. Keys greyed out in the footer do not apply to the selection.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(HELP, id="help-text")
            yield Static("escape: close", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)
