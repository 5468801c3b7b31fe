"""One forget request, end to end, as the service's worker runs it.

Given the parent model and the identities to remove (plus everyone already
forgotten along the lineage), run the chosen method and any comparison
baselines, measure parent and new model the same way, and write the new
checkpoint atomically. The request and outcome types live in
:mod:`piu_engine.core.request`, which needs no PyTorch."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from piu_engine.common.events import EventSink, never_stop, no_events
from piu_engine.core.audit.pool import load_guide
from piu_engine.core.checkpoint import save_checkpoint
from piu_engine.core.config import Config
from piu_engine.core.data.splits import make_splits
from piu_engine.core.data.types import Split
from piu_engine.core.evaluate import forget_set_metrics
from piu_engine.core.metrics import per_sample
from piu_engine.core.request import DatasetInfo, ForgetOutcome, ForgetRequest, Metrics, TrainedModel
from piu_engine.core.train import check_finite_state
from piu_engine.core.workbench import Workbench


def describe_dataset(cfg: Config, dataset: str, preset: str = "") -> DatasetInfo:
    from piu_engine.core.data import load_dataset
    from piu_engine.core.presets import get_preset

    ds = load_dataset(cfg.dataset(dataset), get_preset(preset or cfg.bench.preset), cfg.resolve(cfg.engine.cache_dir))
    train = ds.identities[ds.indices(Split.TRAIN)]
    ids, counts = np.unique(train.astype(str), return_counts=True)
    return DatasetInfo(
        dataset, ds.num_outputs, ds.task.value, ids.tolist(), {i: int(c) for i, c in zip(ids.tolist(), counts.tolist())}
    )


def train_original(
    cfg: Config, dataset: str, preset: str = "", on_event: EventSink = no_events, should_stop=never_stop
) -> TrainedModel:
    """Train version 0 (the 'original' model) from scratch on the dataset's train split."""
    wb = Workbench(cfg, dataset, preset, on_event, should_stop)
    start = time.perf_counter()
    model, seconds, cached = wb.original(cfg.engine.seed)
    if cached:
        seconds = time.perf_counter() - start
    # Version 0 has forgotten no one: measure utility and how well an attacker
    # tells training people from never-seen ones (its membership leakage).
    train_ids = wb.ds.identities_in(Split.TRAIN)
    rng = np.random.default_rng(cfg.engine.seed)
    sample = rng.choice(train_ids, size=max(1, len(train_ids) // 4), replace=False).tolist()
    splits = make_splits(
        wb.ds, sample, unseen_unlearn_fraction=wb.dataset_cfg.unseen_unlearn_fraction, seed=cfg.engine.seed
    )
    metrics = wb.evaluate(model, splits, cfg.engine.seed)
    return TrainedModel(model.state_dict(), metrics, seconds, wb.ds.num_outputs, wb.ds.task.value)


def _group_metrics(wb: Workbench, model, splits, unseen_losses, identities: list[str], seed: int) -> dict:
    """One request's own forget-set figures inside a coalesced run."""
    wanted = set(identities)
    forget = splits.forget[np.array([i in wanted for i in wb.ds.identities[splits.forget]], dtype=bool)]
    return forget_set_metrics(model, wb.data, forget, unseen_losses, wb.cfg.metrics, wb.ds.identities, seed)


def _audit(wb: Workbench, model, parent, splits, seed: int) -> dict | None:
    """Each forgotten person's audit on the new model and on its parent, against the
    dataset's reference pool; None when no finished pool exists (`piu audit pool`)."""
    from piu_engine.core.audit.audit import audit_request
    from piu_engine.core.audit.pool import load_pool
    from piu_engine.core.audit.reference import PoolIncomplete

    a = wb.cfg.audit
    try:
        pool = load_pool(wb, a.models, a.seed)
    except (PoolIncomplete, FileNotFoundError):
        return None
    try:
        new, old = (audit_request(wb, pool, m, splits, fpr=a.fpr, seed=seed) for m in (model, parent))
    except ValueError as exc:  # e.g. too few never-seen people to calibrate on: say so, do not fail the run
        return {"error": str(exc)}
    return {
        "pool": {
            "k": pool.k,
            "seed": pool.seed,
            "model_seeds": pool.model_seeds,
            "created": pool.created,
            "completed": pool.completed,
        },
        "model": new.to_dict(),
        "parent": old.to_dict(),
    }


def run_forget(
    cfg: Config,
    request: ForgetRequest,
    parent_weights: Path,
    out_weights: Path,
    on_event: EventSink = no_events,
    should_stop=never_stop,
) -> ForgetOutcome:
    wb = Workbench(cfg, request.dataset, request.preset, on_event, should_stop)
    seed = request.seed
    splits = make_splits(
        wb.ds, request.identities, request.already_forgotten, wb.dataset_cfg.unseen_unlearn_fraction, seed
    )
    parent = wb.load_model(Path(parent_weights))
    parent_metrics = wb.evaluate(parent, splits, seed)
    guide = load_guide(wb)  # PIU-FR's per-person targets, once `piu audit pool --guide` has built it
    run = wb.run_method(request.method, parent, splits, seed, request.params, guide=guide)
    # A diverged model is never measured, saved or installed: check it before anything else.
    check_finite_state(run.model.state_dict(), method=request.method, phase="final weights")
    model_metrics = {**wb.evaluate(run.model, splits, seed), "seconds": run.seconds}
    baselines = {}
    for name in request.compare:
        base = wb.run_method(name, parent, splits, seed, guide=guide)
        baselines[name] = {**wb.evaluate(base.model, splits, seed), "seconds": base.seconds}
    unseen_losses, _ = per_sample(run.model, wb.data, splits.unseen_eval)
    per_group = {
        rid: _group_metrics(wb, run.model, splits, unseen_losses, ids, seed) for rid, ids in request.groups.items()
    }
    audit = _audit(wb, run.model, parent, splits, seed)
    sha = save_checkpoint(run.model.state_dict(), Path(out_weights))
    counts = {f"{k}_images": v for k, v in splits.counts().items()}
    counts["forget_identities"] = len(splits.forget_identities)
    counts["unseen_eval_identities"] = len(set(wb.ds.identities[splits.unseen_eval].tolist()))
    return ForgetOutcome(
        Metrics.from_dict(parent_metrics),
        Metrics.from_dict(model_metrics),
        {k: Metrics.from_dict(m) for k, m in baselines.items()},
        {k: Metrics.from_dict(m) for k, m in per_group.items()},
        counts,
        run.seconds,
        sha,
        run.params,
        audit,
        run.notes,
    )
