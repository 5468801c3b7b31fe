"""View-model: the service's read-only state turned into plain dataclasses
that the widgets render as they are.

No Textual here (and no engine logic in the widgets): the functions below
read the daemon's SQLite state through :class:`~piu_engine.service.state.StateReader`
and format everything a screen shows (metrics, elapsed time, ETA, banners).
Time comes from an injected clock, so a frozen clock gives frozen screens.

The loaders run in thread workers; each keeps small caches (the events of a
run already read) and must only be used from one thread at a time, which the
exclusive workers guarantee.
"""
from __future__ import annotations

import math
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from piu_engine.service.state import EventRow, Heartbeat, JobRow, StateMissing, StateReader, VersionRow

Clock = Callable[[], float]

#: Heartbeats older than this (seconds) mean the daemon is gone.
STALE_AFTER = 10.0
#: Metric columns of the detail and model tables: (key, header).
METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("test_acc", "test"), ("forget_acc", "forget"), ("retain_acc", "retain"),
    ("mia", "MIA"), ("forgetting_score", "F-score"), ("nomus", "NoMUS"), ("seconds", "time"),
)
ACTIVE_STATES = ("running", "queued")
IDENTITIES_SHOWN = 3  # names shown in the dashboard's identities column
LOG_LINES = 200


# ------------------------------------------------------------------ formatting
def fmt_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h04m``, ``3d02h``; ``-`` for unknown."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fmt_age(seconds: float | None) -> str:
    """How long ago: plain seconds under two minutes (``37s``), then :func:`fmt_duration`."""
    if seconds is None:
        return "-"
    s = max(0, int(round(seconds)))
    return f"{s}s" if s < 120 else fmt_duration(s)


def fmt_when(ts: float | None, now: float) -> str:
    """Local date and time with its age: ``2025-06-15 14:48 (58m52s ago)``."""
    if ts is None:
        return "-"
    return f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(ts))} ({fmt_age(now - ts)} ago)"


