"""Many one-person requests with random people and seeds: does any diverge?

The service's everyday request is one person, where an unbounded ascent term
once drove the model to NaN. Each request here draws a person and a method
seed at random and starts from one of a few original models (report seeds
100, 101, ...; training one per request would cost more than the runs).
A request counts as bad when the run raises (the engine's finite-loss guard
ends it as ``diverged``) or leaves a non-finite weight; test accuracy is
reported against the parent's to show the harm a run does when it does not
diverge.

    python benchmarks/one_person.py [--preset default] [--requests 100] [--originals 5]
                                    [--methods piu-fr] [--guide-seed 1 (-1: unguided)] [--json out.json]

PIU-FR runs as the service runs it with a guide pool (built first when missing).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from piu_engine.common.errors import CommandError
from piu_engine.core.audit.pool import build_pool
from piu_engine.core.config import load_config
from piu_engine.core.data.splits import choose_forget_identities, make_splits
from piu_engine.core.metrics import per_sample
from piu_engine.core.workbench import Workbench

import _common

REPORT_SEED0 = 100


def finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def accuracy(model: torch.nn.Module, wb: Workbench, indices) -> float:
    """Top-1 accuracy on ``indices`` (eval mode, test-time transform): the full metrics cost 20x more."""
    return float(per_sample(model, wb.data, indices)[1].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(_common.ROOT / "config.toml"))
    ap.add_argument("--preset", default="default")
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--originals", type=int, default=5, help=f"original models (seeds {REPORT_SEED0}, ...)")
    ap.add_argument("--methods", default="piu-fr")
    ap.add_argument("--pool-size", type=int, default=16)
    ap.add_argument("--guide-seed", type=int, default=1, help="the guide pool's seed (-1: run unguided)")
    ap.add_argument("--json")
    args = ap.parse_args()
    wb = Workbench(load_config(args.config), args.dataset, args.preset)
    guide = build_pool(wb, args.pool_size, args.guide_seed) if args.guide_seed >= 0 else None
    rng = np.random.default_rng(2026)
    originals = {s: wb.original(s)[0] for s in range(REPORT_SEED0, REPORT_SEED0 + args.originals)}
    parent_acc: dict[int, float] = {}  # test accuracy of each original (the test split is the same for all)
    rows = []
    started = time.perf_counter()
    for i in range(args.requests):
        seed = REPORT_SEED0 + int(rng.integers(args.originals))
        run_seed = int(rng.integers(1_000_000))
        person = str(choose_forget_identities(wb.ds, 1, run_seed)[0])
        splits = make_splits(
            wb.ds, [person], unseen_unlearn_fraction=wb.dataset_cfg.unseen_unlearn_fraction, seed=run_seed
        )
        for method in args.methods.split(","):
            row = {"request": i, "method": method, "original_seed": seed, "run_seed": run_seed, "person": person}
            row["guided"] = False
            try:
                run = wb.run_method(method, originals[seed], splits, run_seed, guide=guide)
            except CommandError as exc:
                row.update(outcome="failed", error=str(exc))
            else:
                ok = finite(run.model)
                row.update(outcome="ok" if ok else "non-finite", seconds=run.seconds, guided="guide" in run.notes)
                if ok:
                    if seed not in parent_acc:
                        parent_acc[seed] = accuracy(originals[seed], wb, splits.test)
                    row.update(
                        test_acc=accuracy(run.model, wb, splits.test),
                        parent_test_acc=parent_acc[seed],
                        forget_acc=accuracy(run.model, wb, splits.forget),
                    )
            rows.append(row)
            print(f"  {i + 1:>3}/{args.requests} {method:<10} {person} seed {run_seed}: {row['outcome']}", flush=True)
    table = []
    for method in args.methods.split(","):
        mine = [r for r in rows if r["method"] == method]
        ok = [r for r in mine if r["outcome"] == "ok"]
        drops = [r["parent_test_acc"] - r["test_acc"] for r in ok]
        table.append(
            [
                method,
                len(mine),
                sum(r["outcome"] == "failed" for r in mine),
                sum(r["outcome"] == "non-finite" for r in mine),
                f"{statistics.fmean(drops):+.3f}" if drops else "-",
                f"{max(drops):+.3f}" if drops else "-",
                f"{statistics.median(r['seconds'] for r in ok):.2f}" if ok else "-",
            ]
        )
    guided = "unguided" if guide is None else f"guided by pool seed {guide.seed}: {sum(r['guided'] for r in rows)} runs"
    _common.print_table(
        ["method", "requests", "failed (diverged)", "non-finite model", "mean test-acc drop", "worst drop", "median s"],
        table,
        f"One-person requests: {args.dataset} / {wb.preset.name} / {args.originals} originals / "
        f"{wb.device_name} ({_common.machine()}), {time.perf_counter() - started:.0f} s; {guided}",
    )
    _common.write_json(
        args.json,
        {
            "preset": wb.preset.name,
            "machine": _common.machine(),
            "guide_pool": guide.summary() if guide is not None else None,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
