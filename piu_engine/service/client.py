"""The one way in for the CLI and the TUI: read state, validate and submit
requests, cancel, retry and register, all in process and without PyTorch.

Reads go through a read-only :class:`StateReader`. A request is validated
by the service's own manifest checks (what a client accepts, the daemon
accepts) and dropped into ``jobs/`` atomically. State changes go to the
running daemon through ``jobs/.control/``, or, with no daemon, are applied
under the workspace lock as the single writer (:mod:`.control`).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from piu_engine.service import control
from piu_engine.service.jobstate import ACTIVE_STATES, JobState
from piu_engine.service.manifest import IdentityCache, Manifest, ManifestError, check_manifest, load_manifest
from piu_engine.service.state import (
    AttemptRow,
    EventRow,
    Heartbeat,
    IdentityRow,
    JobRow,
    StateMissing,
    StateReader,
    VersionRow,
)
from piu_engine.service.workspace import Workspace, piu_executable


class ClientError(RuntimeError):
    """A request the service refused or could not carry out; the message says why."""


class SubmitRefused(ClientError):
    """A manifest that would be rejected: ``problems`` lists every reason."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Submitted:
    request_id: str
    path: Path


@dataclass(frozen=True)
class Status:
    heartbeat: Heartbeat | None
    models: list[VersionRow]  # current version of each dataset
    counts: dict[str, int]  # job state -> jobs
    jobs: list[JobRow]


@dataclass(frozen=True)
class JobDetail:
    job: JobRow
    identities: list[dict[str, Any]]
    events: list[EventRow] = field(default_factory=list)
    history: list[AttemptRow] = field(default_factory=list)  # its runs and retries, oldest first


def order_jobs(jobs: Iterable[JobRow]) -> list[JobRow]:
    """Running first, then the queue in the daemon's order, then the rest newest first.

    The one job order of every client: ``piu status``, ``piu jobs list`` and the TUI's dashboard.
    """
    jobs = list(jobs)
    running = sorted((j for j in jobs if j.state == JobState.RUNNING), key=lambda j: (j.started_at or 0, j.id))
    queued = sorted((j for j in jobs if j.state == JobState.QUEUED), key=lambda j: (-j.priority, j.created_at, j.id))
    rest = sorted(
        (j for j in jobs if j.state not in ACTIVE_STATES),
        key=lambda j: (j.finished_at or j.updated_at, j.created_at, j.id),
        reverse=True,
    )
    return running + queued + rest


# Where a systemd unit installed from deploy/piu-daemon.service may live (tests point this elsewhere).
SYSTEMD_UNIT_DIRS: tuple[Path, ...] = (
    Path("/etc/systemd/system"),
    Path("/lib/systemd/system"),
    Path("/usr/lib/systemd/system"),
)
UNIT_NAME = "piu-daemon.service"


def _unit_serves(unit: Path, ws: Workspace) -> bool:
    """Whether an installed unit runs this workspace's daemon: the config it names (``PIU_CONFIG``
    or ``--config``), else its ``WorkingDirectory``, is this workspace's."""
    try:
        lines = unit.read_text("utf-8", errors="replace").splitlines()
    except OSError:
        return False
    named, dirs = [], []
    for line in (x.strip() for x in lines):
        if line.startswith("Environment="):
            named += re.findall(r"PIU_CONFIG=([^\s\"']+)", line)
        elif line.startswith("ExecStart="):
            named += re.findall(r"--config[= ]([^\s\"']+)", line)
        elif line.startswith("WorkingDirectory="):
            dirs.append(line.partition("=")[2].strip("\"' -"))
    if named:
        config = ws.cfg.path.resolve() if ws.cfg.path else None
        return any(Path(n).resolve() == config for n in named)
    base = ws.cfg.base_dir.resolve()
    return any(Path(d).resolve() == base for d in dirs)


