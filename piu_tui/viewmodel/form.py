"""The submit form's checks that need no service: the params text, and where each problem goes.

The request itself is judged by the service's own check (the client's, as
``piu validate`` and ``piu submit`` use it); this module only turns that
check's problems into plain words placed under the field they are about.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from piu_engine.service.state import JobRow

from piu_tui.viewmodel.build import identity_jobs
from piu_tui.viewmodel.views import SubmitChoices

#: The form's fields, top to bottom; a problem about anything else goes under the form.
FIELDS = ("dataset", "method", "identities", "compare", "requested_by", "priority", "reason", "request_id", "params")
OTHER = "other"

# how the service names a field in its problems -> the form's field
ALIASES = {"method/params": "params", "requested_by": "requested_by", "baselines": "compare"}

PLAIN: tuple[tuple[str, str], ...] = (  # (pattern, plain words), tried in order
    (r"^\[\] should be non-empty$", "choose at least one identity (space ticks one)"),
    (r"is not of type 'integer'$", "must be a whole number"),
    (r"^params\.([^:]+): unknown parameter of (\S+) \(known: (.*)\)$", r"\1 is not a parameter of \2; it takes: \3"),
    (r"^lists the request's own method '([^']+)'$", r"untick \1: it is the request's own method"),
)


def parse_params(text: str) -> tuple[dict[str, Any] | None, str]:
    """(params, problem): the params field as a JSON object; empty text is no params."""
    if not text.strip():
        return {}, ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f'not valid JSON ({exc.msg} at character {exc.pos + 1}); e.g. {{"epochs": 3}}'
    if not isinstance(value, dict):
        return None, f'must be a JSON object like {{"epochs": 3}}, not {type(value).__name__}'
    return value, ""


def field_of(problem: str) -> tuple[str, str]:
    """(field, the rest of the sentence) for one of the service's problems."""
    for prefix in ("missing field: ", "unknown field: "):
        if problem.startswith(prefix):
            return OTHER, problem
    if problem.startswith(("request_id ", "request ")):  # "request_id 'x' was received before ...": reads well whole
        return "request_id", problem
    head, sep, rest = problem.partition(": ")
    key = re.sub(r"\[\d+\]$", "", head.strip())
    key = ALIASES.get(key, key)
    if sep and key in FIELDS:
        return key, rest
    return OTHER, problem


def plain(text: str) -> str:
    for pattern, words in PLAIN:
        if re.search(pattern, text):
            return re.sub(pattern, words, text) if "\\" in words else words
    return text


def field_problems(problems: Iterable[str]) -> dict[str, list[str]]:
    """The service's problems grouped by the form field they are about, in plain words."""
    out: dict[str, list[str]] = {}
    for p in problems:
        field, rest = field_of(p)
        out.setdefault(field, []).append(plain(rest))
    return out


def limit_problem(chosen: int, limit: int | None) -> str:
    """What to say when one more tick would pass the service's per-request limit."""
    if limit is None or chosen < limit:
        return ""
    return f"at most {limit} identities per request (service.max_forget_share): untick one to choose another"


def mark_active(choices: SubmitChoices, active_jobs: Sequence[JobRow]) -> SubmitChoices:
    """Say ``forgetting`` for the people a running job is forgetting now, ``queued`` for those waiting."""
    for dataset, rows in choices.identities.items():
        waiting = identity_jobs(dataset, active_jobs)
        for row in rows:
            if row.state != "forgotten" and row.identity in waiting:
                row.state = waiting[row.identity][1]
    return choices
