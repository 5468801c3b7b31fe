"""The ``piu`` console script: one parser, subcommands contributed by
``piu_engine.commands.*`` modules (each exposes ``register(subparsers)``)."""
from __future__ import annotations

import argparse
import importlib
import sys

from piu_engine.config import ConfigError
from piu_engine.errors import CommandError

COMMAND_MODULES = (
    "piu_engine.commands.bench",
    "piu_engine.commands.data",
    "piu_engine.commands.service",
    "piu_engine.commands.tui",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="piu", description="Identity unlearning for face-recognition models.")
    parser.add_argument("--config", default=None,
                        help="config file (default: $PIU_CONFIG, else ./config.toml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, CommandError) as exc:
        print(f"piu: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("piu: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - dataset errors etc. get one clear line
        from piu_engine.data import DatasetError

        if isinstance(exc, (DatasetError, FileNotFoundError)):
            print(f"piu: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
