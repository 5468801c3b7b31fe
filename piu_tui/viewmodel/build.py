"""Builders: the service's state rows turned into views.

Pure functions (no I/O, no clock: ``now`` is passed in), so every screen's
content can be checked without a database or a terminal.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from piu_engine.core.config import AuditConfig
from piu_engine.service.jobstate import ACTIVE_STATES, JobState
from piu_engine.service.report import attempt_record, history_lines
from piu_engine.service.state import AttemptRow, EventRow, Heartbeat, IdentityRow, JobRow, VersionRow

from piu_tui.viewmodel.audit import audit_view, pool_lines
from piu_tui.viewmodel.format import (
    first_line,
    fmt_age,
    fmt_duration,
    fmt_metric,
    fmt_percent,
    fmt_seconds,
    fmt_when,
    names_preview,
)
from piu_tui.viewmodel.views import (
    METRIC_COLUMNS,
    DaemonStatus,
    IdentitiesView,
    IdentityLine,
    IdentityView,
    JobDetailView,
    JobView,
    MetricRow,
    ModelsView,
    PhaseView,
    VersionView,
)

#: Heartbeats older than this (seconds) mean the daemon is gone.
STALE_AFTER = 10.0
LOG_LINES = 200  # events shown in a job's log tail


def daemon_status(hb: Heartbeat | None, now: float) -> DaemonStatus:
    if hb is None:
        return DaemonStatus(
            "never", False, banner="daemon not running (it never started here: no heartbeat) — start `piu daemon`"
        )
    age = max(0.0, now - hb.updated_at)
    if hb.alive(now=now, stale_after=STALE_AFTER):
        problem = f"daemon running, but: {hb.problem}" if hb.problem else ""  # e.g. disk full, retrying
        return DaemonStatus("running", True, age, hb.device, hb.mode, hb.host, banner=problem)
    return DaemonStatus(
        "stopped",
        False,
        age,
        hb.device,
        hb.mode,
        hb.host,
        banner=f"daemon not running (last heartbeat {fmt_age(age)} ago) — showing last known state",
    )


def missing_status(db_path: Path) -> DaemonStatus:
    return DaemonStatus(
        "missing", False, banner=f"daemon not running (no state database at {db_path} yet) — start `piu daemon`"
    )


def error_status(exc: BaseException, previous: DaemonStatus | None = None) -> DaemonStatus:
    base = previous or DaemonStatus("error", False)
    return DaemonStatus(
        "error",
        False,
        base.age,
        base.device,
        base.mode,
        base.host,
        banner=f"cannot read the service state ({type(exc).__name__}: {first_line(str(exc), 60)}) "
        f"— showing last known state",
    )


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
    left: float | None = None
    if state == JobState.RUNNING:
        fraction = job.progress or 0.0
        progress = f"{phase or 'starting'} {fmt_percent(fraction)}"
        left = phase_eta(events, job.phase, now)
        eta = "-" if left is None else f"~{fmt_duration(left)}"
    elif state == JobState.QUEUED:
        progress = f"queued #{queue_pos}" if queue_pos else "queued"
        if job.attempts:
            progress += f" (attempt {job.attempts + 1})"
    elif state == JobState.DONE:
        fraction = 1.0
        progress = f"done → v{job.version}" if job.version is not None else "done"
    else:
        progress = first_line(job.error, 40) or state
    seconds = run_seconds(job, now)
    return JobView(
        id=job.id,
        state=state,
        dataset=job.dataset or "-",
        method=job.method or "-",
        identities=tuple(job.identities),
        identities_text=names_preview(job.identities, 18),
        phase=phase,
        fraction=fraction,
        progress_text=progress,
        test_acc=fmt_metric(m.get("test_acc")),
        mia=fmt_metric(m.get("mia")),
        nomus=fmt_metric(m.get("nomus")),
        elapsed=fmt_duration(seconds),
        eta=eta,
        error=first_line(job.error),
        version="" if job.version is None else f"v{job.version}",
        has_report=bool(job.report_dir) or (state == JobState.REJECTED and bool(job.error)),
        can_cancel=state in ACTIVE_STATES,
        can_retry=state in (JobState.FAILED, JobState.CANCELLED),
        gate=job.gate or "",
        file_name=job.file_name or "",
        reasons=tuple(line.strip() for line in (job.error or "").strip().splitlines() if line.strip()),
        sha256=job.sha256 or "",
        report_path=str(Path(job.report_dir) / "report.txt") if job.report_dir else "",
        elapsed_s=seconds,
        eta_s=left,
        requested_by=job.requested_by,
    )


def run_seconds(job: JobRow, now: float) -> float | None:
    """How long the job's current attempt ran; None when it never ran.

    A job cancelled while queued may keep the ``started_at`` of an earlier
    attempt (a retry or a crash re-queue does not reset it) but has no phase:
    it shows no elapsed time rather than the time it sat in the queue.
    """
    if job.started_at is None or job.state in (JobState.QUEUED, JobState.REJECTED):
        return None
    if job.state == JobState.RUNNING:
        return max(0.0, now - job.started_at)
    if job.finished_at is None:
        return None
    if job.state == JobState.CANCELLED and job.phase is None and job.progress is None:
        return None
    return max(0.0, job.finished_at - job.started_at)


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
        if job.state == JobState.DONE or best[name] >= 0.999:
            st, frac = "done", 1.0
        elif not last:
            st, frac = "done", best[name]
        elif job.state == JobState.RUNNING:
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
    return phase, tuple(
        float(ev.loss) for ev in events if ev.phase == phase and isinstance(ev.loss, (int, float))
    )  # NaN kept: the caption says so (the sparkline draws the finite points)


def _loss(v: float) -> str:
    return "NaN" if math.isnan(v) else f"{v:.4f}"


def loss_caption(phase: str, values: Sequence[float]) -> str:
    """``loss (phase): last  min  max  points``; a NaN loss is shown as NaN, never dropped silently."""
    if not values:
        return ""
    finite = [v for v in values if not math.isnan(v)]
    nan = len(values) - len(finite)
    span = f"min {min(finite):.4f}  max {max(finite):.4f}  " if finite else ""
    return f"loss ({phase}): {_loss(values[-1])}  {span}{len(values)} points" + (f", {nan} NaN" if nan else "")


def log_line(ev: EventRow, t0: float | None) -> str:
    rel = f"+{fmt_duration(ev.ts - t0)}" if t0 is not None else ""
    parts = [f"{rel:>8}", ev.phase or "-"]
    if ev.epochs:
        parts.append(f"epoch {ev.epoch}/{ev.epochs}")
    if ev.steps:
        parts.append(f"step {ev.step}/{ev.steps}")
    if ev.loss is not None:
        parts.append(f"loss {_loss(ev.loss)}")
    if ev.message:
        parts.append(ev.message)
    if ev.metrics:
        parts.append(" ".join(f"{k} {fmt_metric(v)}" for k, v in sorted(ev.metrics.items()) if fmt_metric(v) != "-"))
    return " ".join(p for p in parts if p)


def job_detail(
    job: JobRow | None,
    job_id: str,
    now: float,
    *,
    identities: Sequence[dict[str, Any]] = (),
    events: Sequence[EventRow] = (),
    parent: VersionRow | None = None,
    queue_pos: int | None = None,
    report_exists: bool = False,
    picture: str | None = None,
    waiting_file: Path | None = None,
    history: Sequence[AttemptRow] = (),
) -> JobDetailView:
    if job is None and waiting_file is not None:  # just submitted: the daemon has not read it yet
        return JobDetailView(
            job=None,
            job_id=job_id,
            title=f"{job_id}  SUBMITTED  waiting for the daemon to take it",
            info=(
                f"written to {waiting_file}",
                "the daemon checks the manifest and queues it within seconds while it runs; "
                "if the banner says it is not running, start it (see piu status)",
            ),
        )
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
    if job.gate:
        info.append("acceptance gate " + ("FAILED" if job.gate == "failed" else job.gate))
    if job.state == JobState.REJECTED:  # why, and which file, without opening the report
        info.append(f"rejected {job.file_name or 'manifest'}: nothing was run")
        info += [f"- {r}" for r in view.reasons]
    if result.get("note"):
        info.append(first_line(result["note"], 100))
    earlier = [a for a in history if a.batch_id != job.batch_id or a.kind == "retry"]
    if earlier:  # what happened before this attempt, kept across `piu retry`
        info.append(f"earlier ({len(earlier)}):")
        info += ["  " + line for line in history_lines([attempt_record(a) for a in earlier])]
    lines = tuple(
        IdentityLine(
            i["identity"],
            "?" if i.get("images") is None else str(i["images"]),
            str(i.get("status", "")).replace("_", " "),
            "" if i.get("version") is None else f"v{i['version']}",
        )
        for i in identities
    )
    if not lines:
        lines = tuple(IdentityLine(i, "?", "requested", "") for i in job.identities)
    # metrics: parent and new side by side, the baselines (retrain first), this request's own forget set
    rows: list[MetricRow] = []
    parent_m = outcome.get("parent") or job.parent_metrics or (parent.metrics if parent else {})
    if job.parent_version is not None or parent_m:
        rows.append(
            MetricRow(
                f"parent v{job.parent_version}" if job.parent_version is not None else "parent",
                metrics_values(parent_m),
            )
        )
    new_m = outcome.get("model") or job.metrics
    if job.state == JobState.DONE and job.version is not None and job.version == job.parent_version:
        pass  # nothing was run
    elif new_m:
        label = f"new v{job.version}" if job.version is not None else "new (not kept)"
        rows.append(MetricRow(label, metrics_values(new_m)))
    elif job.state in ACTIVE_STATES:
        rows.append(MetricRow("new …", metrics_values({})))
    baselines = outcome.get("baselines") or {}
    for name in baseline_order(job.compare, baselines):
        label = f"baseline {name}" + ("" if name in baselines else " …" if job.state in ACTIVE_STATES else " (not run)")
        rows.append(MetricRow(label, metrics_values(baselines.get(name))))
    own = (outcome.get("per_group") or {}).get(job.id)
    if own:
        rows.append(MetricRow("this request", metrics_values(own)))
    # run events: phases, loss curve, log tail
    phases = tuple(phases_of(events, job))
    loss_phase, all_losses = loss_series(events)
    loss_text = loss_caption(loss_phase, all_losses)
    losses = tuple(v for v in all_losses if not math.isnan(v))
    t0 = job.started_at if job.started_at is not None else (events[0].ts if events else None)
    log = [log_line(ev, t0) for ev in events[-LOG_LINES:]]
    if job.state in (JobState.FAILED, JobState.REJECTED, JobState.CANCELLED) and job.error:
        for line in job.error.strip().splitlines()[:20]:
            log += textwrap.wrap(f"{job.state}: {line}", 72, subsequent_indent="    ") or [""]  # fits 80 columns
    return JobDetailView(
        job=view,
        job_id=job.id,
        title=title,
        info=tuple(info),
        identities=lines,
        phases=phases,
        loss_phase=loss_phase,
        losses=losses,
        loss_text=loss_text,
        metrics=tuple(rows),
        log=tuple(log),
        report_path=str(Path(job.report_dir) / "report.txt") if job.report_dir and report_exists else None,
        error_text=job.error or "",
        audit=audit_view(job, picture),
    )


def identity_jobs(dataset: str, active_jobs: Sequence[JobRow]) -> dict[str, tuple[str, str]]:
    """identity -> (job id, queued | forgetting) for the people an active job names; a running job wins."""
    waiting: dict[str, tuple[str, str]] = {}
    for j in sorted(active_jobs, key=lambda j: j.state != JobState.RUNNING):
        if j.dataset == dataset and j.state in ACTIVE_STATES:
            for i in j.identities:
                waiting.setdefault(i, (j.id, "forgetting" if j.state == JobState.RUNNING else "queued"))
    return waiting


def identities_view(
    dataset: str,
    datasets: Sequence[str],
    rows: Sequence[IdentityRow],
    active_jobs: Sequence[JobRow],
    now: float,
    note: str = "",
) -> IdentitiesView:
    waiting = identity_jobs(dataset, active_jobs)
    out = []
    for r in rows:
        if r.state == "forgotten":
            state, job, when = "forgotten", r.job_id or "", fmt_when(r.forgotten_at, now)
        elif r.identity in waiting or r.state == "requested":
            job, state = waiting.get(r.identity, ("", "queued"))
            when = ""
        else:
            state, job, when = "present", "", ""
        out.append(
            IdentityView(
                r.identity,
                "?" if r.images is None else str(r.images),
                state,
                job,
                "" if r.version is None or state != "forgotten" else f"v{r.version}",
                when,
            )
        )
    return IdentitiesView(dataset, tuple(datasets), tuple(out), note)


def models_view(
    versions: Sequence[VersionRow], now: float, pools: Sequence[dict[str, Any]] = (), audit: AuditConfig | None = None
) -> ModelsView:
    out = []
    by_key = {(v.dataset, v.version): v for v in versions}
    for v in versions:
        parent = by_key.get((v.dataset, v.parent)) if v.parent is not None else None
        before = set(parent.forgotten) if parent else set()
        new = tuple(i for i in v.forgotten if i not in before)
        # one flat label: a long lineage indented one level per version ran off the screen
        lineage = f"v{v.version}" if v.parent is None else f"v{v.version} ← v{v.parent}"
        out.append(
            VersionView(
                key=f"{v.dataset}:{v.version}",
                dataset=v.dataset,
                version=v.version,
                lineage=lineage,
                source=v.source,
                method=v.method or "-",
                created=fmt_when(v.created_at, now),
                forgotten_total=len(v.forgotten),
                new_forgotten=new,
                all_forgotten=tuple(v.forgotten),
                jobs=tuple(v.job_ids),
                metrics=metrics_values(v.metrics),
                current=v.current,
                pruned=v.pruned,
            )
        )
    return ModelsView(tuple(out), pool_lines(pools, now, audit))
