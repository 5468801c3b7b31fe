"""``piu audit pool``: build the reference pool that the per-person audit tests
each forgotten person against (K models, each trained on a seeded half of the
training identities). Resumable: a killed build keeps every finished model.

``--guide`` builds the guide pool instead (same size, ``[audit] guide_seed``):
PIU-FR takes each forgotten person's target from it, and the audit never uses it."""

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

    seed = cfg.audit.guide_seed if args.guide else cfg.audit.seed
    role = "guide pool (PIU-FR's per-person targets)" if args.guide else "reference pool"
    print(f"{role} for {dataset!r} (preset {preset}): {k} models, pool seed {seed}", file=sys.stderr)
    from piu_engine.service.executors.settings import executor_config

    excfg = executor_config(cfg)
    if excfg.kind == "ray" and not args.local:
        _train_on_ray(cfg, excfg, dataset, preset, k, seed)
    wb = Workbench(cfg, dataset, preset, on_event)
    pool = build_pool(wb, k, seed, on_event)  # after Ray: every model is cached; writes the manifest
    after = "PIU-FR takes its per-person targets from it" if args.guide else "every later request is audited"
    print(
        f"pool ready: {pool.k} models, seeds {pool.model_seeds}, at {pool.path} "
        f"({time.monotonic() - started:.0f} s this run; {after})"
    )
    return 0


def _train_on_ray(cfg, excfg, dataset: str, preset: str, k: int, seed: int) -> None:
    """The K trainings as parallel tasks on the configured Ray cluster."""
    from dataclasses import replace
    from pathlib import Path

    from piu_engine.core.audit.pool import run_pool_task
    from piu_engine.service.executors.ray_cluster import RayExecutor
    from piu_engine.service.executors.ray_pool import map_on_cluster

    base = cfg.path.parent if cfg.path else None
    executor = RayExecutor(excfg, k, base).connect()
    remote_cfg = replace(cfg, path=Path(executor.worker_path(cfg.path))) if cfg.path else cfg
    print(f"training on {executor.describe()}: {k} tasks", file=sys.stderr)

    def on_result(record: dict) -> None:
        state = "cached" if record.get("cached") else "trained"
        print(
            f"  model seed {record.get('seed')}: {state} on Ray ({record.get('train_seconds') or 0:.1f} s)",
            file=sys.stderr,
        )

    try:
        map_on_cluster(
            executor, run_pool_task, [(remote_cfg, dataset, preset, k, seed, i) for i in range(k)], on_result
        )
    finally:
        executor.close()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="the per-person audit's reference pool")
    asub = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION", help="what to do")
    q = asub.add_parser("pool", help="build (or finish) the reference pool of a dataset; safe to run from cron")
    q.add_argument("--dataset", default="", help="configured dataset (default: bench.dataset)")
    q.add_argument("--models", type=int, default=0, help="reference models K (default: audit.models)")
    q.add_argument("--preset", default="", help="scale preset (default: service.preset, else bench.preset)")
    q.add_argument(
        "--guide",
        action="store_true",
        help="build the guide pool (seed audit.guide_seed) PIU-FR takes per-person targets from, not the audit's",
    )
    q.add_argument(
        "--local", action="store_true", help='train here even when [executor] kind = "ray" (default: on the cluster)'
    )
    q.set_defaults(func=cmd_pool)
