"""Typed messages that thread workers post back to the screens.

Snapshot messages replace an older one still waiting in the queue
(``can_replace``), so a slow screen never works through a backlog of stale
states: only the newest is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from piu_tui.actions import ActionResult
from piu_tui.viewmodel.person import PersonView
from piu_tui.viewmodel.views import DashboardView, IdentitiesView, JobDetailView, ModelsView, SubmitChoices


class _Snapshot(Message, bubble=False):
    def can_replace(self, message: Message) -> bool:
        return type(message) is type(self)


@dataclass
class DashboardUpdated(_Snapshot):
    view: DashboardView


@dataclass
class JobDetailUpdated(_Snapshot):
    view: JobDetailView


@dataclass
class IdentitiesUpdated(_Snapshot):
    view: IdentitiesView


@dataclass
class ModelsUpdated(_Snapshot):
    view: ModelsView


@dataclass
class ReportLoaded(Message, bubble=False):
    title: str
    text: str


@dataclass
class ChoicesLoaded(Message, bubble=False):
    choices: SubmitChoices


@dataclass
class ActionFinished(Message, bubble=False):
    """A cancel, retry or submit came back (``result.ok`` says how it went)."""

    action: str
    job_id: str
    result: ActionResult


@dataclass
class PersonUpdated(_Snapshot):
    view: PersonView
