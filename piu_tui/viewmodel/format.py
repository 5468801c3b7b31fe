"""Text formatting for the view-model: durations, ages, metrics, clipped names.

Pure functions of their arguments (the current time is passed in).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from piu_engine.common.text import clip, first_line

__all__ = ["clip", "first_line"]  # the TUI's formatting helpers, shared with the engine's reports

IDENTITIES_SHOWN = 3  # names shown in the dashboard's identities column


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


def num(value: Any) -> float | None:
    """``value`` as a float; None for anything that is not a number (a bool, NaN, a string, None)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def fmt_metric(value: Any, digits: int = 3) -> str:
    """``-`` for a figure nobody measured; ``NaN`` for one measured as NaN (never hidden)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return f"{value:.{digits}f}"


def fmt_seconds(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return fmt_duration(float(value))


def fmt_percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * max(0.0, min(1.0, fraction)):.0f}%"


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
