"""CLI -> daemon requests (cancel, retry, register a model) through the spool.

The state database has one writer. A command that changes state first tries
to take the workspace lock itself (no daemon running: it applies the change
directly); otherwise it drops ``jobs/.control/ID.req.json`` atomically and
waits for the daemon's ``ID.res.json``.

The daemon reads only regular files there, never blocking: a directory, FIFO,
socket or symlink named ``*.req.json`` is removed (or, a folder with
something in it, moved aside) with a log line, and never opened.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from piu_engine.service.fsutil import write_private
from piu_engine.service.state import printable
from piu_engine.service.workspace import InstanceLock, Workspace, WorkspaceBusy

log = logging.getLogger("piu.daemon")

MAX_REQUEST_BYTES = 1 << 20


class ControlError(RuntimeError):
    pass


def _entries(control_dir: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(control_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _discard(path: Path, what: str) -> None:
    """Remove a non-file entry from the control folder (a folder with content: move it aside)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    try:
        if stat.S_ISDIR(st.st_mode):
            try:
                os.rmdir(path)
            except OSError:
                aside = path.with_name(f".{path.name}.not-a-file.{time.time_ns()}")
                os.rename(path, aside)
                log.warning(
                    "control: %s is a %s, not a request file: moved it to %s",
                    printable(str(path)),
                    what,
                    printable(aside.name),
                )
                return
        else:
            os.unlink(path)
        log.warning("control: %s is a %s, not a request file: removed it", printable(str(path)), what)
    except OSError as exc:
        log.warning(
            "control: %s is a %s, not a request file, and could not be removed: %s", printable(str(path)), what, exc
        )


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"


def pending(control_dir: Path) -> list[Path]:
    """Request files waiting for the daemon: regular files only (others are discarded)."""
    out = []
    for e in _entries(control_dir):
        if e.name.startswith(".") or not e.name.endswith(".req.json"):
            continue
        try:
            st = e.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            out.append(Path(e.path))
        else:
            _discard(Path(e.path), _kind(st.st_mode))
    return sorted(out)


def _read_request(req: Path) -> bytes:
    """Read a request without following links or blocking; a regular file only."""
    fd = os.open(req, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"not a regular file (a {_kind(st.st_mode)})")
        if st.st_size > MAX_REQUEST_BYTES:
            raise ValueError(f"{st.st_size} bytes, larger than {MAX_REQUEST_BYTES}")
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def answer(req: Path, handler: Callable[[str, dict[str, Any]], dict[str, Any]]) -> None:
    """Daemon side: run one request file through ``handler`` and write the response."""
    res = req.with_name(req.name[: -len(".req.json")] + ".res.json")
    try:
        data = _read_request(req)
    except FileNotFoundError:
        return  # the caller gave up and took it back
    except OSError as exc:  # e.g. ELOOP: a symlink put there after the listing
        try:
            st = os.lstat(req)
            if not stat.S_ISREG(st.st_mode):
                _discard(req, _kind(st.st_mode))
                return
        except FileNotFoundError:
            return
        reply: dict[str, Any] = {"ok": False, "message": f"cannot read the request: {exc}"}
    except ValueError as exc:
        try:
            _discard(req, _kind(os.lstat(req).st_mode))
        except FileNotFoundError:
            pass
        log.warning("control: %s: %s", printable(req.name), exc)
        return
    else:
        try:
            body = json.loads(data.decode("utf-8"))
            result = handler(str(body["op"]), dict(body.get("args", {})))
            reply = {"ok": True, **result}
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller as text
            if _transient(exc):
                raise  # disk full, database locked: the daemon retries the request later
            reply = {"ok": False, "message": str(exc)}
    if os.path.lexists(res) and not (os.path.isfile(res) and not os.path.islink(res)):
        _discard(res, _kind(os.lstat(res).st_mode))
    write_private(res, json.dumps(reply, ensure_ascii=True))
    req.unlink(missing_ok=True)


def _transient(exc: BaseException) -> bool:
    from piu_engine.service.state import is_disk_full, is_locked

    return is_disk_full(exc) or is_locked(exc)


def sweep(control_dir: Path, older_than: float, now: float | None = None) -> list[Path]:
    """Daemon side: delete answers nobody collected (their caller gave up waiting),
    and temporary files of writes that were cut short."""
    now = time.time() if now is None else now
    removed = []
    for e in _entries(control_dir):
        p = Path(e.path)
        try:
            st = e.stat(follow_symlinks=False)
            stale_tmp = e.name.startswith(".") and e.name.endswith(".tmp")
            if not (e.name.endswith(".res.json") or stale_tmp) or now - st.st_mtime <= older_than:
                continue
            if stat.S_ISDIR(st.st_mode):
                if not e.name.startswith("."):  # hidden: moved aside before, the admin's to look at
                    _discard(p, "folder")
                continue
            else:
                p.unlink()
            removed.append(p)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("control: could not remove %s: %s", printable(str(p)), exc)
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
