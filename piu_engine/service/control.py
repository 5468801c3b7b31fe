"""CLI -> daemon requests (cancel, retry, register a model) through the spool.

The state database has one writer. A command that changes state first tries
to take the workspace lock itself (no daemon running: it applies the change
directly); otherwise it drops ``jobs/.control/ID.req.json`` atomically and
waits for the daemon's ``ID.res.json``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from piu_engine.service.fsutil import write_private
from piu_engine.service.workspace import InstanceLock, Workspace, WorkspaceBusy


class ControlError(RuntimeError):
    pass


def pending(control_dir: Path) -> list[Path]:
    if not control_dir.is_dir():
        return []
    return sorted(p for p in control_dir.iterdir() if p.name.endswith(".req.json"))


def answer(req: Path, handler: Callable[[str, dict[str, Any]], dict[str, Any]]) -> None:
    """Daemon side: run one request file through ``handler`` and write the response."""
    res = req.with_name(req.name[: -len(".req.json")] + ".res.json")
    try:
        body = json.loads(req.read_text("utf-8"))
        result = handler(str(body["op"]), dict(body.get("args", {})))
        reply = {"ok": True, **result}
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller as text
        reply = {"ok": False, "message": str(exc)}
    write_private(res, json.dumps(reply))
    req.unlink(missing_ok=True)


def sweep(control_dir: Path, older_than: float, now: float | None = None) -> list[Path]:
    """Daemon side: delete answers nobody collected (their caller gave up waiting)."""
    now = time.time() if now is None else now
    removed = []
    if control_dir.is_dir():
        for p in control_dir.iterdir():
            try:
                if p.name.endswith(".res.json") and now - p.stat().st_mtime > older_than:
                    p.unlink()
                    removed.append(p)
            except FileNotFoundError:
                continue
    return removed


def call(
    ws: Workspace, op: str, args: dict[str, Any], direct: Callable[[str, dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """Apply ``op`` directly under the lock, or through the running daemon."""
    lock = InstanceLock(ws, role=f"{op} (cli)")
    try:
        lock.acquire(wait=0)
    except WorkspaceBusy:
        return _via_daemon(ws, op, args)
    try:
        return {"ok": True, **direct(op, args)}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "message": str(exc)}
    finally:
        lock.release()


def _via_daemon(ws: Workspace, op: str, args: dict[str, Any]) -> dict[str, Any]:
    control = ws.spool().control
    if not control.is_dir():
        raise ControlError(f"{control} does not exist; is {ws.jobs_dir} the daemon's spool?")
    rid = f"{time.time_ns()}-{secrets.token_hex(4)}"
    req = control / f"{rid}.req.json"
    res = control / f"{rid}.res.json"
    write_private(req, json.dumps({"op": op, "args": args}))
    deadline = time.monotonic() + ws.settings.control_timeout_seconds
    while time.monotonic() < deadline:
        if res.exists():
            reply = json.loads(res.read_text("utf-8"))
            res.unlink(missing_ok=True)
            return reply
        time.sleep(0.1)
    req.unlink(missing_ok=True)
    raise ControlError(
        f"the daemon holding the workspace did not answer within {ws.settings.control_timeout_seconds:.0f} s "
        f"(service.control_timeout_seconds); is it busy or hung? See `piu status`"
    )
