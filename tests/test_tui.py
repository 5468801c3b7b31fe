"""The terminal UI (`piu tui`), driven for real with Textual's pilot.

The state database is written with the daemon's own write API
(:class:`StateStore`) in a workspace made by ``piu init --preset tiny``; no
model is trained: jobs, events and versions are inserted directly. The
store's clock and host name are frozen while the fixture is built, and the
app gets a fixed clock, so the snapshots are stable.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
from piu_engine.service import state as state_mod

pytestmark = pytest.mark.timeout(120)

T0 = 1_750_000_000.0  # "now" for the app and the fixture
SIZE = (100, 30)
NAMES = [f"person-{i:04d}" for i in range(24)]  # the tiny synthetic dataset's training identities
M0 = {
    "test_acc": 0.912,
    "forget_acc": 0.998,
    "retain_acc": 0.995,
    "unseen_acc": 0.41,
    "mia": 0.781,
    "forgetting_score": 0.562,
    "nomus": 0.674,
    "seconds": 41.2,
}


class FrozenClock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def time(self) -> float:  # stands in for the time module inside state.py
        return self.t

    def monotonic(self) -> float:
        return self.t


@dataclass
class StateFixture:
    root: Path
    config: Path
    ws: object
    store: state_mod.StateStore
    clock: FrozenClock  # the store's clock (time.time() inside StateStore)
    rejected_id: str

    def app(self, **kw):
        from piu_tui.app import PiuApp

        kw.setdefault("clock", lambda: T0)
        kw.setdefault("poll_interval", 60.0)  # tests poll explicitly unless they ask for live updates
        return PiuApp(self.ws, **kw)

    def at(self, t: float) -> StateFixture:
        self.clock.t = t
        return self


def _manifest(
    rid: str,
    identities: list[str],
    method: str = "piu-fr",
    compare=(),
    priority: int = 0,
    requested_by: str = "privacy-office",
    reason: str = "GDPR art. 17",
):
    from piu_engine.service.manifest import Manifest

    return Manifest(
        request_id=rid,
        dataset="synthetic",
        identities=tuple(identities),
        method=method,
        compare=tuple(compare),
        requested_by=requested_by,
        reason=reason,
        priority=priority,
    )


def _accept(s: StateFixture, m) -> str:
    return s.store.record_accepted(
        f"0001-{m.request_id}.json",
        f"{m.request_id}.json",
        "0" * 64,
        m,
        {i: ("requested", 6, None) for i in m.identities},
    )


def _events(
    store,
    batch: str,
    phase: str,
    epochs: int,
    steps: int,
    clock: FrozenClock,
    dt: float,
    loss0: float,
    upto: float = 1.0,
) -> None:
    from piu_engine.common.events import ProgressEvent

    total = epochs * steps
    for k in range(1, int(total * upto) + 1):
        epoch, step = (k - 1) // steps + 1, (k - 1) % steps + 1
        ev = ProgressEvent(phase, epoch, epochs, step, steps, round(loss0 * 0.93**k, 4))
        clock.t += dt
        store.add_event(batch, dict(ev.to_dict(), fraction=ev.fraction), ev.fraction)
    if upto >= 1.0:
        ev = ProgressEvent(phase, epochs, epochs, steps, steps, round(loss0 * 0.93**total, 4), {}, "done")
        store.add_event(batch, dict(ev.to_dict(), fraction=1.0), 1.0)


def build_state(root: Path, monkeypatch) -> StateFixture:
    """A workspace whose state holds one job in every state, with metrics and events."""
    from piu_engine.core.config import load_config
    from piu_engine.service.operations import Operations
    from piu_engine.service.registry import Registry
    from piu_engine.service.workspace import Workspace, init_workspace

    config = init_workspace(root / "ws", "tiny")
    config.write_text(config.read_text() + "\n[audit]\nmodels = 4\n")  # the size of the pools the tests write
    ws = Workspace.from_config(load_config(config))
    clock = FrozenClock(T0 - 7200)
    monkeypatch.setattr(state_mod, "time", clock)  # the store stamps rows with this clock
    monkeypatch.setattr(state_mod, "socket", types.SimpleNamespace(gethostname=lambda: "gpu-01"))
    store = state_mod.StateStore(ws.db_path)
    s = StateFixture(root, config, ws, store, clock, "")
    store.ensure_identities("synthetic", {n: 6 for n in NAMES})
    store.add_version("synthetic", 0, None, "a" * 64, "synthetic/0/model.pt", "train", None, [], [], M0)

    # done: forgot two people, with the retrain baseline
    m = _manifest("req-1001", NAMES[1:3], compare=["retrain"])
    s.at(T0 - 3600)
    _accept(s, m)
    job = store.job("req-1001")
    store.start_batch("b-1001", [job], 0, "cuda:0")
    _events(store, "b-1001", "piu-fr:stage1", 2, 4, clock, 3.0, 2.3)
    _events(store, "b-1001", "piu-fr:stage2", 1, 4, clock, 3.0, 0.9)
    _events(store, "b-1001", "retrain", 2, 4, clock, 4.0, 2.5)
    model = dict(M0, test_acc=0.905, forget_acc=0.112, mia=0.522, forgetting_score=0.951, nomus=0.931, seconds=23.5)
    retrain = dict(M0, test_acc=0.899, forget_acc=0.05, mia=0.508, forgetting_score=0.984, nomus=0.94, seconds=96.0)
    per_group = {"test_acc": 0.905, "forget_acc": 0.083, "mia": 0.517, "forgetting_score": 0.966, "nomus": 0.94}
    result = {
        "outcome": {
            "parent": M0,
            "model": model,
            "baselines": {"retrain": retrain},
            "per_group": {"req-1001": per_group},
            "counts": {"forget_images": 12},
        },
        "gate": {"passed": True, "enabled": True, "checks": []},
        "device": "cuda:0",
        "batch": {"id": "b-1001", "requests": ["req-1001"], "identities_total": 2},
    }
    with store.tx():
        store.add_version(
            "synthetic", 1, 0, "b" * 64, "synthetic/1/model.pt", "forget", "piu-fr", ["req-1001"], NAMES[1:3], model
        )
        store.mark_forgotten("synthetic", {n: "req-1001" for n in NAMES[1:3]}, 1)
        for n in NAMES[1:3]:
            store.set_identity_status("req-1001", n, "forgotten", 1)
        store.set_job(
            "req-1001",
            state="done",
            finished_at=clock.t,
            version=1,
            sha256="b" * 64,
            metrics=model,
            parent_metrics=M0,
            result=result,
            seconds=23.5,
            phase=None,
            progress=1.0,
        )
        store.end_batch("b-1001", "done")
    ops = Operations(ws, store, Registry(ws.models_dir).ensure(), ws.spool().ensure())
    ops.write_report("req-1001")

    # failed: the acceptance gate refused the new model
    s.at(T0 - 2400)
    _accept(s, _manifest("req-1002", [NAMES[7]], method="finetune"))
    store.start_batch("b-1002", [store.job("req-1002")], 1, "cuda:0")
    _events(store, "b-1002", "finetune", 1, 4, clock, 5.0, 1.4)
    bad = dict(model, mia=0.713, test_acc=0.884, nomus=0.71, seconds=18.0)
    store.set_job(
        "req-1002",
        state="failed",
        finished_at=clock.t,
        metrics=bad,
        parent_metrics=model,
        result={"outcome": {"parent": model, "model": bad}, "gate": {"passed": False, "checks": []}},
        error="acceptance gate failed: MIA 0.713 outside 0.5 +- 0.1; the current model is unchanged "
        "(synthetic version 1)",
        seconds=18.0,
        phase=None,
        progress=1.0,
    )
    store.end_batch("b-1002", "failed", "acceptance gate failed")
    ops.write_report("req-1002")

    # rejected: a manifest naming someone unknown
    s.at(T0 - 1800)
    s.rejected_id = store.record_rejected(
        "0002-bad.json",
        "bad.json",
        "c" * 64,
        ["identities: 1 not among the training identities of 'synthetic': 'nobody'"],
    )
    # cancelled while queued
    s.at(T0 - 1200)
    _accept(s, _manifest("req-1003", NAMES[9:11], method="scrub"))
    s.at(T0 - 1100)
    store.set_job("req-1003", state="cancelled", error="cancelled by `piu cancel`", finished_at=clock.t)
    ops.write_report("req-1003")

    # running: stage 1 done, stage 2 at 50 %, baselines still to come
    s.at(T0 - 300)
    _accept(
        s, _manifest("req-1004", NAMES[3:6], compare=["scrub", "retrain"], requested_by="alice", reason="ticket 4711")
    )
    s.at(T0 - 90)
    store.start_batch("b-1004", [store.job("req-1004")], 1, "cuda:0")
    _events(store, "b-1004", "piu-fr:stage1", 2, 5, clock, 5.0, 2.2)
    _events(store, "b-1004", "piu-fr:stage2", 2, 5, clock, 7.0, 0.8, upto=0.5)

    # queued behind it
    s.at(T0 - 60)
    _accept(s, _manifest("req-1005", NAMES[12:16], priority=0))

    s.at(T0 - 1)
    store.heartbeat_update("daemon", "cuda (NVIDIA H100 80GB HBM3)", "running", T0 - 86400)
    return s


@pytest.fixture
def state(tmp_path, monkeypatch):
    s = build_state(tmp_path, monkeypatch)
    yield s
    s.store.close()


# ------------------------------------------------------------------ helpers
async def settle(pilot, app) -> None:
    """Let the pending polls finish and their messages be handled."""
    for _ in range(3):
        await app.workers.wait_for_complete()
        await pilot.pause()


async def wait_until(pilot, cond, timeout: float = 60.0) -> None:
    """Wait for ``cond``; the limit is generous because a loaded machine is slow, never because tests race."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


