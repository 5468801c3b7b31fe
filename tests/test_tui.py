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


async def wait_until(pilot, cond, timeout: float = 8.0) -> None:
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


async def test_submit_form_writes_a_manifest_piu_validate_accepts(state, capsys):
    from piu_engine.cli import main as piu
    from piu_tui.screens.dashboard import DashboardScreen
    from piu_tui.screens.submit import SubmitScreen

    app = state.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("n")
        await settle(pilot, app)
        form = app.screen
        assert isinstance(form, SubmitScreen) and form.choices is not None
        # forgotten identities are offered but cannot be picked
        await pilot.press(*"person-002")  # filter as you type: person-0020 .. person-0023
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
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), timeout=30)
    path = state.ws.jobs_dir / "req-tui-1.json"
    doc = json.loads(path.read_text())
    assert doc["identities"] == ["person-0020", "person-0021"] and doc["compare"] == ["retrain"]
    assert doc["method"] == "piu-fr" and doc["request_id"] == "req-tui-1"
    assert not [p for p in state.ws.jobs_dir.iterdir() if p.name.startswith(".req-tui")]  # no temp file left
    capsys.readouterr()
    assert piu(["--config", str(state.config), "validate", str(path)]) == 0
    assert "valid" in capsys.readouterr().out


async def test_submit_form_shows_problems_and_writes_nothing(state):
    from piu_tui.screens.submit import SubmitScreen

    app = state.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("n")
        await settle(pilot, app)
        form = app.screen
        form.query_one("#request-id").value = "req-1001"  # taken, and no identity chosen
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "not submitted" in str(form.query_one("#problems").render()), 30)
        assert "identities" in str(form.query_one("#problems").render())
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
        assert [str(c) for c in ids.get_row("person-0001")][2:5] == ["forgotten", "req-1001", "v1"]
        assert [str(c) for c in ids.get_row("person-0004")][2:4] == ["running", "req-1004"]
        assert [str(c) for c in ids.get_row("person-0013")][2:4] == ["queued", "req-1005"]
        await pilot.press(*"forgot")  # filter as you type
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
