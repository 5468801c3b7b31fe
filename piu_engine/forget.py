"""One forget request, end to end, as the service runs it.

Given the parent model and the identities to remove (plus everyone already
forgotten along the lineage), run the chosen method and any comparison
baselines, measure parent and new model the same way, and write the new
checkpoint atomically. The daemon's worker calls :func:`run_forget`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from piu_engine.config import Config
from piu_engine.events import EventSink, never_stop, no_events


@dataclass
class ForgetRequest:
    dataset: str  # a configured dataset name
    groups: dict[str, list[str]]  # request_id -> identities it asks to forget (coalesced batch)
    already_forgotten: list[str] = field(default_factory=list)  # earlier versions in the lineage
    method: str = "piu-fr"
    params: dict[str, Any] = field(default_factory=dict)
    compare: list[str] = field(default_factory=list)
    seed: int = 0
    preset: str = ""  # "" = the bench preset in config

    @property
    def identities(self) -> list[str]:
        seen: dict[str, None] = {}
        for ids in self.groups.values():
            for i in ids:
                seen.setdefault(i, None)
        return list(seen)


@dataclass
class ForgetOutcome:
    parent: dict[str, Any]  # metrics of the parent model on this request's splits
    model: dict[str, Any]  # metrics of the new model
    baselines: dict[str, dict[str, Any]]  # compare method -> metrics
    per_group: dict[str, dict[str, Any]]  # request_id -> metrics on its own forget set
    counts: dict[str, int]  # images per split the figures rest on
    seconds: float  # wall-clock of the unlearning method itself
    sha256: str  # of the written checkpoint
    method_params: dict[str, Any] = field(default_factory=dict)


def run_forget(cfg: Config, request: ForgetRequest, parent_weights: Path, out_weights: Path,
               on_event: EventSink = no_events, should_stop=never_stop) -> ForgetOutcome:
    from piu_engine.forget_impl import run_forget as _impl

    return _impl(cfg, request, parent_weights, out_weights, on_event, should_stop)


@dataclass
class DatasetInfo:
    """What the service needs to know to validate a request against a dataset."""

    name: str
    num_outputs: int
    task: str
    train_identities: list[str]  # identities that can be forgotten
    images_per_identity: dict[str, int]  # training images per train identity


def describe_dataset(cfg: Config, dataset: str, preset: str = "") -> DatasetInfo:
    from piu_engine.forget_impl import describe_dataset as _impl

    return _impl(cfg, dataset, preset)


@dataclass
class TrainedModel:
    state_dict: dict
    metrics: dict[str, Any]  # test_acc etc. of the trained model (MIA vs unseen eval part)
    seconds: float
    num_outputs: int
    task: str


def train_original(cfg: Config, dataset: str, preset: str = "", on_event: EventSink = no_events,
                   should_stop=never_stop) -> TrainedModel:
    """Train version 0 (the 'original' model) from scratch on the dataset's train split."""
    from piu_engine.forget_impl import train_original as _impl

    return _impl(cfg, dataset, preset, on_event, should_stop)
