"""What the daemon's parts share while it serves a workspace: the single
writer of the state database, the registry, the spool, the executor, and
the runs in flight. Built once the instance lock is held."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from piu_engine.core.config import Config
from piu_engine.service.executors.base import Executor
from piu_engine.service.jobstate import JobState
from piu_engine.service.manifest import IdentityCache
from piu_engine.service.operations import Operations
from piu_engine.service.registry import Registry
from piu_engine.service.settings import ServiceConfig
from piu_engine.service.spool import Spool
from piu_engine.service.state import JobRow, StateStore
from piu_engine.service.workspace import Workspace

log = logging.getLogger("piu.daemon")


def run_key(job: JobRow) -> str:
    """Jobs with equal keys can share one unlearning run."""
    return json.dumps([job.dataset, job.method, job.params, sorted(job.compare)], sort_keys=True)


@dataclass
class Batch:
    """One unlearning run in flight: the coalesced jobs and where its model is staged."""

    id: str
    dataset: str
    job_ids: list[str]
    parent_version: int
    groups: dict[str, list[str]]
    staged: Path
    device: str = ""
    measured_as: dict[str, str] = field(default_factory=dict)  # job -> job whose group the engine measured
    cancel: set[str] = field(default_factory=set)


@dataclass
class Runtime:
    cfg: Config
    ws: Workspace
    store: StateStore
    registry: Registry
    spool: Spool
    ops: Operations
    executor: Executor
    identities: IdentityCache
    device_name: str = ""
    batches: dict[str, Batch] = field(default_factory=dict)
    ended: dict[str, JobState] = field(default_factory=dict)  # jobs that reached a final state during this run

    @property
    def settings(self) -> ServiceConfig:
        return self.ws.settings

    def end(self, job_id: str, state: JobState, error: str | None = None, **fields: Any) -> None:
        """Finish a job: its row, its report folder, and the log line that says why."""
        self.ops.end_job(job_id, state, error, **fields)
        self.ended[job_id] = state
        log.info("%s %s%s", job_id, state, f": {error.splitlines()[0]}" if error else "")
