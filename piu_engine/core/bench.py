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
            writer = csv.DictWriter(fh, fieldnames=list(ROW_KEYS), extrasaction="ignore")
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


def run_bench(
    cfg: Config,
    dataset: str,
    preset: str,
    methods: list[str],
    seeds: int,
    on_event: EventSink = no_events,
    on_row=lambda row: None,
) -> BenchResult:
    """Run the benchmark; ``on_row`` sees each finished row (for live tables)."""
    wb = Workbench(cfg, dataset, preset, on_event)
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
        },
    )
    for s in range(seeds):
        seed = cfg.engine.seed + s
        splits = forget_split(wb, seed)
        original, train_seconds, _cached = wb.original(seed)
        row = _row("original", seed, wb.evaluate(original, splits, seed), train_seconds)
        result.methods.append(row)
        on_row(row)
        retrain_seconds = None
        for name in ordered:
            run = wb.run_method(name, original, splits, seed)
            row = _row(name, seed, wb.evaluate(run.model, splits, seed), run.seconds, run.params)
            if name == "retrain":
                retrain_seconds = run.seconds
            if retrain_seconds:
                row["speedup_vs_retrain"] = retrain_seconds / max(run.seconds, 1e-9)
            result.methods.append(row)
            on_row(row)
    return result
