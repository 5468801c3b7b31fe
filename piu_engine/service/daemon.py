"""The forget-request service: ``piu daemon`` (foreground, for systemd) and
``piu batch`` (process everything pending, then exit; for cron).

One loop in one thread owns the state database. File-system events only
wake it up; it also rescans ``jobs/`` at start-up and every
``service.rescan_seconds``. Jobs run in worker processes through an
:class:`~piu_engine.service.executors.base.Executor`. The loop's parts each
live in a module of their own: :mod:`.intake` takes manifests,
:mod:`.scheduler` coalesces and starts runs, :mod:`.results` commits what a
run produced, and :mod:`.recovery` reconciles after a crash. SIGTERM asks
the runs to stop at a step boundary, re-queues them uncharged, and exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from piu_engine.core.config import Config
from piu_engine.service import control
from piu_engine.service.arrivals import CLOSED, MOVED, Arrivals
from piu_engine.service.executors import create_executor
from piu_engine.service.executors.base import Executor
from piu_engine.service.fsutil import UMASK
from piu_engine.service.intake import Intake
from piu_engine.service.jobstate import JobState
from piu_engine.service.manifest import IdentityCache
from piu_engine.service.operations import Operations
from piu_engine.service.recovery import recover
from piu_engine.service.registry import Registry
from piu_engine.service.results import Results
from piu_engine.service.runtime import Runtime
from piu_engine.service.scheduler import Scheduler
from piu_engine.service.state import StateStore
from piu_engine.service.workspace import InstanceLock, Workspace

log = logging.getLogger("piu.daemon")

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_INTERRUPTED = 3
EXIT_BUSY = 75  # EX_TEMPFAIL: another instance serves the workspace
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the executor backend (Ray cluster) cannot be reached


class Daemon:
    def __init__(
        self,
        cfg: Config,
        mode: str = "daemon",
        executor: Executor | None = None,
        polling: bool | None = None,
        lock_wait: float = 3.0,
    ):
        self.cfg = cfg
        self.mode = mode
        self.ws = Workspace.from_config(cfg)
        self.s = self.ws.settings
        self.polling = self.s.polling if polling is None else polling
        self.executor = executor
        self.lock_wait = lock_wait
        self.wake = threading.Event()
        self.arrivals = Arrivals(self.s.max_manifest_bytes)
        self.stopping = False
        self.started_at = time.time()

    # -- lifecycle ----------------------------------------------------------
    def run(self) -> int:
        os.umask(UMASK)
        self.ws.ensure()
        lock = InstanceLock(self.ws, self.mode).acquire(wait=self.lock_wait)
        owns_executor = self.executor is None
        executor = self.executor
        try:
            if executor is None:  # [executor] kind; a cluster that does not answer ends start-up here
                executor = create_executor(self.cfg, self.s)
            store = StateStore(self.ws.db_path)
            registry = Registry(self.ws.models_dir).ensure()
            spool = self.ws.spool().ensure()
            ops = Operations(self.ws, store, registry, spool)
            self.rt = rt = Runtime(
                self.cfg,
                self.ws,
                store,
                registry,
                spool,
                ops,
                executor,
                IdentityCache(self.cfg, self.ws.preset),
                executor.describe(),
            )
            self.results = Results(rt)
            self.scheduler = Scheduler(rt, self.results.handle)
            self.intake = Intake(rt, self.arrivals, self.scheduler.window.arrival)
            ops.on_cancel_running = self.scheduler.cancel_running
            previous = self._install_signals()
            observer = self._start_observer()  # before saying "running": a file dropped after that is seen
            try:
                self._heartbeat("running")
                log.info(
                    "piu %s started (pid %d) on %s; spool %s", self.mode, os.getpid(), rt.device_name, self.ws.jobs_dir
                )
                recover(rt, self.intake)
                code = self.loop()
            finally:
                for sig, old in previous.items():
                    signal.signal(sig, old)
                if observer is not None:
                    observer.stop()
                    observer.join(timeout=5)
                self._heartbeat("stopped")
                store.close()
            return code
        finally:
            if owns_executor and executor is not None:
                executor.close()
            lock.release()

    def _install_signals(self) -> dict[int, Any]:
        def handler(signum, _frame):
            if self.stopping:  # second signal: do not wait for a step boundary
                log.warning("second %s: killing running workers", signal.Signals(signum).name)
                self.rt.executor.kill_all()
            self.stopping = True
            self.wake.set()

        if threading.current_thread() is not threading.main_thread():
            return {}  # embedded in a thread: the host program handles signals
        return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _start_observer(self):
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
            from watchdog.observers.polling import PollingObserver
        except ImportError:  # pragma: no cover - watchdog is a dependency; the timer rescan still works
            return None
        wake, arrivals = self.wake, self.arrivals

        class Hint(FileSystemEventHandler):
            def on_any_event(self, event):  # noqa: D401 - watchdog callback
                if not event.is_directory:
                    if event.event_type == "moved":
                        arrivals.drop(event.src_path)
                        arrivals.note(event.dest_path, MOVED)
                    elif event.event_type == "closed":
                        arrivals.note(event.src_path, CLOSED)
                    elif event.event_type in ("created", "modified", "deleted"):
                        arrivals.drop(event.src_path)
                wake.set()

        observer = PollingObserver(timeout=1.0) if self.polling else Observer()
        try:
            observer.schedule(Hint(), str(self.ws.jobs_dir), recursive=False)
            observer.start()
        except OSError as exc:  # inotify limits etc.: fall back to the timer rescan
            log.warning("file watcher unavailable (%s); rescanning every %.1f s", exc, self.s.rescan_seconds)
            return None
        return observer

    def _heartbeat(self, state: str) -> None:
        self.rt.store.heartbeat_update(self.mode, self.rt.device_name, state, self.started_at)

    # -- main loop ------------------------------------------------------------
    def loop(self) -> int:
        rt = self.rt
        last_scan = -1e9
        last_beat = 0.0
        while not self.stopping:
            now = time.monotonic()
            settle_due = self.intake.settle_due
            due = settle_due is not None and now >= settle_due
            if self.wake.is_set() or due or now - last_scan >= self.s.rescan_seconds:
                self.wake.clear()
                more = self.intake.ingest()
                last_scan = time.monotonic()
                if more:
                    self.wake.set()
            for req in control.pending(rt.spool.control):
                control.answer(req, rt.ops.handle)
            self.scheduler.schedule(self.stopping)
            if rt.executor.running():
                for msg in rt.executor.poll(0.2):
                    self.results.handle(msg)
            else:
                if self.mode == "batch" and self._drained():
                    break
                settle_due = self.intake.settle_due
                wait = 0.2 if settle_due is None else max(0.0, min(0.2, settle_due - time.monotonic()))
                self.wake.wait(wait)
            if time.monotonic() - last_beat >= 1.0:  # housekeeping, once a second
                self._heartbeat("running")
                control.sweep(rt.spool.control, 2 * self.s.control_timeout_seconds)
                last_beat = time.monotonic()
        return self.shutdown()

    def _drained(self) -> bool:
        rt = self.rt
        return (
            not rt.store.queued_jobs()
            and not rt.spool.incoming(0.0)
            and not control.pending(rt.spool.control)
            and not rt.batches
        )

    def shutdown(self) -> int:
        rt = self.rt
        interrupted = bool(rt.executor.running())
        if interrupted:
            log.info("stopping: asking %d run(s) to stop at a step boundary", len(rt.executor.running()))
            rt.executor.stop_all()
        while rt.executor.running():
            for msg in rt.executor.poll(0.5):
                self.results.handle(msg)
            self._heartbeat("stopping")
        if self.mode == "batch":
            if self.stopping and (interrupted or rt.store.queued_jobs()):
                return EXIT_INTERRUPTED
            bad = sorted(j for j, s in rt.ended.items() if s != JobState.DONE)
            if bad:
                log.warning("batch: %d job(s) did not succeed: %s", len(bad), ", ".join(bad))
                return EXIT_SOME_FAILED
        log.info("stopped")
        return EXIT_OK


def run_service(cfg: Config, mode: str = "daemon", polling: bool | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return Daemon(cfg, mode=mode, polling=polling).run()
