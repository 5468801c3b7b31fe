"""The daemon as systemd runs it: real processes, real files, real SQLite, tiny preset.

The original model is trained once per module; each test gets a copy of
that workspace. Every daemon runs in its own session and its whole process
group is killed at teardown, so no process outlives the tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from piu_engine.service.state import StateReader

PIU = [sys.executable, "-m", "piu_engine.cli"]
pytestmark = pytest.mark.timeout(1200)  # generous: these tests must also pass on a loaded machine


def piu(ws: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PIU, "--config", str(ws / "config.toml"), *args], capture_output=True, text=True, timeout=timeout
    )


def set_service(ws: Path, **values) -> None:
    """Change keys of the [service] / [service.gate] tables that `piu init` wrote."""
    text = (ws / "config.toml").read_text()
    for key, value in values.items():
        text, n = re.subn(rf"^{key} = [^#\n]*", f"{key} = {json.dumps(value)}", text, count=1, flags=re.M)
        assert n == 1, key
    (ws / "config.toml").write_text(text)


def init_tiny(ws: Path) -> Path:
    """`piu init --preset tiny` on the CPU, with quick rescans: the daemon tests' workspace."""
    r = subprocess.run([*PIU, "init", str(ws), "--preset", "tiny"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = (ws / "config.toml").read_text().replace('device = "auto"', 'device = "cpu"')
    (ws / "config.toml").write_text(text)
    set_service(ws, rescan_seconds=1.0, settle_seconds=0.1)
    return ws


@pytest.fixture(scope="module")
def trained_ws(tmp_path_factory) -> Path:
    ws = init_tiny(tmp_path_factory.mktemp("base") / "ws")
    r = piu(ws, "train")
    assert r.returncode == 0, r.stderr
    return ws


@pytest.fixture
def ws(trained_ws, tmp_path) -> Path:
    dst = tmp_path / "ws"
    shutil.copytree(trained_ws, dst, symlinks=True)
    return dst


class DaemonProc:
    def __init__(self, ws: Path, command: str = "daemon", log_dir: Path | None = None):
        """``log_dir``: where its log goes (default the workspace; elsewhere when a full disk would swallow it)."""
        self.ws = ws
        log_dir = ws if log_dir is None else log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        n = len(list(log_dir.glob("daemon-*.log")))
        self.log_path = log_dir / f"daemon-{n}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [*PIU, "--config", str(ws / "config.toml"), command],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 300) -> int:
        return self.proc.wait(timeout=timeout)

    def session_pids(self) -> list[int]:
        """Processes still in the daemon's session (its workers)."""
        out = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if os.getsid(int(d.name)) == self.proc.pid:
                        out.append(int(d.name))
                except (ProcessLookupError, PermissionError):
                    pass
        return out

    def tail(self) -> str:
        self.log.flush()
        return self.log_path.read_text()[-4000:]

    def cleanup(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        self.log.close()


@pytest.fixture
def daemons():
    started: list[DaemonProc] = []

    def start(ws: Path, command: str = "daemon") -> DaemonProc:
        d = DaemonProc(ws, command)
        started.append(d)
        return d

    yield start
    for d in started:
        d.cleanup()


def wait_for(cond, timeout: float = 600, what: str = "condition", daemon: DaemonProc | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n--- daemon log ---\n{daemon.tail()}" if daemon else ""))


def reader(ws: Path) -> StateReader:
    return StateReader(ws / ".piu/state/state.db")


def job(ws: Path, job_id: str):
    try:
        with reader(ws) as r:
            return r.job(job_id)
    except FileNotFoundError:
        return None


def job_state(ws: Path, job_id: str) -> str | None:
    j = job(ws, job_id)
    return j.state if j else None


def drop(ws: Path, name: str, doc) -> Path:
    """Write a manifest the way a careful writer does: temporary name, then rename."""
    data = doc if isinstance(doc, (bytes, str)) else json.dumps(doc)
    tmp = ws / "jobs" / f".{name}.tmp"
    (tmp.write_bytes if isinstance(data, bytes) else tmp.write_text)(data)
    os.replace(tmp, ws / "jobs" / name)
    return ws / "jobs" / name


def manifest(rid: str, *ids: str, **extra) -> dict:
    return {
        "request_id": rid,
        "dataset": "synthetic",
        "identities": list(ids),
        "params": {"epochs": 1},
        "requested_by": "Data Protection Office",
        "reason": f"erasure request {rid}",
        **extra,
    }


def daemon_up(ws: Path, d: DaemonProc) -> None:
    def up():
        assert d.alive(), d.tail()
        try:
            with reader(ws) as r:
                hb = r.heartbeat()
            return hb is not None and hb.pid == d.pid and hb.alive()
        except FileNotFoundError:
            return False

    wait_for(up, 60, "daemon heartbeat", d)


def done_or_failed(ws: Path, job_id: str):
    return job_state(ws, job_id) in ("done", "failed", "rejected", "cancelled")


# ------------------------------------------------------------------------------------------
def test_drop_manifest_gives_new_version_report_and_lineage(ws, daemons):
    import torch
    from piu_engine.common.fsio import sha256_file

    d = daemons(ws)
    daemon_up(ws, d)
    drop(ws, "first.json", manifest("req-1", "person-0003", "person-0007"))
    wait_for(lambda: done_or_failed(ws, "req-1"), what="req-1 to finish", daemon=d)
    j1 = job(ws, "req-1")
    assert j1.state == "done", j1.error
    assert (j1.parent_version, j1.version, j1.attempts) == (0, 1, 1)

    out = ws / "jobs/done/req-1"
    report = json.loads((out / "report.json").read_text())
    text = (out / "report.txt").read_text()
    assert report["requested_by"] == "Data Protection Office" and report["reason"] == "erasure request req-1"
    assert [i["identity"] for i in report["identities"]] == ["person-0003", "person-0007"]
    assert all(i["images"] == 6 and i["status"] == "forgotten" for i in report["identities"])
    assert report["parent_model"]["version"] == 0 and report["new_model"]["version"] == 1
    for side in ("parent_model", "new_model"):
        assert {"test_acc", "mia", "forgetting_score", "nomus", "n_forget"} <= set(report[side]["metrics"])
    assert report["gate"]["passed"] and report["samples"]
    assert "not gated: too few samples" in text  # two people, twelve photos: the MIA is reported, not gated
    assert "Requested by : Data Protection Office" in text and "SHA-256" in text
    model = ws / ".piu/models" / report["new_model"]["path"]
    assert sha256_file(model) == report["new_model"]["sha256"] == j1.sha256
    assert isinstance(torch.load(model, weights_only=True), dict)
    for f in (out / "report.json", out / "report.txt", out / "manifest.json", ws / ".piu/state/state.db"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o640, f
    assert stat.S_IMODE(out.stat().st_mode) == 0o750

    # a later job forgets from the current version; identities accumulate along the lineage
    drop(ws, "second.json", manifest("req-2", "person-0003", "person-0010"))
    drop(ws, "again.json", manifest("req-1", "person-0001"))  # a request_id seen before
    wait_for(lambda: done_or_failed(ws, "req-2"), what="req-2 to finish", daemon=d)
    with reader(ws) as r:
        j2 = r.job("req-2")
        assert j2.state == "done" and (j2.parent_version, j2.version) == (1, 2)
        status = {i["identity"]: (i["status"], i["version"]) for i in r.job_identities("req-2")}
        assert status == {"person-0003": ("already_forgotten", 1), "person-0010": ("forgotten", 2)}
        cur = r.current_version("synthetic")
        assert cur.version == 2 and cur.parent == 1
        assert set(cur.forgotten) == {"person-0003", "person-0007", "person-0010"}
    wait_for(lambda: (ws / "jobs/rejected/again.json.error.txt").exists(), what="duplicate rejected", daemon=d)
    assert "never run twice" in (ws / "jobs/rejected/again.json.error.txt").read_text()

    st = json.loads(piu(ws, "status", "--json").stdout)
    by_id = {j["id"]: j for j in st["jobs"]}
    assert by_id["req-1"]["state"] == "done" and by_id["req-1"]["version"] == 1
    assert set(by_id["req-1"]["metrics"]) >= {"test_acc", "forget_acc", "mia", "forgetting_score", "nomus", "seconds"}
    assert by_id["req-1"]["identities"] == ["person-0003", "person-0007"] and by_id["req-1"]["method"] == "piu-fr"
    assert any(j["state"] == "rejected" for j in st["jobs"]) and st["daemon"]["alive"]
    forgotten = json.loads(piu(ws, "identities", "--forgotten", "--json").stdout)
    assert {i["identity"] for i in forgotten} == {"person-0003", "person-0007", "person-0010"}
    shown = piu(ws, "jobs", "show", "req-2")
    assert shown.returncode == 0 and "already forgotten in version 1" in shown.stdout

    d.signal(signal.SIGTERM)
    assert d.wait() == 0


def test_bad_manifests_are_rejected_with_reasons_and_daemon_keeps_serving(ws, daemons, tmp_path):
    set_service(ws, polling=True)  # the network-filesystem mode: watchdog's PollingObserver
    d = daemons(ws)
    daemon_up(ws, d)
    good_elsewhere = tmp_path / "outside.json"
    good_elsewhere.write_text(json.dumps(manifest("via-link", "person-0001")))
    corpus = {
        "notjson.json": ("{oops", "not valid JSON"),
        "types.json": ({"dataset": 3, "identities": "person-0001"}, "is not of type"),
        "missing.json": ({"dataset": "synthetic"}, "missing field: 'identities'"),
        "unknown-ids.json": (manifest("u", "person-0001", "nobody-1", "nobody-2"), "'nobody-1', 'nobody-2'"),
        "too-many.json": (manifest("t", *[f"person-{i:04d}" for i in range(7)]), "max_forget_share"),
        "method.json": (manifest("m", "person-0001", method="magic"), "unknown method 'magic'"),
        "param.json": (dict(manifest("p", "person-0001"), params={"warp_factor": 9}), "warp_factor"),
        "big.json": (dict(manifest("b", "person-0001"), reason="x" * 70000), "larger than service.max_manifest_bytes"),
        "smuggle.json": (manifest("s", "../../etc/passwd"), "looks like a path"),
        "rid.json": (manifest("a/b", "person-0001"), "request_id"),
        "extra.json": (dict(manifest("e", "person-0001"), callback="http://x"), "unknown field"),
    }
    for name, (doc, _) in corpus.items():
        drop(ws, name, doc)
    (ws / "jobs/link.json").symlink_to(good_elsewhere)
    (ws / "jobs/dir.json").mkdir()
    expected = {n: e for n, (_, e) in corpus.items()}
    expected.update({"link.json": "symbolic link", "dir.json": "not a regular file"})

    def all_rejected():
        return all((ws / "jobs/rejected" / f"{n}.error.txt").exists() for n in expected)

    wait_for(all_rejected, 60, "every bad manifest rejected", d)
    for name, text in expected.items():
        error = (ws / "jobs/rejected" / f"{name}.error.txt").read_text()
        assert text in error, (name, error)
        assert (ws / "jobs/rejected" / name).exists() or (ws / "jobs/rejected" / name).is_symlink()
    assert good_elsewhere.exists()  # the symlink was moved, its target untouched
    assert d.alive()

    drop(ws, "good.json", manifest("good-after-bad", "person-0004"))
    wait_for(lambda: done_or_failed(ws, "good-after-bad"), what="the good manifest", daemon=d)
    assert job_state(ws, "good-after-bad") == "done"
    with reader(ws) as r:
        assert r.counts()["rejected"] == len(expected)
    assert not list((ws / "jobs").glob("*.json")) and not list((ws / "jobs/.claimed").iterdir())


# A job the test signals mid-run: the stop lands at a step boundary, so it needs steps left
# (training is the only phase that checks for a stop), and early stopping off.
LONG_PARAMS = {"epochs": 100, "early_stop": False}  # about 3 s of steps on 2 CPU cores


def _running_with_progress(ws: Path, job_id: str) -> bool:
    j = job(ws, job_id)
    return j is not None and j.state == "running" and j.phase not in (None, "starting")


def test_kill_9_mid_job_then_restart_runs_it_exactly_once(ws, daemons):
    d1 = daemons(ws)
    daemon_up(ws, d1)
    drop(ws, "slow.json", dict(manifest("slow", "person-0002"), params=LONG_PARAMS))
    wait_for(lambda: _running_with_progress(ws, "slow"), what="the job to be running", daemon=d1)
    d1.signal(signal.SIGKILL)
    d1.wait()
    wait_for(lambda: not d1.session_pids(), 120, "the worker to die with its daemon")
    j = job(ws, "slow")
    assert j.state == "running" and j.attempts == 1  # as the crash left it

    d2 = daemons(ws)
    wait_for(lambda: done_or_failed(ws, "slow"), what="the job to finish after restart", daemon=d2)
    j = job(ws, "slow")
    assert j.state == "done" and j.attempts == 2 and j.version == 1
    with reader(ws) as r:
        versions = r.versions("synthetic")
        assert [v.version for v in versions] == [0, 1] and versions[1].job_ids == ["slow"]
        assert r.current_version("synthetic").version == 1
    assert sorted(p.name for p in (ws / ".piu/models/synthetic").iterdir()) == ["0", "1"]
    assert not list((ws / ".piu/models/.staging").iterdir())
    wait_for((ws / "jobs/done/slow/report.json").exists, what="the report, written right after the commit", daemon=d2)
    assert [p.name for p in (ws / "jobs/done").iterdir()] == ["slow"]
    assert json.loads((ws / "jobs/done/slow/report.json").read_text())["attempts"] == 2
    d2.signal(signal.SIGTERM)
    assert d2.wait() == 0


def test_sigterm_mid_job_exits_cleanly_and_resumes_and_cancel_retry(ws, daemons):
    d1 = daemons(ws)
    daemon_up(ws, d1)
    drop(ws, "long.json", dict(manifest("long", "person-0002"), params=LONG_PARAMS, priority=5))
    drop(ws, "other.json", manifest("other", "person-0005"))  # other params: not coalesced, waits its turn
    wait_for(lambda: _running_with_progress(ws, "long"), what="the job to be running", daemon=d1)
    d1.signal(signal.SIGTERM)
    assert d1.wait() == 0, d1.tail()
    wait_for(lambda: not d1.session_pids(), 120, "the worker and resource tracker to exit")
    j = job(ws, "long")
    assert j.state == "queued" and j.attempts == 0  # resumable, and the stop is not charged as an attempt
    assert job_state(ws, "other") == "queued"
    with reader(ws) as rd:
        assert rd.current_version("synthetic").version == 0
    assert not list((ws / ".piu/models/.staging").iterdir())

    d2 = daemons(ws)
    wait_for(lambda: job_state(ws, "long") == "running", what="the job to resume", daemon=d2)
    r = piu(ws, "cancel", "other")  # through the running daemon's control channel
    assert r.returncode == 0 and "other" in r.stdout, r.stderr
    wait_for(lambda: job_state(ws, "other") == "cancelled", what="the cancel", daemon=d2)
    wait_for((ws / "jobs/cancelled/other/report.txt").exists, what="the cancelled job's report", daemon=d2)
    wait_for(lambda: done_or_failed(ws, "long"), what="the resumed job", daemon=d2)
    assert job_state(ws, "long") == "done" and job(ws, "long").attempts == 1
    d2.signal(signal.SIGTERM)
    assert d2.wait() == 0
    r = piu(ws, "retry", "other")  # no daemon now: applied directly under the workspace lock
    assert r.returncode == 0 and "queued" in r.stdout, r.stderr
    assert job_state(ws, "other") == "queued"
    with reader(ws) as rd:
        assert rd.job("other").attempts == 0
        assert [(v.version, v.parent) for v in rd.versions("synthetic")] == [(0, None), (1, 0)]


def _worker_pid(d: DaemonProc) -> int | None:
    """The daemon's worker process: its child running the unlearning (not the resource tracker)."""
    for pid in d.session_pids():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == d.pid and b"resource_tracker" not in cmd:
            return pid
    return None


def test_a_worker_crash_is_logged_and_retry_keeps_the_jobs_history(ws, daemons):
    d = daemons(ws)
    daemon_up(ws, d)
    drop(ws, "crash.json", dict(manifest("crash", "person-0002"), params={"epochs": 400, "early_stop": False}))
    wait_for(lambda: _running_with_progress(ws, "crash"), what="the job to be running", daemon=d)
    first_batch = job(ws, "crash").batch_id
    pid = _worker_pid(d)
    assert pid is not None, d.session_pids()
    os.kill(pid, signal.SIGKILL)  # the worker dies (OOM killer, a driver fault): the daemon stays up
    wait_for(lambda: "crashed" in d.tail(), what="the daemon to log the crash", daemon=d)
    assert re.search(rf"run {first_batch} crashed \(.*\): crash is queued again \(attempt 1 of \d+ used\)", d.tail())
    wait_for(
        lambda: (j := job(ws, "crash")).state == "running" and j.batch_id != first_batch,
        what="the job to run again",
        daemon=d,
    )
    r = piu(ws, "cancel", "crash")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: job_state(ws, "crash") == "cancelled", what="the cancel", daemon=d)
    r = piu(ws, "retry", "crash")
    assert r.returncode == 0, r.stderr
    r = piu(ws, "jobs", "show", "crash", "--json")
    history = json.loads(r.stdout)["history"]
    assert [h["kind"] for h in history[:3]] == ["run", "run", "retry"], history
    assert history[0]["state"] == "crashed" and "exited with code -9" in history[0]["error"]
    assert history[1]["state"] == "cancelled" and history[2]["state"] == "cancelled"
    shown = piu(ws, "jobs", "show", "crash").stdout
    assert "history:" in shown and "retried (it was cancelled" in shown and ": crashed: worker process" in shown
    d.signal(signal.SIGTERM)
    assert d.wait() == 0, d.tail()


def test_whole_manifests_are_taken_without_waiting_to_settle(ws, daemons):
    """Renamed-in and closed-and-parsable files skip settle_seconds; a half-written one waits."""
    set_service(ws, settle_seconds=60.0, rescan_seconds=60.0)
    d = daemons(ws)
    daemon_up(ws, d)
    drop(ws, "renamed.json", manifest("renamed-in", "person-0001"))
    wait_for(lambda: job(ws, "renamed-in"), 45, "the renamed-in manifest", d)

    half = ws / "jobs" / "in-place.json"
    text = json.dumps(manifest("in-place", "person-0002"))
    with open(half, "w") as fh:  # a writer that appends in two opens
        fh.write(text[:20])
    time.sleep(2.0)
    assert half.exists() and job(ws, "in-place") is None  # unparsable and unsettled: left alone
    with open(half, "a") as fh:
        fh.write(text[20:])
    wait_for(lambda: job(ws, "in-place"), 45, "the completed in-place manifest", d)
    assert not list((ws / "jobs/rejected").glob("*.json"))
    wait_for(lambda: done_or_failed(ws, "in-place") and done_or_failed(ws, "renamed-in"), what="both jobs", daemon=d)
    assert job_state(ws, "in-place") == job_state(ws, "renamed-in") == "done"


def test_200_manifests_at_once_are_all_accounted_for_and_coalesced(ws, daemons, tmp_path):
    set_service(ws, batch_size=100)
    d = daemons(ws)
    daemon_up(ws, d)
    stage = ws / "jobs" / ".stage"
    stage.mkdir()
    pool = [f"person-{i:04d}" for i in range(6)]
    for n in range(200):
        (stage / f"m{n:03d}.json").write_text(json.dumps(manifest(f"bulk-{n:03d}", pool[n % len(pool)])))
    for f in sorted(stage.iterdir()):
        os.replace(f, ws / "jobs" / f.name)
    stage.rmdir()

    def finished():
        try:
            with reader(ws) as r:
                c = r.counts()
        except FileNotFoundError:
            return False
        return (
            c["done"] + c["failed"] + c["rejected"] + c["cancelled"] >= 200
            and len(list((ws / "jobs/done").iterdir())) >= 200
        )  # reports follow the DB commit

    wait_for(finished, 240, "200 jobs and their reports", d)
    with reader(ws) as r:
        jobs = [j for j in r.jobs() if j.id.startswith("bulk-")]
        assert len(jobs) == 200 and all(j.state == "done" for j in jobs)
        runs = r.conn.execute("SELECT job_ids FROM batches WHERE state = 'done'").fetchall()
    sizes = [len(json.loads(row[0])) for row in runs]
    assert 1 <= len(sizes) <= 3 and max(sizes) == 100, sizes  # coalesced up to batch_size, not 200 runs
    assert len(list((ws / "jobs/done").iterdir())) == 200
    assert all((ws / "jobs/done" / f"bulk-{n:03d}" / "report.json").exists() for n in range(200))
    assert not list((ws / "jobs").glob("*.json")) and not list((ws / "jobs/accepted").iterdir())
    d.signal(signal.SIGTERM)
    assert d.wait() == 0


def test_batch_exit_codes_and_single_instance(ws, daemons, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(manifest("batch-bad", "nobody")))
    r = piu(ws, "validate", str(bad))
    assert r.returncode == 1 and "'nobody'" in r.stdout
    assert piu(ws, "submit", str(bad)).returncode == 1 and not list((ws / "jobs").glob("*.json"))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(manifest("batch-ok", "person-0006")))
    assert piu(ws, "validate", str(good)).returncode == 0
    r = piu(ws, "submit", str(good))
    assert r.returncode == 0 and (ws / "jobs/batch-ok.json").exists(), r.stderr
    r = piu(ws, "batch")
    assert r.returncode == 0, r.stderr  # everything pending succeeded
    assert job_state(ws, "batch-ok") == "done"
    assert (ws / "jobs/done/batch-ok/report.txt").exists()
    drop(ws, "bad.json", "{nope")
    r = piu(ws, "batch")
    assert r.returncode == 1, r.stderr  # something did not succeed
    assert (ws / "jobs/rejected/bad.json.error.txt").exists()
    r = piu(ws, "batch")
    assert r.returncode == 0, r.stderr  # nothing pending
    r = piu(ws, "retry", "batch-ok")  # only failed or cancelled jobs
    assert r.returncode == 2 and "only failed or cancelled jobs can be retried" in r.stderr

    d1 = daemons(ws)
    daemon_up(ws, d1)
    d2 = daemons(ws)
    assert d2.wait() == 75
    assert f"already served by `piu daemon` (pid {d1.pid}" in d2.tail()
    r = piu(ws, "batch")
    assert r.returncode == 75 and "already served" in r.stderr
    assert d1.alive()
    d1.signal(signal.SIGTERM)
    assert d1.wait() == 0