def cells(table, job_id: str) -> list[str]:
    return [str(c) for c in table.get_row(job_id)]


# ------------------------------------------------------------------ view-model (no Textual)
def test_viewmodel_and_engine_do_not_import_textual():
    code = (
        "import sys, importlib\n"
        "for m in ('piu_tui', 'piu_tui.viewmodel.format', 'piu_tui.viewmodel.views', 'piu_tui.viewmodel.build',\n"
        "          'piu_tui.viewmodel.sources', 'piu_tui.actions', 'piu_engine.commands.tui',\n"
        "          'piu_engine.service.daemon', 'piu_engine.commands.service'):\n"
        "    importlib.import_module(m)\n"
        "print('textual' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_dashboard_view_formats_every_state(state):
    from piu_tui.viewmodel.sources import StateSource

    view = StateSource(state.ws.db_path, lambda: T0).dashboard()
    assert view.status.alive and view.status.device.startswith("cuda")
    assert [m.label for m in view.models] == ["synthetic v1 (2 forgotten)"]
    assert view.queue_length == 1
    jobs = {j.id: j for j in view.jobs}
    assert [j.state for j in view.jobs][:2] == ["running", "queued"]  # active first
    assert {j.state for j in view.jobs} == {"queued", "running", "done", "failed", "rejected", "cancelled"}
    done = jobs["req-1001"]
    assert (done.test_acc, done.mia, done.nomus, done.version) == ("0.905", "0.522", "0.931", "v1")
    assert done.identities_text == "2: person-0001, +1"
    run = jobs["req-1004"]
    assert run.phase == "piu-fr:stage2" and run.fraction == pytest.approx(0.5)
    assert run.elapsed == "1m30s" and run.eta == "~30s"  # half of stage 2 took 35 s, the last event 5 s ago
    assert jobs["req-1005"].progress_text == "queued #1" and jobs["req-1005"].elapsed == "-"
    assert jobs["req-1002"].can_retry and not jobs["req-1002"].can_cancel
    assert jobs[state.rejected_id].has_report


def test_missing_database_and_stale_heartbeat(tmp_path, state):
    from piu_tui.viewmodel.sources import StateSource

    gone = StateSource(tmp_path / "nothing.db", lambda: T0).dashboard()
    assert not gone.fresh and "daemon not running" in gone.status.banner
    later = StateSource(state.ws.db_path, lambda: T0 + 42).dashboard()
    assert not later.status.alive
    assert later.status.banner == "daemon not running (last heartbeat 43s ago) — showing last known state"
    assert later.fresh and later.jobs  # the last known state is still shown


def test_piu_tui_command_runs_the_app(state, monkeypatch):
    """`piu tui` builds the app from the config (Textual imported only inside the command)."""
    from piu_engine.cli import build_parser
    from piu_tui.app import PiuApp

    seen = {}

    def fake_run(self):
        seen.update(db=self.ws.db_path, interval=self.poll_interval)

    monkeypatch.setattr(PiuApp, "run", fake_run)
    args = build_parser().parse_args(["--config", str(state.config), "tui", "--interval", "2.5"])
    assert args.func(args) == 0
    assert seen == {"db": state.ws.db_path, "interval": 2.5}


# ------------------------------------------------------------------ the app, driven by the pilot
async def test_dashboard_rows_show_metrics_and_open_detail(state):
    from piu_tui.screens.dashboard import DashboardScreen
    from piu_tui.screens.job_detail import JobDetailScreen
    from piu_tui.widgets.jobs_table import JobsTable

    app = state.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        table = app.screen.query_one(JobsTable)
        assert table.row_count == 6
        done = [c.strip() for c in cells(table, "req-1001")]
        assert done[:2] == ["req-1001", "done"] and "0.905" in done and "0.522" in done and "0.931" in done
        assert "person-0001" in done[2]
        running = cells(table, "req-1004")
        assert "50%" in running[4] and running[8].strip() == "1m30s"
        summary = str(app.screen.query_one("#summary").render())
        assert "NVIDIA H100" in summary and "synthetic v1" in summary and "queue 1" in summary
        assert not app.screen.query_one("#banner").display

        # navigate to the done job, open its detail, and come back
        table.focus()
        while table.selected_job_id != "req-1001":
            await pilot.press("down")
        await pilot.press("enter")
        await settle(pilot, app)
        assert isinstance(app.screen, JobDetailScreen) and app.screen.job_id == "req-1001"
        labels = [
            str(r[0])
            for r in map(app.screen.query_one("#metrics").get_row_at, range(app.screen.query_one("#metrics").row_count))
        ]
        assert labels == ["parent v0", "new v1", "baseline retrain", "this request"]
        assert "person-0002" in str(app.screen.query_one("#job-identities").render())
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        assert app.screen.query_one(JobsTable).selected_job_id == "req-1001"


async def test_progress_change_in_database_shows_up_live(state):
    from piu_tui.widgets.jobs_table import JobsTable
    from piu_tui.widgets.phase_progress import PhaseRow

    app = state.app(poll_interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        table = app.screen.query_one(JobsTable)
        assert "50%" in cells(table, "req-1004")[4]
        app.open_job("req-1004")
        await settle(pilot, app)
        detail = app.screen
        rows = {r.phase.name: r.phase for r in detail.query(PhaseRow)}
        assert rows["piu-fr:stage2"].fraction == pytest.approx(0.5)
        n_loss = len(detail.view.losses)

        # the daemon records more progress
        state.at(T0 - 2)
        _events(state.store, "b-1004", "piu-fr:stage2", 2, 5, state.clock, 0.1, 0.5, upto=0.9)
        await wait_until(pilot, lambda: detail.view.phases[-1].fraction >= 0.9)
        assert len(detail.view.losses) > n_loss
        assert "90%" in detail.view.phases[-1].label
        await pilot.press("escape")
        await wait_until(pilot, lambda: "90%" in cells(table, "req-1004")[4])


async def test_missing_daemon_shows_banner_and_last_state(state):
    from piu_tui.widgets.jobs_table import JobsTable

    now = [T0]
    app = state.app(clock=lambda: now[0], poll_interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        banner = app.screen.query_one("#banner")
        assert not banner.display
        now[0] = T0 + 120  # no heartbeat for two minutes
        await wait_until(pilot, lambda: banner.display)
        assert "daemon not running (last heartbeat 2m01s ago) — showing last known state" in str(banner.render())
        assert app.screen.query_one(JobsTable).row_count == 6

        # the database goes away altogether: the last known rows stay
        state.store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{state.ws.db_path}{suffix}").unlink(missing_ok=True)
        await wait_until(pilot, lambda: "no state database" in str(banner.render()))
        assert app.screen.query_one(JobsTable).row_count == 6
    state.store = state_mod.StateStore(state.ws.db_path)  # for the fixture's teardown


async def test_no_state_database_at_all(tmp_path):
    from piu_engine.core.config import load_config
    from piu_engine.service.workspace import Workspace, init_workspace
    from piu_tui.app import PiuApp

    config = init_workspace(tmp_path / "empty", "tiny")
    app = PiuApp(Workspace.from_config(load_config(config)), clock=lambda: T0, poll_interval=60)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        banner = app.screen.query_one("#banner")
        assert banner.display and "no state database" in str(banner.render())
        await pilot.press("i")
        await settle(pilot, app)
        await pilot.press("escape", "m")
        await settle(pilot, app)
        assert "no model versions yet" in str(app.screen.query_one("#model-detail").render())


async def test_submit_form_writes_a_manifest_piu_validate_accepts(state):
    from piu_engine.cli import main as piu
    from piu_tui.screens.dashboard import DashboardScreen
    from piu_tui.screens.job_detail import JobDetailScreen
    from piu_tui.screens.submit import SubmitScreen

    app = state.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("n")
        await settle(pilot, app)
        form = app.screen
        assert isinstance(form, SubmitScreen) and form.choices is not None
        # forgotten identities are offered but cannot be picked
        assert form.focused.id == "dataset"  # tab order top to bottom: dataset, method, the filter
        await pilot.press("tab", "tab", *"person-002")  # filter as you type: person-0020 .. person-0023
        await pilot.pause()
        lst = form.query_one("#identities")
        assert [o.value for o in lst.options] == NAMES[20:24]
        await pilot.press("tab", "space", "down", "space")  # select the first two
        await pilot.pause()
        assert form.selected["synthetic"] == ["person-0020", "person-0021"]
        form.query_one("#baselines").select("retrain")
        form.query_one("#reason").value = "GDPR art. 17, ticket 99"
        form.query_one("#request-id").value = "req-tui-1"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen), timeout=30)
        detail = app.screen
        assert detail.job_id == "req-tui-1"  # the new job opens
        await wait_until(pilot, lambda: detail.view is not None)
        title = str(detail.query_one("#job-title").render())
        assert "waiting for the daemon" in title and "no such job" not in title  # not yet taken
        assert "req-tui-1.json" in "\n".join(detail.view.info)
        path = state.ws.jobs_dir / "req-tui-1.json"
        assert piu(["--config", str(state.config), "validate", str(path)]) == 0  # what the daemon will check
        m = _manifest("req-tui-1", ["person-0020", "person-0021"])
        _accept(state, m)  # the daemon takes it: the detail follows
        detail.poll_now()
        await wait_until(pilot, lambda: detail.view.job is not None, timeout=30)
        assert "QUEUED" in str(detail.query_one("#job-title").render())
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
    doc = json.loads(path.read_text())
    assert doc["identities"] == ["person-0020", "person-0021"] and doc["compare"] == ["retrain"]
    assert doc["method"] == "piu-fr" and doc["request_id"] == "req-tui-1"
    assert not [p for p in state.ws.jobs_dir.iterdir() if p.name.startswith(".req-tui")]  # no temp file left


async def test_submit_form_shows_problems_and_writes_nothing(state):
    from piu_tui.screens.submit import SubmitScreen

    app = state.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, SubmitScreen), 60)
        await settle(pilot, app)
        form = app.screen
        form.query_one("#request-id").value = "req-1001"  # taken, and no identity chosen
        await pilot.press("ctrl+s")
        # the check loads the dataset for the identity lookup: slow on a loaded machine
        await wait_until(pilot, lambda: "not submitted" in str(form.query_one("#problems").render()), 180)
        slot = form.query_one("#identities-problem")  # under its field, in plain words
        assert slot.display and "choose at least one identity" in str(slot.render())
        assert isinstance(app.screen, SubmitScreen)
        await pilot.press("escape")
    assert not list(state.ws.jobs_dir.glob("*.json"))


