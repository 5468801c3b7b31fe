"""``piu bench``: the main job. Runs the benchmark and prints the table."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from piu_engine.common.errors import ConfigError
from piu_engine.common.events import ProgressEvent
from piu_engine.core.config import load_config

COLUMNS = [
    ("method", "method"),
    ("seed", "seed"),
    ("test_acc", "test acc"),
    ("forget_acc", "forget acc"),
    ("mia", "MIA"),
    ("forgetting_score", "FS"),
    ("nomus", "NoMUS"),
    ("seconds", "seconds"),
    ("speedup_vs_retrain", "× faster than retrain"),
]


AUDIT_COLUMNS = [("flagged", "flagged"), ("audit_auc", "audit AUC"), ("gap_to_retrain", "gap to retrain")]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run the unlearning benchmark and print the results table")
    p.add_argument("--dataset", help="configured dataset name (default: bench.dataset)")
    p.add_argument("--preset", help="tiny | default | paper (default: bench.preset)")
    p.add_argument("--methods", help="comma-separated methods (default: bench.methods)")
    p.add_argument("--seeds", type=int, help="number of seeds (default: bench.seeds)")
    p.add_argument("--out", type=Path, help="write results JSON here (and a CSV beside it)")
    p.add_argument(
        "--audit",
        action="store_true",
        help="audit each model person by person against the reference pool (built first when missing)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def fmt(value, key: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key == "seconds":
        return f"{value:.1f}"
    if key == "speedup_vs_retrain":
        return f"{value:.1f}x"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render_table(rows: list[dict], title: str):
    from rich.table import Table

    columns = COLUMNS + (AUDIT_COLUMNS if any("audit" in row for row in rows) else [])
    table = Table(title=title)
    for key, label in columns:
        table.add_column(label, justify="left" if key == "method" else "right", no_wrap=key == "method")
    for row in rows:
        table.add_row(*(fmt(row.get(k), k) for k, _ in columns))
    return table


class ProgressView:
    """Rich progress bars fed by engine events: one task per phase."""

    def __init__(self, console, enabled: bool):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not enabled,
        )
        self.tasks: dict[str, int] = {}

    def __call__(self, ev: ProgressEvent) -> None:
        if ev.phase not in self.tasks:
            for task_id in self.tasks.values():
                self.progress.remove_task(task_id)
            self.tasks = {ev.phase: self.progress.add_task(ev.phase, total=1.0, loss="")}
        loss = f"loss {ev.loss:.3f}" if ev.loss is not None else ""
        self.progress.update(self.tasks[ev.phase], completed=1.0 if ev.message == "done" else ev.fraction, loss=loss)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from piu_engine.core.bench import run_bench
    from piu_engine.core.methods.catalog import method_info

    cfg = load_config(args.config)
    dataset = args.dataset or cfg.bench.dataset
    cfg.dataset(dataset)
    preset = args.preset or cfg.bench.preset
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else list(cfg.bench.methods)
    for m in methods:
        method_info(m)
    seeds = args.seeds or cfg.bench.seeds
    if seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    console = Console(stderr=True)
    # Piped or redirected output (cron, CI, files) gets the full table, never truncated.
    out = Console() if sys.stdout.isatty() else Console(width=140)
    view = ProgressView(console, enabled=not args.quiet and sys.stderr.isatty())
    done: list[dict] = []

    def on_row(row: dict) -> None:
        done.append(row)
        if not args.quiet:
            console.log(
                f"{row['method']:<18} seed {row['seed']}  test acc {fmt(row['test_acc'], '')}  "
                f"MIA {fmt(row['mia'], '')}  NoMUS {fmt(row['nomus'], '')}  {fmt(row['seconds'], 'seconds')} s"
            )

    with view.progress:
        result = run_bench(cfg, dataset, preset, methods, seeds, on_event=view, on_row=on_row, audit=args.audit)
    title = f"PIU benchmark: {result.dataset} / preset {result.preset} / {result.device}"
    out.print(render_table(result.methods, title))
    if args.out:
        json_path, csv_path = result.write(args.out)
        out.print(f"wrote {json_path} and {csv_path}")
    return 0
