"""Sources: the loaders that read the daemon's SQLite state for the screens.

They run in thread workers. Every read opens the database read-only
through :class:`~piu_engine.service.state.StateReader` and closes it again
(so a database created or replaced while the TUI runs is picked up); what a
read finds is turned into views by :mod:`piu_tui.viewmodel.build`.

Each source keeps small caches (the events of a run already read) and must
only be used from one thread at a time, which the exclusive workers
guarantee.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from piu_engine.core.audit.manifest import list_pools
from piu_engine.core.config import AuditConfig
from piu_engine.service.client import order_jobs  # the one job order, shared with `piu status`
from piu_engine.service.jobstate import ACTIVE_STATES, JobState
from piu_engine.service.report import PICTURE
from piu_engine.service.state import AttemptRow, EventRow, IdentityRow, JobRow, StateMissing, StateReader

from piu_tui.actions import read_report
from piu_tui.viewmodel.build import (
    daemon_status,
    error_status,
    identities_view,
    job_detail,
    job_view,
    missing_status,
    models_view,
)
from piu_tui.viewmodel.person import PersonView, person_view
from piu_tui.viewmodel.views import (
    DaemonStatus,
    DashboardView,
    IdentitiesView,
    JobDetailView,
    ModelSummary,
    ModelsView,
)

Clock = Callable[[], float]


class EventCache:
    """Events of runs already read, so each poll reads only the new ones."""

    def __init__(self, keep: int = 5000):
        self.keep = keep
        self._events: dict[str, list[EventRow]] = {}

    def get(self, reader: StateReader, batch_id: str | None) -> list[EventRow]:
        if not batch_id:
            return []
        have = self._events.setdefault(batch_id, [])
        while True:
            since = have[-1].id if have else 0
            new = reader.events(batch_id, since_id=since, limit=1000)
            have.extend(new)
            if len(new) < 1000:
                break
        if len(have) > self.keep:  # a very long run: keep the recent part (the curve and the tail)
            del have[: len(have) - self.keep]
        return have

    def forget_except(self, batch_ids: Iterable[str]) -> None:
        keep = set(batch_ids)
        for b in list(self._events):
            if b not in keep:
                del self._events[b]


class StateSource:
    """Reads the service state for the screens; every read opens the database
    read-only and closes it again (so a database created or replaced while
    the TUI runs is picked up)."""

    def __init__(self, db_path: Path, clock: Clock):
        self.db_path = Path(db_path)
        self.clock = clock
        self._dash_events = EventCache()
        self._last_status: DaemonStatus | None = None

    def _open(self) -> StateReader:
        return StateReader(self.db_path)

    def dashboard(self) -> DashboardView:
        now = self.clock()
        try:
            reader = self._open()
        except StateMissing:
            return DashboardView(status=missing_status(self.db_path), fresh=False)
        try:
            with reader:
                hb = reader.heartbeat()
                counts = reader.counts()
                jobs = reader.jobs()
                models = tuple(
                    ModelSummary(v.dataset, v.version, len(v.forgotten)) for v in reader.versions() if v.current
                )
                running = [j for j in jobs if j.state == JobState.RUNNING]
                events = {j.id: self._dash_events.get(reader, j.batch_id) for j in running}
        except Exception as exc:  # noqa: BLE001 - a locked or half-written file: keep the last state
            status = error_status(exc, self._last_status)
            return DashboardView(status=status, fresh=False)
        self._dash_events.forget_except(j.batch_id for j in running if j.batch_id)
        status = daemon_status(hb, now)
        self._last_status = status
        ordered = order_jobs(jobs)
        queue = [j.id for j in ordered if j.state == JobState.QUEUED]
        views = tuple(
            job_view(j, now, events.get(j.id, ()), queue.index(j.id) + 1 if j.id in queue else None) for j in ordered
        )
        return DashboardView(status=status, models=models, counts=tuple(counts.items()), jobs=views)


class JobDetailSource:
    def __init__(self, db_path: Path, job_id: str, clock: Clock, waiting_file: str | Path | None = None):
        self.db_path = Path(db_path)
        self.job_id = job_id
        self.clock = clock
        self.waiting_file = Path(waiting_file) if waiting_file else None  # written, not yet taken by the daemon
        self._events = EventCache(keep=20000)
        # The history changes only when a run starts or ends or the job is retried, which the job's
        # (batch, state, attempts) show: read it again then, not on every poll (it scans every run).
        self._history: tuple[tuple[object, ...], list[AttemptRow]] | None = None

    def _history_of(self, reader: StateReader, job: JobRow) -> list[AttemptRow]:
        key = (job.batch_id, str(job.state), job.attempts)
        if self._history is None or self._history[0] != key:
            self._history = (key, reader.history(job.id))
        return self._history[1]

    def load(self) -> JobDetailView | None:
        """The job's detail; None when the state cannot be read (keep what is shown)."""
        now = self.clock()
        try:
            reader = StateReader(self.db_path)
        except StateMissing:
            return None
        try:
            with reader:
                job = reader.job(self.job_id)
                if job is None:
                    waiting = self.waiting_file is not None and self.waiting_file.exists()
                    return job_detail(None, self.job_id, now, waiting_file=self.waiting_file if waiting else None)
                idents = reader.job_identities(job.id)
                history = self._history_of(reader, job)
                events = self._events.get(reader, job.batch_id)
                self._events.forget_except([job.batch_id] if job.batch_id else [])
                parent = (
                    reader.version(job.dataset, job.parent_version)
                    if job.dataset and job.parent_version is not None
                    else None
                )
                queue_pos = None
                if job.state == JobState.QUEUED:
                    q = order_jobs(reader.jobs((JobState.QUEUED,)))
                    queue_pos = [j.id for j in q].index(job.id) + 1
        except Exception:  # noqa: BLE001
            return None
        report = Path(job.report_dir) / "report.txt" if job.report_dir else None
        picture = Path(job.report_dir) / PICTURE if job.report_dir else None
        return job_detail(
            job,
            self.job_id,
            now,
            identities=idents,
            events=list(events),
            parent=parent,
            queue_pos=queue_pos,
            history=history,
            report_exists=bool(report and report.exists()),
            picture=str(picture) if picture is not None and picture.is_file() else None,
        )


