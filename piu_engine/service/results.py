"""Results: what a run's messages do to the jobs, the registry and the lineage.

A finished run's model passes the acceptance gate or the jobs fail with the
gate's reasons and the current model stays. A passing model is installed in
its version folder first; then the version, the current pointer, the
forgotten people and the jobs' ``done`` state are written in one
transaction. A run cut by a crash is re-queued (``attempts`` counts starts);
one stopped by SIGTERM is re-queued uncharged.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from piu_engine.core.request import ForgetOutcome
from piu_engine.service import gate as gate_mod
from piu_engine.service.executors.base import ExecMessage
from piu_engine.service.jobstate import JobState
from piu_engine.service.runtime import Batch, Runtime
from piu_engine.service.state import printable

log = logging.getLogger("piu.daemon")


class Results:
    def __init__(self, rt: Runtime):
        self.rt = rt

    def handle(self, msg: ExecMessage) -> None:
        rt = self.rt
        batch = rt.batches.get(msg.batch_id)
        if batch is None:
            return
        if msg.kind == "event":
            ev = msg.payload
            rt.store.add_event(batch.id, ev, float(ev.get("fraction") or 0.0))
            return
        del rt.batches[batch.id]
        try:
            if msg.kind == "done":
                try:
                    self._finish(batch, msg.payload)
                except Exception as exc:  # noqa: BLE001 - e.g. a checksum mismatch: fail the jobs, keep serving
                    log.exception("run %s: could not register its result", batch.id)
                    rt.store.end_batch(batch.id, "failed", str(exc))
                    for j in batch.job_ids:
                        if self._state(j) == JobState.RUNNING:
                            rt.end(
                                j,
                                JobState.FAILED,
                                f"the run finished but its model could not be registered: {type(exc).__name__}: {exc}",
                            )
            elif msg.kind == "interrupted":
                rt.store.end_batch(batch.id, "interrupted", "stopped at a step boundary (SIGTERM)")
                self._requeue(batch.job_ids, charge=False)
            elif msg.kind == "cancelled":
                rt.store.end_batch(batch.id, "cancelled")
                for j in batch.job_ids:
                    if j in batch.cancel:
                        rt.end(j, JobState.CANCELLED, "cancelled by `piu cancel` while running")
                self._requeue([j for j in batch.job_ids if j not in batch.cancel], charge=False)
            elif msg.kind == "crashed":
                rt.store.end_batch(batch.id, "crashed", str(msg.payload))
                limit = rt.settings.max_attempts
                for job_id in batch.job_ids:
                    attempts = self._attempts(job_id)
                    log.warning(
                        "run %s crashed (%s): %s %s",
                        batch.id,
                        printable(str(msg.payload), 300),
                        job_id,
                        f"fails, attempt {attempts} of {limit}"
                        if attempts >= limit
                        else f"is queued again (attempt {attempts} of {limit} used)",
                    )
                    if attempts >= limit:
                        rt.end(
                            job_id,
                            JobState.FAILED,
                            f"gave up after {attempts} attempt(s) (service.max_attempts = {limit}): {msg.payload}",
                        )
                    else:
                        self._requeue([job_id], charge=True)
            else:  # error
                rt.store.end_batch(batch.id, "failed", str(msg.payload))
                for j in batch.job_ids:
                    rt.end(j, JobState.FAILED, f"the unlearning run failed: {msg.payload}", phase=None)
        finally:
            batch.staged.unlink(missing_ok=True)

    def _state(self, job_id: str) -> JobState | None:
        job = self.rt.store.job(job_id)
        return job.state if job else None

    def _attempts(self, job_id: str) -> int:
        job = self.rt.store.job(job_id)
        return job.attempts if job else 0

    def _requeue(self, job_ids: list[str], charge: bool) -> None:
        for j in job_ids:
            attempts = self._attempts(j)
            self.rt.store.set_job(
                j,
                state=JobState.QUEUED,
                phase=None,
                progress=None,
                attempts=attempts if charge else max(0, attempts - 1),
            )

    def _finish(self, batch: Batch, payload: dict[str, Any]) -> None:
        rt = self.rt
        store = rt.store
        outcome = ForgetOutcome.from_dict(payload)
        parent = store.version(batch.dataset, batch.parent_version)
        if parent is None:
            raise RuntimeError(f"{batch.dataset} version {batch.parent_version} is no longer registered")
        result = gate_mod.evaluate(rt.settings.gate, outcome.parent, outcome.model, outcome.audit)
        all_ids = [i for g in batch.groups.values() for i in g]
        common = {
            "batch": {"id": batch.id, "requests": batch.job_ids, "identities_total": len(set(all_ids))},
            "gate": result.to_dict(),
            "device": batch.device or rt.device_name,
        }

        def job_result(job_id: str) -> dict[str, Any]:
            own = outcome.per_group.get(batch.measured_as.get(job_id, job_id))
            o = dict(outcome.to_dict(), per_group={job_id: own.to_dict() if own else None})
            return dict(common, outcome=o)

        fields = dict(
            metrics=outcome.model.to_dict(),
            parent_metrics=outcome.parent.to_dict(),
            seconds=outcome.seconds,
            phase=None,
            progress=1.0,
        )
        if not result.passed:
            store.end_batch(batch.id, "failed", "acceptance gate failed")
            why = "; ".join(result.failures())
            for j in batch.job_ids:
                rt.end(
                    j,
                    JobState.FAILED,
                    f"acceptance gate failed: {why}; the current model is unchanged "
                    f"({batch.dataset} version {batch.parent_version})",
                    result=job_result(j),
                    **fields,
                )
            return
        version = store.next_version(batch.dataset)
        rel = rt.registry.install(batch.staged, batch.dataset, version, outcome.sha256)
        forgotten = list(dict.fromkeys([*parent.forgotten, *all_ids]))
        who: dict[str, str] = {}
        for job_id, ids in batch.groups.items():
            for i in ids:
                who.setdefault(i, job_id)
        first = store.job(batch.job_ids[0])
        with store.tx():  # one transaction: version, current pointer, identities, jobs done
            store.add_version(
                batch.dataset,
                version,
                parent.version,
                outcome.sha256,
                rel,
                "forget",
                first.method if first else None,
                batch.job_ids,
                forgotten,
                outcome.model.to_dict(),
            )
            store.mark_forgotten(batch.dataset, who, version)
            for job_id, ids in batch.groups.items():
                for i in ids:
                    store.set_identity_status(job_id, i, "forgotten", version)
                store.set_job(
                    job_id,
                    state=JobState.DONE,
                    error=None,
                    finished_at=time.time(),
                    version=version,
                    sha256=outcome.sha256,
                    result=job_result(job_id),
                    **fields,
                )
            store.end_batch(batch.id, "done")
        for job_id in batch.job_ids:
            rt.ended[job_id] = JobState.DONE
            rt.ops.write_report(job_id)
        log.info(
            "run %s done: %s version %d (parent %d), %d request(s)",
            batch.id,
            batch.dataset,
            version,
            parent.version,
            len(batch.job_ids),
        )
        keep = rt.settings.keep_versions
        for v in rt.registry.prune(store, batch.dataset, keep):
            log.info("pruned model file of %s version %d (service.keep_versions = %d)", batch.dataset, v, keep)
