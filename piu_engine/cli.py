"""The ``piu`` console script: one parser, subcommands contributed by
``piu_engine.commands.*`` modules (each exposes ``register(subparsers)``)."""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from piu_engine.common.errors import CommandError, ConfigError, DatasetError

COMMAND_MODULES = (
    "piu_engine.commands.audit",
    "piu_engine.commands.bench",
    "piu_engine.commands.data",
    "piu_engine.commands.service",
    "piu_engine.commands.tui",
)


def _suggest(value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, list(choices), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _chosen(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The (sub)parser the command line ``argv`` selects: `piu jobs list --x` -> the `jobs list` parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for i, token in enumerate(argv):
                if token in action.choices:
                    return _chosen(action.choices[token], argv[i + 1 :])
    return parser


class PiuParser(argparse.ArgumentParser):
    """argparse with "did you mean" for mistyped subcommands, choices and options
    (Python 3.14's ``suggest_on_error``, for the Pythons we support)."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            hint = _suggest(str(value), [str(c) for c in action.choices or ()])
            if not hint or "did you mean" in str(exc):
                raise
            raise argparse.ArgumentError(action, f"{exc.message}{hint}") from None

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        ns, extras = self.parse_known_args(argv, namespace)
        if extras:
            target = _chosen(self, argv)
            options = [o for a in target._actions for o in a.option_strings]
            hints = []
            for x in extras:
                name = x.split("=")[0]
                close = difflib.get_close_matches(name, options, n=2, cutoff=0.6) if name.startswith("-") else []
                if close:
                    hints.append(f"for {name!r} did you mean {' or '.join(repr(c) for c in close)}?")
            target.error(f"unrecognized arguments: {' '.join(extras)}" + "".join(f"; {h}" for h in hints))
        return ns


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("piu")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = PiuParser(prog="piu", description="Identity unlearning for face-recognition models.")
    parser.add_argument("--version", action="version", version=f"piu {_version()}", help="print the version and exit")
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="the workspace's config.toml (default: $PIU_CONFIG, else ./config.toml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="what to do")
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
    from piu_engine.commands.workspace import check_config_arg

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_config_arg(args, must_exist=False)  # a folder where the file belongs, for every command
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