def daemon_start_hint(ws: Workspace) -> str:
    """The command that starts this workspace's daemon: systemd's when its unit serves the workspace,
    else ``piu daemon`` detached so it outlives the SSH session."""
    for d in SYSTEMD_UNIT_DIRS:
        unit = d / UNIT_NAME
        if unit.is_file() and _unit_serves(unit, ws):
            return f"sudo systemctl start {UNIT_NAME.removesuffix('.service')}   (logs: journalctl -u piu-daemon -f)"
    base = ws.cfg.base_dir.resolve()
    config = ws.cfg.path.resolve() if ws.cfg.path else base / "config.toml"
    log = base / ".piu" / "daemon.log"
    cmd = f"{shlex.quote(piu_executable())} --config {shlex.quote(str(config))} daemon"
    # no umask in front: .piu/ is 0750 already and the daemon sets its own (027)
    return f"setsid nohup {cmd} >> {shlex.quote(str(log))} 2>&1 < /dev/null &"


class Client:
    """Everything a user-facing program does with one workspace."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self._identities: IdentityCache | None = None

    # -- reads ------------------------------------------------------------
    @contextmanager
    def reader(self) -> Iterator[StateReader | None]:
        """The state database read-only, or None before the service first ran."""
        try:
            r = StateReader(self.ws.db_path)
        except StateMissing:
            yield None
            return
        with r:
            yield r

    def status(self) -> Status | None:
        with self.reader() as r:
            if r is None:
                return None
            return Status(r.heartbeat(), [v for v in r.versions() if v.current], r.counts(), r.jobs())

    def job(self, job_id: str, events: int = 0) -> JobDetail | None:
        """One job with its people and its last ``events`` progress events."""
        with self.reader() as r:
            job = r.job(job_id) if r else None
            if r is None or job is None:
                return None
            recent = r.events(job.batch_id, limit=100000)[-events:] if events and job.batch_id else []
            return JobDetail(job, r.job_identities(job.id), recent, r.history(job.id))

    def jobs(
        self,
        states: Sequence[str] = (),
        identities: Sequence[str] = (),
        dataset: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[JobRow]:
        """Jobs in :func:`order_jobs` order: in any of ``states`` (all when empty), naming any of
        ``identities``, of ``dataset``, received at or after ``since`` (epoch seconds); the first ``limit``."""
        with self.reader() as r:
            rows = r.jobs(tuple(str(s) for s in states) or None) if r else []
        wanted = set(identities)
        rows = [
            j
            for j in rows
            if (not wanted or wanted.intersection(j.identities))
            and (dataset is None or j.dataset == dataset)
            and (since is None or j.created_at >= since)
        ]
        ordered = order_jobs(rows)
        return ordered[:limit] if limit is not None else ordered

    def versions(self, dataset: str | None = None) -> list[VersionRow]:
        with self.reader() as r:
            return r.versions(dataset) if r else []

    def identities(self, dataset: str, forgotten_only: bool = False) -> list[IdentityRow]:
        """The dataset's training people; before the daemon recorded them, read from the dataset."""
        with self.reader() as r:
            rows = r.identities(dataset, forgotten_only) if r else []
        if rows or forgotten_only:
            return rows
        info = self.identity_lookup.info(dataset)
        return [
            IdentityRow(dataset, i, info.images_per_identity.get(i), "present", None, None, None)
            for i in info.train_identities
        ]

    # -- requests ---------------------------------------------------------
    @property
    def identity_lookup(self) -> IdentityCache:
        """The service's own lookup of who can be forgotten (loads a dataset on first use)."""
        if self._identities is None:
            self._identities = IdentityCache(self.ws.cfg, self.ws.preset)
        return self._identities

    def check(self, doc: Any) -> tuple[Manifest | None, list[str]]:
        """(manifest, problems) exactly as the daemon would judge ``doc`` now."""
        try:
            manifest = check_manifest(doc, self.ws.cfg, self.identity_lookup, self.ws.settings.max_forget_share)
        except ManifestError as exc:
            return None, list(exc.problems)
        return manifest, self._conflicts(manifest)

    def check_file(self, path: Path) -> tuple[Manifest | None, list[str]]:
        s = self.ws.settings
        try:
            manifest, _ = load_manifest(
                Path(path), self.ws.cfg, self.identity_lookup, s.max_manifest_bytes, s.max_forget_share
            )
        except ManifestError as exc:
            return None, list(exc.problems)
        return manifest, self._conflicts(manifest, Path(path))

    def _conflicts(self, manifest: Manifest, source: Path | None = None) -> list[str]:
        """Why the daemon would refuse a valid manifest now: a used request id, or
        another file waiting under its name (``source`` itself does not count)."""
        with self.reader() as r:
            seen = r.job(manifest.request_id) if r else None
        if seen is not None and seen.id == manifest.request_id:
            return [
                f"request_id {manifest.request_id!r} was received before (job is {seen.state}); use a new request id"
            ]
        waiting = self.ws.jobs_dir / f"{manifest.request_id}.json"
        if waiting.exists() and not (source is not None and source.resolve() == waiting.resolve()):
            return [f"request {manifest.request_id} is already waiting in {self.ws.jobs_dir}"]
        return []

    def submit(self, doc: dict[str, Any]) -> Submitted:
        """Validate ``doc`` and drop it into ``jobs/`` (hidden name, fsync, rename)."""
        manifest, problems = self.check(doc)
        if problems or manifest is None:
            raise SubmitRefused(problems)
        body = dict(doc, request_id=manifest.request_id)  # pin a derived id so the daemon sees the same one
        return self._drop(manifest, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("utf-8"))

    def submit_file(self, path: Path) -> Submitted:
        """Validate a manifest file and drop it as written (a derived request id is pinned)."""
        manifest, problems = self.check_file(path)
        if problems or manifest is None:
            raise SubmitRefused(problems)
        data = Path(path).read_bytes()
        if manifest.id_derived:
            doc = dict(json.loads(data), request_id=manifest.request_id)
            data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")
        return self._drop(manifest, data)

    def _drop(self, manifest: Manifest, data: bytes) -> Submitted:
        try:
            dst = self.ws.ensure().spool().submit(f"{manifest.request_id}.json", data)
        except FileExistsError as exc:
            raise ClientError(f"{exc}: request {manifest.request_id} is already waiting") from None
        except OSError as exc:
            raise ClientError(f"cannot write into {self.ws.jobs_dir}: {exc}") from None
        return Submitted(manifest.request_id, dst)

    # -- state changes ----------------------------------------------------
    def cancel(self, job_id: str) -> str:
        """Cancel a queued job, or stop a running one; returns what happened."""
        return self._control("cancel", {"id": job_id})["message"]

    def retry(self, job_id: str) -> str:
        return self._control("retry", {"id": job_id})["message"]

    def register(self, dataset: str, staged: Path, sha256: str, source: str, metrics: dict[str, Any]) -> str:
        """Register a checkpoint staged in the registry's incoming folder as version 0."""
        try:
            return self._control(
                "register",
                {"dataset": dataset, "file": staged.name, "sha256": sha256, "source": source, "metrics": metrics},
            )["message"]
        finally:
            staged.unlink(missing_ok=True)

    def _control(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            reply = control.call(self.ws, op, args, self._apply_directly)
        except control.ControlError as exc:
            raise ClientError(str(exc)) from None
        if not reply.get("ok"):
            raise ClientError(str(reply.get("message", f"{op} failed")))
        return reply

    def _apply_directly(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """No daemon runs and the caller holds the workspace lock: be the single writer."""
        from piu_engine.service.operations import Operations
        from piu_engine.service.registry import Registry
        from piu_engine.service.state import StateStore

        self.ws.ensure()
        store = StateStore(self.ws.db_path)
        try:
            ops = Operations(self.ws, store, Registry(self.ws.models_dir).ensure(), self.ws.spool().ensure())
            return ops.handle(op, args)
        finally:
            store.close()


__all__ = [
    "Client",
    "ClientError",
    "JobDetail",
    "Status",
    "SubmitRefused",
    "Submitted",
    "daemon_start_hint",
    "order_jobs",
]
