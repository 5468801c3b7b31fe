"""The unlearning benchmark: original model, then every method on the same
forget request, measured the same way, one row per method and seed."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

from piu_engine.common import jsonout
from piu_engine.common.events import EventSink, no_events
from piu_engine.core.config import Config
from piu_engine.core.data.splits import choose_forget_identities, make_splits
from piu_engine.core.request import METRIC_NAMES
from piu_engine.core.workbench import Workbench

ROW_KEYS = ("method", "seed", *METRIC_NAMES, "seconds", "speedup_vs_retrain")
AUDIT_KEYS = ("flagged", "audit_auc", "gap_to_retrain")  # with audit=True: per-person audit columns


@dataclass
class BenchResult:
    dataset: str
    preset: str
    device: str
    config: dict
    methods: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    def write(self, path: Path) -> tuple[Path, Path]:
        """Write JSON at ``path`` and the same rows as CSV beside it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(jsonout.dumps(self.to_json(), indent=2) + "\n")
        csv_path = path.with_suffix(".csv")
        with csv_path.open("w", newline="") as fh:
            audited = any("audit" in row for row in self.methods)
            keys = [*ROW_KEYS, *(AUDIT_KEYS if audited else ())]
            writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.methods)
        return path, csv_path


def forget_split(wb: Workbench, seed: int):
    """The forget request a benchmark seed uses: random identities, or the
    published protocol when the dataset is configured with protocol = "paper"."""
    dcfg = wb.dataset_cfg
    frac = dcfg.unseen_unlearn_fraction
    if dcfg.protocol == "paper":
        from piu_engine.core.data import paper

        return paper.paper_splits(wb.ds, dcfg, frac, seed)
    count = dcfg.forget_identities or wb.preset.forget_identities
    ids = choose_forget_identities(wb.ds, count, seed)
    return make_splits(wb.ds, ids, unseen_unlearn_fraction=frac, seed=seed)


def _row(method: str, seed: int, metrics: dict, seconds: float, params: dict | None = None) -> dict:
    row = {
        "method": method,
        "seed": seed,
        **{k: metrics[k] for k in ROW_KEYS[2:10]},
        "seconds": seconds,
        "speedup_vs_retrain": None,
    }
    if params is not None:
        row["params"] = params
    row["n_forget"], row["n_unseen_eval"] = metrics["n_forget"], metrics["n_unseen_eval"]
    return row


class _Auditor:
    """The per-person audit of every row against the dataset's reference pool
    (built first when missing: cached and resumable like ``piu audit pool``),
    and the guide pool PIU-FR then runs with (built the same way)."""

    def __init__(self, wb: Workbench, cfg: Config, on_event: EventSink):
        from piu_engine.core.audit.pool import build_pool

        self.wb, self.fpr = wb, cfg.audit.fpr
        self.pool = build_pool(wb, cfg.audit.models, cfg.audit.seed, on_event)
        # and the guide pool, as a service with both pools runs PIU-FR (never the audit's pool)
        self.guide = build_pool(wb, cfg.audit.models, cfg.audit.guide_seed, on_event)

    def add(self, row: dict, model, splits, seed: int) -> None:
        from piu_engine.core.audit.audit import audit_request

        result = audit_request(self.wb, self.pool, model, splits, fpr=self.fpr, seed=seed)
        row["flagged"], row["audit_auc"] = result.summary.flagged_fraction, result.summary.auc
        row["gap_to_retrain"] = None
        row["audit"] = result.to_dict()

    @staticmethod
    def gaps(rows: list[tuple[dict, dict]], retrain: dict | None) -> None:
        """Fill each (row, metrics)'s gap to this seed's retrain (the original is measured before retrain runs)."""
        from piu_engine.core.audit.gap import gap_to_retrain

        if retrain is not None:
            for row, metrics in rows:
                row["gap_to_retrain"] = gap_to_retrain(metrics, retrain)


def _bench_seed(wb: Workbench, seed: int, ordered: list[str], auditor: _Auditor | None, guide, emit) -> None:
    """The original and every method on this seed's request; each row to ``emit``."""
    splits = forget_split(wb, seed)
    original, train_seconds, _cached = wb.original(seed)
    audited: list[tuple[dict, dict]] = []  # (row, metrics): gaps are filled once retrain is known
    retrain_metrics, retrain_seconds = None, None

    def finish(row: dict, model, metrics: dict) -> None:
        if auditor:
            auditor.add(row, model, splits, seed)
            audited.append((row, metrics))
            auditor.gaps(audited[-1:], retrain_metrics)
        emit(row)

    metrics = wb.evaluate(original, splits, seed)
    finish(_row("original", seed, metrics, train_seconds), original, metrics)
    for name in ordered:
        run = wb.run_method(name, original, splits, seed, guide=guide)
        metrics = wb.evaluate(run.model, splits, seed)
        row = _row(name, seed, metrics, run.seconds, run.params)
        if name == "retrain":
            retrain_seconds, retrain_metrics = run.seconds, metrics
        if retrain_seconds:
            row["speedup_vs_retrain"] = retrain_seconds / max(run.seconds, 1e-9)
        finish(row, run.model, metrics)
    if auditor:
        auditor.gaps(audited, retrain_metrics)


def run_bench(
    cfg: Config,
    dataset: str,
    preset: str,
    methods: list[str],
    seeds: int,
    on_event: EventSink = no_events,
    on_row=lambda row: None,
    audit: bool = False,
) -> BenchResult:
    """Run the benchmark; ``on_row`` sees each finished row (for live tables).
    ``audit``: also audit every row person by person (:data:`AUDIT_KEYS`, and
    the per-person results in the row's ``audit``)."""
    from piu_engine.core.audit.pool import load_guide

    wb = Workbench(cfg, dataset, preset, on_event)
    auditor = _Auditor(wb, cfg, on_event) if audit else None
    guide = auditor.guide if auditor else load_guide(wb)  # PIU-FR runs guided when the service would
    ordered = (["retrain"] if "retrain" in methods else []) + [m for m in methods if m != "retrain"]
    result = BenchResult(
        dataset,
        wb.preset.name,
        wb.device_name,
        {
            "dataset": asdict(wb.dataset_cfg),
            "recipe": asdict(wb.recipe),
            "engine": asdict(cfg.engine),
            "metrics": asdict(cfg.metrics),
            "methods": ordered,
            "seeds": seeds,
            "audit": (
                {**asdict(cfg.audit), "pool_key": auditor.pool.key, "pool_seeds": auditor.pool.model_seeds}
                if auditor
                else None
            ),
            "guide_pool": {"key": guide.key, "k": guide.k, "seed": guide.seed} if guide is not None else None,
        },
    )

    def emit(row: dict) -> None:
        result.methods.append(row)
        on_row(row)

    for s in range(seeds):
        _bench_seed(wb, cfg.engine.seed + s, ordered, auditor, guide, emit)
    return result
