"""The forget request and what it produced, as plain types without PyTorch.

Both sides of the process boundary use them: the service builds a
:class:`ForgetRequest`, the worker runs it (:mod:`piu_engine.core.forget`)
and sends a :class:`ForgetOutcome` back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


@dataclass
class DatasetInfo:
    """What the service needs to know to validate a request against a dataset."""

    name: str
    num_outputs: int
    task: str
    train_identities: list[str]  # identities that can be forgotten
    images_per_identity: dict[str, int]  # training images per train identity


@dataclass
class TrainedModel:
    state_dict: dict
    metrics: dict[str, Any]  # test_acc etc. of the trained model (MIA vs unseen eval part)
    seconds: float
    num_outputs: int
    task: str