async def test_cancel_and_retry_go_through_the_control_runner(state):
    calls = []

    def control(op, job_id):
        from piu_tui.actions import ActionResult

        calls.append((op, job_id))
        return ActionResult(True, f"{job_id}: {op} ok")

    from piu_tui.screens.confirm import ConfirmScreen
    from piu_tui.widgets.jobs_table import JobsTable

    app = state.app(control=control)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        table = app.screen.query_one(JobsTable)
        table.focus()
        assert table.selected_job_id == "req-1004"  # the running job is first
        await pilot.press("r")  # not retryable: nothing happens
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        await pilot.press("c", "y")
        await settle(pilot, app)
        while table.selected_job_id != "req-1002":
            await pilot.press("down")
        await pilot.press("r")
        await settle(pilot, app)
    assert calls == [("cancel", "req-1004"), ("retry", "req-1002")]


def test_default_control_runner_cancels_a_queued_job_in_process(state):
    """The default runner is the service's client, as `piu cancel ID` uses it (no daemon: applied
    under the lock), in this process: no subprocess, answered at once."""
    from piu_tui.actions import Services

    state.store.close()
    result = Services(state.ws).control("cancel", "req-1005")
    assert result.ok, result.message
    with state_mod.StateReader(state.ws.db_path) as r:
        assert r.job("req-1005").state == "cancelled"
    state.store = state_mod.StateStore(state.ws.db_path)


async def test_report_identities_models_and_help(state):
    from piu_tui.screens.help import HelpScreen
    from piu_tui.screens.identities import IdentitiesScreen
    from piu_tui.screens.models import ModelsScreen
    from piu_tui.screens.report import ReportScreen
    from piu_tui.widgets.jobs_table import JobsTable

    app = state.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        table = app.screen.query_one(JobsTable)
        table.focus()
        while table.selected_job_id != "req-1001":
            await pilot.press("down")
        await pilot.press("o")
        await settle(pilot, app)
        assert isinstance(app.screen, ReportScreen)
        text = str(app.screen.query_one("#report-text").render())
        assert "PIU forget request req-1001: DONE" in text and "baseline retrain" in text
        await pilot.press("escape", "i")
        await settle(pilot, app)
        screen = app.screen
        assert isinstance(screen, IdentitiesScreen)
        ids = screen.query_one("#identities-table")
        assert ids.row_count == 24
        assert [str(c).strip() for c in ids.get_row("person-0001")][2:5] == ["forgotten", "req-1001", "v1"]
        assert [str(c).strip() for c in ids.get_row("person-0004")][2:4] == ["forgetting", "req-1004"]
        assert [str(c).strip() for c in ids.get_row("person-0013")][2:4] == ["queued", "req-1005"]
        await pilot.press("slash", *"forgot")  # `/` to the filter, then filter as you type
        await pilot.pause()
        assert ids.row_count == 2
        await pilot.press("escape", "m")
        await settle(pilot, app)
        assert isinstance(app.screen, ModelsScreen)
        detail = str(app.screen.query_one("#model-detail").render())
        assert "synthetic v1" in detail and "person-0001, person-0002" in detail
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "d")
        await pilot.pause()
        assert len(app.screen_stack) == 1


