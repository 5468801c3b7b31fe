"""Child-process entry point: one unlearning run (one coalesced batch).

Runs :func:`piu_engine.core.forget.run_forget` and streams what happens back to
the daemon as plain tuples (over a multiprocessing queue for local workers;
:func:`execute` is the part every executor backend shares):
``("event", batch_id, dict)``, ``("done", batch_id, outcome dict)``,
``("interrupted", batch_id, "")`` or ``("error", batch_id, message)``.
The worker never touches the state database.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from piu_engine.service.executors.base import RunTask


def _die_with_parent(parent_pid: int) -> None:
    """The run must not outlive the daemon (kill -9): the job is re-queued there."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # pragma: no cover - not Linux
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:
        os._exit(1)


def main(task: RunTask, queue, stop_event, parent_pid: int) -> None:
    """Entry point of a local worker process (:class:`LocalProcessExecutor`)."""
    _die_with_parent(parent_pid)
    os.umask(0o027)
    stop_flag = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the daemon, which asks us to stop
    signal.signal(signal.SIGTERM, lambda *_: stop_flag.set())
    try:
        execute(task, queue.put, lambda: stop_flag.is_set() or stop_event.is_set())
    finally:
        sys.stdout.flush()


def execute(task: RunTask, put: Callable[[tuple], Any], should_stop: Callable[[], bool]) -> tuple:
    """Run ``task``: progress goes to ``put`` as ``("event", ...)`` tuples, and the final
    message is both ``put`` and returned. Shared by every executor backend."""
    last: dict[str, Any] = {"t": 0.0, "phase": None}

    def on_event(ev) -> None:
        now = time.monotonic()
        # Keep the stream light: phase changes, messages and the last step always; else 5 per second.
        final = bool(ev.steps) and ev.step >= ev.steps
        if ev.phase == last["phase"] and not ev.message and not ev.metrics and not final and now - last["t"] < 0.2:
            return
        last["t"], last["phase"] = now, ev.phase
        d = ev.to_dict()
        d["fraction"] = ev.fraction
        put(("event", task.batch_id, d))

    try:
        from piu_engine.common.events import Interrupted
        from piu_engine.core.config import with_engine
        from piu_engine.core.forget import run_forget
        from piu_engine.core.request import ForgetRequest

        cfg = task.cfg
        if task.device:
            cfg = with_engine(cfg, device=task.device)
        request = ForgetRequest(
            dataset=task.dataset,
            groups=task.groups,
            already_forgotten=task.already_forgotten,
            method=task.method,
            params=task.params,
            compare=task.compare,
            seed=task.seed,
            preset=task.preset,
        )
        from pathlib import Path

        try:
            outcome = run_forget(cfg, request, Path(task.parent_weights), Path(task.out_weights), on_event, should_stop)
        except Interrupted:
            final: tuple = ("interrupted", task.batch_id, "")
        else:
            final = ("done", task.batch_id, outcome.to_dict())
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the daemon as text
        tb = traceback.format_exc(limit=20)
        final = ("error", task.batch_id, f"{type(exc).__name__}: {exc}\n{tb}")
    put(final)
    return final
