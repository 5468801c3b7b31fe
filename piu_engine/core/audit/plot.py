"""The audit as a picture for the report folder: never-seen people's z with
each forgotten person marked, on the parent model (before) and the new one
(after).

Drawn from the stored audit dict alone (``AuditResult.to_dict`` of both
models), so a report rewritten from the state database gets the same
picture. matplotlib's object API on the Agg canvas: no display, no pyplot
state shared between threads. Importing this module needs matplotlib; the
report writer treats an ImportError as "no picture, and say why".
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from piu_engine.core.audit.result import FORGOTTEN, INDISTINGUISHABLE, RECOGNISABLE

PICTURE = "audit.png"
COLOURS = {INDISTINGUISHABLE: "#2e7d32", RECOGNISABLE: "#c62828", FORGOTTEN: "#ef6c00"}
LABELLED = 8  # forgotten people named on the picture; more are marked only
BINS = 24


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _limits(sides: Sequence[dict[str, Any]]) -> tuple[float, float]:
    """One z range for both panels, so before and after compare by eye."""
    vals: list[float] = []
    for s in sides:
        cal = s.get("calibration") or {}
        vals += _finite(cal.get("z") or [])
        vals += _finite([p.get("z") for p in s.get("people") or []])
        vals += _finite([cal.get("lower"), cal.get("upper")])
    if not vals:
        return -3.0, 3.0
    lo, hi = min(vals), max(vals)
    pad = max(0.5, 0.08 * (hi - lo))
    return lo - pad, hi + pad


def _panel(ax, side: dict[str, Any] | None, title: str, limits: tuple[float, float]) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlim(*limits)
    ax.set_xlabel("z (0: as the reference models that never saw the person)", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of people
    if not side:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="grey")
        return
    cal = side.get("calibration") or {}
    z = _finite(cal.get("z") or [])
    lo, hi = limits
    width = (hi - lo) / BINS
    ax.hist(z, bins=[lo + i * width for i in range(BINS + 1)], color="#90a4ae", edgecolor="white")
    ax.set_ylabel(f"never-seen people (n={len(z)})", fontsize=8)
    for edge in ("lower", "upper"):
        v = cal.get(edge)
        if isinstance(v, (int, float)) and math.isfinite(v):
            ax.axvline(v, color="#455a64", linestyle="--", linewidth=1)


def _marks(ax, side: dict[str, Any] | None, top: float) -> None:
    """Each forgotten person as a line in the colour of its verdict, the first few named."""
    unplaced = []
    for i, p in enumerate((side or {}).get("people") or []):
        v = p.get("z")
        colour = COLOURS.get(p.get("verdict"), "black")
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            unplaced.append(str(p.get("identity")))  # NaN z (stored as null): named, never dropped silently
            continue
        ax.axvline(v, color=colour, linewidth=1.5)
        ax.plot([v], [top * 0.97], marker="v", color=colour, markersize=7)
        if i < LABELLED:
            ax.annotate(
                str(p.get("identity")),
                (v, top * (0.9 - 0.09 * (i % 4))),
                fontsize=7,
                color=colour,
                rotation=90,
                ha="right",
                va="top",
            )
    if unplaced:
        shown = ", ".join(unplaced[:4]) + (f" and {len(unplaced) - 4} more" if len(unplaced) > 4 else "")
        ax.text(0.01, 0.98, f"z NaN, not drawn: {shown}", transform=ax.transAxes, fontsize=7, va="top", color="black")


def render_png(audit: dict[str, Any], before: str = "before: parent model", after: str = "after: new model") -> bytes:
    """PNG bytes of ``audit`` (the ``audit`` entry of a job's outcome)."""
    new, old = audit.get("model") or {}, audit.get("parent") or {}
    pool = audit.get("pool") or {}
    fig = Figure(figsize=(10, 4.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    limits = _limits([s for s in (old, new) if s])
    _panel(axes[0], old or None, before, limits)
    _panel(axes[1], new or None, after, limits)
    top = axes[0].get_ylim()[1] * 1.15  # room for the markers above the tallest bar
    axes[0].set_ylim(0, top)
    _marks(axes[0], old or None, top)
    _marks(axes[1], new or None, top)
    handles = [Line2D([], [], color=c, marker="v", label=v) for v, c in COLOURS.items()]
    handles.append(Line2D([], [], color="#455a64", linestyle="--", label="thresholds"))
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    fpr = new.get("fpr") or old.get("fpr")
    fig.suptitle(
        f"Per-person audit: forgotten people (marked) among never-seen people, "
        f"{pool.get('k')} reference models, pool seed {pool.get('seed')}"
        + (f", two-sided {100 * float(fpr):.0f}% false positives" if fpr else ""),
        fontsize=10,
    )
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()