# ------------------------------------------------------------------ snapshots
def _open(job_id: str):
    async def run_before(pilot) -> None:
        await settle(pilot, pilot.app)
        pilot.app.open_job(job_id)
        await settle(pilot, pilot.app)

    return run_before


async def _loaded(pilot) -> None:
    await settle(pilot, pilot.app)


def test_snapshot_dashboard(state, snap_compare):
    assert snap_compare(state.app(), terminal_size=SIZE, run_before=_loaded)


def test_snapshot_dashboard_80x24_daemon_stopped(state, snap_compare):
    assert snap_compare(state.app(clock=lambda: T0 + 3600), terminal_size=(80, 24), run_before=_loaded)


def test_snapshot_job_detail_running(state, snap_compare):
    assert snap_compare(state.app(), terminal_size=SIZE, run_before=_open("req-1004"))


def test_snapshot_job_detail_done(state, snap_compare):
    assert snap_compare(state.app(), terminal_size=SIZE, run_before=_open("req-1001"))


# ------------------------------------------------------------------ the per-person audit
POOL = {
    "k": 4,
    "seed": 0,
    "model_seeds": [11, 12, 13, 14],
    "created": "2025-06-15T13:00:00+00:00",
    "completed": "2025-06-15T13:20:00+00:00",
}
GATE_STATES = {"req-2001": "passed", "req-2002": "failed", "req-2003": "not gated"}


def audit_side(people: list[tuple[str, float | None, str]], shift: float) -> dict:
    """One model's audit as the worker stores it (``AuditResult.to_dict``: NaN becomes null)."""
    from piu_engine.core.audit.result import AuditResult, Calibration, PersonAudit, SetSummary

    ids = [f"person-{i:04d}" for i in range(24, 40)]  # never-seen calibration people
    z = [round(shift + 0.35 * (i - 7.5), 3) for i in range(len(ids))]
    cal = Calibration("t-interval", 0.05, len(z), shift, 1.0, shift - 2.3, shift + 2.3, ids, z)
    rows = [
        PersonAudit(
            who,
            6,
            1.5,
            0.2,
            0.6,
            4,
            float("nan") if zz is None else zz,
            float("nan") if zz is None else (0.62 if verdict == "indistinguishable" else 0.0),
            verdict,
        )
        for who, zz, verdict in people
    ]
    flagged = sum(v != "indistinguishable" for *_, v in people) / len(people)
    summary = SetSummary(len(rows), len(z), flagged, [0.0, 1.0], flagged, 0.0, 0.71, [0.5, 0.9], None, [None, None])
    return AuditResult(rows, cal, summary, None, {"key": "k", "k": 4, "seed": 0}, 0.05, 0, 100, 1.0).to_dict()


def add_audited_jobs(s: StateFixture) -> None:
    """Three finished, audited jobs, one per gate decision (GATE_STATES), with their reports written.

    The gate is the service's own (``gate.evaluate``) on these figures; req-2002 has a person whose z
    came out NaN (stored as null)."""
    from piu_engine.core.request import Metrics
    from piu_engine.service import gate as gate_mod
    from piu_engine.service.operations import Operations
    from piu_engine.service.registry import Registry
    from piu_engine.service.settings import GateConfig

    store = s.store
    ops = Operations(s.ws, store, Registry(s.ws.models_dir).ensure(), s.ws.spool().ensure())
    good = dict(M0, test_acc=0.905, forget_acc=0.1, mia=0.52, seconds=20.0)
    plans = {
        "req-2001": (
            NAMES[16:18],
            good,
            {
                "pool": POOL,
                "model": audit_side(
                    [(NAMES[16], 0.4, "indistinguishable"), (NAMES[17], -0.9, "indistinguishable")], 0.1
                ),
                "parent": audit_side(
                    [(NAMES[16], 4.1, "still recognisable"), (NAMES[17], 3.7, "still recognisable")], 0.4
                ),
            },
        ),
        "req-2002": (
            [NAMES[18], NAMES[20]],
            good,
            {
                "pool": POOL,
                "model": audit_side(
                    [(NAMES[18], 3.4, "still recognisable"), (NAMES[20], None, "indistinguishable")], 0.1
                ),
                "parent": audit_side(
                    [(NAMES[18], 4.2, "still recognisable"), (NAMES[20], 3.9, "still recognisable")], 0.4
                ),
            },
        ),
        # nothing to gate on: no test accuracy, no MIA, and the audit could not be calibrated
        "req-2003": (
            [NAMES[19]],
            {"forget_acc": 0.2},
            {"error": "calibration needs at least 3 never-seen people, got 2"},
        ),
    }
    version, forgotten = 1, list(NAMES[1:3])
    for k, (rid, (people, metrics, audit)) in enumerate(plans.items()):
        s.at(T0 - 900 + 60 * k)
        _accept(s, _manifest(rid, people))
        store.start_batch(f"b-{rid}", [store.job(rid)], version, "cpu")
        g = gate_mod.evaluate(GateConfig(), Metrics.from_dict(good), Metrics.from_dict(metrics), audit)
        assert g.decision == GATE_STATES[rid]
        outcome = {"parent": good, "model": metrics, "audit": audit, "sha256": "d" * 64}
        if rid == "req-2002":  # PIU-FR ran guided: its targets came from the guide pool, not the audit's
            outcome["method_notes"] = {"guide": {"guide_pool_seed": 1, "guide_pool_models": 4, "guide_people": 2}}
        result = {"outcome": outcome, "gate": g.to_dict(), "device": "cpu"}
        s.at(T0 - 870 + 60 * k)
        if not g.passed:
            store.set_job(
                rid,
                state="failed",
                finished_at=s.clock.t,
                metrics=metrics,
                parent_metrics=good,
                result=result,
                error="acceptance gate failed: " + "; ".join(g.failures()),
            )
            store.end_batch(f"b-{rid}", "failed", "acceptance gate failed")
        else:
            with store.tx():
                store.add_version(
                    "synthetic", version + 1, version, "d" * 64, f"synthetic/{version + 1}/model.pt", "forget",
                    "piu-fr", [rid], forgotten + people, metrics,
                )  # fmt: skip
                store.mark_forgotten("synthetic", {n: rid for n in people}, version + 1)
                for n in people:
                    store.set_identity_status(rid, n, "forgotten", version + 1)
                store.set_job(
                    rid,
                    state="done",
                    finished_at=s.clock.t,
                    version=version + 1,
                    sha256="d" * 64,
                    metrics=metrics,
                    parent_metrics=good,
                    result=result,
                )
                store.end_batch(f"b-{rid}", "done")
            version, forgotten = version + 1, forgotten + people
        ops.write_report(rid)
    s.at(T0 - 1)


