"""Start-up recovery: reconcile the database, the model folders and ``jobs/``
after a crash, kill -9 or power loss, before any new work is taken."""

from __future__ import annotations

import logging

from piu_engine.service.intake import Intake
from piu_engine.service.jobstate import REPORTED_STATES, TERMINAL_STATES, JobState
from piu_engine.service.runtime import Runtime

log = logging.getLogger("piu.daemon")


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
    for p in rt.registry.cleanup(store):
        log.info("removed partial model file %s", p)
    for claimed in rt.spool.claimed_files():
        intake.process_claimed(claimed)
    for job in store.jobs(REPORTED_STATES):  # a report lost to a crash is written again
        if not (rt.spool.job_dir(job.state, job.id) / "report.json").exists():
            rt.ops.write_report(job.id)
    for f in rt.spool.accepted.iterdir():
        done = store.job(f.stem)
        if done is not None and done.state in TERMINAL_STATES:
            f.unlink()
