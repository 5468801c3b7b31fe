"""The ``piu`` console script: one parser, subcommands contributed by
``piu_engine.commands.*`` modules (each exposes ``register(subparsers)``)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from piu_engine.common.errors import CommandError, ConfigError, DatasetError

COMMAND_MODULES = (
    "piu_engine.commands.audit",
    "piu_engine.commands.bench",
    "piu_engine.commands.data",
    "piu_engine.commands.service",
    "piu_engine.commands.tui",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="piu", description="Identity unlearning for face-recognition models.")
    parser.add_argument("--config", default=None, help="config file (default: $PIU_CONFIG, else ./config.toml)")
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
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except (ConfigError, CommandError) as exc:
        print(f"piu: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("piu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `piu jobs ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process killed by SIGPIPE
    except Exception as exc:  # noqa: BLE001 - dataset errors etc. get one clear line
        if isinstance(exc, (DatasetError, FileNotFoundError)):
            print(f"piu: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