def write_pool_manifest(s: StateFixture, seed: int = 0, k: int = 4) -> None:
    """A finished reference pool of ``k`` models, as `piu audit pool` leaves its manifest
    (``seed`` 1: the guide pool `piu audit pool --guide` leaves)."""
    from piu_engine.core.audit.manifest import write_manifest

    pool_dir = s.ws.cfg.resolve(s.ws.cfg.engine.cache_dir) / "pools" / f"synthetic-tiny-k{k}-s{seed}"
    pool_dir.mkdir(parents=True)
    model_seeds = [*POOL["model_seeds"], *range(100, 100 + k - len(POOL["model_seeds"]))][:k]
    models = [{"index": i, "seed": ms, "status": "done"} for i, ms in enumerate(model_seeds)]
    pool = dict(POOL, k=k, seed=seed, model_seeds=model_seeds, dataset="synthetic", preset="tiny", key=f"k{k}-{seed}")
    write_manifest(pool_dir, dict(pool, models=models))


def test_job_detail_view_shows_each_verdict_the_pool_and_a_histogram(state):
    from piu_engine.service.report import AUDIT_QUESTION
    from piu_tui.viewmodel.sources import JobDetailSource

    add_audited_jobs(state)
    view = JobDetailSource(state.ws.db_path, "req-2002", lambda: T0).load()
    audit = view.audit
    assert audit.state == "audited" and audit.question == AUDIT_QUESTION
    assert "4 reference models (pool seed 0, model seeds 11, 12, 13, 14)" in audit.headline
    assert audit.headline.endswith("; the method aimed at guide pool seed 1 (never this pool)")
    assert [(p.key, p.identity, p.verdict, p.z, p.p) for p in audit.people] == [
        ("1", "person-0018", "still recognisable", "+3.40", "0.000"),
        ("2", "person-0020", "indistinguishable", "NaN", "NaN"),  # a NaN z is shown, never dropped
    ]
    assert audit.people[0].before == "still recognisable, z +4.20"
    caption, *bars, marks, axis = audit.histogram
    assert "never-seen people's z on the new model (n=16)" in caption
    assert len(bars) == 3 and all(len(r) == 60 for r in (*bars, marks, axis))  # fits 80 columns
    assert set("".join(bars)) <= set(" ▁▂▃▄▅▆▇█") and "█" in "".join(bars)
    assert marks.count("┆") == 2 and "1" in marks and "2" not in marks  # the NaN person cannot be placed
    assert axis.startswith("-2.") and "0" in axis
    assert audit.gate.startswith("gate on the audit: FAILED: 1 of 2 forgotten people")
    assert audit.picture == f"picture: {Path(view.report_path).parent / 'audit.png'}"
    assert "acceptance gate FAILED" in view.info

    no_pool = JobDetailSource(state.ws.db_path, "req-1001", lambda: T0).load().audit
    assert no_pool.state == "not audited" and "piu audit pool" in no_pool.headline
    running = JobDetailSource(state.ws.db_path, "req-1004", lambda: T0).load().audit
    assert running.state == "pending"


def test_gate_states_reach_status_jobs_show_report_and_job_detail(state, capsys):
    from piu_engine.cli import main as piu
    from piu_tui.viewmodel.sources import JobDetailSource

    add_audited_jobs(state)
    cfg = str(state.config)
    assert piu(["--config", cfg, "status", "--json"]) == 0
    gates = {j["id"]: j["gate"] for j in json.loads(capsys.readouterr().out)["jobs"]}
    for rid, decision in GATE_STATES.items():
        assert gates[rid] == decision
        assert piu(["--config", cfg, "jobs", "show", rid]) == 0
        shown = capsys.readouterr().out
        assert f"Acceptance gate: {decision.upper()}" in shown  # `piu jobs show` prints report.txt
        view = JobDetailSource(state.ws.db_path, rid, lambda: T0).load()
        assert f"acceptance gate {'FAILED' if decision == 'failed' else decision}" in view.info
        assert view.audit.gate.startswith(
            f"gate on the audit: {'not gated' if decision == 'not gated' else decision.upper()}"
        )
    done = (state.ws.jobs_dir / "done" / "req-2003" / "report.txt").read_text()
    assert "Per-person audit: not audited (calibration needs at least 3" in done
    assert "Gate on these verdicts" not in done and not (state.ws.jobs_dir / "done/req-2003/audit.png").exists()


async def test_job_detail_audit_panel_at_80x24_and_100x30(state):
    from piu_tui.widgets.audit_panel import AuditPanel

    add_audited_jobs(state)
    for size in ((80, 24), (100, 30)):
        app = state.app()
        async with app.run_test(size=size) as pilot:
            await settle(pilot, app)
            app.open_job("req-2002")
            await settle(pilot, app)
            panel = app.screen.query_one(AuditPanel)
            text = str(panel.render())
            assert "person-0018  STILL RECOGNISABLE  z +3.40  p 0.000" in text
            assert "z NaN  p NaN" in text and "no values yet" not in text
            assert "Could someone holding the model tell" in text
            for row in app.screen.view.audit.histogram:
                assert row in text
            detail = app.screen.query_one("#detail")
            assert detail.max_scroll_x == 0 and panel.size.width <= size[0]  # wrapped, scrolls only down
            panel.scroll_visible(animate=False)
            await pilot.pause()
            assert detail.scroll_y > 0


