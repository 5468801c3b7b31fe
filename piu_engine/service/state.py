"""Service state in SQLite (WAL): queue, jobs, progress events, identities,
model versions, and the daemon's heartbeat.

Only the process holding the workspace lock (the daemon, ``piu batch``, or a
CLI command while no daemon runs) writes, through :class:`StateStore`.
Everyone else, the TUI included, reads through :class:`StateReader`, which
opens the file read-only (``mode=ro``) and returns typed rows.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from piu_engine.common import jsonout
from piu_engine.service.fsutil import FILE_MODE, private_dirs
from piu_engine.service.jobstate import JobState

log = logging.getLogger("piu.state")

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (      -- every manifest file the daemon took from jobs/
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    claimed_name TEXT NOT NULL UNIQUE,
    file_name TEXT NOT NULL,
    sha256 TEXT,
    received_at REAL NOT NULL,
    outcome TEXT NOT NULL,                 -- accepted | rejected
    job_id TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,                   -- the request_id (rejected files: rejected-N)
    request_id TEXT,
    state TEXT NOT NULL,
    dataset TEXT, method TEXT, params TEXT, compare TEXT, identities TEXT,
    requested_by TEXT, reason TEXT, priority INTEGER NOT NULL DEFAULT 0,
    manifest TEXT, file_name TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, started_at REAL, finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    batch_id TEXT, parent_version INTEGER, version INTEGER,
    phase TEXT, progress REAL,
    metrics TEXT, parent_metrics TEXT, result TEXT,
    seconds REAL, sha256 TEXT, error TEXT, report_dir TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, priority, created_at);
CREATE TABLE IF NOT EXISTS batches (       -- one unlearning run (coalesced requests)
    id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL, parent_version INTEGER NOT NULL,
    method TEXT NOT NULL, params TEXT NOT NULL, compare TEXT NOT NULL,
    job_ids TEXT NOT NULL, state TEXT NOT NULL, device TEXT,
    started_at REAL NOT NULL, finished_at REAL, error TEXT
);
CREATE TABLE IF NOT EXISTS retries (       -- what a job was when `piu retry` queued it again
    job_id TEXT NOT NULL, at REAL NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, error TEXT, batch_id TEXT, finished_at REAL
);
CREATE INDEX IF NOT EXISTS retries_job ON retries(job_id, at);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL, ts REAL NOT NULL,
    phase TEXT, epoch INTEGER, epochs INTEGER, step INTEGER, steps INTEGER,
    loss REAL, fraction REAL, message TEXT, metrics TEXT
);
CREATE INDEX IF NOT EXISTS events_batch ON events(batch_id, id);
CREATE TABLE IF NOT EXISTS job_identities (
    job_id TEXT NOT NULL, identity TEXT NOT NULL, images INTEGER,
    status TEXT NOT NULL,                  -- requested | forgotten | already_forgotten
    version INTEGER,
    PRIMARY KEY (job_id, identity)
);
CREATE TABLE IF NOT EXISTS identities (    -- training identities of each dataset
    dataset TEXT NOT NULL, identity TEXT NOT NULL, images INTEGER,
    state TEXT NOT NULL,                   -- present | forgotten
    job_id TEXT, version INTEGER, forgotten_at REAL,
    PRIMARY KEY (dataset, identity)
);
CREATE TABLE IF NOT EXISTS versions (
    dataset TEXT NOT NULL, version INTEGER NOT NULL, parent INTEGER,
    created_at REAL NOT NULL, sha256 TEXT NOT NULL, path TEXT NOT NULL,
    source TEXT NOT NULL,                  -- train | import | forget
    method TEXT, job_ids TEXT NOT NULL DEFAULT '[]',
    forgotten TEXT NOT NULL DEFAULT '[]',  -- cumulative along the lineage
    metrics TEXT NOT NULL DEFAULT '{}',
    pruned INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (dataset, version)
);
CREATE TABLE IF NOT EXISTS current (dataset TEXT PRIMARY KEY, version INTEGER NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER, host TEXT, mode TEXT, device TEXT, state TEXT,
    started_at REAL, updated_at REAL, queued INTEGER, running INTEGER,
    problem TEXT                           -- what keeps the daemon from serving normally (disk full, ...)
);
"""
# Columns added after SCHEMA_VERSION 1 shipped: (table, column, declaration).
ADDED_COLUMNS = (("heartbeat", "problem", "TEXT"),)

SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL = 5, 6, 13


def is_locked(exc: BaseException) -> bool:
    """The database is locked by another connection (past the busy timeout)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
    text = str(exc)
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


def is_disk_full(exc: BaseException) -> bool:
    """No space left for a file or the database (ENOSPC, EDQUOT, SQLITE_FULL)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == SQLITE_FULL:
            return True
        return "database or disk is full" in str(exc)
    return False


def printable(text: str, limit: int | None = None) -> str:
    """``text`` as it may reach the database, a log line or a report: every
    character that is not printable (control, C1, bidi override, a byte that was
    not UTF-8, a lone surrogate) is written as an escape, ``\\xNN`` or ``\\uNNNN``."""
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
            continue
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # os.fsdecode's surrogateescape: one byte that is not UTF-8
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    s = "".join(out)
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 3)] + "..."
    return s


def safe_text(value: str | None, limit: int | None = None) -> str | None:
    """:func:`printable` line by line (multi-line messages keep their lines); None stays None."""
    if value is None:
        return None
    text = "\n".join(printable(line) for line in str(value).split("\n"))
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 3)] + "..."
    return text


def _loads(text: str | None, default: Any = None) -> Any:
    if text is None or text == "":
        return default
    return json.loads(text)


def _dumps(value: Any) -> str:
    return jsonout.dumps(value, sort_keys=True)


