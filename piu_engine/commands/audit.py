"""``piu audit pool``: build the reference pool that the per-person audit tests
each forgotten person against (K models, each trained on a seeded half of the
training identities). Resumable: a killed build keeps every finished model."""

from __future__ import annotations

import argparse
import sys
import time

from piu_engine.core.config import load_config


def cmd_pool(args) -> int:
    from piu_engine.core.audit.pool import build_pool
    from piu_engine.core.workbench import Workbench

    cfg = load_config(args.config)
    dataset = args.dataset or cfg.bench.dataset
    cfg.dataset(dataset)
    k = args.models or cfg.audit.models
    from piu_engine.service.settings import service_config

    preset = args.preset or service_config(cfg).preset or cfg.bench.preset
    started = time.monotonic()

    def on_event(ev) -> None:
        if ev.phase == "audit:pool" and ev.message in ("cached", "trained"):
            print(
                f"  model {ev.epoch}/{ev.epochs}: {ev.message} "
                f"({ev.metrics.get('seconds', 0):.1f} s, seed {ev.metrics.get('seed')})",
                file=sys.stderr,
            )

    print(f"reference pool for {dataset!r} (preset {preset}): {k} models, pool seed {cfg.audit.seed}", file=sys.stderr)
    wb = Workbench(cfg, dataset, preset, on_event)
    pool = build_pool(wb, k, cfg.audit.seed, on_event)
    print(
        f"pool ready: {pool.k} models, seeds {pool.model_seeds}, at {pool.path} "
        f"({time.monotonic() - started:.0f} s this run; every later request is audited)"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="the per-person audit's reference pool")
    asub = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    q = asub.add_parser("pool", help="build (or finish) the reference pool of a dataset; safe to run from cron")
    q.add_argument("--dataset", default="", help="configured dataset (default: bench.dataset)")
    q.add_argument("--models", type=int, default=0, help="reference models K (default: audit.models)")
    q.add_argument("--preset", default="", help="scale preset (default: service.preset, else bench.preset)")
    q.set_defaults(func=cmd_pool)