def fmt_metric(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def fmt_seconds(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return fmt_duration(float(value))


def fmt_percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * max(0.0, min(1.0, fraction)):.0f}%"


def first_line(text: str | None, width: int = 70) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def names_preview(names: Sequence[str], width: int = 24, shown: int = IDENTITIES_SHOWN) -> str:
    """Count and the first few names that fit in ``width``: ``3: ann, bob, +1``."""
    if not names:
        return "0"
    text, count = f"{len(names)}: {names[0]}", 1
    for name in names[1:shown]:
        left = len(names) - count - 1
        candidate = f"{text}, {name}"
        if len(candidate) + (len(f", +{left}") if left else 0) > width:
            break
        text, count = candidate, count + 1
    return text + (f", +{len(names) - count}" if count < len(names) else "")


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


# ------------------------------------------------------------------ views
@dataclass(frozen=True)
class DaemonStatus:
    """Whether the daemon runs, from its heartbeat; ``banner`` is "" while it does."""

    state: str  # running | stopped | never | missing | error
    alive: bool
    age: float | None = None  # seconds since the last heartbeat
    device: str = ""
    mode: str = ""
    host: str = ""
    banner: str = ""

    @property
    def summary(self) -> str:
        if self.alive:
            where = f" on {self.host}" if self.host else ""
            return f"{self.mode or 'daemon'} running{where} (heartbeat {fmt_age(self.age)} ago)"
        if self.state == "missing":
            return "no service state yet"
        if self.state == "error":
            return "service state unreadable"
        if self.state == "never":
            return "service never started"
        return f"daemon not running, last heartbeat {fmt_age(self.age)} ago"


@dataclass(frozen=True)
class ModelSummary:
    dataset: str
    version: int
    forgotten: int

    @property
    def label(self) -> str:
        return f"{self.dataset} v{self.version} ({self.forgotten} forgotten)"


@dataclass(frozen=True)
class JobView:
    """One row of the jobs table, every cell already formatted."""

    id: str
    state: str
    dataset: str
    method: str
    identities: tuple[str, ...]
    identities_text: str
    phase: str
    fraction: float | None  # progress through the current phase (running), 1.0 when done
    progress_text: str
    test_acc: str
    mia: str
    nomus: str
    elapsed: str
    eta: str
    error: str
    version: str  # "v3" or ""
    has_report: bool
    can_cancel: bool
    can_retry: bool


# Screen actions that need a job, and whether a job allows each one.
JOB_ACTIONS = {
    "open_job": lambda job: True,
    "cancel_job": lambda job: job.can_cancel,
    "retry_job": lambda job: job.can_retry,
    "open_report": lambda job: job.has_report,
}


def job_action_state(action: str, job: JobView | None) -> bool | None:
    """Textual ``check_action`` answer for a job action: True to enable, None
    to show it greyed out; actions not about a job are always enabled."""
    if action not in JOB_ACTIONS:
        return True
    return (job is not None and JOB_ACTIONS[action](job)) or None


@dataclass(frozen=True)
class DashboardView:
    status: DaemonStatus
    models: tuple[ModelSummary, ...] = ()
    counts: tuple[tuple[str, int], ...] = ()
    jobs: tuple[JobView, ...] = ()
    #: False when nothing could be read (no database): the screen keeps what it showed.
    fresh: bool = True

    @property
    def queue_length(self) -> int:
        return dict(self.counts).get("queued", 0)

    @property
    def counts_text(self) -> str:
        parts = [f"{n} {s}" for s, n in self.counts if n]
        return ", ".join(parts) if parts else "no jobs"

    @property
    def models_text(self) -> str:
        return ", ".join(m.label for m in self.models) if self.models else "no model yet"


@dataclass(frozen=True)
class PhaseView:
    name: str
    fraction: float
    state: str  # done | running | stopped

    @property
    def label(self) -> str:
        return f"{self.name} {fmt_percent(self.fraction)}"


@dataclass(frozen=True)
class MetricRow:
    label: str
    values: tuple[str, ...]  # one per METRIC_COLUMNS


@dataclass(frozen=True)
class IdentityLine:
    identity: str
    images: str
    status: str
    version: str


@dataclass(frozen=True)
class JobDetailView:
    job: JobView | None  # None: no such job (yet)
    job_id: str
    title: str = ""
    info: tuple[str, ...] = ()
    identities: tuple[IdentityLine, ...] = ()
    phases: tuple[PhaseView, ...] = ()
    loss_phase: str = ""
    losses: tuple[float, ...] = ()
    loss_text: str = ""
    metrics: tuple[MetricRow, ...] = ()
    log: tuple[str, ...] = ()
    report_path: str | None = None
    error_text: str = ""


@dataclass(frozen=True)
class IdentityView:
    identity: str
    images: str
    state: str  # present | queued | running | forgotten
    job_id: str
    version: str
    when: str

    def matches(self, text: str) -> bool:
        t = text.strip().lower()
        return not t or any(t in f.lower() for f in (self.identity, self.state, self.job_id, self.version))


@dataclass(frozen=True)
class IdentitiesView:
    dataset: str
    datasets: tuple[str, ...]
    rows: tuple[IdentityView, ...]
    note: str = ""

    def filtered(self, text: str) -> tuple[IdentityView, ...]:
        return tuple(r for r in self.rows if r.matches(text))

    @property
    def counts_text(self) -> str:
        n: dict[str, int] = {}
        for r in self.rows:
            n[r.state] = n.get(r.state, 0) + 1
        return ", ".join(f"{v} {k}" for k, v in sorted(n.items())) or "no identities"


@dataclass(frozen=True)
class VersionView:
    key: str  # "dataset:version"
    dataset: str
    version: int
    lineage: str  # "v0" / "└ v1 ← v0"
    source: str
    method: str
    created: str
    forgotten_total: int
    new_forgotten: tuple[str, ...]
    all_forgotten: tuple[str, ...]
    jobs: tuple[str, ...]
    metrics: tuple[str, ...]  # one per METRIC_COLUMNS
    current: bool
    pruned: bool


@dataclass(frozen=True)
class ModelsView:
    versions: tuple[VersionView, ...]


# ------------------------------------------------------------------ builders (pure)
def daemon_status(hb: Heartbeat | None, now: float) -> DaemonStatus:
    if hb is None:
        return DaemonStatus("never", False, banner="daemon not running (it never started here: no heartbeat) "
                                                    "— start `piu daemon`")
    age = max(0.0, now - hb.updated_at)
    if hb.alive(now=now, stale_after=STALE_AFTER):
        return DaemonStatus("running", True, age, hb.device, hb.mode, hb.host)
    return DaemonStatus("stopped", False, age, hb.device, hb.mode, hb.host,
                        banner=f"daemon not running (last heartbeat {fmt_age(age)} ago) — showing last known state")


def missing_status(db_path: Path) -> DaemonStatus:
    return DaemonStatus("missing", False, banner=f"daemon not running (no state database at {db_path} yet) "
                                                 f"— start `piu daemon`")


def error_status(exc: BaseException, previous: DaemonStatus | None = None) -> DaemonStatus:
    base = previous or DaemonStatus("error", False)
    return DaemonStatus("error", False, base.age, base.device, base.mode, base.host,
                        banner=f"cannot read the service state ({type(exc).__name__}: {first_line(str(exc), 60)}) "
                               f"— showing last known state")


def phase_eta(events: Sequence[EventRow], phase: str | None, now: float) -> float | None:
    """Seconds left in the current phase, from the rate of its events so far."""
    if not events or not phase:
        return None
    tail: list[EventRow] = []
    for ev in reversed(events):
        if ev.phase != phase:
            break
        tail.append(ev)
    if len(tail) < 2:
        return None
    last, first = tail[0], tail[-1]
    dt, df = last.ts - first.ts, last.fraction - first.fraction
    if dt <= 0 or df <= 0:
        return None
    left = (1.0 - last.fraction) / (df / dt) - max(0.0, now - last.ts)
    return max(0.0, left)


def job_view(job: JobRow, now: float, events: Sequence[EventRow] = (), queue_pos: int | None = None) -> JobView:
    m = job.metrics or {}
    state = job.state
    fraction: float | None = None
    phase = job.phase or ""
    eta = "-"
    if state == "running":
        fraction = job.progress or 0.0
        progress = f"{phase or 'starting'} {fmt_percent(fraction)}"
        left = phase_eta(events, job.phase, now)
        eta = "-" if left is None else f"~{fmt_duration(left)}"
    elif state == "queued":
        progress = f"queued #{queue_pos}" if queue_pos else "queued"
        if job.attempts:
            progress += f" (attempt {job.attempts + 1})"
    elif state == "done":
        fraction = 1.0
        progress = f"done → v{job.version}" if job.version is not None else "done"
    else:
        progress = first_line(job.error, 40) or state
    if state == "running" and job.started_at is not None:
        elapsed = fmt_duration(now - job.started_at)
    elif job.started_at is not None and job.finished_at is not None:
        elapsed = fmt_duration(job.finished_at - job.started_at)
    else:
        elapsed = "-"
    return JobView(
        id=job.id, state=state, dataset=job.dataset or "-", method=job.method or "-",
        identities=tuple(job.identities), identities_text=names_preview(job.identities, 18),
        phase=phase, fraction=fraction, progress_text=progress,
        test_acc=fmt_metric(m.get("test_acc")), mia=fmt_metric(m.get("mia")), nomus=fmt_metric(m.get("nomus")),
        elapsed=elapsed, eta=eta, error=first_line(job.error),
        version="" if job.version is None else f"v{job.version}",
        has_report=bool(job.report_dir) or (state == "rejected" and bool(job.error)),
        can_cancel=state in ACTIVE_STATES, can_retry=state in ("failed", "cancelled"),
    )


def order_jobs(jobs: Iterable[JobRow]) -> list[JobRow]:
    """Running first, then the queue in the daemon's order, then the rest newest first."""
    jobs = list(jobs)
    running = sorted((j for j in jobs if j.state == "running"), key=lambda j: (j.started_at or 0, j.id))
    queued = sorted((j for j in jobs if j.state == "queued"), key=lambda j: (-j.priority, j.created_at, j.id))
    rest = sorted((j for j in jobs if j.state not in ACTIVE_STATES),
                  key=lambda j: (j.finished_at or j.updated_at, j.created_at, j.id), reverse=True)
    return running + queued + rest


def metrics_values(m: dict[str, Any] | None) -> tuple[str, ...]:
    m = m or {}
    return tuple(fmt_seconds(m.get(k)) if k == "seconds" else fmt_metric(m.get(k)) for k, _ in METRIC_COLUMNS)


def baseline_order(compare: Sequence[str], have: Iterable[str] = ()) -> list[str]:
    """Requested baselines, retrain first, then any extra that results hold."""
    names = list(dict.fromkeys([*compare, *have]))
    return sorted(names, key=lambda n: (n != "retrain", names.index(n)))


def phases_of(events: Sequence[EventRow], job: JobRow) -> list[PhaseView]:
    order: list[str] = []
    best: dict[str, float] = {}
    for ev in events:
        if not ev.phase:
            continue
        if ev.phase not in best:
            order.append(ev.phase)
            best[ev.phase] = 0.0
        frac = 1.0 if ev.message == "done" else ev.fraction
        best[ev.phase] = max(best[ev.phase], frac)
    out = []
    for i, name in enumerate(order):
        last = i == len(order) - 1
        if job.state == "done" or best[name] >= 0.999:
            st, frac = "done", 1.0
        elif not last:
            st, frac = "done", best[name]
        elif job.state == "running":
            st, frac = "running", best[name]
        else:
            st, frac = "stopped", best[name]
        out.append(PhaseView(name, frac, st))
    return out


def loss_series(events: Sequence[EventRow], phase: str | None = None) -> tuple[str, tuple[float, ...]]:
    """The loss curve of ``phase`` (default: the latest phase that reported a loss)."""
    if phase is None:
        for ev in reversed(events):
            if ev.loss is not None and ev.phase:
                phase = ev.phase
                break
    if phase is None:
        return "", ()
    return phase, tuple(float(ev.loss) for ev in events if ev.phase == phase and _num(ev.loss) is not None)


def log_line(ev: EventRow, t0: float | None) -> str:
    rel = f"+{fmt_duration(ev.ts - t0)}" if t0 is not None else ""
    parts = [f"{rel:>8}", ev.phase or "-"]
    if ev.epochs:
        parts.append(f"epoch {ev.epoch}/{ev.epochs}")
    if ev.steps:
        parts.append(f"step {ev.step}/{ev.steps}")
    if ev.loss is not None:
        parts.append(f"loss {ev.loss:.4f}")
    if ev.message:
        parts.append(ev.message)
    if ev.metrics:
        parts.append(" ".join(f"{k} {fmt_metric(v)}" for k, v in sorted(ev.metrics.items())
                              if _num(v) is not None))
    return " ".join(p for p in parts if p)


def job_detail(job: JobRow | None, job_id: str, now: float, *, identities: Sequence[dict[str, Any]] = (),
               events: Sequence[EventRow] = (), parent: VersionRow | None = None,
               queue_pos: int | None = None, report_exists: bool = False) -> JobDetailView:
    if job is None:
        return JobDetailView(job=None, job_id=job_id, title=f"{job_id}: no such job")
    view = job_view(job, now, events, queue_pos)
    result = job.result or {}
    outcome = result.get("outcome") or {}
    title = f"{job.id}  {job.state.upper()}  {job.method or '-'} on {job.dataset or '-'}"
    if job.parent_version is not None:
        title += f" v{job.parent_version} → " + (f"v{job.version}" if job.version is not None else "?")
    info = [
        f"requested by {job.requested_by or '-'}: {first_line(job.reason, 60) or '-'}",
        f"received {fmt_age(now - job.created_at)} ago · elapsed {view.elapsed} · ETA {view.eta} · "
        f"attempt {job.attempts} · priority {job.priority}",
    ]
    gate = result.get("gate")
    if gate:
        info.append("acceptance gate " + ("passed" if gate.get("passed") else "FAILED"))
    if result.get("note"):
        info.append(first_line(result["note"], 100))
    lines = tuple(IdentityLine(i["identity"], "?" if i.get("images") is None else str(i["images"]),
                               str(i.get("status", "")).replace("_", " "),
                               "" if i.get("version") is None else f"v{i['version']}") for i in identities)
    if not lines:
        lines = tuple(IdentityLine(i, "?", "requested", "") for i in job.identities)
    # metrics: parent and new side by side, the baselines (retrain first), this request's own forget set
    rows: list[MetricRow] = []
    parent_m = outcome.get("parent") or job.parent_metrics or (parent.metrics if parent else {})
    if job.parent_version is not None or parent_m:
        rows.append(MetricRow(f"parent v{job.parent_version}" if job.parent_version is not None else "parent",
                              metrics_values(parent_m)))
    new_m = outcome.get("model") or job.metrics
    if job.state == "done" and job.version is not None and job.version == job.parent_version:
        pass  # nothing was run
    elif new_m:
        label = f"new v{job.version}" if job.version is not None else "new (not kept)"
        rows.append(MetricRow(label, metrics_values(new_m)))
    elif job.state in ACTIVE_STATES:
        rows.append(MetricRow("new …", metrics_values({})))
    baselines = outcome.get("baselines") or {}
    for name in baseline_order(job.compare, baselines):
        label = f"baseline {name}" + ("" if name in baselines else " …" if job.state in ACTIVE_STATES
                                      else " (not run)")
        rows.append(MetricRow(label, metrics_values(baselines.get(name))))
    own = (outcome.get("per_group") or {}).get(job.id)
    if own:
        rows.append(MetricRow("this request", metrics_values(own)))
    # run events: phases, loss curve, log tail
    phases = tuple(phases_of(events, job))
    loss_phase, losses = loss_series(events)
    loss_text = ""
    if losses:
        loss_text = (f"loss ({loss_phase}): {losses[-1]:.4f}  min {min(losses):.4f}  max {max(losses):.4f}  "
                     f"{len(losses)} points")
    t0 = job.started_at if job.started_at is not None else (events[0].ts if events else None)
    log = [log_line(ev, t0) for ev in events[-LOG_LINES:]]
    if job.state in ("failed", "rejected", "cancelled") and job.error:
        for line in job.error.strip().splitlines()[:20]:
            log += textwrap.wrap(f"{job.state}: {line}", 96, subsequent_indent="    ") or [""]
    return JobDetailView(
        job=view, job_id=job.id, title=title, info=tuple(info), identities=lines, phases=phases,
        loss_phase=loss_phase, losses=losses, loss_text=loss_text, metrics=tuple(rows), log=tuple(log),
        report_path=str(Path(job.report_dir) / "report.txt") if job.report_dir and report_exists else None,
        error_text=job.error or "",
    )


def identities_view(dataset: str, datasets: Sequence[str], rows: Sequence[Any], active_jobs: Sequence[JobRow],
                    now: float, note: str = "") -> IdentitiesView:
    waiting: dict[str, tuple[str, str]] = {}  # identity -> (job, queued | running)
    for j in sorted(active_jobs, key=lambda j: j.state != "running"):
        if j.dataset == dataset and j.state in ACTIVE_STATES:
            for i in j.identities:
                waiting.setdefault(i, (j.id, j.state))
    out = []
    for r in rows:
        if r.state == "forgotten":
            state, job, when = "forgotten", r.job_id or "", fmt_when(r.forgotten_at, now)
        elif r.identity in waiting or r.state == "requested":
            job, state = waiting.get(r.identity, ("", "queued"))
            when = ""
        else:
            state, job, when = "present", "", ""
        out.append(IdentityView(r.identity, "?" if r.images is None else str(r.images), state, job,
                                "" if r.version is None or state != "forgotten" else f"v{r.version}", when))
    return IdentitiesView(dataset, tuple(datasets), tuple(out), note)


def models_view(versions: Sequence[VersionRow], now: float) -> ModelsView:
    out = []
    by_key = {(v.dataset, v.version): v for v in versions}
    for v in versions:
        parent = by_key.get((v.dataset, v.parent)) if v.parent is not None else None
        before = set(parent.forgotten) if parent else set()
        new = tuple(i for i in v.forgotten if i not in before)
        depth, p = 0, parent
        while p is not None and depth < 50:
            depth += 1
            p = by_key.get((p.dataset, p.parent)) if p.parent is not None else None
        lineage = f"v{v.version}" if v.parent is None else ("  " * (depth - 1) + f"└ v{v.version} ← v{v.parent}")
        out.append(VersionView(
            key=f"{v.dataset}:{v.version}", dataset=v.dataset, version=v.version, lineage=lineage,
            source=v.source, method=v.method or "-", created=fmt_when(v.created_at, now),
            forgotten_total=len(v.forgotten), new_forgotten=new, all_forgotten=tuple(v.forgotten),
            jobs=tuple(v.job_ids), metrics=metrics_values(v.metrics), current=v.current, pruned=v.pruned))
    return ModelsView(tuple(out))


# ------------------------------------------------------------------ loaders (I/O, used in thread workers)
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
                models = tuple(ModelSummary(v.dataset, v.version, len(v.forgotten))
                               for v in reader.versions() if v.current)
                running = [j for j in jobs if j.state == "running"]
                events = {j.id: self._dash_events.get(reader, j.batch_id) for j in running}
        except Exception as exc:  # noqa: BLE001 - a locked or half-written file: keep the last state
            status = error_status(exc, self._last_status)
            return DashboardView(status=status, fresh=False)
        self._dash_events.forget_except(j.batch_id for j in running if j.batch_id)
        status = daemon_status(hb, now)
        self._last_status = status
        ordered = order_jobs(jobs)
        queue = [j.id for j in ordered if j.state == "queued"]
        views = tuple(job_view(j, now, events.get(j.id, ()), queue.index(j.id) + 1 if j.id in queue else None)
                      for j in ordered)
        return DashboardView(status=status, models=models, counts=tuple(counts.items()), jobs=views)


class JobDetailSource:
    def __init__(self, db_path: Path, job_id: str, clock: Clock):
        self.db_path = Path(db_path)
        self.job_id = job_id
        self.clock = clock
        self._events = EventCache(keep=20000)

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
                    return job_detail(None, self.job_id, now)
                idents = reader.job_identities(job.id)
                events = self._events.get(reader, job.batch_id)
                self._events.forget_except([job.batch_id] if job.batch_id else [])
                parent = (reader.version(job.dataset, job.parent_version)
                          if job.dataset and job.parent_version is not None else None)
                queue_pos = None
                if job.state == "queued":
                    q = order_jobs(reader.jobs(("queued",)))
                    queue_pos = [j.id for j in q].index(job.id) + 1
        except Exception:  # noqa: BLE001
            return None
        report = Path(job.report_dir) / "report.txt" if job.report_dir else None
        return job_detail(job, self.job_id, now, identities=idents, events=list(events), parent=parent,
                          queue_pos=queue_pos, report_exists=bool(report and report.exists()))


def load_identities(db_path: Path, dataset: str | None, configured: Sequence[str], clock: Clock,
                    fallback: Callable[[str], list[tuple[str, int | None]]] | None = None) -> IdentitiesView:
    """Identities of ``dataset`` (default: the first with a model, else the first configured).

    ``fallback(dataset)`` lists (identity, images) when the daemon has not read the dataset yet.
    """
    now = clock()
    rows: list[Any] = []
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
        from piu_engine.service.state import IdentityRow

        rows = [IdentityRow(dataset, i, n, "present", None, None, None) for i, n in fallback(dataset)]
        note = "read from the dataset: the service has not recorded this dataset yet"
    return identities_view(dataset, datasets, rows, active, now, note)


def load_models(db_path: Path, clock: Clock) -> ModelsView:
    try:
        with StateReader(db_path) as reader:
            versions = reader.versions()
    except StateMissing:
        versions = []
    return models_view(versions, clock())


@dataclass
class IdentityChoice:
    identity: str
    images: int | None
    state: str  # present | queued | forgotten


@dataclass
class SubmitChoices:
    """What the submit form offers."""

    datasets: list[str]
    methods: list[str]
    default_method: str
    baselines: list[str]  # retrain first
    identities: dict[str, list[IdentityChoice]] = field(default_factory=dict)
    max_per_request: dict[str, int] = field(default_factory=dict)
