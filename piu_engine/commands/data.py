"""``piu data inspect`` and ``piu data check``: look at a dataset before using it.

NAME is a dataset configured in config.toml, or, when no such name is
configured, a loader kind used with --root for a quick look at a folder.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

from piu_engine.common.errors import ConfigError
from piu_engine.core.config import DATASET_KINDS, Config, DatasetConfig, load_config
from piu_engine.core.presets import Preset, get_preset


def _bits(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be between 0 and 64, got {value}")
    return value


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="inspect or check a dataset")
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION", help="what to do")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--dataset",
            required=True,
            metavar="NAME",
            help=f"configured dataset name, or a loader kind ({', '.join(DATASET_KINDS)}) with --root",
        )
        p.add_argument("--root", default=None, metavar="PATH", help="dataset folder (overrides the configured root)")
        p.add_argument("--preset", default=None, help="size preset for image_size = 0 (default: bench.preset)")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    inspect_p = sub.add_parser("inspect", help="images, identities and label counts per split")
    common(inspect_p)
    inspect_p.set_defaults(func=run_inspect)

    check_p = sub.add_parser("check", help="find duplicate photos and people or files in two splits; exit 1 if any")
    common(check_p)
    check_p.add_argument(
        "--phash-threshold",
        type=_bits,
        default=None,
        metavar="BITS",
        help="max pHash Hamming distance for near-duplicates (default 4)",
    )
    check_p.set_defaults(func=run_check)


def dataset_config(cfg: Config, name: str, root: str | None) -> DatasetConfig:
    """The named dataset's settings with its root made absolute."""
    if name in cfg.datasets:
        dc = cfg.datasets[name]
        if root is not None:
            return replace(dc, root=str(Path(os.path.expanduser(root)).absolute()))
        return replace(dc, root=str(cfg.resolve(dc.root))) if dc.root else dc
    if name in DATASET_KINDS:
        if name != "synthetic" and not root:
            raise ConfigError(f"dataset kind {name!r} is not configured; give its folder with --root PATH")
        return DatasetConfig(kind=name, root=str(Path(os.path.expanduser(root)).absolute()) if root else "")
    configured = ", ".join(sorted(cfg.datasets)) or "none"
    raise ConfigError(
        f"unknown dataset {name!r}; configured datasets: {configured}; "
        f"or use a kind ({', '.join(DATASET_KINDS)}) with --root"
    )


def _load(args: argparse.Namespace):
    from piu_engine.core.data import load_dataset

    cfg = load_config(args.config)
    preset: Preset = get_preset(args.preset or cfg.bench.preset)
    dc = dataset_config(cfg, args.dataset, args.root)
    configured = args.dataset if args.dataset in cfg.datasets else ""  # else a loader kind with --root
    return load_dataset(dc, preset, cfg.resolve(cfg.engine.cache_dir), name=configured)


def run_inspect(args: argparse.Namespace) -> int:
    from piu_engine.core.data.inspect import format_summary, summarize

    summary = summarize(_load(args))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from piu_engine.core.data.check import DEFAULT_PHASH_THRESHOLD, find_problems, format_problems

    threshold = DEFAULT_PHASH_THRESHOLD if args.phash_threshold is None else args.phash_threshold
    problems = find_problems(_load(args), phash_threshold=threshold)
    print(json.dumps(problems, indent=2) if args.json else format_problems(problems))
    return 0 if problems["clean"] else 1