def load_identities(
    db_path: Path,
    dataset: str | None,
    configured: Sequence[str],
    clock: Clock,
    fallback: Callable[[str], list[tuple[str, int | None]]] | None = None,
) -> IdentitiesView:
    """Identities of ``dataset`` (default: the first with a model, else the first configured).

    ``fallback(dataset)`` lists (identity, images) when the daemon has not read the dataset yet.
    """
    now = clock()
    rows: list[IdentityRow] = []
    active: list[JobRow] = []
    have: list[str] = []
    try:
        with StateReader(db_path) as reader:
            have = reader.datasets()
            datasets = list(dict.fromkeys([*have, *configured]))
            dataset = dataset or (datasets[0] if datasets else "")
            if dataset:
                rows = reader.identities(dataset)
                active = reader.jobs(ACTIVE_STATES)
    except StateMissing:
        datasets = list(configured)
        dataset = dataset or (datasets[0] if datasets else "")
    note = ""
    if not rows and dataset and fallback is not None:
        rows = [IdentityRow(dataset, i, n, "present", None, None, None) for i, n in fallback(dataset)]
        note = "read from the dataset: the service has not recorded this dataset yet"
    return identities_view(dataset, datasets, rows, active, now, note)


def load_models(
    db_path: Path, clock: Clock, cache_dir: Path | None = None, audit: AuditConfig | None = None
) -> ModelsView:
    """The model versions and, from ``cache_dir``, the reference pools (their manifests: no PyTorch),
    each labelled with its role under the ``audit`` settings."""
    try:
        with StateReader(db_path) as reader:
            versions = reader.versions()
    except StateMissing:
        versions = []
    pools = list_pools(cache_dir) if cache_dir is not None else []
    return models_view(versions, clock(), pools, audit)


def read_identities(db_path: Path, dataset: str) -> list[IdentityRow]:
    """The identities the service has recorded for ``dataset`` (none before it has a state database)."""
    try:
        with StateReader(db_path) as reader:
            return reader.identities(dataset)
    except StateMissing:
        return []


def load_report(db_path: Path, job_id: str) -> tuple[str, str]:
    """(title, text): the job's report.txt, or for a rejected request the reasons."""
    try:
        with StateReader(db_path) as reader:
            job = reader.job(job_id)
    except StateMissing:
        return job_id, "no service state yet"
    if job is None:
        return job_id, f"no job {job_id!r}"
    if job.report_dir:
        path = Path(job.report_dir) / "report.txt"
        if path.exists():
            return f"{job.id}: {path}", read_report(path)
    if job.state == JobState.REJECTED:
        text = f"{job.file_name or job.id}: rejected, nothing was run.\n\n" + "".join(
            f"- {line}\n" for line in (job.error or "no reason recorded").splitlines()
        )
        return f"{job.id}: rejected", text
    return job.id, f"{job.id} is {job.state}: no report yet (reports are written when a job ends)."


def load_person(db_path: Path, dataset: str, identity: str, clock: Clock) -> PersonView:
    """A person's history: their identity row and every job that named them."""
    try:
        with StateReader(db_path) as reader:
            row = next((r for r in reader.identities(dataset) if r.identity == identity), None)
            jobs = reader.jobs()
    except StateMissing:
        row, jobs = None, []
    return person_view(dataset, identity, row, jobs, clock())


def read_active_jobs(db_path: Path) -> list[JobRow]:
    """Queued and running jobs (the submit form marks the people they name)."""
    try:
        with StateReader(db_path) as reader:
            return reader.jobs(ACTIVE_STATES)
    except StateMissing:
        return []
