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
    """Whether the daemon runs, from its heartbeat; ``banner`` is "" while it serves normally."""

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
    gate: str = ""  # the acceptance gate: passed | failed | not gated; "" before a run ended
    file_name: str = ""  # the manifest file the request came in
    reasons: tuple[str, ...] = ()  # every line of the error (a rejection lists one reason a line)
    sha256: str = ""
    report_path: str = ""  # report.txt, once the job has a report folder
    elapsed_s: float | None = None  # raw values, so the table sorts by them
    eta_s: float | None = None
    requested_by: str = ""
    #: "cancelling" or "retrying" from the moment it was asked until the daemon's state shows it
    pending: str = ""

    @property
    def state_text(self) -> str:
        return self.pending or str(self.state)


# Screen actions that need a job, and whether a job allows each one.
JOB_ACTIONS: dict[str, Callable[[JobView], bool]] = {
    "open_job": lambda job: True,
    "cancel_job": lambda job: job.can_cancel,
    "retry_job": lambda job: job.can_retry,
    "open_report": lambda job: job.has_report,
    "copy_id": lambda job: True,
    "copy_sha": lambda job: bool(job.sha256),
    "copy_report_path": lambda job: bool(job.report_path),
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
class AuditPersonLine:
    """One forgotten person's verdict; ``key`` marks them on the histogram."""

    key: str
    identity: str
    verdict: str
    z: str
    p: str
    score: str
    before: str  # "still recognisable, z +3.10" on the parent model, or ""


@dataclass(frozen=True)
class AuditView:
    """The per-person audit of a job (or one line saying why there is none)."""

    state: str  # audited | not audited | pending
    headline: str
    question: str = ""
    people: tuple[AuditPersonLine, ...] = ()
    more: int = 0  # people not listed here (see report.txt)
    histogram: tuple[str, ...] = ()
    summary: str = ""
    gate: str = ""
    picture: str = ""


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
    audit: AuditView | None = None


@dataclass(frozen=True)
class IdentityView:
    identity: str
    images: str
    state: str  # present | queued | forgetting (a running job) | forgotten
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

    def count_line(self, shown: int, filter_text: str = "") -> str:
        """The line above the table; when it is empty, what to do about it."""
        if not self.rows:
            if not self.dataset:
                return "no dataset configured: add one under [datasets] in config.toml"
            return f"no identities known for {self.dataset} yet: the daemon records them when it reads the dataset"
        if not shown:
            return f"nobody in {self.dataset} matches “{filter_text.strip()}”: change the filter (/) or clear it"
        line = f"{shown} of {len(self.rows)} identities of {self.dataset} ({self.counts_text})"
        return line + (f" — {self.note}" if self.note else "") + " · enter: history"


@dataclass(frozen=True)
class VersionView:
    key: str  # "dataset:version"
    dataset: str
    version: int
    lineage: str  # "v0" / "v1 ← v0"
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
    pools: tuple[str, ...] = ()  # one line per reference pool: size, seeds, age


@dataclass
class IdentityChoice:
    identity: str
    images: int | None
    state: str  # present | queued | forgetting | forgotten


@dataclass
class SubmitChoices:
    """What the submit form offers."""

    datasets: list[str]
    methods: list[str]
    default_method: str
    baselines: list[str]  # retrain first
    identities: dict[str, list[IdentityChoice]] = field(default_factory=dict)
    max_per_request: dict[str, int] = field(default_factory=dict)
