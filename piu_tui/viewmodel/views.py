"""The view dataclasses: every value a screen shows, already formatted.

Frozen (compared by value, so a screen redraws only what changed) and
built by :mod:`piu_tui.viewmodel.build`; the submit form's choices are
filled by :class:`piu_tui.actions.Submitter`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from piu_engine.service.jobstate import JobState

from piu_tui.viewmodel.format import fmt_age, fmt_percent

#: Metric columns of the detail and model tables: (key, header).
METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("test_acc", "test"),
    ("forget_acc", "forget"),
    ("retain_acc", "retain"),
    ("mia", "MIA"),
    ("forgetting_score", "F-score"),
    ("nomus", "NoMUS"),
    ("seconds", "time"),
)


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
    state: JobState
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
JOB_ACTIONS: dict[str, Callable[[JobView], bool]] = {
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
