"""``?``: the keys of the screen it was opened on, then the keys that work everywhere."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

#: Per screen (by class name): a title and its keys. Screens without an entry get only the global keys.
SCREEN_HELP: dict[str, tuple[str, str]] = {
    "DashboardScreen": (
        "Dashboard: the daemon, the queue and every job",
        """\
  [b]enter[/b]       open the selected job
  [b]c[/b]           cancel the job (asks first)
  [b]r[/b]           retry a failed or cancelled job
  [b]o[/b]           the job's report
  [b]/[/b]           filter the jobs (enter: to the table, escape: clear)
  [b]s[/b] [b]S[/b]         sort by the next column, reverse (or click a header)
  [b]y[/b] [b]Y[/b] [b]p[/b]       copy: the request id, the SHA-256, the report path
  [b]home[/b] [b]end[/b]    first, last job; [b]pgup[/b] [b]pgdn[/b] a page

A row says [b]cancelling[/b] or [b]retrying[/b] from the moment you ask until the daemon has done it. \
Under the table: the selected job, its acceptance gate and, for a rejected request, its file and \
every reason. A narrow terminal first hides the gate and the test accuracy and shortens names; \
MIA, NoMUS, elapsed and ETA stay.""",
    ),
    "IdentitiesScreen": (
        "Identities: present, queued, being forgotten, forgotten",
        """\
  [b]enter[/b]       the person's history: every request naming them
  [b]/[/b]           filter by name, state or job id (enter: to the table)
  [b]tab[/b]         dataset, filter, table
  [b]escape[/b]      back (from the filter: to the table)

[b]forgetting[/b]: a running job is removing the person right now.""",
    ),
    "PersonScreen": ("A person's history", "  [b]enter[/b]       open the selected request\n  [b]escape[/b]      back"),
    "SubmitScreen": (
        "New forget request",
        """\
  [b]tab[/b]         next field, top to bottom ([b]shift+tab[/b]: back)
  [b]space[/b]       tick an identity or a baseline
  [b]ctrl+s[/b]      submit, checked like `piu validate`
  [b]escape[/b]      leave without submitting
  [b]ctrl+q[/b]      quit ([b]q[/b] types into a field)

Problems show under the field they are about. Priority takes digits only. \
Method parameters are a JSON object, e.g. [b]{"epochs": 3}[/b]. After a submit the new job opens.""",
    ),
    "JobDetailScreen": (
        "Job detail",
        "  [b]c[/b] cancel (asks)  [b]r[/b] retry  [b]o[/b] report  [b]escape[/b] back\n\n"
        "The title says [b]SUBMITTED[/b] until the daemon has taken a request you just wrote, and "
        "[b]CANCELLING[/b] or [b]RETRYING[/b] until it has done what you asked. [b]earlier[/b] lists "
        "the job's previous runs and retries.",
    ),
    "ModelsScreen": (
        "Models: versions, lineage, what each forgot",
        "  [b]↑[/b] [b]↓[/b]         a version: its metrics and forgotten people below\n  [b]escape[/b]      back",
    ),
    "ReportScreen": (
        "Report",
        "  [b]↑[/b] [b]↓[/b] [b]pgup[/b] [b]pgdn[/b]  scroll\n  [b]w[/b]           wrap long lines or not (tables)\n"
        "  [b]escape[/b]      back",
    ),
}

GLOBAL_HELP = """\
[b]Everywhere[/b]
  [b]n[/b] new request  [b]i[/b] identities  [b]m[/b] models  [b]d[/b] dashboard
  [b]?[/b] help  [b]q[/b] quit  [b]ctrl+p[/b] commands (jobs, copy, screens, theme)

The state is read about once a second, read-only. A red banner means the daemon is not running: \
the screens keep the last known state. Greyed keys in the footer do not apply to the selection."""


def help_text(screen_name: str) -> str:
    title, keys = SCREEN_HELP.get(screen_name, ("", ""))
    head = f"[b $accent]{title}[/]\n{keys}\n\n" if title else ""
    return head + GLOBAL_HELP


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
    ]

    def __init__(self, screen_name: str = "DashboardScreen") -> None:
        super().__init__()
        self.screen_name = screen_name

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(help_text(self.screen_name), id="help-text")
            yield Static("escape: close", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#help-box").focus()  # arrows scroll a long help on a small terminal

    def action_close(self) -> None:
        self.dismiss(None)