async def test_models_screen_shows_the_reference_pool(state, capsys):
    from piu_engine.cli import main as piu
    from piu_tui.screens.models import ModelsScreen

    write_pool_manifest(state)
    write_pool_manifest(state, seed=1)
    write_pool_manifest(state, k=8)  # left from an older `[audit] models`: nothing reads it
    app = state.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("m")
        await settle(pilot, app)
        assert isinstance(app.screen, ModelsScreen)
        pool = str(app.screen.query_one("#pool-detail").render()).replace("\n", " ")
        assert "reference pool synthetic (preset tiny): 4 models, pool seed 0, model seeds 11, 12, 13, 14" in pool
        assert "guide pool (PIU-FR's targets) synthetic (preset tiny): 4 models, pool seed 1" in pool
        unused = "unused pool (neither the audit's nor the guide's size and seed)"
        assert f"{unused} synthetic (preset tiny): 8 models" in pool
        assert "built 2025-06-15" in pool and "ago)" in pool and "none" not in pool
    # `piu model list` labels each pool by the same rule
    assert piu(["--config", str(state.config), "model", "list"]) == 0
    listing = capsys.readouterr().out
    assert "reference pool: synthetic (preset tiny), 4 models, pool seed 0" in listing
    assert "guide pool (PIU-FR's targets): synthetic (preset tiny), 4 models, pool seed 1" in listing
    assert f"{unused}: synthetic (preset tiny), 8 models" in listing
    assert "reference pool: none" not in listing
    assert piu(["--config", str(state.config), "model", "list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in out["versions"]] == [0, 1]
    assert [(p["k"], p["seed"], p["model_seeds"], p["done"]) for p in out["reference_pools"]] == [
        (4, 0, [11, 12, 13, 14], 4),
        (4, 1, [11, 12, 13, 14], 4),
        (8, 0, [11, 12, 13, 14, 100, 101, 102, 103], 8),
    ]


def test_light_clients_never_load_matplotlib():
    """The audit picture is drawn only when a report with an audit is written."""
    code = (
        "import sys, importlib\n"
        "for m in ('piu_tui.app', 'piu_tui.viewmodel.audit', 'piu_tui.viewmodel.sources',\n"
        "          'piu_engine.service.report', 'piu_engine.service.daemon', 'piu_engine.commands.service',\n"
        "          'piu_engine.cli'):\n"
        "    importlib.import_module(m)\n"
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ fit, respond, show failures, Textual basics
def screen_lines(app) -> list[str]:
    """What the terminal shows, one string a row."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


async def select_job(pilot, table, job_id: str) -> None:
    table.focus()
    for _ in range(table.row_count):
        if table.selected_job_id == job_id:
            return
        await pilot.press("down")
    raise AssertionError(f"{job_id} not in the table")


LONG_ID = "req-0123456789abcdef"  # a request id derived from the content: 20 characters


def test_columns_fit_80_and_100_dropping_the_least_important_first(state):
    import dataclasses

    from piu_tui.viewmodel.columns import fit_columns
    from piu_tui.viewmodel.sources import StateSource

    view = StateSource(state.ws.db_path, lambda: T0).dashboard()
    jobs = (dataclasses.replace(view.jobs[0], id=LONG_ID), *view.jobs[1:])
    for width in (79, 99, 119):  # the terminal less the table's one-cell scrollbar
        assert sum(c.width + 1 for c in fit_columns(width, jobs)) <= width
    at80 = {c.key: c for c in fit_columns(79, jobs)}
    assert {"id", "state", "progress", "mia", "nomus", "elapsed", "eta"} <= set(at80)
    assert at80["mia"].width == at80["nomus"].width == 5  # whole metrics, not "0.7…"
    assert "gate" not in at80 and "test_acc" not in at80  # what went first
    assert at80["id"].width < len(LONG_ID)  # shortened only after the less important columns
    at100 = {c.key: c for c in fit_columns(99, jobs)}
    assert at100["id"].width == len(LONG_ID)  # not cut at 16 when there is room
    assert "test_acc" in {c.key for c in fit_columns(99, view.jobs)}
    at120 = {c.key: c for c in fit_columns(119, view.jobs)}
    assert "gate" in at120 and at120["identities"].width >= len("3: person-0003, +2")


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_dashboard_fits_the_terminal_without_scrolling_sideways(state, size):
    from piu_tui.widgets.jobs_table import JobsTable

    _accept(state, _manifest(LONG_ID, [NAMES[20]]))
    app = state.app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app)
        table = app.screen.query_one(JobsTable)
        assert table.max_scroll_x == 0  # no horizontal scrollbar
        lines = screen_lines(app)
        assert lines[-1].rstrip().endswith("q Quit")  # the footer is whole
        header = lines[[i for i, line in enumerate(lines) if line.startswith(" request")][0]]
        for label in ("MIA", "NoMUS", "ETA"):
            assert label in header
        assert "elapsed" in header or "time" in header
        long_row = next(line for line in lines if "req-0123" in line)
        assert (LONG_ID in long_row) == (size[0] >= 100)  # whole where there is room


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_identities_models_and_person_screens_never_scroll_sideways(state, size):
    from piu_tui.screens.person import PersonScreen
    from piu_tui.widgets.row_table import RowTable

    app = state.app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app)
        for key, must_show in (("i", ("identity", "state", "job")), ("m", ("dataset", "version", "MIA", "NoMUS"))):
            await pilot.press(key)
            await settle(pilot, app)
            table = app.screen.query_one(RowTable)
            assert table.max_scroll_x == 0, (key, size, table.virtual_size)
            header = next(line for line in screen_lines(app) if line.startswith(" " + must_show[0] + " "))
            assert all(label in header for label in must_show), header
        app.push_screen(PersonScreen("synthetic", "person-0001"))
        await settle(pilot, app)
        table = app.screen.query_one(RowTable)
        assert table.row_count and table.max_scroll_x == 0
        lines = screen_lines(app)
        assert any("req-1001" in line for line in lines)
        await pilot.resize_terminal(120, 40)  # the columns come back when there is room
        await settle(pilot, app)
        assert "received" in [c.key for c in table.layout_columns]


def test_models_lineage_is_flat_however_long(state):
    from piu_tui.viewmodel.sources import load_models

    for v in (2, 3, 4):
        path = f"synthetic/{v}/model.pt"
        state.store.add_version("synthetic", v, v - 1, "d" * 64, path, "forget", "piu-fr", [], [], M0)
    lineage = {v.version: v.lineage for v in load_models(state.ws.db_path, lambda: T0).versions}
    assert lineage == {0: "v0", 1: "v1 ← v0", 2: "v2 ← v1", 3: "v3 ← v2", 4: "v4 ← v3"}


async def test_q_quits_at_once_even_while_a_read_hangs(state):
    import threading
    import time

    from piu_tui.threads import DaemonThreadExecutor
    from piu_tui.widgets.row_table import RowTable

    release = threading.Event()
    app = state.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        loop = asyncio.get_running_loop()
        executor = loop._default_executor
        assert isinstance(executor, DaemonThreadExecutor)
        hanging = loop.run_in_executor(None, release.wait)  # a dataset loading, a stuck NFS mount
        t0 = time.monotonic()
        executor.shutdown(wait=True)  # what the loop does when the app has quit
        assert time.monotonic() - t0 < 0.5 and not hanging.done()
        await pilot.press("i")  # the identities screen: the table has the focus, so `q` is not typed
        await settle(pilot, app)
        assert isinstance(app.focused, RowTable)
        await pilot.press("q")
        await pilot.pause()
        assert app.return_code == 0 and not app.is_running
    release.set()


async def test_cancel_and_retry_show_in_the_row_until_the_daemon_confirms(state):
    from piu_tui.actions import ActionResult
    from piu_tui.widgets.jobs_table import JobsTable

    def control(op, job_id):
        return ActionResult(job_id != "req-1005", "asked" if job_id != "req-1005" else "refused by the daemon")

    app = state.app(control=control)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        table = app.screen.query_one(JobsTable)
        await select_job(pilot, table, "req-1004")
        await pilot.press("c", "y")
        await pilot.pause()
        assert cells(table, "req-1004")[1].strip() == "cancelling"  # at once
        app.poll_now()
        await settle(pilot, app)
        assert cells(table, "req-1004")[1].strip() == "cancelling"  # the state still says running
        assert "waiting for the daemon" in str(app.screen.query_one("#job-summary").render())
        assert app.screen.check_action("cancel_job", ()) is None  # greyed: asked already
        state.store.set_job("req-1004", state="cancelled", finished_at=T0, error="cancelled by `piu cancel`")
        app.poll_now()
        await settle(pilot, app)
        assert cells(table, "req-1004")[1].strip() == "cancelled" and not app.pending

        await select_job(pilot, table, "req-1002")
        await pilot.press("r")
        await pilot.pause()
        assert cells(table, "req-1002")[1].strip() == "retrying"
        state.store.set_job("req-1002", state="queued", error=None, finished_at=None)
        app.poll_now()
        await settle(pilot, app)
        assert cells(table, "req-1002")[1].strip() == "queued"

        await select_job(pilot, table, "req-1005")  # refused: the row shows the state as it is again
        await pilot.press("c", "y")
        await settle(pilot, app)
        assert cells(table, "req-1005")[1].strip() == "queued" and not app.pending


def test_job_detail_keeps_the_earlier_attempts_after_a_retry(state):
    from piu_tui.viewmodel.sources import JobDetailSource

    source = JobDetailSource(state.ws.db_path, "req-1002", lambda: T0)
    assert not any(line.startswith("earlier") for line in source.load().info)  # its only run is the current one
    state.store.requeue_for_retry(state.store.job("req-1002"))  # what `piu retry` does
    view = source.load()  # the same screen's source: it sees the retry
    assert view.job.state == "queued"
    info = "\n".join(view.info)
    assert "earlier (2):" in info
    assert "run b-1002 on cuda:0: failed: acceptance gate failed" in info
    assert "retried (it was failed after 1 attempt(s)): " in info


async def test_job_detail_says_cancelling_until_the_daemon_confirms(state):
    from piu_tui.actions import ActionResult

    app = state.app(control=lambda op, job_id: ActionResult(True, "asked"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        app.open_job("req-1004")
        await settle(pilot, app)
        detail = app.screen
        title = detail.query_one("#job-title")
        assert "RUNNING" in str(title.render())
        await pilot.press("c", "y")
        await pilot.pause()
        assert "CANCELLING" in str(title.render())  # at once, not a toast that vanishes
        assert detail.check_action("cancel_job", ()) is None  # greyed: asked already
        detail.poll_now()
        await settle(pilot, app)
        assert "CANCELLING" in str(title.render())  # the state still says running
        assert any("waiting for the daemon to confirm" in line for line in detail.view.info)
        state.store.set_job("req-1004", state="cancelled", finished_at=T0, error="cancelled by `piu cancel`")
        detail.poll_now()
        await settle(pilot, app)
        assert "CANCELLED" in str(title.render()) and "CANCELLING" not in str(title.render())


async def test_rejected_job_shows_its_file_and_reasons_under_the_table(state):
    from piu_tui.widgets.jobs_table import JobsTable

    app = state.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        table = app.screen.query_one(JobsTable)
        await select_job(pilot, table, state.rejected_id)
        text = str(app.screen.query_one("#job-summary").render())
        assert "rejected bad.json: nothing was run" in text
        assert "not among the training identities of 'synthetic': 'nobody'" in text
        await select_job(pilot, table, "req-1001")
        assert "gate passed" in str(app.screen.query_one("#job-summary").render())


def test_gate_tones_and_not_gated(state):
    import dataclasses

    from piu_tui.viewmodel.build import job_detail, job_view
    from piu_tui.viewmodel.jobs import gate_tone, job_summary

    job = state.store.job("req-1001")
    ungated = job_view(dataclasses.replace(job, result={"gate": {"decision": "not gated"}}), T0)
    assert ungated.gate == "not gated" and gate_tone("not gated") == "warn"
    assert (gate_tone("passed"), gate_tone("failed")) == ("good", "bad")
    head = job_summary(ungated)[0]
    assert ("not gated", "warn") in head
    assert job_view(state.store.job("req-1002"), T0).gate == "failed"
    rejected = job_detail(state.store.job(state.rejected_id), state.rejected_id, T0)
    assert "rejected bad.json: nothing was run" in rejected.info  # the detail header says it too


def test_a_job_cancelled_while_queued_shows_no_elapsed_time(state):
    import dataclasses

    from piu_tui.viewmodel.build import job_view

    job = state.store.job("req-1003")
    assert job_view(job, T0).elapsed == "-"
    # retried after a first run, then cancelled while queued again: started_at is the first run's
    retried = dataclasses.replace(job, started_at=T0 - 5000, finished_at=T0 - 1100, phase=None, progress=None)
    assert job_view(retried, T0).elapsed == "-" and job_view(retried, T0).elapsed_s is None
    while_running = dataclasses.replace(retried, started_at=T0 - 1200, phase="scrub", progress=0.4)
    assert job_view(while_running, T0).elapsed == "1m40s"


async def test_command_palette_offers_jobs_screens_and_themes(state):
    from piu_tui.screens.confirm import ConfirmScreen
    from piu_tui.viewmodel.commands import palette_commands
    from textual.command import CommandList, CommandPalette

    app = state.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        titles = [c.title for c in palette_commands(app.dashboard.jobs, "req-1004")]
        assert titles[:5] == [
            "Go to dashboard",
            "Go to identities",
            "Go to models",
            "Submit a new forget request",
            "Help for this screen",
        ]
        assert "Cancel job req-1004" in titles and "Retry job req-1004" not in titles  # what the keys allow
        assert "Retry job req-1002" in titles and "Copy the SHA-256 of req-1001" in titles
        assert "Theme" in [c.title for c in app.get_system_commands(app.screen)]
        assert len(app.available_themes) > 1
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"cancel job req-1004")
        await wait_until(pilot, lambda: app.screen.query_one(CommandList).option_count > 0)
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")


async def test_jobs_table_sorts_by_keys_and_header_clicks(state):
    from piu_tui.widgets.jobs_table import JobsTable

    app = state.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        table = app.screen.query_one(JobsTable)

        def order():
            return [str(r.key.value) for r in table.ordered_rows]

        daemon_order = order()
        await pilot.press("s")  # the first column: request id
        assert order() == sorted(daemon_order) and "▲" in str(table.columns["id"].label)
        await pilot.press("S")
        assert order() == sorted(daemon_order, reverse=True)
        x = 1 + sum(c.width + 1 for c in table.layout_columns[: [c.key for c in table.layout_columns].index("mia")])
        await pilot.click(JobsTable, offset=(x + 1, 0))  # the MIA header
        assert order()[:2] == ["req-1001", "req-1002"]  # 0.522, 0.713; jobs without MIA last
        await pilot.click(JobsTable, offset=(x + 1, 0))
        assert order()[:2] == ["req-1002", "req-1001"]
        await pilot.click(JobsTable, offset=(x + 1, 0))  # a third time: the daemon's order again
        assert order() == daemon_order


async def test_slash_filters_jobs_and_empty_states_say_what_to_do(state, tmp_path):
    from piu_engine.core.config import load_config
    from piu_engine.service.workspace import Workspace, init_workspace
    from piu_tui.app import PiuApp
    from piu_tui.widgets.jobs_table import JobsTable

    app = state.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        table = app.screen.query_one(JobsTable)
        await pilot.press("slash", *"fail")
        assert [str(r.key.value) for r in table.ordered_rows] == ["req-1002"]
        await pilot.press("enter")  # to the table, the filter stays
        assert app.focused is table and table.row_count == 1
        await pilot.press("slash", *"zzz")
        empty = app.screen.query_one("#jobs-empty")
        assert empty.display and "No job matches “zzz”" in str(empty.render())  # `/` selects the old text
        await pilot.press("escape")
        assert table.row_count == 6 and not app.screen.query_one("#jobs-filter").display

    ws = Workspace.from_config(load_config(init_workspace(tmp_path / "fresh", "tiny")))
    store = state_mod.StateStore(ws.db_path)  # a daemon that has not received anything yet
    store.heartbeat_update("daemon", "cpu", "running", T0 - 60)
    app = PiuApp(ws, clock=lambda: T0, poll_interval=60)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        empty = app.screen.query_one("#jobs-empty")
        assert empty.display and "press n to submit" in str(empty.render()).lower()
    store.close()


async def test_copy_id_sha_and_report_path_and_home_end(state):
    from piu_tui.widgets.jobs_table import JobsTable

    app = state.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        table = app.screen.query_one(JobsTable)
        await pilot.press("end")
        assert table.selected_job_id == "req-1001"  # the last row
        await pilot.press("y")
        assert app.clipboard == "req-1001"
        await pilot.press("Y")
        assert app.clipboard == "b" * 64
        await pilot.press("p")
        assert app.clipboard.endswith("report.txt") and "req-1001" in app.clipboard
        await pilot.press("home")
        assert table.selected_job_id == "req-1004"
        await pilot.press("Y")  # still running: no checksum yet, the clipboard keeps what it had
        assert app.clipboard.endswith("report.txt")
        assert app.screen.check_action("copy_sha", ()) is None


async def test_disabled_footer_keys_are_clearly_greyed(state):
    from textual.widgets._footer import FooterKey

    app = state.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        keys = {k.description: k for k in app.screen.query(FooterKey)}
        retry, cancel = keys["Retry"], keys["Cancel"]  # the running job is selected
        assert retry.has_class("-disabled") and not cancel.has_class("-disabled")
        assert retry.styles.text_style.strike and not cancel.styles.text_style.strike
        assert retry.styles.color != cancel.styles.color


async def test_help_is_per_screen(state):
    from piu_tui.screens.help import HelpScreen

    app = state.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        for key, title in (("d", "Dashboard: the daemon"), ("i", "Identities: present"), ("n", "New forget request")):
            if key != "d":
                await pilot.press(key)
                await settle(pilot, app)
            app.action_help()
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            text = str(app.screen.query_one("#help-text").render())
            assert title in text and "ctrl+p" in text
            await pilot.press("escape")
            await pilot.pause()
            if key != "d":
                await pilot.press("escape")
                await pilot.pause()


async def test_identities_table_has_focus_and_enter_opens_the_persons_history(state):
    from piu_tui.screens.job_detail import JobDetailScreen
    from piu_tui.screens.person import PersonScreen
    from piu_tui.widgets.row_table import RowTable

    app = state.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("i")
        await settle(pilot, app)
        table = app.screen.query_one(RowTable)
        assert app.focused is table
        await pilot.press("end")
        assert table.selected_key == "person-0023"
        await pilot.press("home", "down", "enter")  # person-0001, forgotten by req-1001
        await settle(pilot, app)
        person = app.screen
        assert isinstance(person, PersonScreen) and person.identity == "person-0001"
        title = str(person.query_one("#person-title").render())
        assert "FORGOTTEN" in title and "v1 by req-1001" in title
        assert [str(r.key.value) for r in person.query_one(RowTable).ordered_rows] == ["req-1001"]
        await pilot.press("enter")
        await settle(pilot, app)
        assert isinstance(app.screen, JobDetailScreen) and app.screen.job_id == "req-1001"
        await pilot.press("escape", "escape")
        await pilot.press("home", "enter")  # person-0000: nobody asked yet
        await settle(pilot, app)
        assert "press n to submit one" in str(app.screen.query_one("#person-empty").render())


async def test_submit_form_order_digits_limit_params_and_problems_by_field(state):
    from piu_tui.screens.job_detail import JobDetailScreen

    app = state.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("n")
        await settle(pilot, app)
        form = app.screen
        seen = []
        for _ in range(12):
            seen.append(app.focused.id)
            await pilot.press("tab")
        assert seen == [
            "dataset",
            "method",
            "identity-filter",
            "identities",
            "baselines",
            "requested-by",
            "priority",
            "reason",
            "request-id",
            "params",
            "submit",
            "cancel",
        ]
        lst = form.query_one("#identities")
        prompts = {o.value: str(o.prompt) for o in lst.options}
        assert "forgetting" in prompts["person-0003"] and "queued" in prompts["person-0013"]

        form.query_one("#priority").focus()
        await pilot.press("end", "minus", "x", "7")
        assert form.query_one("#priority").value == "07"  # digits only

        form.query_one("#identity-filter").focus()
        await pilot.press(*"person-001", "tab", "space")
        for _ in range(6):
            await pilot.press("down", "space")
        assert len(form.selected["synthetic"]) == 6 == len(lst.selected)  # the 7th tick was refused
        limit = form.query_one("#identities-problem")
        assert limit.display and "at most 6 identities per request" in str(limit.render())

        params = form.query_one("#params")
        params.value = '{"epochs": '
        await pilot.pause()
        assert "not valid JSON" in str(form.query_one("#params-problem").render())
        params.value = '{"nope": 1}'
        await pilot.pause()
        assert not form.query_one("#params-problem").display
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: form.query_one("#params-problem").display, 180)
        assert "nope is not a parameter of piu-fr" in str(form.query_one("#params-problem").render())

        params.value = '{"epochs": 1}'
        form.query_one("#request-id").value = "req-1001"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: form.query_one("#request_id-problem").display, 180)
        assert "was received before" in str(form.query_one("#request_id-problem").render())
        assert not form.query_one("#params-problem").display

        form.query_one("#request-id").value = "req-tui-params"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen), 180)
    doc = json.loads((state.ws.jobs_dir / "req-tui-params.json").read_text())
    assert doc["params"] == {"epochs": 1} and doc["priority"] == 7 and len(doc["identities"]) == 6


def test_problems_go_under_their_field_in_plain_words():
    from piu_tui.viewmodel.form import OTHER, field_problems, parse_params

    got = field_problems(
        [
            "identities: [] should be non-empty",
            "priority: 'x' is not of type 'integer'",
            "method/params: params.nope: unknown parameter of piu-fr (known: epochs, lr)",
            "compare: lists the request's own method 'piu-fr'",
            "request_id 'req-1' was received before (job is done); use a new request id",
            "unknown field: 'colour'",
        ]
    )
    assert got["identities"] == ["choose at least one identity (space ticks one)"]
    assert got["priority"] == ["must be a whole number"]
    assert got["params"] == ["nope is not a parameter of piu-fr; it takes: epochs, lr"]
    assert got["compare"] == ["untick piu-fr: it is the request's own method"]
    assert got["request_id"][0].startswith("request_id 'req-1' was received before")
    assert got[OTHER] == ["unknown field: 'colour'"]
    assert parse_params("") == ({}, "") and parse_params('{"lr": 0.1}') == ({"lr": 0.1}, "")
    assert parse_params("[1]")[0] is None and "JSON object" in parse_params("[1]")[1]


# ------------------------------------------------------------------ snapshots: 80x24 and 120x40
@pytest.fixture
def frozen_env(monkeypatch):
    """Local times in UTC and a fixed user name, so the snapshots are the same on every machine."""
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr("piu_tui.screens.submit.default_requester", lambda: "admin")
    yield
    monkeypatch.undo()
    time.tzset()


def _on(*keys: str):
    async def run_before(pilot) -> None:
        await settle(pilot, pilot.app)
        for key in keys:
            await pilot.press(key)
            await settle(pilot, pilot.app)
        for box in pilot.app.screen.query("Input"):
            box.cursor_blink = False
        await pilot.pause()

    return run_before


SCREEN_KEYS = {
    "dashboard": (),
    "identities": ("i",),
    "submit": ("n",),
    "help": ("question_mark",),
    "models": ("m",),
    "job_detail": ("enter",),  # the selected row: the running job
    "person": ("i", "down", "enter"),  # person-0001, forgotten by req-1001
    "confirm": ("c",),  # cancel the running job?
}


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("screen", list(SCREEN_KEYS))
def test_snapshot_screens(state, snap_compare, frozen_env, screen, size):
    assert snap_compare(state.app(), terminal_size=size, run_before=_on(*SCREEN_KEYS[screen]))


async def test_report_wraps_at_80_columns_and_w_unwraps_it(state):
    from piu_tui.screens.report import ReportScreen
    from piu_tui.widgets.jobs_table import JobsTable

    app = state.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await select_job(pilot, app.screen.query_one(JobsTable), "req-1002")
        await pilot.press("o")
        await settle(pilot, app)
        assert isinstance(app.screen, ReportScreen)
        scroll = app.screen.query_one("#report-scroll")
        assert scroll.max_scroll_x == 0  # every line wrapped, nothing cut
        await pilot.press("w")
        await pilot.pause()
        assert scroll.max_scroll_x > 0  # the tables as columns, scrolled sideways


def test_new_viewmodel_modules_do_not_import_textual():
    code = (
        "import sys, importlib\n"
        "for m in ('piu_tui.viewmodel.columns', 'piu_tui.viewmodel.jobs', 'piu_tui.viewmodel.form',\n"
        "          'piu_tui.viewmodel.commands', 'piu_tui.viewmodel.person', 'piu_tui.viewmodel.table_fit',\n"
        "          'piu_tui.threads'):\n"
        "    importlib.import_module(m)\n"
        "print('textual' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_a_daemon_problem_shows_in_the_banner(state):
    app = state.app(clock=lambda: T0, poll_interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        banner = app.screen.query_one("#banner")
        assert not banner.display
        state.store.heartbeat_update("daemon", "cpu", "running", T0 - 60, problem="disk full: models (retrying)")
        await wait_until(pilot, lambda: banner.display)
        assert "daemon running, but: disk full: models (retrying)" in str(banner.render())
