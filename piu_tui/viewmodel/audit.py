"""The per-person audit and the reference pool, as the job detail and the
models screen show them.

Pure functions of the stored audit dict (``outcome.audit`` of a job's result)
and of the pool manifests. Stored JSON holds a number that could not be
measured (NaN) as null; an audited person's z or p that is null is shown as
"NaN", never left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from piu_engine.core.audit.manifest import AUDIT_POOL, NO_AUDIT_POOL, POOL_LABELS, pool_role
from piu_engine.core.config import AuditConfig
from piu_engine.service.jobstate import ACTIVE_STATES
from piu_engine.service.report import AUDIT_QUESTION, audit_check, audit_decision
from piu_engine.service.state import JobRow

from piu_tui.viewmodel.format import fmt_metric, fmt_when
from piu_tui.viewmodel.views import AuditPersonLine, AuditView

BLOCKS = " ▁▂▃▄▅▆▇█"
KEYS = "123456789abcdefghijklmnopqrstuvwxyz"  # histogram marks; more people share "•"
HIST_WIDTH = 60  # fits an 80-column terminal with the panel's padding and scroll bar
HIST_HEIGHT = 3  # rows of bars (8 levels each)
PEOPLE_SHOWN = 30
NO_POOL = "not audited: no reference pool for this dataset (build one with `piu audit pool`)"


def _finite(v: Any) -> float | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def fmt_z(v: Any) -> str:
    f = _finite(v)
    return "NaN" if f is None else f"{f:+.2f}"


def fmt_p(v: Any) -> str:
    f = _finite(v)
    return "NaN" if f is None else f"{f:.3f}"


def seeds_text(seeds: Sequence[Any] | None, shown: int = 6) -> str:
    if not seeds:
        return ""
    head = ", ".join(str(s) for s in list(seeds)[:shown])
    return head + (f", … ({len(seeds)} in all)" if len(seeds) > shown else "")


def _when(iso: str | None, now: float) -> str:
    """An ISO time from a pool manifest as local time with its age."""
    if not iso:
        return "-"
    try:
        return fmt_when(datetime.fromisoformat(iso).timestamp(), now)
    except ValueError:
        return iso


def z_histogram(
    z: Sequence[Any],
    marks: Sequence[tuple[str, Any]] = (),
    lower: Any = None,
    upper: Any = None,
    width: int = HIST_WIDTH,
    height: int = HIST_HEIGHT,
) -> tuple[str, ...]:
    """Rows of a unicode-block histogram of ``z``, then a row with each mark
    (key, z) and the thresholds (┆) under its column, then the z axis."""
    zs = [f for v in z if (f := _finite(v)) is not None]
    if not zs:
        return ("(no never-seen people's z to draw)",)
    pts = [(k, f) for k, v in marks if (f := _finite(v)) is not None]
    edges = [f for v in (lower, upper) if (f := _finite(v)) is not None]
    lo, hi = min([*zs, *(f for _, f in pts), *edges]), max([*zs, *(f for _, f in pts), *edges])
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0

    def col(v: float) -> int:
        return min(width - 1, max(0, int((v - lo) / (hi - lo) * width)))

    bins = max(8, min(width // 2, round(2 * math.sqrt(len(zs)))))  # bars a few columns wide, not one per point
    counts = [0] * bins
    for v in zs:
        counts[min(bins - 1, int((v - lo) / (hi - lo) * bins))] += 1
    top = max(counts)
    eighths = [max(1, round(n / top * height * 8)) if n else 0 for n in counts]  # a lone person still shows
    units = [eighths[c * bins // width] for c in range(width)]
    rows = ["".join(BLOCKS[max(0, min(8, u - 8 * r))] for u in units) for r in range(height - 1, -1, -1)]
    mark = [" "] * width
    for f in edges:
        mark[col(f)] = "┆"
    for k, f in pts:
        c = col(f)
        mark[c] = k if mark[c] in " ┆" else "•"
    axis = [" "] * width
    left, right = f"{lo:+.1f}", f"{hi:+.1f}"
    axis[: len(left)] = left
    axis[width - len(right) :] = right
    if lo < 0 < hi and len(left) + 1 < col(0.0) < width - len(right) - 1:
        axis[col(0.0)] = "0"
    return (*rows, "".join(mark), "".join(axis))


def _side_map(side: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["identity"]: p for p in side.get("people") or [] if "identity" in p}


def _gate_text(gate: dict[str, Any] | None) -> str:
    check, decision = audit_check(gate), audit_decision(gate)
    if check is None or decision is None:
        return ""
    return f"gate on the audit: {decision if decision == 'not gated' else decision.upper()}: {check.get('note')}"


def audit_view(job: JobRow, picture: str | None = None) -> AuditView:
    """What the job detail shows of the job's audit; ``picture``: audit.png's path when it exists."""
    outcome = (job.result or {}).get("outcome")
    if outcome is None:
        if job.state in ACTIVE_STATES:
            return AuditView("pending", "audit: after unlearning, when the dataset has a reference pool")
        return AuditView("not audited", "audit: nothing was run")
    audit = outcome.get("audit")
    gate = _gate_text((job.result or {}).get("gate"))
    if not audit:
        return AuditView("not audited", NO_POOL, gate=gate)
    if audit.get("error"):
        return AuditView("not audited", f"not audited: {audit['error']}", gate=gate)
    pool, new, old = audit.get("pool") or {}, audit.get("model") or {}, audit.get("parent") or {}
    seeds = seeds_text(pool.get("model_seeds"))
    headline = (
        f"Tested against {pool.get('k')} reference models (pool seed {pool.get('seed')}"
        + (f", model seeds {seeds}" if seeds else "")
        + f"), two-sided at {100 * float(new.get('fpr') or 0):.0f}% false positives on never-seen people"
    )
    guide = (outcome.get("method_notes") or {}).get("guide")
    if guide:
        headline += f"; the method aimed at guide pool seed {guide.get('guide_pool_seed')} (never this pool)"
    before = _side_map(old)
    people = list(new.get("people") or [])
    lines = []
    for i, p in enumerate(people[:PEOPLE_SHOWN]):
        was = before.get(p.get("identity", ""))
        lines.append(
            AuditPersonLine(
                KEYS[i] if i < len(KEYS) else "•",
                str(p.get("identity")),
                str(p.get("verdict")),
                fmt_z(p.get("z")),
                fmt_p(p.get("p_value")),
                fmt_z(p.get("score")),
                f"{was.get('verdict')}, z {fmt_z(was.get('z'))}" if was else "",
            )
        )
    cal = new.get("calibration") or {}
    z = cal.get("z") or []
    nan = sum(1 for v in z if _finite(v) is None)
    caption = (
        f"never-seen people's z on the new model (n={len(z)}"
        + (f", {nan} NaN not drawn" if nan else "")
        + "); forgotten people marked by key; ┆ thresholds"
    )
    marks = [(line.key, p.get("z")) for line, p in zip(lines, people)]
    hist = (caption, *z_histogram(z, marks, cal.get("lower"), cal.get("upper")))
    s = new.get("summary") or {}
    summary = (
        f"flagged {fmt_metric(s.get('flagged_fraction'))} of {s.get('n_people')} people; AUC against "
        f"{s.get('n_never_seen')} never-seen people {fmt_metric(s.get('auc'))} (0.5: indistinguishable)"
        if s
        else ""
    )
    return AuditView(
        "audited",
        headline,
        AUDIT_QUESTION,
        tuple(lines),
        max(0, len(people) - PEOPLE_SHOWN),
        hist,
        summary,
        gate,
        f"picture: {picture}" if picture else "",
    )


def pool_lines(pools: Sequence[dict[str, Any]], now: float, audit: AuditConfig | None = None) -> tuple[str, ...]:
    """One line per reference pool (``list_pools``): its role under the ``[audit]`` settings
    (:func:`~piu_engine.core.audit.manifest.pool_role`), size, seeds, how far built and
    how old; a line saying the audit has none."""
    audit = audit or AuditConfig()
    roles = [pool_role(p, audit) for p in pools]
    out = [] if AUDIT_POOL in roles else [NO_AUDIT_POOL]
    for p, role in zip(pools, roles):
        built = (
            f"built {_when(p.get('completed'), now)}"
            if p.get("completed")
            else f"{p.get('done')} of {p.get('k')} models built so far (started {_when(p.get('created'), now)})"
        )
        seeds = seeds_text(p.get("model_seeds"))
        out.append(
            f"{POOL_LABELS[role]} {p.get('dataset')} (preset {p.get('preset')}): {p.get('k')} models, "
            f"pool seed {p.get('seed')}" + (f", model seeds {seeds}" if seeds else "") + f"; {built}"
        )
    return tuple(out)
