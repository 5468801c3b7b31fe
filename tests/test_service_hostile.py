"""Hostile input and a hostile environment, against the real daemon process.

Whatever lands in ``jobs/`` or its subfolders, and whatever the file system or
the database does, the daemon stays up (never crash-loops), loses nothing,
never installs a broken model, and says what happened (log, job error,
heartbeat ``problem``). Most tests need no trained model: a workspace from
``piu init --preset tiny`` suffices, and a valid request then fails with "no
model", which is fine here. The tests that need a model share one trained
workspace per module.

The disk-full tests mount a small tmpfs (root only; skipped elsewhere); the
"commit failed after staging" case is simulated in process.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_service_daemon import (
    LONG_PARAMS,
    DaemonProc,
    daemon_up,
    done_or_failed,
    drop,
    init_tiny,
    job,
    job_state,
    manifest,
    piu,
    reader,
    set_service,
    wait_for,
)

pytestmark = pytest.mark.timeout(1200)  # generous: these tests must also pass on a loaded machine

EX_CONFIG = 78


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture
def tiny(tmp_path) -> Path:
    """A workspace without a model: valid requests end 'failed' (no model)."""
    return init_tiny(tmp_path / "ws")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    ws = init_tiny(tmp_path_factory.mktemp("base") / "ws")
    r = piu(ws, "train")
    assert r.returncode == 0, r.stderr
    shutil.rmtree(ws / ".piu" / "cache" / "models", ignore_errors=True)  # the service does not need it
    return ws


@pytest.fixture
def trained_ws(trained, tmp_path) -> Path:
    dst = tmp_path / "tws"
    shutil.copytree(trained, dst, symlinks=True)
    return dst


@pytest.fixture
def daemons(tmp_path):
    started: list[DaemonProc] = []

    def start(ws: Path, command: str = "daemon") -> DaemonProc:
        d = DaemonProc(ws, command, log_dir=tmp_path / "logs")  # outside: a full disk would swallow it
        started.append(d)
        return d

    yield start
    for d in started:
        d.cleanup()


def log_has(d: DaemonProc, text: str) -> bool:
    d.log.flush()
    return text in d.log_path.read_text(errors="replace")


def stop(d: DaemonProc) -> None:
    d.signal(signal.SIGTERM)
    assert d.wait(120) == 0, d.tail()


def heartbeat(ws: Path):
    try:
        with reader(ws) as r:
            return r.heartbeat()
    except (FileNotFoundError, sqlite3.Error):
        return None


def beating(ws: Path, d: DaemonProc, seconds: float = 3.0) -> None:
    """The daemon is alive and its heartbeat moves on (it is not hung)."""
    first = wait_for(lambda: heartbeat(ws), 60, "a heartbeat", d)
    wait_for(
        lambda: (hb := heartbeat(ws)) is not None and hb.updated_at > first.updated_at + seconds / 2,
        60 + seconds,
        "the heartbeat to move on",
        d,
    )
    assert d.alive(), d.tail()


def rejected_error(ws: Path, name: str) -> str:
    return (ws / "jobs/rejected" / f"{name}.error.txt").read_text("utf-8")


def all_jobs(ws: Path):
    with reader(ws) as r:
        return r.jobs()


# ------------------------------------------------------------------------------ 1, 2: names
def test_long_and_odd_file_names_are_claimed_and_recorded_whole(tiny, daemons):
    ws = tiny
    d = daemons(ws)
    daemon_up(ws, d)
    long_ok = "a" * 235 + ".json"  # 240 bytes: with the claim prefix over 255, "File name too long"
    long_bad = "b" * 240 + ".json"
    drop(ws, long_ok, manifest("long-name", "person-0001"))
    drop(ws, long_bad, "{not json")
    jobs = os.fsencode(ws / "jobs")
    odd = {
        b"\xff\xfe.json": manifest("not-utf8", "person-0002"),
        b"bad\xff.json": b"{nope",
        "new\nline\u202e.json".encode(): manifest("newline", "person-0003"),
    }
    for raw, doc in odd.items():
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        tmp = os.path.join(jobs, b".odd.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.rename(tmp, os.path.join(jobs, raw))

    wait_for(lambda: all(done_or_failed(ws, r) for r in ("long-name", "not-utf8", "newline")), 120, "the odd names", d)
    wait_for(lambda: len([j for j in all_jobs(ws) if j.state == "rejected"]) == 2, 120, "two rejections", d)
    assert d.alive(), d.tail()
    assert job(ws, "long-name").file_name == long_ok  # the original name, whole
    assert job(ws, "not-utf8").file_name == "\\xff\\xfe.json"  # printable: bytes that are not UTF-8 escaped
    assert job(ws, "newline").file_name == "new\\x0aline\\u202e.json"
    rejected = {j.file_name: j for j in all_jobs(ws) if j.state == "rejected"}
    assert set(rejected) == {long_bad, "bad\\xff.json"}
    texts = [p.read_text("utf-8") for p in (ws / "jobs/rejected").glob("*.error.txt")]
    assert any(t.startswith(long_bad + ": rejected") for t in texts)
    assert any(t.startswith("bad\\xff.json: rejected") and "not valid JSON" in t for t in texts)
    for p in (ws / "jobs/rejected").iterdir():  # claimed under short safe names
        assert len(os.fsencode(p.name)) <= 220 and p.name == p.name.encode("ascii", "replace").decode()
    assert not os.listdir(ws / "jobs/.claimed") and not [n for n in os.listdir(jobs) if n.endswith(b".json")]
    st = piu(ws, "status", "--json", "--all")
    assert st.returncode == 0, st.stderr
    assert {"long-name", "not-utf8", "newline"} <= {j["id"] for j in json.loads(st.stdout)["jobs"]}
    shown = piu(ws, "jobs", "show", "not-utf8")
    assert shown.returncode == 0, shown.stderr
    report = wait_for(
        lambda: (p := ws / "jobs/failed/newline/report.json").exists() and json.loads(p.read_text()),
        60,
        "the report",
        d,
    )
    assert report["manifest_file"] == "new\\x0aline\\u202e.json"
    stop(d)
    d2 = daemons(ws)  # and no crash loop: it starts again
    daemon_up(ws, d2)
    stop(d2)


# ------------------------------------------------------------------------------ 3, 11, 12, 17: manifest text
def test_unstorable_or_disguising_text_is_rejected_naming_the_field(tiny, daemons):
    ws = tiny
    d = daemons(ws)
    daemon_up(ws, d)
    base = json.dumps(manifest("X", "person-0001"))
    corpus = {
        # 3: a lone surrogate cannot be written as UTF-8 (SQLite, reports)
        "surrogate.json": (
            base.replace('"X"', '"sur-1"').replace("erasure", "era\\ud800sure"),
            "reason: not encodable as UTF-8",
        ),
        "surrogate-id.json": (base.replace('"X"', '"\\ud800"'), "request_id: not encodable as UTF-8"),
        # 11: "abc\n" matched ^...$ (Python's $ matches before a final newline)
        "newline-id.json": (base.replace('"X"', '"abc\\n"'), "request_id: 'abc\\n' must be"),
        # 12: C1 controls and bidi overrides would disguise report.txt and `piu jobs show`
        "c1.json": (
            json.dumps(dict(manifest("c1", "person-0001"), requested_by="DPO\u0085")),
            "requested_by: contains control characters (U+0085)",
        ),
        "bidi.json": (
            json.dumps(dict(manifest("bidi", "person-0001"), reason="ok \u202egnp.exe")),
            "reason: contains bidirectional override characters (U+202E)",
        ),
        "isolate.json": (json.dumps(manifest("iso", "person-0001\u2066")), "identities[0]: contains bidirectional"),
        "c1-id.json": (json.dumps(manifest("id\u009b", "person-0001")), "request_id: contains control characters"),
        # 17: manifests are strict JSON
        "nan.json": (
            base.replace('"X"', '"nan-1"').replace('"epochs": 1', '"epochs": NaN'),
            "NaN is not a JSON number",
        ),
        "inf.json": (base.replace('"X"', '"inf-1"').replace('"epochs": 1', '"epochs": 1e999'), "out of range"),
    }
    for name, (doc, _) in corpus.items():
        drop(ws, name, doc)

    def all_rejected():
        return all((ws / "jobs/rejected" / f"{n}.error.txt").exists() for n in corpus)

    wait_for(all_rejected, 120, "every bad manifest rejected", d)
    for name, (_, expected) in corpus.items():
        error = rejected_error(ws, name)
        assert expected in error, (name, error)
        assert error.isascii() or all(c.isprintable() or c == "\n" for c in error), (name, error)
    assert d.alive(), d.tail()
    with reader(ws) as r:
        rows = [j for j in r.jobs() if j.state == "rejected"]
        assert len(rows) == len(corpus)
        for j in rows:
            for text in (j.error or "", j.request_id or "", j.file_name or ""):
                text.encode("utf-8")  # stored as text
                assert all(c.isprintable() or c == "\n" for c in text), text
    drop(ws, "good.json", manifest("good-after", "person-0004"))
    wait_for(lambda: done_or_failed(ws, "good-after"), 120, "a good manifest after the bad ones", d)
    stop(d)


def test_failed_job_folder_manifest_is_strict_json(tiny):
    """17: a stored manifest holding NaN (from before manifests were strict) is written as strict JSON."""
    from piu_engine.core.config import load_config
    from piu_engine.service.manifest import manifest_from_dict
    from piu_engine.service.operations import Operations
    from piu_engine.service.registry import Registry
    from piu_engine.service.state import StateStore
    from piu_engine.service.workspace import Workspace

    w = Workspace.from_config(load_config(tiny / "config.toml")).ensure()
    store = StateStore(w.db_path)
    m = manifest_from_dict(
        {"request_id": "nan-old", "dataset": "synthetic", "identities": ["person-0001"], "params": {"lr": float("nan")}}
    )
    store.record_accepted("c-nan", "nan.json", "00", m, {"person-0001": ("requested", 6, None)})
    store.set_job("nan-old", manifest='{"request_id": "nan-old", "params": {"lr": NaN}}')  # as older versions stored it
    assert store.job("nan-old").manifest["params"]["lr"] != store.job("nan-old").manifest["params"]["lr"]  # NaN
    ops = Operations(w, store, Registry(w.models_dir).ensure(), w.spool())
    ops.end_job("nan-old", "failed", "no model")
    store.close()

    def strict(text: str):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))

    out = tiny / "jobs/failed/nan-old"
    assert strict((out / "manifest.json").read_text())["params"] == {"lr": None}
    strict((out / "report.json").read_text())


# ------------------------------------------------------------------------------ 4: rejected-N
def test_rejected_ids_are_reserved_and_never_collide(tiny, daemons):
    from piu_engine.core.config import load_config
    from piu_engine.service.manifest import manifest_from_dict
    from piu_engine.service.state import StateStore
    from piu_engine.service.workspace import Workspace

    ws = tiny
    w = Workspace.from_config(load_config(ws / "config.toml")).ensure()
    store = StateStore(w.db_path)  # an older database: a request took the id "rejected-3"
    old = manifest_from_dict({"request_id": "rejected-3", "dataset": "synthetic", "identities": ["person-0001"]})
    store.record_accepted("c-old", "old.json", "00", old, {"person-0001": ("requested", 6, None)})
    store.close()
    d = daemons(ws)
    daemon_up(ws, d)
    drop(ws, "reserved.json", manifest("rejected-2", "person-0002"))
    wait_for(lambda: (ws / "jobs/rejected/reserved.json.error.txt").exists(), 120, "the reserved id", d)
    assert "reserves for the records of rejected files" in rejected_error(ws, "reserved.json")
    for n in range(3):
        drop(ws, f"bad{n}.json", "{nope")
        wait_for(lambda n=n: (ws / f"jobs/rejected/bad{n}.json.error.txt").exists(), 120, f"bad{n}", d)
    assert d.alive(), d.tail()
    ids = sorted(j.id for j in all_jobs(ws) if j.state == "rejected")
    assert len(ids) == len(set(ids)) == 4 and "rejected-3-1" in ids, ids
    assert job(ws, "rejected-3").state != "rejected"  # the old request keeps its id
    stop(d)


# ------------------------------------------------------------------------------ 5: a damaged model
def test_flipped_bit_in_the_current_model_fails_jobs_and_daemon_serves_on(trained_ws, daemons):
    ws = trained_ws
    model = ws / ".piu/models/synthetic/0/model.pt"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x10
    model.write_bytes(bytes(data))
    d = daemons(ws)
    daemon_up(ws, d)
    drop(ws, "one.json", manifest("flip-1", "person-0001"))
    wait_for(lambda: done_or_failed(ws, "flip-1"), 300, "flip-1 to end", d)
    j = job(ws, "flip-1")
    assert j.state == "failed" and "checksum mismatch of synthetic version 0" in j.error, j.error
    assert d.alive(), d.tail()
    drop(ws, "two.json", manifest("flip-2", "person-0002"))  # and it keeps serving
    wait_for(lambda: done_or_failed(ws, "flip-2"), 300, "flip-2 to end", d)
    assert job_state(ws, "flip-2") == "failed" and d.alive()
    with reader(ws) as r:
        assert [v.version for v in r.versions("synthetic")] == [0] and r.current_version("synthetic").version == 0
    assert "checksum mismatch" in (ws / "jobs/failed/flip-1/report.txt").read_text()
    stop(d)


# ------------------------------------------------------------------------------ 6: control folder
def test_fifo_folder_and_link_in_the_control_folder_never_hang_the_daemon(tiny, daemons):
    ws = tiny
    ctl = ws / "jobs/.control"
    d = daemons(ws)
    daemon_up(ws, d)
    os.mkfifo(ctl / "fifo.req.json")
    (ctl / "dir.req.json").mkdir()
    (ctl / "full.req.json").mkdir()
    (ctl / "full.req.json" / "keep.txt").write_text("someone's file")
    (ctl / "link.req.json").symlink_to("/etc/passwd")
    (ctl / "dir.res.json").mkdir()
    beating(ws, d, 4.0)  # the FIFO would block a plain open(): no heartbeat, SIGTERM ignored
    wait_for(
        lambda: (
            not any(
                os.path.lexists(ctl / n) for n in ("fifo.req.json", "dir.req.json", "link.req.json", "full.req.json")
            )
        ),
        60,
        "junk removed",
        d,
    )
    aside = [p for p in ctl.iterdir() if p.name.startswith(".full.req.json.not-a-file")]
    assert aside and (aside[0] / "keep.txt").read_text() == "someone's file"  # moved aside, not deleted
    assert Path("/etc/passwd").exists()
    assert log_has(d, "FIFO, not a request file") and log_has(d, "folder, not a request file")
    drop(ws, "c.json", manifest("to-cancel", "person-0001", priority=-1))
    wait_for(lambda: job(ws, "to-cancel"), 120, "the job", d)
    r = piu(ws, "retry", "nope")  # the control channel still answers
    assert "no job 'nope'" in r.stderr + r.stdout, (r.stdout, r.stderr)
    stop(d)


# ------------------------------------------------------------------------------ 7: database locked
HOLD_LOCK = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
c.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
c.execute("ROLLBACK")
"""


