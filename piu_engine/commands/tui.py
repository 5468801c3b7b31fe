"""``piu tui``: the terminal UI for admins (over SSH on the GPU server).

Textual is imported inside the command only: ``piu_engine`` (and so the
daemon) never imports it at module import time.
"""

from __future__ import annotations

import argparse


def cmd_tui(args) -> int:
    from piu_engine.commands.workspace import load_workspace_config
    from piu_engine.common.errors import CommandError
    from piu_engine.service.workspace import Workspace

    if args.interval <= 0:
        raise CommandError("--interval must be > 0 seconds")
    cfg = load_workspace_config(args)
    ws = Workspace.from_config(cfg)
    try:
        from piu_tui.app import PiuApp
    except ImportError as exc:  # pragma: no cover - textual is a dependency
        raise CommandError(f"piu tui needs the 'textual' package ({exc}); pip install textual") from None
    app = PiuApp(ws, poll_interval=args.interval)
    app.run()
    return int(app.return_code or 0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tui", help="terminal UI: watch the service, submit, cancel and retry requests")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between reads of the service state")
    p.set_defaults(func=cmd_tui)
