"""Text cut to fit one line: for tables, logs and one-line summaries of errors."""

from __future__ import annotations


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in ``…`` when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def first_line(text: str | None, width: int = 70) -> str:
    """The first non-blank line of ``text``, clipped to ``width``; "" for nothing."""
    if not text or not text.strip():
        return ""
    return clip(text.strip().splitlines()[0], width)