def test_database_locked_past_the_busy_timeout_is_waited_out(tiny, daemons):
    ws = tiny
    d = daemons(ws)
    daemon_up(ws, d)
    drop(ws, "warm.json", manifest("warm-up", "person-0002"))  # the dataset is loaded once, before the lock
    wait_for(lambda: done_or_failed(ws, "warm-up"), 120, "a first job", d)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(ws / ".piu/state/state.db"), "15"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        drop(ws, "during.json", manifest("during-lock", "person-0001"))
        wait_for(lambda: log_has(d, "is locked by another process"), 60, "the lock to be logged", d)
        assert d.alive(), d.tail()
        assert holder.wait(120) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
    wait_for(lambda: done_or_failed(ws, "during-lock"), 120, "the manifest dropped during the lock", d)
    assert d.alive(), d.tail()
    beating(ws, d, 2.0)
    stop(d)


# ------------------------------------------------------------------------------ 8, 9: the database lost
def _fake_versions(ws: Path) -> Path:
    v0 = ws / ".piu/models/synthetic/0"
    v0.mkdir(parents=True)
    (v0 / "model.pt").write_bytes(b"the original model")
    return v0


@pytest.mark.parametrize("how", ["missing", "empty", "not-a-database", "corrupt"])
def test_lost_database_at_start_up_refuses_and_keeps_the_models(tiny, daemons, how):
    ws = tiny
    v0 = _fake_versions(ws)
    db = ws / ".piu/state/state.db"
    if how == "empty":
        db.write_bytes(b"")
    elif how == "not-a-database":
        db.write_bytes(b"garbage " * 100)
    elif how == "corrupt":
        db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8176)
    d = daemons(ws)
    assert d.wait(120) == EX_CONFIG, d.tail()
    out = d.tail()
    assert str(db) in out and "Restore" in out, out
    if how != "corrupt":
        assert str(ws / ".piu/models") in out and "move" in out, out
    assert (v0 / "model.pt").read_bytes() == b"the original model"
    d2 = daemons(ws)  # every restart says the same and deletes nothing
    assert d2.wait(120) == EX_CONFIG
    assert (v0 / "model.pt").read_bytes() == b"the original model"
    unit = (Path(__file__).resolve().parents[1] / "deploy/piu-daemon.service").read_text()
    assert "RestartPreventExitStatus=78" in unit