# ---------------------------------------------------------------- typed rows
@dataclass
class JobRow:
    id: str
    request_id: str | None
    state: JobState
    dataset: str | None
    method: str | None
    params: dict[str, Any]
    compare: list[str]
    identities: list[str]
    requested_by: str
    reason: str
    priority: int
    file_name: str | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    batch_id: str | None
    parent_version: int | None
    version: int | None
    phase: str | None
    progress: float | None
    metrics: dict[str, Any]
    parent_metrics: dict[str, Any]
    result: dict[str, Any]
    seconds: float | None
    sha256: str | None
    error: str | None
    report_dir: str | None
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> JobRow:
        return cls(
            id=r["id"],
            request_id=r["request_id"],
            state=JobState(r["state"]),
            dataset=r["dataset"],
            method=r["method"],
            params=_loads(r["params"], {}),
            compare=_loads(r["compare"], []),
            identities=_loads(r["identities"], []),
            requested_by=r["requested_by"] or "",
            reason=r["reason"] or "",
            priority=r["priority"],
            file_name=r["file_name"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
            started_at=r["started_at"],
            finished_at=r["finished_at"],
            attempts=r["attempts"],
            batch_id=r["batch_id"],
            parent_version=r["parent_version"],
            version=r["version"],
            phase=r["phase"],
            progress=r["progress"],
            metrics=_loads(r["metrics"], {}),
            parent_metrics=_loads(r["parent_metrics"], {}),
            result=_loads(r["result"], {}),
            seconds=r["seconds"],
            sha256=r["sha256"],
            error=r["error"],
            report_dir=r["report_dir"],
            manifest=_loads(r["manifest"], {}),
        )

    STATUS_METRICS = ("test_acc", "forget_acc", "mia", "forgetting_score", "nomus")

    @property
    def gate(self) -> str | None:
        """The acceptance gate's decision (passed | failed | not gated), None before a run ended."""
        g = (self.result or {}).get("gate")
        if not g:
            return None
        return g.get("decision") or ("passed" if g.get("passed") else "failed")

    def summary(self) -> dict[str, Any]:
        """The job as ``piu status --json`` lists it."""
        metrics = {k: self.metrics.get(k) for k in self.STATUS_METRICS}
        metrics["seconds"] = self.seconds
        return {
            "id": self.id,
            "request_id": self.request_id,
            "state": self.state,
            "dataset": self.dataset,
            "identities": self.identities,
            "method": self.method,
            "priority": self.priority,
            "attempts": self.attempts,
            "progress": {"phase": self.phase, "fraction": self.progress},
            "metrics": metrics,
            "gate": self.gate,
            "parent_version": self.parent_version,
            "version": self.version,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "error": self.error,
            "report_dir": self.report_dir,
        }


@dataclass
class EventRow:
    id: int
    batch_id: str
    ts: float
    phase: str
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float | None
    fraction: float
    message: str
    metrics: dict[str, Any]


@dataclass(frozen=True)
class AttemptRow:
    """One entry of a job's history: a run it was part of, or a retry that queued it again."""

    kind: str  # run | retry
    at: float  # when the run started, or when the retry was asked
    state: str  # run: running, done, failed, crashed, interrupted, cancelled; retry: the job's state before it
    error: str | None
    batch_id: str | None
    device: str = ""
    finished_at: float | None = None
    attempts: int | None = None  # retry: the attempts charged before it


@dataclass
class VersionRow:
    dataset: str
    version: int
    parent: int | None
    created_at: float
    sha256: str
    path: str
    source: str
    method: str | None
    job_ids: list[str]
    forgotten: list[str]
    metrics: dict[str, Any]
    pruned: bool
    current: bool = False

    @classmethod
    def from_row(cls, r: sqlite3.Row, current: int | None = None) -> VersionRow:
        return cls(
            dataset=r["dataset"],
            version=r["version"],
            parent=r["parent"],
            created_at=r["created_at"],
            sha256=r["sha256"],
            path=r["path"],
            source=r["source"],
            method=r["method"],
            job_ids=_loads(r["job_ids"], []),
            forgotten=_loads(r["forgotten"], []),
            metrics=_loads(r["metrics"], {}),
            pruned=bool(r["pruned"]),
            current=r["version"] == current,
        )


@dataclass
class IdentityRow:
    dataset: str
    identity: str
    images: int | None
    state: str  # present | requested | forgotten
    job_id: str | None
    version: int | None
    forgotten_at: float | None


@dataclass
class Heartbeat:
    pid: int
    host: str
    mode: str
    device: str
    state: str
    started_at: float
    updated_at: float
    queued: int
    running: int
    problem: str = ""  # e.g. "disk full: ... (retrying)"; "" while all is well

    def alive(self, now: float | None = None, stale_after: float = 10.0) -> bool:
        now = time.time() if now is None else now
        return self.state == JobState.RUNNING and now - self.updated_at < stale_after


# ---------------------------------------------------------------- reading
class _Queries:
    conn: sqlite3.Connection

    def jobs(self, states: tuple[str, ...] | None = None, limit: int | None = None) -> list[JobRow]:
        sql = "SELECT * FROM jobs"
        args: list[Any] = []
        if states:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            args += list(states)
        sql += " ORDER BY created_at, id"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return [JobRow.from_row(r) for r in self.conn.execute(sql, args)]

    def job(self, job_id: str) -> JobRow | None:
        r = self.conn.execute(
            "SELECT * FROM jobs WHERE id = ? OR (request_id = ? AND state != 'rejected')", (job_id, job_id)
        ).fetchone()
        return JobRow.from_row(r) if r else None

    def history(self, job_id: str) -> list[AttemptRow]:
        """Every run the job was part of and every retry of it, oldest first (survives `piu retry`)."""
        runs = [
            AttemptRow("run", r["started_at"], r["state"], r["error"], r["id"], r["device"] or "", r["finished_at"])
            for r in self.conn.execute(
                "SELECT b.* FROM batches b, json_each(b.job_ids) j WHERE j.value = ? ORDER BY b.started_at, b.id",
                (job_id,),
            )
        ]
        retries = [
            AttemptRow("retry", r["at"], r["state"], r["error"], r["batch_id"], "", r["finished_at"], r["attempts"])
            for r in self.conn.execute("SELECT * FROM retries WHERE job_id = ? ORDER BY at", (job_id,))
        ]
        return sorted(runs + retries, key=lambda a: (a.at, a.kind == "retry"))

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in JobState}
        for state, n in self.conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
            out[state] = n
        return out

    def events(self, batch_id: str, since_id: int = 0, limit: int = 1000) -> list[EventRow]:
        rows = self.conn.execute(
            "SELECT * FROM events WHERE batch_id = ? AND id > ? ORDER BY id LIMIT ?", (batch_id, since_id, limit)
        )
        return [
            EventRow(
                id=r["id"],
                batch_id=r["batch_id"],
                ts=r["ts"],
                phase=r["phase"] or "",
                epoch=r["epoch"] or 0,
                epochs=r["epochs"] or 0,
                step=r["step"] or 0,
                steps=r["steps"] or 0,
                loss=r["loss"],
                fraction=r["fraction"] or 0.0,
                message=r["message"] or "",
                metrics=_loads(r["metrics"], {}),
            )
            for r in rows
        ]

    def job_identities(self, job_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT identity, images, status, version FROM job_identities WHERE job_id = ? ORDER BY identity", (job_id,)
        )
        return [dict(r) for r in rows]

    def forgotten_in(self, dataset: str, identity: str) -> int | None:
        """The model version in which ``identity`` was forgotten, if it was."""
        r = self.conn.execute(
            "SELECT version FROM identities WHERE dataset = ? AND identity = ? AND state = 'forgotten'",
            (dataset, identity),
        ).fetchone()
        return r[0] if r else None

    def current_version(self, dataset: str) -> VersionRow | None:
        r = self.conn.execute(
            "SELECT v.* FROM versions v JOIN current c ON c.dataset = v.dataset AND c.version = v.version "
            "WHERE c.dataset = ?",
            (dataset,),
        ).fetchone()
        return VersionRow.from_row(r, r["version"]) if r else None

    def version(self, dataset: str, version: int) -> VersionRow | None:
        r = self.conn.execute("SELECT * FROM versions WHERE dataset = ? AND version = ?", (dataset, version)).fetchone()
        if not r:
            return None
        cur = self.conn.execute("SELECT version FROM current WHERE dataset = ?", (dataset,)).fetchone()
        return VersionRow.from_row(r, cur[0] if cur else None)

    def versions(self, dataset: str | None = None) -> list[VersionRow]:
        cur = dict(self.conn.execute("SELECT dataset, version FROM current").fetchall())
        sql, args = "SELECT * FROM versions", []
        if dataset:
            sql, args = sql + " WHERE dataset = ?", [dataset]
        rows = self.conn.execute(sql + " ORDER BY dataset, version", args)
        return [VersionRow.from_row(r, cur.get(r["dataset"])) for r in rows]

    def datasets(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT dataset FROM current ORDER BY dataset")]

    def identities(self, dataset: str, forgotten_only: bool = False) -> list[IdentityRow]:
        requested = {
            r[0]
            for r in self.conn.execute(
                "SELECT ji.identity FROM job_identities ji JOIN jobs j ON j.id = ji.job_id "
                "WHERE j.dataset = ? AND j.state IN ('queued', 'running')",
                (dataset,),
            )
        }
        sql = "SELECT * FROM identities WHERE dataset = ?"
        if forgotten_only:
            sql += " AND state = 'forgotten'"
        out = []
        for r in self.conn.execute(sql + " ORDER BY identity", (dataset,)):
            state = r["state"]
            if state == "present" and r["identity"] in requested:
                state = "requested"
            out.append(
                IdentityRow(
                    dataset=r["dataset"],
                    identity=r["identity"],
                    images=r["images"],
                    state=state,
                    job_id=r["job_id"],
                    version=r["version"],
                    forgotten_at=r["forgotten_at"],
                )
            )
        return out

    def heartbeat(self) -> Heartbeat | None:
        r = self.conn.execute("SELECT * FROM heartbeat WHERE id = 1").fetchone()
        if not r:
            return None
        return Heartbeat(
            pid=r["pid"],
            host=r["host"],
            mode=r["mode"],
            device=r["device"] or "",
            state=r["state"],
            started_at=r["started_at"],
            updated_at=r["updated_at"],
            queued=r["queued"] or 0,
            running=r["running"] or 0,
            problem=(r["problem"] or "") if "problem" in r.keys() else "",
        )


class StateMissing(FileNotFoundError):
    pass


class StateReader(_Queries):
    """Read-only view of the state database (safe while the daemon writes)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.exists():
            raise StateMissing(f"no service state at {self.path} yet (run `piu daemon` or `piu batch` once)")
        try:
            self.conn = self._open_checked("mode=ro")
        except sqlite3.OperationalError:
            # A WAL database whose writer closed cleanly has no -wal/-shm files, and
            # a reader who may not create them (a group member: the folder is 0750)
            # cannot open it read-only. With no -wal there is nothing but the main
            # file to read, so read it as immutable; the next open (the TUI opens
            # once a second) is a normal one again once a writer has started.
            if self._wal_path().exists():
                raise
            self.conn = self._open_checked("mode=ro&immutable=1")

    def _open_checked(self, params: str) -> sqlite3.Connection:
        """A connection that can read the tables; :class:`StateMissing` while a daemon
        starting up has the file but no tables yet. Closed again on any failure."""
        conn = self._connect(params)
        try:
            conn.execute("SELECT 1 FROM meta LIMIT 1")
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc):
                raise StateMissing(f"the service state at {self.path} is still being created") from exc
            raise
        return conn

    def _connect(self, params: str) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.path}?{params}", uri=True, timeout=10.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    def _wal_path(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> StateReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---------------------------------------------------------------- writing
class StateStore(_Queries):
    """The single writer. Every method that changes several rows does so in one transaction.

    ``busy_timeout``: how long one statement waits for another writer's lock.
    With ``wait_locked`` (the daemon) a transaction that still finds the
    database locked is retried until it gets the lock, with a log line every
    minute, unless ``interrupted()`` says to give up (a stop was asked for);
    without it (CLI commands) the lock error is raised to the caller.
    """

    def __init__(
        self,
        path: Path,
        busy_timeout: float = 30.0,
        wait_locked: bool = False,
        interrupted: Callable[[], bool] | None = None,
    ):
        self.path = Path(path)
        self.wait_locked = wait_locked
        self.interrupted = interrupted
        private_dirs(self.path.parent)
        old_umask = os.umask(0o027)
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=busy_timeout, isolation_level=None)
        finally:
            os.umask(old_umask)
        try:
            st = os.stat(self.path)
            self.file_id: tuple[int, int] | None = (st.st_dev, st.st_ino)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self.conn.execute("PRAGMA foreign_keys = ON")
            with self.tx():
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        self.conn.execute(stmt)
                for table, column, decl in ADDED_COLUMNS:
                    have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
                    if column not in have:
                        self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
                self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            for suffix in ("", "-wal", "-shm"):
                p = Path(f"{self.path}{suffix}")
                if p.exists():
                    os.chmod(p, FILE_MODE)
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        self.conn.close()

    def replaced(self) -> str | None:
        """Why the path no longer names the database this store writes (deleted,
        or another file put in its place), or None while it does."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return f"{self.path} was deleted while the service was using it"
        except OSError as exc:
            return f"{self.path} cannot be checked: {exc.strerror}"
        if self.file_id is not None and (st.st_dev, st.st_ino) != self.file_id:
            return f"{self.path} was replaced by another file while the service was using it"
        return None

    def _begin(self) -> None:
        started = time.monotonic()
        warned_at: float | None = None
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                if warned_at is not None:
                    log.warning("state database %s: got the lock after %.0f s", self.path, time.monotonic() - started)
                return
            except sqlite3.OperationalError as exc:
                if not (self.wait_locked and is_locked(exc)) or (self.interrupted is not None and self.interrupted()):
                    raise
                now = time.monotonic()
                if warned_at is None or now - warned_at >= 60.0:
                    log.warning(
                        "state database %s is locked by another process (%s) for %.0f s; nothing is lost, "
                        "retrying until it is free (find the holder with `fuser %s`)",
                        self.path,
                        exc,
                        now - started,
                        self.path,
                    )
                    warned_at = now
                time.sleep(0.2)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        if self.conn.in_transaction:  # nested: join the outer transaction
            yield self.conn
            return
        self._begin()
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (disk full); never leave a transaction open,
            # or the next write would silently join it and never be committed.
            if self.conn.in_transaction:
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("state database %s: rollback failed", self.path)
            raise

    # -- requests and jobs ---------------------------------------------
    def request_by_claim(self, claimed_name: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM requests WHERE claimed_name = ?", (safe_text(claimed_name),)).fetchone()

    def record_rejected(
        self, claimed_name: str, file_name: str, sha256: str | None, problems: list[str], request_id: str | None = None
    ) -> str:
        """Record a rejected file as job ``rejected-N`` (an id no request can take:
        ``rejected-`` is reserved; an older job of that id gets ``rejected-N-K``)."""
        now = time.time()
        claimed_name = safe_text(claimed_name) or ""
        file_name = safe_text(file_name) or ""
        error = safe_text("\n".join(problems))
        request_id = safe_text(request_id, 200)
        with self.tx() as c:
            cur = c.execute(
                "INSERT INTO requests (claimed_name, file_name, sha256, received_at, outcome, error) "
                "VALUES (?, ?, ?, ?, 'rejected', ?)",
                (claimed_name, file_name, sha256, now, error),
            )
            base = job_id = f"rejected-{cur.lastrowid}"
            k = 0
            while c.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None:
                k += 1
                job_id = f"{base}-{k}"
            c.execute("UPDATE requests SET job_id = ? WHERE id = ?", (job_id, cur.lastrowid))
            c.execute(
                "INSERT INTO jobs (id, request_id, state, file_name, created_at, updated_at, finished_at, error, "
                "identities, params, compare) VALUES (?, ?, 'rejected', ?, ?, ?, ?, ?, '[]', '{}', '[]')",
                (job_id, request_id, file_name, now, now, now, error),
            )
        return job_id

    def record_accepted(
        self,
        claimed_name: str,
        file_name: str,
        sha256: str,
        manifest: Any,
        identity_status: dict[str, tuple[str, int | None, int | None]],
    ) -> str:
        """Insert a queued job; ``identity_status``: identity -> (status, images, version)."""
        now = time.time()
        m = manifest
        with self.tx() as c:
            c.execute(
                "INSERT INTO requests (claimed_name, file_name, sha256, received_at, outcome, job_id) "
                "VALUES (?, ?, ?, ?, 'accepted', ?)",
                (safe_text(claimed_name), safe_text(file_name), sha256, now, m.request_id),
            )
            c.execute(
                "INSERT INTO jobs (id, request_id, state, dataset, method, params, compare, identities, requested_by, "
                "reason, priority, manifest, file_name, created_at, updated_at) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    m.request_id,
                    m.request_id,
                    m.dataset,
                    m.method,
                    _dumps(m.params),
                    _dumps(list(m.compare)),
                    _dumps(list(m.identities)),
                    m.requested_by,
                    m.reason,
                    m.priority,
                    m.to_json(),
                    safe_text(file_name),
                    now,
                    now,
                ),
            )
            for ident, (status, images, version) in identity_status.items():
                c.execute(
                    "INSERT INTO job_identities VALUES (?, ?, ?, ?, ?)", (m.request_id, ident, images, status, version)
                )
        return m.request_id

    def job_exists(self, job_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None

    def set_job(self, job_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        for k in ("metrics", "parent_metrics", "result", "params", "compare", "identities"):
            if k in fields and not isinstance(fields[k], str) and fields[k] is not None:
                fields[k] = _dumps(fields[k])
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self.tx() as c:
            c.execute(f"UPDATE jobs SET {cols} WHERE id = ?", [*fields.values(), job_id])

    def requeue_for_retry(self, job: JobRow) -> None:
        """Queue a failed or cancelled job again, in one transaction, keeping what it was in ``retries``."""
        now = time.time()
        with self.tx() as c:
            c.execute(
                "INSERT INTO retries (job_id, at, state, attempts, error, batch_id, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job.id, now, str(job.state), job.attempts, job.error, job.batch_id, job.finished_at),
            )
            c.execute(
                "UPDATE jobs SET state = 'queued', attempts = 0, error = NULL, finished_at = NULL, version = NULL, "
                "metrics = NULL, parent_metrics = NULL, result = NULL, seconds = NULL, sha256 = NULL, phase = NULL, "
                "progress = NULL, batch_id = NULL, updated_at = ? WHERE id = ?",
                (now, job.id),
            )
            c.execute(
                "UPDATE job_identities SET status = 'requested', version = NULL "
                "WHERE job_id = ? AND status != 'forgotten'",
                (job.id,),
            )

    def queued_jobs(self) -> list[JobRow]:
        rows = self.conn.execute("SELECT * FROM jobs WHERE state = 'queued' ORDER BY priority DESC, created_at, id")
        return [JobRow.from_row(r) for r in rows]

    def set_identity_status(self, job_id: str, identity: str, status: str, version: int | None) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE job_identities SET status = ?, version = ? WHERE job_id = ? AND identity = ?",
                (status, version, job_id, identity),
            )

    # -- batches and events ---------------------------------------------
    def start_batch(self, batch_id: str, jobs: list[JobRow], parent_version: int, device: str) -> None:
        now = time.time()
        j0 = jobs[0]
        with self.tx() as c:
            c.execute(
                "INSERT INTO batches (id, dataset, parent_version, method, params, compare, job_ids, state, device, "
                "started_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                (
                    batch_id,
                    j0.dataset,
                    parent_version,
                    j0.method,
                    _dumps(j0.params),
                    _dumps(j0.compare),
                    _dumps([j.id for j in jobs]),
                    device,
                    now,
                ),
            )
            for j in jobs:
                c.execute(
                    "UPDATE jobs SET state = 'running', attempts = attempts + 1, batch_id = ?, parent_version = ?, "
                    "started_at = ?, updated_at = ?, phase = 'starting', progress = 0, error = NULL WHERE id = ?",
                    (batch_id, parent_version, now, now, j.id),
                )

    def end_batch(self, batch_id: str, state: str, error: str | None = None) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE batches SET state = ?, finished_at = ?, error = ? WHERE id = ?",
                (state, time.time(), error, batch_id),
            )

    def set_batch_device(self, batch_id: str, device: str) -> None:
        with self.tx() as c:
            c.execute("UPDATE batches SET device = ? WHERE id = ?", (device, batch_id))

    def end_running_batches(self, reason: str) -> None:
        """Runs the service was in the middle of when it stopped end as crashed."""
        for row in self.conn.execute("SELECT id FROM batches WHERE state = 'running'").fetchall():
            self.end_batch(row[0], "crashed", reason)

    def running_batches(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM batches WHERE state = 'running'")]

    def batch(self, batch_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()

    def add_event(self, batch_id: str, ev: dict[str, Any], fraction: float) -> None:
        now = time.time()
        with self.tx() as c:
            c.execute(
                "INSERT INTO events (batch_id, ts, phase, epoch, epochs, step, steps, loss, fraction, message, "
                "metrics) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    batch_id,
                    now,
                    ev.get("phase"),
                    ev.get("epoch"),
                    ev.get("epochs"),
                    ev.get("step"),
                    ev.get("steps"),
                    ev.get("loss"),
                    fraction,
                    ev.get("message", ""),
                    _dumps(ev.get("metrics") or {}),
                ),
            )
            c.execute(
                "UPDATE jobs SET phase = ?, progress = ?, updated_at = ? WHERE batch_id = ? AND state = 'running'",
                (ev.get("phase"), fraction, now, batch_id),
            )

    # -- identities and versions -----------------------------------------
    def ensure_identities(self, dataset: str, images: dict[str, int]) -> None:
        have = self.conn.execute("SELECT COUNT(*) FROM identities WHERE dataset = ?", (dataset,)).fetchone()[0]
        if have >= len(images):
            return
        with self.tx() as c:
            c.executemany(
                "INSERT OR IGNORE INTO identities (dataset, identity, images, state) VALUES (?, ?, ?, 'present')",
                [(dataset, i, n) for i, n in images.items()],
            )

    def next_version(self, dataset: str) -> int:
        r = self.conn.execute("SELECT MAX(version) FROM versions WHERE dataset = ?", (dataset,)).fetchone()
        return 0 if r[0] is None else r[0] + 1

    def add_version(
        self,
        dataset: str,
        version: int,
        parent: int | None,
        sha256: str,
        path: str,
        source: str,
        method: str | None,
        job_ids: list[str],
        forgotten: list[str],
        metrics: dict[str, Any],
        make_current: bool = True,
    ) -> None:
        now = time.time()
        with self.tx() as c:
            c.execute(
                "INSERT INTO versions (dataset, version, parent, created_at, sha256, path, source, method, job_ids, "
                "forgotten, metrics) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    dataset,
                    version,
                    parent,
                    now,
                    sha256,
                    path,
                    source,
                    method,
                    _dumps(job_ids),
                    _dumps(forgotten),
                    _dumps(metrics),
                ),
            )
            if make_current:
                c.execute(
                    "INSERT INTO current (dataset, version, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(dataset) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
                    (dataset, version, now),
                )

    def mark_forgotten(self, dataset: str, identities: dict[str, str], version: int) -> None:
        """``identities``: identity -> job that forgot it."""
        now = time.time()
        with self.tx() as c:
            for ident, job_id in identities.items():
                c.execute(
                    "INSERT INTO identities (dataset, identity, state, job_id, version, forgotten_at) "
                    "VALUES (?, ?, 'forgotten', ?, ?, ?) ON CONFLICT(dataset, identity) DO UPDATE SET "
                    "state = 'forgotten', job_id = excluded.job_id, version = excluded.version, "
                    "forgotten_at = excluded.forgotten_at",
                    (dataset, ident, job_id, version, now),
                )

    def set_pruned(self, dataset: str, version: int) -> None:
        with self.tx() as c:
            c.execute("UPDATE versions SET pruned = 1 WHERE dataset = ? AND version = ?", (dataset, version))

    # -- heartbeat --------------------------------------------------------
    def heartbeat_update(self, mode: str, device: str, state: str, started_at: float, problem: str = "") -> None:
        counts = self.counts()
        with self.tx() as c:
            c.execute(
                "INSERT INTO heartbeat (id, pid, host, mode, device, state, started_at, updated_at, queued, running, "
                "problem) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET pid = excluded.pid, "
                "host = excluded.host, mode = excluded.mode, device = excluded.device, state = excluded.state, "
                "started_at = excluded.started_at, updated_at = excluded.updated_at, queued = excluded.queued, "
                "running = excluded.running, problem = excluded.problem",
                (
                    os.getpid(),
                    socket.gethostname(),
                    mode,
                    device,
                    state,
                    started_at,
                    time.time(),
                    counts["queued"],
                    counts["running"],
                    safe_text(problem, 2000) or None,
                ),
            )
