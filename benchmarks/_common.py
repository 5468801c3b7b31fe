"""Shared helpers for the benchmark scripts: argument parsing, table printing, JSON output."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from piu_engine.common import jsonout  # noqa: E402  (after the path set-up above)


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    import os

    return f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, torch {torch.__version__}"


def print_table(headers: list[str], rows: list[list], title: str = "") -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    if title:
        print(title)
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))


def write_json(path: str | Path | None, payload: dict) -> None:
    if path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(jsonout.dumps(payload, indent=2) + "\n")
        print(f"wrote {p}")


FULL_BUDGET = "piu-fr (no early stop)"


def full_budget_rows(cfg, dataset: str, preset: str, seeds: int, rows: list[dict]) -> list[dict]:
    """PIU-FR again with ``early_stop = false`` on the same seeds, as rows named
    FULL_BUDGET: what its early stopping saves, measured in the same run."""
    from dataclasses import replace

    from piu_engine.core.bench import run_bench

    full_cfg = replace(cfg, methods={**cfg.methods, "piu-fr": {**cfg.methods.get("piu-fr", {}), "early_stop": False}})
    retrain = {r["seed"]: r["seconds"] for r in rows if r["method"] == "retrain"}
    out = []
    for r in run_bench(full_cfg, dataset, preset, ["piu-fr"], seeds).methods:
        if r["method"] == "piu-fr":
            r = {**r, "method": FULL_BUDGET}
            if r["seed"] in retrain:  # against the retrain of the main run: same seeds, same machine
                r["speedup_vs_retrain"] = retrain[r["seed"]] / r["seconds"]
            out.append(r)
    return out


def early_stop_ab(cfg, dataset: str, preset: str, seeds: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of PIU-FR with and without early stopping, timed in alternating
    order on the same originals and forget sets, ``repeats`` times per seed: a
    two-second run on a shared machine needs pairs, not one run each."""
    from piu_engine.core.bench import forget_split
    from piu_engine.core.workbench import Workbench

    wb = Workbench(cfg, dataset, preset)
    times: dict[str, list[float]] = {"with": [], "without": []}
    variants = [("with", {"early_stop": True}), ("without", {"early_stop": False})]
    for s in range(seeds):
        seed = cfg.engine.seed + s
        splits, original = forget_split(wb, seed), wb.original(seed)[0]
        for r in range(repeats):
            for name, overrides in variants if r % 2 == 0 else variants[::-1]:
                times[name].append(wb.run_method("piu-fr", original, splits, seed, overrides=overrides).seconds)
    return times
