"""Scheduling: coalesce queued jobs into runs and start them on the executor.

Jobs with the same dataset, method, parameters and baselines share one run
(at most ``service.batch_size``); one run per dataset at a time, so a
dataset's model lineage stays linear. While manifests keep arriving the
scheduler waits (``service.coalesce_seconds``, at most ten times that) so
that a burst becomes one run.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from piu_engine.service.executors.base import ExecMessage, RunTask
from piu_engine.service.jobstate import JobState
from piu_engine.service.registry import RegistryError
from piu_engine.service.runtime import Batch, Runtime, run_key
from piu_engine.service.state import JobRow, VersionRow

log = logging.getLogger("piu.daemon")


class CoalescingWindow:
    """Open while manifests keep arriving, so that they share a run (bounded wait)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._opened: float | None = None
        self._last = 0.0

    def arrival(self) -> None:
        now = time.monotonic()
        if self._opened is None:
            self._opened = now
        self._last = now

    def holding(self) -> bool:
        if self._opened is None:
            return False
        now = time.monotonic()
        if now - self._last < self.seconds and now - self._opened < 10 * self.seconds:
            return True
        self._opened = None
        return False


class Scheduler:
    def __init__(self, rt: Runtime, on_failed_start: Callable[[ExecMessage], None]):
        self.rt = rt
        self.window = CoalescingWindow(rt.settings.coalesce_seconds)
        self.on_failed_start = on_failed_start  # a worker that cannot start counts as a crashed attempt

    def schedule(self, stopping: bool) -> None:
        if self.window.holding():
            return
        while not stopping and self.rt.executor.free_slots() > 0:
            jobs = self._next_jobs()
            if not jobs:
                return
            self._start(jobs)

    def _next_jobs(self) -> list[JobRow] | None:
        rt = self.rt
        busy = {b.dataset for b in rt.batches.values()}  # one run per dataset: lineages stay linear
        chosen: list[JobRow] = []
        key = None
        forgotten_by_ds: dict[str, set[str]] = {}
        for job in rt.store.queued_jobs():
            dataset = job.dataset or ""
            if dataset in busy:
                continue
            if chosen and (run_key(job) != key or len(chosen) >= rt.settings.batch_size):
                continue
            current = rt.store.current_version(dataset)
            if current is None:
                rt.end(
                    job.id,
                    JobState.FAILED,
                    f"no model for dataset {dataset!r} yet: run `piu train` or "
                    f"`piu model import FILE`, then `piu retry {job.id}`",
                )
                continue
            gone = forgotten_by_ds.setdefault(dataset, set(current.forgotten))
            if all(i in gone for i in job.identities):
                self._already_done(job, current)
                continue
            if not chosen:
                key = run_key(job)
            chosen.append(job)
        return chosen or None

    def _already_done(self, job: JobRow, current: VersionRow) -> None:
        rt = self.rt
        where = {r.identity: r.version for r in rt.store.identities(current.dataset, forgotten_only=True)}
        for i in job.identities:
            rt.store.set_identity_status(job.id, i, "already_forgotten", where.get(i))
        rt.end(
            job.id,
            JobState.DONE,
            None,
            parent_version=current.version,
            version=current.version,
            metrics=current.metrics,
            result={
                "note": f"All identities were already forgotten; the current "
                f"model ({current.dataset} version {current.version}) "
                f"already satisfies this request, so nothing was run."
            },
        )

    def _start(self, jobs: list[JobRow]) -> None:
        rt = self.rt
        dataset = jobs[0].dataset or ""
        parent = rt.store.current_version(dataset)
        try:
            if parent is None:
                raise RegistryError(f"dataset {dataset!r} has no current model")
            parent_path = rt.registry.verify(parent)
        except (RegistryError, OSError, ValueError) as exc:
            for j in jobs:
                rt.end(j.id, JobState.FAILED, f"cannot use the parent model: {exc}")
            return
        gone = set(parent.forgotten)
        groups: dict[str, list[str]] = {}
        for j in jobs:
            for i in j.identities:
                if i in gone:
                    rt.store.set_identity_status(j.id, i, "already_forgotten", rt.store.forgotten_in(dataset, i))
            groups[j.id] = [i for i in j.identities if i not in gone]
        # The engine measures each group on its own forget set; requests naming the same
        # people share one measurement.
        same: dict[tuple[str, ...], str] = {}
        rep = {jid: same.setdefault(tuple(sorted(ids)), jid) for jid, ids in groups.items()}
        engine_groups = {jid: ids for jid, ids in groups.items() if rep[jid] == jid}
        batch_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        staged = rt.registry.staging_path(batch_id)
        j0 = jobs[0]
        task = RunTask(
            batch_id=batch_id,
            cfg=rt.cfg,
            dataset=dataset,
            groups=engine_groups,
            already_forgotten=list(parent.forgotten),
            method=j0.method or "",
            params=j0.params,
            compare=j0.compare,
            preset=rt.ws.preset,
            parent_weights=str(parent_path),
            out_weights=str(staged),
            seed=rt.cfg.engine.seed,
        )
        rt.store.start_batch(batch_id, jobs, parent.version, "")
        batch = Batch(batch_id, dataset, [j.id for j in jobs], parent.version, groups, staged, "", rep)
        rt.batches[batch_id] = batch
        try:
            batch.device = rt.executor.submit(task)
        except Exception as exc:  # noqa: BLE001 - counts as a crashed attempt
            log.exception("run %s: could not start a worker", batch_id)
            self.on_failed_start(
                ExecMessage("crashed", batch_id, f"could not start a worker: {type(exc).__name__}: {exc}")
            )
            return
        rt.store.set_batch_device(batch_id, batch.device)
        log.info(
            "run %s started: %d request(s), %d identities, %s from %s v%d on %s",
            batch_id,
            len(jobs),
            len({i for g in groups.values() for i in g}),
            j0.method,
            dataset,
            parent.version,
            batch.device or rt.device_name,
        )

    def cancel_running(self, job: JobRow) -> str:
        """``piu cancel`` on a running job: stop its run; its other jobs go back to the queue."""
        rt = self.rt
        batch = rt.batches.get(job.batch_id or "")
        if batch is None:
            rt.end(job.id, JobState.CANCELLED, "cancelled by `piu cancel`")
            return f"{job.id}: cancelled"
        batch.cancel.add(job.id)
        rt.executor.cancel(batch.id)
        others = [j for j in batch.job_ids if j != job.id]
        extra = f"; {len(others)} other request(s) of the same run go back to the queue" if others else ""
        return f"{job.id}: cancelling its run {batch.id}{extra}"
