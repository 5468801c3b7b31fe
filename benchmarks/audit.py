"""Per-person audit of forgetting: offline LiRA against a reference pool.

Builds (or reuses) a pool of K reference models, and a second one (the
guide pool, another seed) that PIU-FR takes its per-person targets from, so
that no audit is judged by the models that set the targets; then for each report seed
forgets 1 person, 5 people and the preset's forget count (40 on default), and
runs a lineage of one-person requests in a row; every method's model is
measured (test acc, MIA, gap to retrain) and audited person by person.
Thresholds are fitted on one half of the never-seen people and the other
half is judged by them: its flagged fraction is the calibration check.

Prints mean +/- std over the report seeds, the paired difference to retrain
with a 95% t-interval, the calibration checks and the cost checks (pool vs
one original training: target <= 10x; one audit vs one retrain: <= 5%).

    python benchmarks/audit.py [--preset default] [--seeds 5] [--methods finetune,...] [--pool-size 16]
                               [--guide-seed 1 (-1: unguided)] [--lineage 10] [--lineage-seeds N] [--json out.json]

Report seeds are 100, 101, ... (``--seeds N`` takes the first N); methods and
the audit were developed on seeds 0..2, which are never reported here.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from piu_engine.common.errors import CommandError
from piu_engine.core.audit.audit import audit_request
from piu_engine.core.audit.gap import gap_to_retrain
from piu_engine.core.audit.pool import build_pool
from piu_engine.core.config import load_config
from piu_engine.core.data.splits import choose_forget_identities, make_splits
from piu_engine.core.workbench import Workbench
from scipy import stats as sps

import _common

REPORT_SEED0 = 100
DEV_SEEDS = (0, 1, 2)
BASE_METHODS = ("original", "retrain", "piu-fr")
KEYS = (
    "flagged",
    "audit_auc",
    "auc_recognisable",
    "test_acc",
    "mia",
    "nomus",
    "gap_to_retrain",
    "seconds",
    "holdout_flagged",
    "audit_seconds",
)
TABLE = (
    ("flagged", "flagged", 3),
    ("audit_auc", "audit AUC", 3),
    ("auc_recognisable", "AUC z>", 3),
    ("test_acc", "test acc", 3),
    ("nomus", "NoMUS", 3),
    ("mia", "MIA", 3),
    ("gap_to_retrain", "gap to retrain", 3),
    ("seconds", "seconds", 1),
)


PAIRED = ("flagged", "audit_auc", "auc_recognisable", "test_acc", "nomus", "mia", "gap_to_retrain")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def mean_std(values: list) -> tuple[float, float] | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return None
    return statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0


def paired(diffs: list) -> dict | None:
    """Mean of per-seed differences with a 95% t-interval (None with one seed)."""
    d = [x for x in diffs if x is not None and math.isfinite(x)]
    if not d:
        return None
    m = statistics.fmean(d)
    if len(d) < 2:
        return {"mean": m, "ci": None, "n": 1}
    half = float(sps.t.ppf(0.975, len(d) - 1)) * statistics.stdev(d) / math.sqrt(len(d))
    return {"mean": m, "ci": [m - half, m + half], "n": len(d)}


def failed(scenario: str, method: str, seed: int, exc: Exception, **extra) -> dict:
    log(f"  seed {seed} {scenario:>10} {method:<12} FAILED: {exc}")
    return {
        "scenario": scenario,
        "method": method,
        "seed": seed,
        **extra,
        "error": str(exc),
        **{k: None for k in (*KEYS, "forget_acc", "retain_acc", "tpr_at_1pct_fpr")},
        "audit": None,
    }


class Runner:
    def __init__(self, wb: Workbench, pool, guide, args):
        self.wb, self.pool, self.guide, self.args = wb, pool, guide, args

    def audit(self, model, splits, seed: int, people: list[str] | None = None):
        return audit_request(
            self.wb,
            self.pool,
            model,
            splits,
            people,
            fpr=self.args.fpr,
            holdout_fraction=0.5,
            n_boot=self.args.n_boot,
            seed=seed,
        )

    def measure(
        self,
        scenario: str,
        method: str,
        model,
        splits,
        seed: int,
        seconds,
        retrain: dict | None,
        people: list[str] | None = None,
        **extra,
    ) -> dict:
        metrics = self.wb.evaluate(model, splits, seed)
        result = self.audit(model, splits, seed, people)
        s = result.summary
        row = {
            "scenario": scenario,
            "method": method,
            "seed": seed,
            **extra,
            **{k: metrics[k] for k in ("test_acc", "forget_acc", "retain_acc", "mia", "nomus")},
            "flagged": s.flagged_fraction,
            "flagged_ci": s.flagged_ci,
            "recognisable": s.recognisable_fraction,
            "conspicuously_forgotten": s.forgotten_fraction,
            "audit_auc": s.auc,
            "audit_auc_ci": s.auc_ci,
            "auc_recognisable": s.auc_recognisable,
            "tpr_at_1pct_fpr": s.tpr_at_low_fpr,
            "holdout_flagged": result.holdout.flagged_fraction if result.holdout else None,
            "gap_to_retrain": gap_to_retrain(metrics, retrain) if retrain else None,
            "seconds": seconds,
            "audit_seconds": result.seconds,
            "metrics": metrics,
            "audit": result.to_dict(),
        }
        log(
            f"  seed {seed} {scenario:>10} {method:<12} flagged {s.flagged_fraction:.2f} auc "
            f"{s.auc if s.auc is not None else float('nan'):.2f} test {metrics['test_acc']:.3f} mia "
            f"{metrics['mia']:.3f} audit {result.seconds:.2f}s"
        )
        return row

    def scenario(self, n: int, seed: int, methods: list[str]) -> list[dict]:
        wb = self.wb
        name = f"{n} {'person' if n == 1 else 'people'}"
        ids = choose_forget_identities(wb.ds, n, seed)
        splits = make_splits(wb.ds, ids, unseen_unlearn_fraction=wb.dataset_cfg.unseen_unlearn_fraction, seed=seed)
        original, train_seconds, _ = wb.original(seed)
        rows, retrain = [], None
        for method in methods:
            if method == "original":
                model, seconds = original, train_seconds
            else:
                try:
                    run = wb.run_method(method, original, splits, seed, guide=self.guide)
                except CommandError as exc:  # e.g. diverged: the request fails, nothing to audit
                    rows.append(failed(name, method, seed, exc, n_people=n))
                    continue
                model, seconds = run.model, run.seconds
            row = self.measure(name, method, model, splits, seed, seconds, retrain, n_people=n)
            if method == "retrain":
                retrain = row["metrics"]
            rows.append(row)
        for row in rows:  # original is measured before retrain exists
            if row.get("metrics") and row["gap_to_retrain"] is None and retrain is not None:
                row["gap_to_retrain"] = gap_to_retrain(row["metrics"], retrain)
        return rows

    def lineage(self, steps: int, seed: int, methods: list[str]) -> list[dict]:
        """``steps`` one-person requests in a row; each method continues from its own last model."""
        wb = self.wb
        rng = np.random.default_rng([seed, 5])
        people = [str(p) for p in rng.permutation(choose_forget_identities(wb.ds, steps, seed + 500))]
        original, train_seconds, _ = wb.original(seed)
        current = {m: original for m in methods}
        rows = []
        for t, person in enumerate(people):
            splits = make_splits(
                wb.ds,
                [person],
                already_forgotten=people[:t],
                unseen_unlearn_fraction=wb.dataset_cfg.unseen_unlearn_fraction,
                seed=seed,
            )
            retrain, step_rows = None, []
            for method in methods:
                if method == "original":
                    model, seconds = original, None
                elif method == "retrain":  # from scratch on everyone not forgotten so far
                    run = wb.run_method("retrain", original, splits, seed + t)
                    model, seconds = run.model, run.seconds
                else:
                    try:
                        run = wb.run_method(method, current[method], splits, seed + t, guide=self.guide)
                    except CommandError as exc:  # the request fails; the lineage goes on from the parent
                        step_rows.append(failed("lineage", method, seed, exc, step=t + 1, person=person))
                        continue
                    model, seconds = run.model, run.seconds
                current[method] = model
                row = self.measure(
                    "lineage",
                    method,
                    model,
                    splits,
                    seed,
                    seconds,
                    retrain,
                    people=people[: t + 1],
                    step=t + 1,
                    person=person,
                )
                latest = next(p for p in row["audit"]["people"] if p["identity"] == person)
                row["latest_verdict"], row["latest_z"] = latest["verdict"], latest["z"]
                if method == "retrain":
                    retrain = row["metrics"]
                step_rows.append(row)
            for row in step_rows:
                if row.get("metrics") and row["gap_to_retrain"] is None and retrain is not None:
                    row["gap_to_retrain"] = gap_to_retrain(row["metrics"], retrain)
            rows += step_rows
        return rows


def summarize(rows: list[dict], group: tuple[str, ...]) -> dict:
    out: dict = {}
    for row in rows:
        out.setdefault(tuple(row[g] for g in group), []).append(row)
    return {k: {key: mean_std([r.get(key) for r in v]) for key in KEYS} for k, v in out.items()}


def paired_to_retrain(rows: list[dict]) -> dict:
    """(scenario, method) -> key -> paired difference method - retrain over seeds (and lineage steps)."""
    base = {(r["scenario"], r["seed"], r.get("step")): r for r in rows if r["method"] == "retrain"}
    out: dict = {}
    for r in rows:
        b = base.get((r["scenario"], r["seed"], r.get("step")))
        if r["method"] == "retrain" or b is None:
            continue
        d = out.setdefault(
            (r["scenario"], r["method"]),
            {k: [] for k in PAIRED},
        )
        for k in d:
            if r.get(k) is not None and b.get(k) is not None:
                d[k].append(r[k] - b[k])
    return {k: {m: paired(v) for m, v in d.items()} for k, d in out.items()}


def fmt(stat, digits: int) -> str:
    return "-" if stat is None else f"{stat[0]:.{digits}f} ± {stat[1]:.{digits}f}"


def fmt_paired(p, digits: int = 3) -> str:
    if p is None:
        return "-"
    if p["ci"] is None:
        return f"{p['mean']:+.{digits}f} (1 seed)"
    return f"{p['mean']:+.{digits}f} [{p['ci'][0]:+.{digits}f}, {p['ci'][1]:+.{digits}f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(_common.ROOT / "config.toml"))
    ap.add_argument("--preset", default="default")
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--seeds", type=int, default=5, help=f"report seeds {REPORT_SEED0}, {REPORT_SEED0 + 1}, ...")
    ap.add_argument("--methods", default="", help="methods besides original, retrain, piu-fr")
    ap.add_argument("--pool-size", type=int, default=16)
    ap.add_argument("--pool-seed", type=int, default=0)
    ap.add_argument(
        "--guide-seed", type=int, default=1, help="seed of the guide pool PIU-FR takes its targets from (-1: unguided)"
    )
    ap.add_argument("--lineage", type=int, default=10, help="one-person requests in a row (0: skip)")
    ap.add_argument(
        "--lineage-seeds",
        type=int,
        default=0,
        help="run the lineage on the first N report seeds only (0: all); it retrains once per step",
    )
    ap.add_argument(
        "--sizes", default="1,5,big", help="request sizes, comma-separated (big: the preset's forget count)"
    )
    ap.add_argument("--fpr", type=float, default=0.05)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--json")
    ap.add_argument(
        "--resume",
        metavar="PARTIAL",
        help="the .partial file of a run cut short (same arguments): its seeds are not run again",
    )
    args = ap.parse_args()
    cfg = load_config(args.config)
    extra = [m for m in args.methods.split(",") if m and m not in BASE_METHODS]
    methods = ["retrain", "original", *[m for m in BASE_METHODS if m not in ("original", "retrain")], *extra]
    seeds = [REPORT_SEED0 + i for i in range(args.seeds)]
    wb = Workbench(cfg, args.dataset, args.preset)
    start = time.perf_counter()
    pool = build_pool(
        wb,
        args.pool_size,
        args.pool_seed,
        on_event=lambda ev: (
            ev.message in ("trained", "cached")
            and log(f"pool model {ev.epoch}/{ev.epochs} {ev.message} ({ev.metrics.get('seconds', 0):.1f} s)")
        ),
    )
    pool_wall = time.perf_counter() - start
    guide = None
    if args.guide_seed >= 0:  # PIU-FR's per-person targets: a second pool, never the one that audits
        if args.guide_seed == args.pool_seed:
            raise SystemExit("--guide-seed must differ from --pool-seed: the audit must not judge its own guide")
        guide = build_pool(
            wb,
            args.pool_size,
            args.guide_seed,
            on_event=lambda ev: (
                ev.message in ("trained", "cached") and log(f"guide model {ev.epoch}/{ev.epochs} {ev.message}")
            ),
        )
    runner = Runner(wb, pool, guide, args)
    big = wb.dataset_cfg.forget_identities or wb.preset.forget_identities
    sizes = [big if n == "big" else int(n) for n in args.sizes.split(",") if n] if args.sizes else []
    sizes = list(dict.fromkeys(sizes))
    rows: list[dict] = []
    done: set[int] = set()
    if args.resume:
        partial = json.loads(Path(args.resume).read_text())
        rows, done = partial["rows"], set(partial["seeds_done"])
        log(f"resuming: seeds {sorted(done)} from {args.resume}")
    originals: list[float] = []
    lineage_seeds = seeds[: args.lineage_seeds] if args.lineage_seeds else seeds
    for seed in seeds:
        originals.append(wb.original(seed)[1])
        if seed in done:
            continue
        for n in sizes:
            rows += runner.scenario(n, seed, methods)
        if args.lineage and seed in lineage_seeds:
            rows += runner.lineage(args.lineage, seed, methods)
        if args.json:  # what is done so far survives a run cut short
            _common.write_json(args.json + ".partial", {"seeds_done": seeds[: seeds.index(seed) + 1], "rows": rows})
    scen_rows = [r for r in rows if r["scenario"] != "lineage"]
    lin_rows = [r for r in rows if r["scenario"] == "lineage"]
    summary = summarize(scen_rows, ("scenario", "method"))
    pairs = paired_to_retrain(rows)
    machine = _common.machine()
    seed_text = f"report seeds {seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else f"report seed {seeds[0]}"
    title = (
        f"Per-person audit (offline LiRA, K={pool.k}, FPR {args.fpr:.0%}): {args.dataset} / {wb.preset.name} / "
        f"{seed_text} / {wb.device_name} ({machine})"
    )
    table = []
    for (scenario, method), st in summary.items():
        table.append([scenario, method, *[fmt(st[k], d) for k, _, d in TABLE]])
    _common.print_table(["scenario", "method", *[h for _, h, _ in TABLE]], table, title)
    print()
    ptable = [[s, m, *[fmt_paired(p[k]) for k in PAIRED]] for (s, m), p in pairs.items() if s != "lineage"]
    _common.print_table(
        ["scenario", "method", *[f"Δ {h}" for k, h, _ in TABLE if k in PAIRED]],
        ptable,
        "Paired difference to retrain (method - retrain), mean [95% t-interval over seeds]",
    )
    if lin_rows:
        print()
        lsum = summarize(lin_rows, ("step", "method"))
        ltable = [
            [
                str(step),
                method,
                fmt(st["flagged"], 2),
                fmt(st["test_acc"], 3),
                fmt(st["gap_to_retrain"], 3),
                fmt(st["seconds"], 1),
            ]
            for (step, method), st in sorted(lsum.items(), key=lambda kv: kv[0][0])
        ]
        _common.print_table(
            ["step", "method", "flagged (all so far)", "test acc", "gap to retrain", "seconds"],
            ltable,
            f"Lineage: {args.lineage} one-person requests in a row, {len(lineage_seeds)} report seed(s)",
        )
    # -- checks -------------------------------------------------------------
    print()
    checks: dict = {}
    held = [r["holdout_flagged"] for r in rows if r["holdout_flagged"] is not None]
    by_method = {m: mean_std([r["holdout_flagged"] for r in rows if r["method"] == m]) for m in methods}
    n_held = next((r["audit"]["holdout"]["n"] for r in rows if r.get("audit") and r["audit"]["holdout"]), 0)
    checks["holdout_flagged"] = {
        "mean": statistics.fmean(held) if held else None,
        "n_audits": len(held),
        "people_per_audit": n_held,
        "by_method": by_method,
    }
    print(
        f"calibration: held-out never-seen people ({n_held} per audit, thresholds fitted on the other half) "
        f"flagged {checks['holdout_flagged']['mean']:.3f} over {len(held)} audits (nominal {args.fpr:.3f}); "
        "by method: " + ", ".join(f"{m} {fmt(v, 3)}" for m, v in by_method.items())
    )
    big_name = f"{big} {'person' if big == 1 else 'people'}"
    rt = [r["flagged"] for r in scen_rows if r["method"] == "retrain"]
    rt_big = summary.get((big_name, "retrain"), {}).get("flagged")
    checks["retrain_flagged"] = {"all_scenarios": mean_std(rt), big_name: rt_big}
    print(
        f"calibration: retrain's forgotten people flagged {fmt(mean_std(rt), 3)} over all scenarios, "
        f"{fmt(rt_big, 3)} on {big_name} (nominal {args.fpr:.3f})"
    )
    o, r = summary.get((big_name, "original")), summary.get((big_name, "retrain"))
    if o and r:
        p = pairs.get((big_name, "original"), {})
        keys = ("flagged", "audit_auc", "auc_recognisable")
        checks["original_vs_retrain"] = {
            "original": {k: o[k] for k in keys},
            "retrain": {k: r[k] for k in keys},
            "paired": {k: p.get(k) for k in keys},
        }
        print(
            f"power on {big_name}: original flagged {fmt(o['flagged'], 3)} vs retrain {fmt(r['flagged'], 3)} "
            f"(paired {fmt_paired(p.get('flagged'))}); audit AUC {fmt(o['audit_auc'], 3)} vs "
            f"{fmt(r['audit_auc'], 3)} (paired {fmt_paired(p.get('audit_auc'))}); one-sided AUC of z "
            f"{fmt(o['auc_recognisable'], 3)} vs {fmt(r['auc_recognisable'], 3)} "
            f"(paired {fmt_paired(p.get('auc_recognisable'))})"
        )
    orig_s = statistics.fmean(originals)
    ratio = pool.build_seconds / orig_s
    checks["pool_cost"] = {
        "pool_seconds": pool.build_seconds,
        "pool_wall_this_run": pool_wall,
        "original_seconds": orig_s,
        "ratio": ratio,
        "target": 10.0,
    }
    train_ids = wb.ds.identities[wb.ds.indices("train")]
    per_person = {p: int((train_ids == p).sum()) for p in set(train_ids.tolist())}
    pool_images = sum(per_person[p] for i in range(pool.k) for p, m in zip(pool.identities, pool.members[i]) if m)
    work = pool_images / len(train_ids)
    checks["pool_cost"]["training_work_ratio"] = work
    print(
        f"target pool of {pool.k} <= 10x one original training: {pool.build_seconds:.0f} s (sum of the models' "
        f"recorded training + scoring) vs {orig_s:.1f} s -> {ratio:.1f}x -> {'met' if ratio <= 10 else 'NOT met'} "
        f"(training work, image-epochs: {work:.2f}x one original, by design K/2)"
    )
    one = [r for r in rows if r["scenario"] in ("1 person", "lineage") and r.get("audit")]  # one-person requests
    if any(r["method"] == "retrain" for r in one):
        audit_s = statistics.median(r["audit_seconds"] for r in one)
        retrain_s = statistics.median(r["seconds"] for r in one if r["method"] == "retrain")
        share = audit_s / retrain_s
        checks["audit_cost"] = {
            "audit_seconds_median": audit_s,
            "retrain_seconds_median": retrain_s,
            "share": share,
            "target": 0.05,
        }
        print(
            f"target one audit (1 person, pool built) <= 5% of retrain: median {audit_s:.2f} s vs {retrain_s:.1f} s "
            f"-> {100 * share:.1f}% -> {'met' if share <= 0.05 else 'NOT met'}"
        )
    else:
        print("audit cost: no one-person request in this run (--sizes 1 or --lineage N measures it)")
    print(
        f"pool {pool.key}: K={pool.k}, seed {pool.seed}, created {pool.created}, "
        f"shrinkage lambda {next(r['audit'] for r in rows if r.get('audit'))['calibration']['shrinkage']:.2f}"
    )
    failures = [r for r in rows if r.get("error")]
    if failures:
        where = [f"{r['method']} seed {r['seed']} {r['scenario']} step {r.get('step', '-')}" for r in failures]
        print(f"{len(failures)} method runs failed (rows with 'error'; left out of the means): " + "; ".join(where))
    _common.write_json(
        args.json,
        {
            "machine": machine,
            "device": wb.device_name,
            "preset": wb.preset.name,
            "dataset": args.dataset,
            "report_seeds": seeds,
            "lineage_seeds": lineage_seeds if args.lineage else [],
            "development_seeds": list(DEV_SEEDS),
            "methods": methods,
            "fpr": args.fpr,
            "pool": pool.summary(),
            "guide_pool": guide.summary() if guide is not None else None,
            "rows": rows,
            "checks": checks,
            "summary": {f"{s} / {m}": v for (s, m), v in summary.items()},
            "paired_to_retrain": {f"{s} / {m}": v for (s, m), v in pairs.items()},
        },
    )


if __name__ == "__main__":
    main()
