"""State changes shared by the daemon and by CLI commands that hold the
workspace lock: cancel, retry, register a model, and writing a job's report
from what the database holds (so a report lost to a crash can be rewritten).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from piu_engine.common import jsonout
from piu_engine.service.jobstate import REPORTED_STATES, JobState
from piu_engine.service.registry import Registry
from piu_engine.service.report import build_report, report_files
from piu_engine.service.spool import Spool
from piu_engine.service.state import JobRow, StateStore
from piu_engine.service.workspace import Workspace


class FailureDeferred(RuntimeError):
    """A job was not failed but queued again: what failed it was not the job's
    fault and passes (the disk was full). The message says why."""


class Operations:
    """State changes shared by the daemon and by CLI commands holding the lock."""

    def __init__(self, ws: Workspace, store: StateStore, registry: Registry, spool: Spool):
        self.ws = ws
        self.store = store
        self.registry = registry
        self.spool = spool
        self.on_cancel_running: Callable[[JobRow], str] | None = None  # set by the daemon
        # Set by the daemon: given (job id, error) of a failure, the reason to queue the job
        # again instead (disk full), or None to fail it.
        self.defer_failure: Callable[[str, str | None], str | None] | None = None

    # -- reports ----------------------------------------------------------
    def job_identities(self, job: JobRow) -> list[dict[str, Any]]:
        return self.store.job_identities(job.id)

    def write_report(self, job_id: str) -> Path | None:
        job = self.store.job(job_id)
        if job is None or job.state not in REPORTED_STATES:
            return None
        r = job.result or {}
        dataset = job.dataset or ""
        parent = self.store.version(dataset, job.parent_version) if job.parent_version is not None else None
        if parent is None and dataset:
            parent = self.store.current_version(dataset) if job.state != JobState.DONE else None
        new = self.store.version(dataset, job.version) if job.version is not None else None
        if new is not None and parent is not None and new.version == parent.version:
            new = None  # nothing was run: all identities were already forgotten
        report = build_report(
            job,
            job.state,
            identities=self.job_identities(job),
            parent=parent,
            new=new,
            outcome=r.get("outcome"),
            gate=r.get("gate"),
            batch=r.get("batch"),
            error=job.error,
            device=r.get("device", ""),
            note=r.get("note", ""),
            history=self.store.history(job.id),
        )
        manifest = jsonout.dumps(job.manifest, indent=2, sort_keys=True) + "\n" if job.manifest else "{}\n"
        out = self.spool.finish(job.state, job.id, report_files(report, manifest))
        if job.report_dir != str(out):
            self.store.set_job(job.id, report_dir=str(out))
        return out

    def end_job(self, job_id: str, state: str, error: str | None = None, **fields: Any) -> None:
        if state == JobState.FAILED and self.defer_failure is not None:
            why = self.defer_failure(job_id, error)
            if why is not None:
                raise FailureDeferred(f"{job_id}: {why}")
        self.store.set_job(job_id, state=state, error=error, finished_at=time.time(), **fields)
        self.write_report(job_id)

    def requeue(self, job_id: str, note: str, charge: bool = False) -> None:
        """A running job back to the queue; ``charge``: its attempt counts."""
        job = self.store.job(job_id)
        if job is None or job.state not in (JobState.RUNNING, JobState.QUEUED):
            return
        attempts = job.attempts if charge or job.state != JobState.RUNNING else max(0, job.attempts - 1)
        self.store.set_job(job_id, state=JobState.QUEUED, phase=None, progress=None, attempts=attempts, error=note)

    # -- control ops --------------------------------------------------------
    def handle(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op == "cancel":
            return self.cancel(str(args["id"]))
        if op == "retry":
            return self.retry(str(args["id"]))
        if op == "register":
            return self.register(args)
        raise ValueError(f"unknown control operation {op!r}")

    def _job(self, job_id: str) -> JobRow:
        job = self.store.job(job_id)
        if job is None:
            raise ValueError(f"no job {job_id!r} (see `piu status --all`)")
        return job

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        if job.state == JobState.QUEUED:
            self.end_job(job.id, JobState.CANCELLED, "cancelled by `piu cancel`")
            return {"message": f"{job.id}: cancelled", "state": "cancelled"}
        if job.state == JobState.RUNNING:
            if self.on_cancel_running is None:  # left 'running' by a crash, no daemon: nothing runs it
                self.end_job(job.id, JobState.CANCELLED, "cancelled by `piu cancel`")
                return {"message": f"{job.id}: cancelled", "state": "cancelled"}
            return {"message": self.on_cancel_running(job), "state": "running"}
        raise ValueError(f"{job.id} is {job.state}; only queued or running jobs can be cancelled")

    def retry(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        if job.state not in (JobState.FAILED, JobState.CANCELLED):
            hint = " (fix the manifest and submit it again)" if job.state == JobState.REJECTED else ""
            raise ValueError(f"{job.id} is {job.state}; only failed or cancelled jobs can be retried{hint}")
        self.store.requeue_for_retry(job)
        return {"message": f"{job.id}: queued again", "state": "queued"}

    def register(self, args: dict[str, Any]) -> dict[str, Any]:
        dataset = str(args["dataset"])
        self.ws.cfg.dataset(dataset)
        staged = self.registry.incoming / Path(str(args["file"])).name
        row = self.registry.register(
            self.store, dataset, staged, str(args["sha256"]), str(args["source"]), args.get("metrics") or {}
        )
        return {
            "message": f"registered {dataset} version {row.version} ({row.source}), sha256 {row.sha256}",
            "version": row.version,
            "sha256": row.sha256,
        }
