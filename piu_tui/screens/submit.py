"""New forget request: choose dataset, method, identities, baselines, and the rest.

The manifest is checked by the service's own validation (what the form
accepts, ``piu validate`` and the daemon accept) and dropped into ``jobs/``
atomically, like ``piu submit``; each problem shows under its field. Tab
goes through the fields top to bottom; after a submit the new job opens.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Footer, Header, Input, Label, Select, SelectionList, Static
from textual.widgets.selection_list import Selection

from piu_tui.actions import ActionResult, default_requester
from piu_tui.messages import ActionFinished, ChoicesLoaded
from piu_tui.screens.base import PiuScreen
from piu_tui.viewmodel.form import FIELDS, OTHER, field_problems, limit_problem, mark_active, parse_params
from piu_tui.viewmodel.sources import read_active_jobs, read_identities
from piu_tui.viewmodel.views import SubmitChoices

MAX_SHOWN = 500  # identities listed at once; the filter narrows a larger dataset
STATE_STYLES = {"forgotten": "green", "forgetting": "cyan", "queued": "yellow"}


def problem_slot(field: str) -> Static:
    """Where the problems about one field appear, right under it."""
    return Static("", id=f"{field}-problem", classes="problem")


class SubmitScreen(PiuScreen):
    BINDINGS = [
        Binding("ctrl+s", "submit", "Submit", priority=True),
        Binding("escape", "back", "Cancel"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.choices: SubmitChoices | None = None
        self.selected: dict[str, list[str]] = {}  # dataset -> identities in the order picked
        self._busy = False

    def compose(self) -> ComposeResult:
        yield Header()
        form = VerticalScroll(id="submit-form")
        form.can_focus = False  # tab goes field to field, not through the scroll container
        with form:
            yield Static("New forget request", id="submit-title")
            with Horizontal(classes="row"):
                with Vertical(classes="field"):
                    yield Label("dataset")
                    yield Select[str]([], allow_blank=True, prompt="loading…", id="dataset")
                    yield problem_slot("dataset")
                with Vertical(classes="field"):
                    yield Label("method")
                    yield Select[str]([], allow_blank=True, prompt="loading…", id="method")
                    yield problem_slot("method")
            yield Label("identities to forget (type to filter, space to select)")
            yield Input(placeholder="filter identities", id="identity-filter")
            yield SelectionList[str](id="identities")
            yield Static("0 selected", id="identities-selected")
            yield problem_slot("identities")
            yield Label("baselines to compare (retrain first)")
            yield SelectionList[str](id="baselines")
            yield problem_slot("compare")
            with Horizontal(classes="row"):
                with Vertical(classes="field"):
                    yield Label("requested by")
                    yield Input(default_requester(), id="requested-by")
                    yield problem_slot("requested_by")
                with Vertical(classes="field -narrow"):
                    yield Label("priority (digits)")
                    yield Input("0", id="priority", restrict=r"[0-9]*", max_length=6)
                    yield problem_slot("priority")
            yield Label("reason (legal basis, ticket)")
            yield Input(placeholder="e.g. GDPR art. 17 request, ticket 4711", id="reason")
            yield problem_slot("reason")
            yield Label("request id (empty: derived from the content)")
            yield Input(placeholder="optional", id="request-id")
            yield problem_slot("request_id")
            yield Label("method parameters (a JSON object, optional)")
            yield Input(placeholder='e.g. {"epochs": 3, "lr": 0.01}', id="params")
            yield problem_slot("params")
            yield Static("", id="problems")
            with Horizontal(id="submit-buttons"):
                yield Button("Submit (ctrl+s)", id="submit", variant="success")
                yield Button("Cancel (esc)", id="cancel")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#dataset", Select).focus()  # the top field; tab goes down from here
        self._load_choices()

    # -- choices -------------------------------------------------------------
    @work(thread=True, exit_on_error=False, group="choices")
    def _load_choices(self) -> None:
        app = self.piu_app
        from_state = partial(read_identities, app.ws.db_path)
        choices = app.services.submitter.choices(from_state)
        self.post_message(ChoicesLoaded(mark_active(choices, read_active_jobs(app.ws.db_path))))

    @on(ChoicesLoaded)
    def _choices_loaded(self, message: ChoicesLoaded) -> None:
        c = self.choices = message.choices
        dataset = self.query_one("#dataset", Select)
        dataset.set_options([(d, d) for d in c.datasets])
        if c.datasets:
            preferred = self.piu_app.ws.cfg.bench.dataset
            dataset.value = preferred if preferred in c.datasets else c.datasets[0]
        method = self.query_one("#method", Select)
        method.set_options([(m, m) for m in c.methods])
        method.value = c.default_method
        self._fill_baselines()
        self._fill_identities()

    @property
    def dataset(self) -> str:
        value = self.query_one("#dataset", Select).value
        return value if isinstance(value, str) else ""

    @property
    def method(self) -> str:
        value = self.query_one("#method", Select).value
        return value if isinstance(value, str) else ""

    @property
    def limit(self) -> int | None:
        return self.choices.max_per_request.get(self.dataset) if self.choices else None

    def _fill_baselines(self) -> None:
        if self.choices is None:
            return
        lst = self.query_one("#baselines", SelectionList)
        keep = set(lst.selected)
        lst.clear_options()
        lst.add_options([Selection(b, b, b in keep) for b in self.choices.baselines if b != self.method])

    def _fill_identities(self) -> None:
        if self.choices is None:
            return
        text = self.query_one("#identity-filter", Input).value.strip().lower()
        chosen = set(self.selected.get(self.dataset, []))
        rows = [c for c in self.choices.identities.get(self.dataset, []) if not text or text in c.identity.lower()]
        lst = self.query_one("#identities", SelectionList)
        lst.clear_options()
        options = []
        for c in rows[:MAX_SHOWN]:
            prompt = Text(c.identity)
            if c.images is not None:
                prompt.append(f"  {c.images} img", style="dim")
            if c.state != "present":
                prompt.append(f"  {c.state}", style=STATE_STYLES.get(c.state, "yellow"))
            options.append(Selection(prompt, c.identity, c.identity in chosen, disabled=c.state == "forgotten"))
        lst.add_options(options)
        if options:
            lst.highlighted = 0
        self._show_selected(len(rows))

    def _show_selected(self, matching: int | None = None) -> None:
        chosen = self.selected.get(self.dataset, [])
        limit = self.limit
        text = f"{len(chosen)} selected" + (f" (at most {limit} per request)" if limit else "")
        if chosen:
            text += ": " + ", ".join(chosen[:8]) + (f", +{len(chosen) - 8}" if len(chosen) > 8 else "")
        if matching is not None and matching > MAX_SHOWN:
            text += f"  — {matching} match, first {MAX_SHOWN} listed: type to narrow"
        self.query_one("#identities-selected", Static).update(text)

    @on(Input.Changed, "#identity-filter")
    def _filter_changed(self) -> None:
        self._fill_identities()

    @on(Select.Changed, "#dataset")
    def _dataset_changed(self) -> None:
        self._fill_identities()

    @on(Select.Changed, "#method")
    def _method_changed(self) -> None:
        self._fill_baselines()

    @on(Input.Changed, "#params")
    def _params_changed(self, event: Input.Changed) -> None:
        self._show_problems({"params": [p]} if (p := parse_params(event.value)[1]) else {}, only=("params",))

    @on(SelectionList.SelectionToggled, "#identities")
    def _identity_toggled(self, event: SelectionList.SelectionToggled) -> None:
        value = event.selection.value
        chosen = self.selected.setdefault(self.dataset, [])
        ticked = value in event.selection_list.selected
        over = limit_problem(len(chosen), self.limit) if ticked and value not in chosen else ""
        if over:  # the service's limit, enforced while ticking
            with event.selection_list.prevent(SelectionList.SelectedChanged):
                event.selection_list.deselect(value)
        elif ticked:
            if value not in chosen:
                chosen.append(value)
        elif value in chosen:
            chosen.remove(value)
        self._show_problems({"identities": [over]} if over else {}, only=("identities",))
        self._show_selected()

    # -- problems, each under its field -----------------------------------------
    def _show_problems(self, by_field: dict[str, list[str]], only: tuple[str, ...] = FIELDS) -> None:
        for field in only:
            slot = self.query_one(f"#{field}-problem", Static)
            lines = by_field.get(field, [])
            slot.update(Text("\n".join(f"✗ {p}" for p in lines), style="bold red"))
            slot.display = bool(lines)

    # -- submit ----------------------------------------------------------------
    def action_submit(self) -> None:
        if self._busy or self.choices is None:
            return
        params, problem = parse_params(self.query_one("#params", Input).value)
        if params is None:
            self._show_problems({"params": [problem]}, only=("params",))
            self.query_one("#params", Input).focus()
            return
        baselines = self.query_one("#baselines", SelectionList).selected
        order = self.choices.baselines
        doc = self.piu_app.services.submitter.build_doc(
            dataset=self.dataset,
            identities=self.selected.get(self.dataset, []),
            method=self.method,
            compare=sorted(baselines, key=order.index),
            requested_by=self.query_one("#requested-by", Input).value.strip(),
            reason=self.query_one("#reason", Input).value.strip(),
            priority=self.query_one("#priority", Input).value,
            request_id=self.query_one("#request-id", Input).value,
            params=params,
        )
        self._busy = True
        self.query_one("#problems", Static).update("checking…")
        self._submit(doc)

    @work(thread=True, exit_on_error=False, group="submit")
    def _submit(self, doc: dict[str, Any]) -> None:
        try:
            result = self.piu_app.services.submitter.submit(doc)
        except Exception as exc:  # noqa: BLE001 - shown in the form
            result = ActionResult(False, f"{type(exc).__name__}: {exc}")
        self.post_message(ActionFinished("submit", str(doc.get("request_id", "")), result))

    @on(ActionFinished)
    def _submitted(self, message: ActionFinished) -> None:
        self._busy = False
        r = message.result
        problems = self.query_one("#problems", Static)
        if r.ok:
            problems.update("")
            self.app.notify(r.message, title="request submitted")
            self.piu_app.poll_now()
            self.dismiss()
            self.piu_app.open_job(r.request_id, waiting_file=r.path or None)
            return
        by_field = field_problems(r.problems)
        self._show_problems(by_field)
        text = Text(r.message + (": see the fields marked ✗" if r.problems else ""), style="bold red")
        for p in by_field.get(OTHER, []):
            text.append(f"\n- {p}", style="red")
        problems.update(text)
        first = next((f for f in FIELDS if f in by_field), None)
        (self.query_one(f"#{first}-problem") if first else problems).scroll_visible()

    @on(Button.Pressed, "#submit")
    def _submit_pressed(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_back()

    def action_back(self) -> None:
        self.dismiss()