def test_unknown_version_folder_is_kept_aside_not_deleted(tiny, daemons):
    ws = tiny
    d = daemons(ws)
    daemon_up(ws, d)  # a database that knows no versions
    stop(d)
    v5 = ws / ".piu/models/synthetic/5"
    v5.mkdir(parents=True)
    (v5 / "model.pt").write_bytes(b"whose model?")
    staged = ws / ".piu/models/.staging/dead.pt"
    staged.write_bytes(b"partial")
    d2 = daemons(ws)
    daemon_up(ws, d2)
    wait_for(lambda: log_has(d2, "is not in the state database"), 60, "start-up recovery", d2)
    assert not staged.exists()  # staged files are partial by definition
    kept = list((ws / ".piu/models/.orphans").glob("synthetic-5-*/model.pt"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"whose model?" and not v5.exists()
    stop(d2)


def test_database_deleted_while_running_stops_with_78_and_restart_refuses(trained_ws, daemons):
    ws = trained_ws
    db = ws / ".piu/state/state.db"
    model = ws / ".piu/models/synthetic/0/model.pt"
    before = model.read_bytes()
    d = daemons(ws)
    daemon_up(ws, d)
    db.unlink()
    assert d.wait(120) == EX_CONFIG, d.tail()
    assert "was deleted while the service was using it" in d.tail()
    drop(ws, "after.json", manifest("after-loss", "person-0001"))
    d2 = daemons(ws)
    assert d2.wait(120) == EX_CONFIG
    assert "is missing" in d2.tail() and str(ws / ".piu/models") in d2.tail()
    assert model.read_bytes() == before and (ws / "jobs/after.json").exists()  # nothing deleted, nothing taken


# ------------------------------------------------------------------------------ 13, 14: links and clocks
def test_hard_link_is_refused_without_touching_the_shared_file(tiny, daemons, tmp_path):
    ws = tiny
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(manifest("via-hard-link", "person-0001")))
    os.chmod(outside, 0o644)
    d = daemons(ws)
    daemon_up(ws, d)
    os.link(outside, ws / "jobs/linked.json")
    wait_for(lambda: (ws / "jobs/rejected/linked.json.error.txt").exists(), 120, "the hard link refused", d)
    assert "hard link" in rejected_error(ws, "linked.json")
    st = os.stat(outside)
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_nlink == 1  # mode untouched, only the link removed
    assert json.loads(outside.read_text())["request_id"] == "via-hard-link"
    assert not (ws / "jobs/rejected/linked.json").exists() and not (ws / "jobs/linked.json").exists()
    assert job(ws, "via-hard-link") is None
    with reader(ws) as r:
        assert any("hard link" in (j.error or "") for j in r.jobs() if j.state == "rejected")
    assert d.alive()
    stop(d)


def test_manifest_with_a_future_mtime_is_taken_once_unchanged(tiny, daemons):
    ws = tiny
    set_service(ws, settle_seconds=1.0)
    drop(ws, "future.json", manifest("from-the-future", "person-0001"))
    later = time.time() + 3600  # the writer's clock is an hour ahead
    os.utime(ws / "jobs/future.json", (later, later))
    d = daemons(ws)
    wait_for(lambda: job(ws, "from-the-future"), 120, "the future-dated manifest", d)
    stop(d)


# ------------------------------------------------------------------------------ 15: jobs/ replaced
def test_spool_deleted_and_recreated_is_watched_again(tiny, daemons):
    ws = tiny
    d = daemons(ws)
    daemon_up(ws, d)
    drop(ws, "first.json", manifest("before-rm", "person-0001"))
    wait_for(lambda: done_or_failed(ws, "before-rm"), 120, "the first job", d)
    shutil.rmtree(ws / "jobs")
    (ws / "jobs").mkdir()
    wait_for(
        lambda: (ws / "jobs/.claimed").is_dir() and (ws / "jobs/rejected").is_dir(), 60, "the spool folders again", d
    )
    drop(ws, "second.json", manifest("after-rm", "person-0002"))
    wait_for(lambda: done_or_failed(ws, "after-rm"), 120, "a manifest in the new jobs/", d)
    assert log_has(d, "making its folders again")
    wait_for(lambda: (ws / "jobs/failed/before-rm/report.json").exists(), 60, "the lost report rewritten", d)
    shutil.rmtree(ws / "jobs")  # and gone altogether
    wait_for(lambda: (ws / "jobs/.control").is_dir(), 60, "jobs/ made again", d)
    drop(ws, "third.json", manifest("after-gone", "person-0003"))
    wait_for(lambda: done_or_failed(ws, "after-gone"), 120, "a manifest after jobs/ was gone", d)
    d.log.flush()
    assert d.log_path.read_text().count("making its folders again") >= 2
    stop(d)


# ------------------------------------------------------------------------------ 16: reports after kill -9
def test_report_files_are_completed_and_temp_files_removed_at_start_up(tiny, daemons):
    ws = tiny
    d = daemons(ws)
    daemon_up(ws, d)
    drop(ws, "r.json", manifest("rep", "person-0001"))
    wait_for(lambda: done_or_failed(ws, "rep"), 120, "the job", d)
    out = ws / "jobs/failed/rep"
    wait_for(lambda: (out / "report.json").exists(), 60, "its report", d)
    d.signal(signal.SIGKILL)
    d.wait()
    (out / "report.txt").unlink()  # as a kill -9 right after report.json leaves it
    (out / "manifest.json").unlink()
    (out / ".report.txt.k3x9q1.tmp").write_text("half")
    (ws / "jobs/rejected/.x.json.error.txt.abcd.tmp").write_text("half")
    d2 = daemons(ws)
    daemon_up(ws, d2)
    wait_for(lambda: (out / "report.txt").exists() and (out / "manifest.json").exists(), 60, "the report again", d2)
    assert json.loads((out / "manifest.json").read_text())["request_id"] == "rep"
    assert not list(out.glob(".*.tmp")) and not list((ws / "jobs/rejected").glob(".*.tmp"))
    stop(d2)


# ------------------------------------------------------------------------------ 10: disk full
class Tmpfs:
    def __init__(self, path: Path, size_mb: int):
        self.path = path
        path.mkdir(parents=True)
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        self.filler = path / "filler"

    def fill(self) -> None:
        """Fill the file system to the last byte."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 1 << 12, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        assert shutil.disk_usage(self.path).free < (1 << 20)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        for _ in range(20):
            if subprocess.run(["umount", str(self.path)], capture_output=True).returncode == 0:
                return
            time.sleep(0.5)
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    fs = Tmpfs(tmp_path / "tmpfs", 240)
    yield fs
    fs.unmount()


@pytest.fixture
def small_ws(trained, tmpfs, daemons) -> Path:
    """A trained workspace on the small tmpfs (the daemons are killed before it is unmounted)."""
    ws = tmpfs.path / "ws"
    shutil.copytree(trained, ws, symlinks=True)
    return ws


def test_disk_full_before_start_up_waits_and_then_serves(small_ws, tmpfs, daemons):
    ws = small_ws
    tmp = ws / "jobs/.pending.tmp"
    tmp.write_text(json.dumps(manifest("full-at-start", "person-0001")))
    tmpfs.fill()
    os.rename(tmp, ws / "jobs/full.json")
    d = daemons(ws)
    wait_for(
        lambda: log_has(d, "disk full") or log_has(d, "waiting for disk space"),
        120,
        "the daemon to say the disk is full",
        d,
    )
    time.sleep(3)
    assert d.alive(), d.tail()
    try:
        state = job_state(ws, "full-at-start")
    except sqlite3.Error:  # a reader may not be able to open the database on a full disk either
        state = None
    assert state in (None, "queued")  # never failed for want of space
    tmpfs.free()
    wait_for(lambda: done_or_failed(ws, "full-at-start"), 600, "the job once space is back", d)
    j = job(ws, "full-at-start")
    assert j.state == "done" and j.attempts == 1, (j.state, j.error)
    stop(d)


def test_disk_full_during_a_run_requeues_and_resumes(small_ws, tmpfs, daemons):
    ws = small_ws
    d = daemons(ws)
    daemon_up(ws, d)
    drop(ws, "slow.json", dict(manifest("full-mid-run", "person-0002"), params=LONG_PARAMS))
    wait_for(
        lambda: (
            (j := job(ws, "full-mid-run")) is not None and j.state == "running" and j.phase not in (None, "starting")
        ),
        300,
        "the run to be under way",
        d,
    )
    tmpfs.fill()

    def waiting():
        j = job(ws, "full-mid-run")
        hb = heartbeat(ws)
        return j is not None and j.state == "queued" and ("disk" in (j.error or "") or "disk" in hb.problem)

    wait_for(waiting, 300, "the job to wait for space", d)
    assert d.alive(), d.tail()
    assert log_has(d, "disk full")
    time.sleep(3)
    assert job_state(ws, "full-mid-run") == "queued" and d.alive()  # neither failed nor left running
    with reader(ws) as r:
        assert [v.version for v in r.versions("synthetic")] == [0]
    tmpfs.free()
    wait_for(lambda: done_or_failed(ws, "full-mid-run"), 600, "the job once space is back", d)
    j = job(ws, "full-mid-run")
    assert j.state == "done" and j.attempts == 1 and j.version == 1, (j.state, j.attempts, j.error)
    wait_for(lambda: heartbeat(ws).problem == "", 60, "the heartbeat to say all is well again", d)
    stop(d)


def test_disk_full_when_recording_a_finished_run_redoes_it_later(tiny, caplog, monkeypatch):
    """Simulated in process: the model was staged and moved in, then the commit found the disk full."""
    import logging

    import torch
    from piu_engine.core.checkpoint import save_checkpoint
    from piu_engine.core.config import load_config
    from piu_engine.service import daemon as daemon_mod
    from piu_engine.service.registry import Registry
    from piu_engine.service.state import StateStore
    from piu_engine.service.workspace import Workspace

    from test_service_flow import ScriptedExecutor, finished

    w = Workspace.from_config(load_config(tiny / "config.toml")).ensure()
    store = StateStore(w.db_path)
    reg = Registry(w.models_dir).ensure()
    staged = reg.incoming / "v0.pt"
    reg.register(store, "synthetic", staged, save_checkpoint({"w": torch.zeros(3)}, staged), "import")
    store.close()
    w.spool().submit("a.json", json.dumps(manifest("commit-full", "person-0001")).encode())

    real = StateStore.add_version
    calls = {"n": 0}

    def add_version(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(StateStore, "add_version", add_version)
    ex = ScriptedExecutor([finished(mia=0.5, acc=0.7), finished(mia=0.5, acc=0.7)])
    caplog.set_level(logging.INFO, logger="piu")
    code = daemon_mod.Daemon(w.cfg, mode="batch", executor=ex, lock_wait=0).run()
    assert code == 0 and len(ex.tasks) == 2, caplog.text
    store = StateStore(w.db_path)
    j = store.job("commit-full")
    assert j.state == "done" and j.version == 1 and j.attempts == 1, (j.state, j.error)
    assert [v.version for v in store.versions("synthetic")] == [0, 1]
    store.close()
    assert "waiting for disk space" in caplog.text and "disk full" in caplog.text
    assert not (w.models_dir / ".orphans").exists()  # the uncommitted file was this run's own: removed
    assert not list((w.models_dir / ".staging").iterdir())
