"""Building the reference pool: K models trained from scratch with the
dataset's own recipe, each on its planned half of the training identities.

``train_pool_model`` trains, scores and saves one model and is the unit a
parallel executor (e.g. one Ray task per model) can run; ``build_pool`` runs
the missing ones in turn. Each finished model is two atomic files (weights,
then its per-person scores), so a build killed at any point resumes with the
models it had finished.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np

from piu_engine.common import jsonout
from piu_engine.common.events import EventSink, ProgressEvent, never_stop, no_events
from piu_engine.common.fsio import atomic_write_bytes, private_dirs
from piu_engine.core.audit.manifest import read_manifest, write_manifest
from piu_engine.core.audit.plan import PoolPlan, plan_pool
from piu_engine.core.audit.reference import PoolIncomplete, ReferencePool
from piu_engine.core.audit.scores import person_scores
from piu_engine.core.checkpoint import save_checkpoint
from piu_engine.core.data.types import Split
from piu_engine.core.train import fit

if TYPE_CHECKING:  # the workbench imports the methods; only its type is needed here
    from piu_engine.core.workbench import Workbench

PHASE = "audit:pool"


@dataclass
class PoolModelRecord:
    index: int
    seed: int
    sha256: str
    train_seconds: float
    score_seconds: float
    cached: bool  # True when it was already on disk


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _pool_events(on_event: EventSink, i: int, k: int):
    """Re-label one model's training events as model i of k in the pool phase,
    with steps counted over the model's whole run so ``fraction`` is the pool's."""

    def sink(ev: ProgressEvent) -> None:
        steps = max(1, ev.epochs * ev.steps)
        step = (max(ev.epoch, 1) - 1) * ev.steps + ev.step
        on_event(
            ProgressEvent(
                PHASE,
                i + 1,
                k,
                min(step, steps),
                steps,
                ev.loss,
                {**ev.metrics, "model": i + 1, "models": k, "epoch": ev.epoch, "epochs": ev.epochs},
                "training",
            )
        )

    return sink


def _finished(plan: PoolPlan, i: int) -> dict | None:
    side = plan.scores_path(i)
    if not (side.exists() and plan.model_path(i).exists()):
        return None
    data = json.loads(side.read_text())
    return data if data.get("key") == plan.model_keys[i] else None


def train_pool_model(
    wb: Workbench, plan: PoolPlan, i: int, on_event: EventSink = no_events, should_stop=never_stop
) -> PoolModelRecord:
    """Train reference model ``i`` of ``plan`` (or find it already trained).

    Trains from scratch on the training images of its member identities with
    the workbench's recipe and the model's own seed, scores every person in
    the dataset with it, and writes the weights and then the scores sidecar
    atomically. Raises ``Interrupted`` at a step boundary when ``should_stop``.
    """
    done = _finished(plan, i)
    if done is not None:
        return PoolModelRecord(i, plan.seeds[i], done["sha256"], done["train_seconds"], done["score_seconds"], True)
    wanted = set(plan.member_identities(i))
    train = wb.ds.indices(Split.TRAIN)
    idx = train[np.array([p in wanted for p in wb.ds.identities[train]], dtype=bool)]
    control = replace(wb.control, on_event=_pool_events(on_event, i, plan.k), should_stop=should_stop)
    model = wb.new_model(plan.seeds[i])
    train_seconds = fit(model, wb.data, idx, wb.recipe, plan.seeds[i], control, phase=PHASE)
    start = time.perf_counter()
    everyone = sorted(set(wb.ds.identities.tolist()))
    scores, _ = person_scores(model, wb.data, wb.ds.identities, everyone)
    score_seconds = time.perf_counter() - start
    private_dirs(plan.directory)
    sha = save_checkpoint(model.state_dict(), plan.model_path(i))
    atomic_write_bytes(
        plan.scores_path(i),
        jsonout.dumps(
            {
                "key": plan.model_keys[i],
                "index": i,
                "seed": plan.seeds[i],
                "sha256": sha,
                "model_file": plan.model_path(i).name,
                "n_members": len(wanted),
                "n_images": int(len(idx)),
                "train_seconds": train_seconds,
                "score_seconds": score_seconds,
                "finished": _now(),
                "scores": scores,
            }
        ).encode(),
    )
    return PoolModelRecord(i, plan.seeds[i], sha, train_seconds, score_seconds, False)


def update_manifest(wb: Workbench, plan: PoolPlan) -> dict:
    """Rewrite the manifest from what is on disk (safe to call from any worker, any time)."""
    old = read_manifest(plan.directory) or {}
    models = []
    for i in range(plan.k):
        done = _finished(plan, i)
        models.append(
            {
                "index": i,
                "seed": plan.seeds[i],
                "key": plan.model_keys[i],
                "model_file": plan.model_path(i).name,
                "scores_file": plan.scores_path(i).name,
                "status": "done" if done else "pending",
                "sha256": done["sha256"] if done else None,
                "train_seconds": done["train_seconds"] if done else None,
            }
        )
    all_done = all(m["status"] == "done" for m in models)
    data = {
        "key": plan.key,
        "k": plan.k,
        "seed": plan.seed,
        "model_seeds": plan.seeds,
        "dataset": wb.dataset_name,
        "preset": wb.preset.name,
        "recipe": asdict(wb.recipe),
        "device": wb.device_name,
        "created": old.get("created") or _now(),
        "completed": (old.get("completed") or _now()) if all_done else None,
        "identities": plan.identities,
        "members": plan.members.astype(int).tolist(),
        "models": models,
    }
    write_manifest(plan.directory, data)
    return data


def build_pool(
    wb: Workbench, k: int = 16, seed: int = 0, on_event: EventSink = no_events, should_stop=never_stop
) -> ReferencePool:
    """Train every missing model of the pool (k, seed) for ``wb`` and return it.

    Emits ``audit:pool`` events: training steps of model i of k (``epoch`` is
    the model number), one event per model with message "cached" or
    "trained", and a final "done".
    """
    plan = plan_pool(wb, k, seed)
    update_manifest(wb, plan)
    for i in range(k):
        rec = train_pool_model(wb, plan, i, on_event, should_stop)
        on_event(
            ProgressEvent(
                PHASE,
                i + 1,
                k,
                1,
                1,
                None,
                {"model": i + 1, "models": k, "seconds": rec.train_seconds, "seed": rec.seed},
                "cached" if rec.cached else "trained",
            )
        )
        if not rec.cached:
            update_manifest(wb, plan)
    update_manifest(wb, plan)
    on_event(ProgressEvent(PHASE, k, k, 1, 1, None, {"models": k}, "done"))
    return ReferencePool.read(plan.directory)


def load_pool(wb: Workbench, k: int = 16, seed: int = 0) -> ReferencePool:
    """The finished pool (k, seed) for ``wb``; ``PoolIncomplete`` if it is not built yet."""
    return ReferencePool.read(plan_pool(wb, k, seed).directory)


def load_guide(wb: Workbench) -> ReferencePool | None:
    """The dataset's guide pool (``[audit] models``, ``guide_seed``) for PIU-FR's
    per-person targets, or None until ``piu audit pool --guide`` has built it."""
    try:
        return load_pool(wb, wb.cfg.audit.models, wb.cfg.audit.guide_seed)
    except (PoolIncomplete, FileNotFoundError):
        return None


def run_pool_task(cfg, dataset: str, preset: str, k: int, seed: int, i: int) -> dict:
    """One reference model as a self-contained task (e.g. a Ray remote function):
    builds its own workbench, trains model ``i`` of pool (k, seed) if missing,
    refreshes the manifest and returns the record as plain data. Run all k,
    then :func:`load_pool`."""
    from piu_engine.core.workbench import Workbench

    wb = Workbench(cfg, dataset, preset)
    plan = plan_pool(wb, k, seed)
    record = train_pool_model(wb, plan, i)
    update_manifest(wb, plan)
    return asdict(record)
