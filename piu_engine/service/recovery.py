"""Start-up recovery: reconcile the database, the model folders and ``jobs/``
after a crash, kill -9 or power loss, before any new work is taken.

Nothing is deleted that cannot be proven partial: staged files in the
registry's staging folder are (a run writes there only); a version folder the
database does not know is moved to ``.orphans/`` and reported, never deleted.
A database that is missing or empty while the models folder holds versions
is not a fresh start but a lost database: :func:`state_lost` says so, and the
daemon refuses to start (exit status 78) rather than build a new registry
beside the old models.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from piu_engine.service.intake import Intake
from piu_engine.service.jobstate import REPORTED_STATES, TERMINAL_STATES, JobState
from piu_engine.service.manifest import valid_request_id
from piu_engine.service.registry import Registry
from piu_engine.service.runtime import Runtime
from piu_engine.service.spool import REPORT_FILES
from piu_engine.service.workspace import Workspace

log = logging.getLogger("piu.daemon")


def _not_service_state(db: Path) -> str | None:
    """Why ``db`` (not empty) holds no service state, or None when it does or that cannot
    be told now (locked, disk full: the normal open reports those)."""
    try:
        with open(db, "rb") as fh:
            header = fh.read(16)
    except OSError:
        return None
    if header != b"SQLite format 3\x00":
        return "is not an SQLite database"
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error:
        return None
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('jobs', 'versions')")
        found = len(rows.fetchall())
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return None if found == 2 else "holds no service state (no jobs or versions tables)"


def state_lost(ws: Workspace) -> str | None:
    """Why start-up must stop: the state database is missing or empty while the
    models folder holds model versions; None when all is as it should be."""
    db = ws.db_path
    folders = Registry(ws.models_dir).version_folders()
    if not folders:
        return None  # a fresh workspace: the database is created now
    try:
        size = os.stat(db).st_size
        what = "is empty (0 bytes)" if size == 0 else None
    except FileNotFoundError:
        what = "is missing"
    if what is None:
        what = _not_service_state(db)
    if what is None:
        return None
    shown = ", ".join(str(f) for f in folders[:5]) + (f" and {len(folders) - 5} more" if len(folders) > 5 else "")
    return (
        f"the state database {db} {what}, but {ws.models_dir} holds model versions ({shown}). Starting now "
        f"would lose which model is current, its lineage and who was forgotten, so the service does not start. "
        f"Restore {db} from a backup (stop everything, copy the backup to {db}, start again), or, to start "
        f"afresh, move {ws.models_dir} away (e.g. `mv {ws.models_dir} {ws.models_dir}.old`) and register "
        f"version 0 again (`piu train` or `piu model import FILE`)."
    )


def recover(rt: Runtime, intake: Intake) -> None:
    store, limit = rt.store, rt.settings.max_attempts
    for job in store.jobs((JobState.RUNNING,)):
        if job.attempts >= limit:
            rt.end(
                job.id,
                JobState.FAILED,
                f"gave up after {job.attempts} attempt(s) (service.max_attempts = {limit}): "
                f"the service stopped while the job was running (crash, kill -9 or power loss)",
            )
        else:
            log.info("re-queueing %s: the service stopped during attempt %d", job.id, job.attempts)
            store.set_job(job.id, state=JobState.QUEUED, phase=None, progress=None)
    store.end_running_batches("the service stopped while this run was in progress")
    rt.registry.cleanup(store)  # staged files removed, unknown version folders moved to .orphans/ (logged)
    for p in rt.spool.stale_sidecars() + rt.spool.stale_temp_files():
        log.info("removed %s, left by an interrupted write", p)
        p.unlink(missing_ok=True)
    for claimed in rt.spool.claimed_files():
        intake.process_claimed(claimed)
    reconcile(rt)


def missing_reports(rt: Runtime) -> list[tuple[str, list[str]]]:
    """Finished jobs whose report folder lacks one of its files: (job, missing files)."""
    out = []
    for job in rt.store.jobs(REPORTED_STATES):
        folder = rt.spool.job_dir(job.state, job.id)
        missing = [f for f in REPORT_FILES if not (folder / f).is_file()]
        if missing:
            out.append((job.id, missing))
    return out


def reconcile(rt: Runtime) -> None:
    """Write reports lost to a crash or an error, and drop accepted manifests of finished jobs.
    Run at start-up and again after an error or a re-created ``jobs/``."""
    for job_id, missing in missing_reports(rt):  # a report lost to a crash is written again
        log.info("writing the report of %s again (missing: %s)", job_id, ", ".join(missing))
        rt.ops.write_report(job_id)
    try:
        accepted = list(os.scandir(rt.spool.accepted))
    except (FileNotFoundError, NotADirectoryError):
        accepted = []
    for e in accepted:
        stem = e.name[: -len(".json")] if e.name.endswith(".json") else None
        if stem is None or not valid_request_id(stem) or not e.is_file(follow_symlinks=False):
            continue  # not written by the service: left alone
        done = rt.store.job(stem)
        if done is not None and done.state in TERMINAL_STATES:
            Path(e.path).unlink(missing_ok=True)
