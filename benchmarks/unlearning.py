"""Unlearning quality and speed: every method over several seeds.

Runs the same benchmark as `piu bench` (synthetic default preset unless told
otherwise) for N seeds, adds PIU-FR without early stopping as its own row
(what the rule saves, on the same seeds), and prints mean ± std of test acc,
forget acc, MIA, NoMUS, seconds and speed-up against retrain. Targets:
PIU-FR's NoMUS at or above retrain's, in at most 10% of retrain's wall-clock;
its early stopping cuts time without lowering NoMUS.

    python benchmarks/unlearning.py [--preset default] [--seeds 3] [--methods ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics

from piu_engine.core.bench import run_bench
from piu_engine.core.config import load_config

import _common

KEYS = ("test_acc", "forget_acc", "mia", "nomus", "seconds", "speedup_vs_retrain")
FULL_BUDGET = _common.FULL_BUDGET


def summarize(rows: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        out[method] = {}
        for k in KEYS:
            vals = [r[k] for r in mine if r.get(k) is not None]
            if vals:
                out[method][k] = (statistics.fmean(vals), statistics.pstdev(vals) if len(vals) > 1 else 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(_common.ROOT / "config.toml"))
    ap.add_argument("--preset", default="default")
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default="")
    ap.add_argument("--no-full-budget", action="store_true", help="skip the PIU-FR row without early stopping")
    ap.add_argument(
        "--ab-repeats",
        type=int,
        default=4,
        help="paired timings per seed of PIU-FR with and without early stopping (0: skip)",
    )
    ap.add_argument("--json")
    args = ap.parse_args()
    cfg = load_config(args.config)
    methods = [m for m in args.methods.split(",") if m] or list(cfg.bench.methods)
    result = run_bench(cfg, args.dataset, args.preset, methods, args.seeds)
    rows = list(result.methods)
    if not args.no_full_budget and "piu-fr" in methods:
        rows += _common.full_budget_rows(cfg, args.dataset, args.preset, args.seeds, rows)
    summary = summarize(rows)
    table = []
    for method, stats in summary.items():

        def cell(k: str, f: str = "{:.3f}", stats=stats) -> str:
            return "-" if k not in stats else f"{f.format(stats[k][0])} ± {f.format(stats[k][1])}"

        retrain_s = summary.get("retrain", {}).get("seconds")
        share = f"{100 * stats['seconds'][0] / retrain_s[0]:.0f}%" if retrain_s and method != "original" else "-"
        table.append(
            [
                method,
                cell("test_acc"),
                cell("forget_acc"),
                cell("mia"),
                cell("nomus"),
                cell("seconds", "{:.1f}"),
                cell("speedup_vs_retrain", "{:.1f}"),
                share,
            ]
        )
    _common.print_table(
        ["method", "test acc", "forget acc", "MIA", "NoMUS", "seconds", "x vs retrain", "% of retrain time"],
        table,
        f"Unlearning benchmark: {args.dataset} / {result.preset} / {args.seeds} seeds / "
        f"{result.device} ({_common.machine()})",
    )
    piu, retrain = summary.get("piu-fr", {}), summary.get("retrain", {})
    if piu and retrain:
        print(
            f"target NoMUS(piu-fr) >= NoMUS(retrain): {piu['nomus'][0]:.3f} vs {retrain['nomus'][0]:.3f} -> "
            f"{'met' if piu['nomus'][0] >= retrain['nomus'][0] else 'NOT met'}"
        )
        share = piu["seconds"][0] / retrain["seconds"][0]
        print(f"target time <= 10% of retrain: {100 * share:.0f}% -> {'met' if share <= 0.10 else 'NOT met'}")
    full = summary.get(FULL_BUDGET, {})
    ab = {}
    if piu and full and args.ab_repeats:
        ab = _common.early_stop_ab(cfg, args.dataset, args.preset, args.seeds, args.ab_repeats)
        med = {k: statistics.median(v) for k, v in ab.items()}
        saved = 1 - med["with"] / med["without"]
        kept = piu["nomus"][0] >= full["nomus"][0]
        print(
            f"early stopping, paired timings ({args.ab_repeats} per seed, alternating order): median "
            f"{med['with']:.2f} s with, {med['without']:.2f} s without over {len(ab['with'])} runs each"
        )
        print(
            f"target early stopping cuts time without lowering NoMUS: {100 * saved:.0f}% less time, NoMUS "
            f"{piu['nomus'][0]:.3f} vs {full['nomus'][0]:.3f} without it -> "
            f"{'met' if saved > 0 and kept else 'NOT met'}"
        )
    _common.write_json(
        args.json,
        {
            "machine": _common.machine(),
            "device": result.device,
            "preset": result.preset,
            "seeds": args.seeds,
            "rows": rows,
            "summary": {m: {k: list(v) for k, v in s.items()} for m, s in summary.items()},
            "early_stop_ab_seconds": ab,
        },
    )


if __name__ == "__main__":
    main()
