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

Whatever lands in ``jobs/`` and whatever the file system or the database
does, the loop stays up: each part (intake, control requests, scheduling,
results, housekeeping) that fails is logged, named in the heartbeat's
``problem`` and retried with a back-off, while the others go on.

* Disk full (ENOSPC, EDQUOT, SQLite's "database or disk is full"): nothing new
  is taken or started, a run that failed for want of space is queued again
  without charging an attempt, a finished run waits to be recorded, and all
  resumes once space is back. A run is also not started while the models
  folder has less free space than two model files.
* Database locked by another process: the store waits for the lock and
  retries (logging every minute); nothing is lost.
* The state database deleted or replaced under the running daemon, or
  missing/empty at start-up while model versions exist: the daemon logs what
  happened and what to do and exits with :data:`EXIT_CONFIG` (78), which the
  systemd unit does not restart (``RestartPreventExitStatus=78``).
* ``jobs/`` deleted or replaced: the spool folders are made again and the
  file watcher re-armed.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from piu_engine.core.config import Config
from piu_engine.service import control
from piu_engine.service.arrivals import CLOSED, MOVED, Arrivals
from piu_engine.service.executors import create_executor
from piu_engine.service.executors.base import ExecMessage, Executor
from piu_engine.service.fsutil import UMASK
from piu_engine.service.intake import Intake, transient
from piu_engine.service.jobstate import JobState
from piu_engine.service.manifest import IdentityCache
from piu_engine.service.operations import FailureDeferred, Operations
from piu_engine.service.recovery import reconcile, recover, state_lost
from piu_engine.service.registry import Registry
from piu_engine.service.results import Results
from piu_engine.service.runtime import Runtime
from piu_engine.service.scheduler import Scheduler
from piu_engine.service.state import StateStore, is_disk_full, is_locked, printable
from piu_engine.service.workspace import InstanceLock, Workspace

log = logging.getLogger("piu.daemon")

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_INTERRUPTED = 3
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the executor backend (Ray cluster) cannot be reached
EXIT_BUSY = 75  # EX_TEMPFAIL: another instance serves the workspace
EXIT_CONFIG = 78  # EX_CONFIG: the state database is lost; restarting cannot help (systemd: RestartPreventExitStatus)

BATCH_SPACE_WAIT = 600.0  # `piu batch` waits this long for disk space, then exits 3 with the work left queued
BUSY_TIMEOUT = 5.0  # seconds one statement waits for another writer; the store then logs and keeps retrying
MIB = 1 << 20
MIN_FREE = MIB  # the disk counts as full again below this
RESERVE_BYTES = 8 * MIB  # kept in the state folder; released when the disk is full, so the state can still be written
# How a worker's error says it ran out of space (torch's zip writer says only "file write failed").
DISK_FULL_MARKERS = (
    "No space left on device",
    "[Errno 28]",
    "Disk quota exceeded",
    "[Errno 122]",
    "database or disk is full",
    "ENOSPC",
    "EDQUOT",
    "file write failed",
)

T = TypeVar("T")


class StateLost(RuntimeError):
    """The state database is missing, empty or was replaced while model versions exist."""


def describe(exc: BaseException) -> str:
    return printable(f"{type(exc).__name__}: {exc}", 500)


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
        self.stop_event = threading.Event()
        self.arrivals = Arrivals(self.s.max_manifest_bytes)
        self.stopping = False
        self.started_at = time.time()
        self.fatal: str | None = None  # why the daemon stops at once (the state database was lost)
        self.problems: dict[str, str] = {}  # part -> what keeps failing there
        self.failures: dict[str, int] = {}
        self.retry_at: dict[str, float] = {}
        self.disk_full: str | None = None  # why the daemon waits for disk space
        self.disk_retry_at = 0.0
        self.disk_strikes = 0
        self.disk_seen = -1e9  # when the disk was last found full (monotonic)
        self.space_short: str | None = None  # not enough free space to start a run
        self.waiting_since: float | None = None  # since when no run may start for want of space (monotonic)
        self.held: list[ExecMessage] = []  # finished runs waiting for space to be recorded
        self.reserve = self.ws.state_dir / ".space-reserve"
        self.repair_due = False
        self.observer: Any = None
        self.jobs_id: tuple[int, int] | None = None
        self.spool_gone = False  # set by the watcher when jobs/ itself was deleted or moved

    # -- lifecycle ----------------------------------------------------------
    def run(self) -> int:
        os.umask(UMASK)
        previous = self._install_signals()
        try:
            delay = 2.0
            while True:
                try:
                    return self._serve()
                except StateLost as exc:
                    log.error("%s", exc)
                    return EXIT_CONFIG
                except Exception as exc:  # noqa: BLE001 - disk full, database locked, a spool folder in the way
                    if not (transient(exc) or isinstance(exc, (OSError, sqlite3.OperationalError))):
                        raise
                    full = "disk full: " if is_disk_full(exc) or self._a_folder_is_full() else ""
                    log.error(
                        "cannot start: %s%s; the service waits and tries again in %.0f s (free some disk "
                        "space, stop what holds the state database, or fix the folder named)",
                        full,
                        describe(exc),
                        delay,
                    )
                    if self.stop_event.wait(delay):
                        log.info("stopped before start-up could finish")
                        return EXIT_INTERRUPTED if self.mode == "batch" else EXIT_OK
                    delay = min(60.0, delay * 2)
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _serve(self) -> int:
        self.ws.ensure()
        lock = InstanceLock(self.ws, self.mode).acquire(wait=self.lock_wait)
        owns_executor = self.executor is None
        executor = self.executor
        try:
            lost = state_lost(self.ws)  # before opening: opening would create a fresh, empty database
            if lost is not None:
                raise StateLost(lost)
            if executor is None:  # [executor] kind; a cluster that does not answer ends start-up here
                executor = create_executor(self.cfg, self.s)
            try:
                store = StateStore(
                    self.ws.db_path, busy_timeout=BUSY_TIMEOUT, wait_locked=True, interrupted=lambda: self.stopping
                )
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError):
                    raise  # locked, disk full, cannot open now: start-up waits and tries again
                raise StateLost(
                    f"the state database {self.ws.db_path} cannot be used: {exc}. Restore it from a "
                    f"backup (stop everything, copy the backup to {self.ws.db_path}, start again); "
                    f"`sqlite3 {self.ws.db_path} .recover` may save what it holds"
                ) from exc
            try:
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
                ops.defer_failure = self._defer_failure
                self._make_reserve()
                self.jobs_id = self._dir_id(self.ws.jobs_dir)
                self.observer = self._start_observer()  # before saying "running": a file dropped after that is seen
                try:
                    self._heartbeat("running")
                    log.info(
                        "piu %s started (pid %d) on %s; spool %s",
                        self.mode,
                        os.getpid(),
                        rt.device_name,
                        self.ws.jobs_dir,
                    )
                    try:
                        recover(rt, self.intake)
                    except Exception as exc:  # noqa: BLE001 - serve anyway: the loop repairs what is left
                        if transient(exc):
                            raise
                        log.exception("start-up recovery did not finish; serving anyway, repairs are retried")
                        self.problems["recovery"] = f"recovery: {describe(exc)}"
                        self.repair_due = True
                    code = self.loop()
                finally:
                    self._stop_observer()
                    if self.fatal is None:
                        self._attempt("heartbeat", lambda: self._heartbeat("stopped"), skip=False)
            finally:
                store.close()
            return code
        finally:
            if owns_executor and executor is not None:
                executor.close()
            lock.release()

    def _install_signals(self) -> dict[int, Any]:
        def handler(signum, _frame):
            if self.stopping and hasattr(self, "rt"):  # second signal: do not wait for a step boundary
                log.warning("second %s: killing running workers", signal.Signals(signum).name)
                self.rt.executor.kill_all()
            self.stopping = True
            self.stop_event.set()
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
        wake, arrivals, daemon = self.wake, self.arrivals, self
        root = os.path.normpath(str(self.ws.jobs_dir))

        class Hint(FileSystemEventHandler):
            def on_any_event(self, event):  # noqa: D401 - watchdog callback
                if (
                    event.is_directory
                    and event.event_type in ("deleted", "moved")
                    and os.path.normpath(os.fsdecode(event.src_path)) == root
                ):
                    daemon.spool_gone = True  # the watch died with the folder (its inode may be reused)
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

    def _stop_observer(self) -> None:
        observer, self.observer = self.observer, None
        if observer is not None:
            try:
                observer.stop()
                observer.join(timeout=5)
            except Exception:  # noqa: BLE001 - a watcher whose folder vanished may fail to stop cleanly
                log.debug("file watcher did not stop cleanly", exc_info=True)

    def _heartbeat(self, state: str) -> None:
        self.rt.store.heartbeat_update(self.mode, self.rt.device_name, state, self.started_at, problem=self.problem())

    def problem(self) -> str:
        """What keeps the daemon from serving normally, for the heartbeat ("" when nothing)."""
        parts = [
            p
            for p in (self.disk_full and f"disk full: {self.disk_full}; waiting for space (retrying)", self.space_short)
            if p
        ]
        parts += list(self.problems.values())
        return "; ".join(parts)

    # -- keeping every part alive ------------------------------------------
    def _attempt(self, part: str, fn: Callable[[], T], default: Any = None, skip: bool = True) -> Any:
        """Run one part of the loop; an error is logged, shown in the heartbeat and
        retried after a back-off (``skip``: until then the part is not run)."""
        if skip and time.monotonic() < self.retry_at.get(part, 0.0):
            return default
        try:
            out = fn()
        except FailureDeferred as exc:
            log.warning("%s", exc)
            return default
        except Exception as exc:  # noqa: BLE001 - the daemon stays up, whatever happens
            self._trouble(part, exc)
            return default
        if part in self.problems:
            log.info("%s works again", part)
            del self.problems[part]
        self.failures.pop(part, None)
        self.retry_at.pop(part, None)
        return out

    def _trouble(self, part: str, exc: Exception) -> None:
        n = self.failures[part] = self.failures.get(part, 0) + 1
        delay = min(30.0, 0.5 * 2 ** min(n, 6))
        self.retry_at[part] = time.monotonic() + delay
        self.repair_due = True
        what = describe(exc)
        if is_disk_full(exc) or (isinstance(exc, (OSError, sqlite3.Error)) and self._a_folder_is_full()):
            self._enter_disk_full(f"{part}: {what}")
        elif is_locked(exc):
            if n & (n - 1) == 0:
                log.warning(
                    "%s: the state database is locked by another process (%s); retrying in %.0f s", part, what, delay
                )
        elif n == 1:
            log.exception("%s failed; the service keeps serving and tries again in %.0f s", part, delay)
        elif n & (n - 1) == 0:  # 2, 4, 8, ...: say it again, not on every try
            log.error("%s failed again (%d times): %s; next try in %.0f s", part, n, what, delay)
        self.problems[part] = f"{part}: {what}"

    # -- disk space ----------------------------------------------------------
    def _folders(self) -> list[Path]:
        return [self.ws.state_dir, self.ws.models_dir, self.ws.jobs_dir]

    def _free(self, path: Path) -> int | None:
        try:
            return shutil.disk_usage(path).free
        except OSError:
            return None

    def _a_folder_is_full(self) -> bool:
        return any((free := self._free(f)) is not None and free < MIN_FREE for f in self._folders())

    def _make_reserve(self) -> bool:
        """Keep :data:`RESERVE_BYTES` of real blocks in the state folder (best effort)."""
        try:
            if self.reserve.stat().st_size >= RESERVE_BYTES:
                return True
        except OSError:
            pass
        try:
            fd = os.open(self.reserve, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                chunk = b"\0" * MIB
                for _ in range(RESERVE_BYTES // MIB):
                    os.write(fd, chunk)
                os.fsync(fd)
            finally:
                os.close(fd)
            return True
        except OSError:
            self.reserve.unlink(missing_ok=True)
            return False

    def _release_reserve(self) -> None:
        try:
            self.reserve.unlink()
        except OSError:
            return
        log.warning(
            "released the %d MiB space reserve (%s) so that the state database can still record what "
            "happens; it is made again once there is space",
            RESERVE_BYTES // MIB,
            self.reserve,
        )

    def _enter_disk_full(self, reason: str) -> None:
        now = time.monotonic()
        if now - self.disk_seen > 300:
            self.disk_strikes = 0
        self.disk_seen = now
        delay = min(60.0, 2.0 * 2**self.disk_strikes)
        if self.disk_full is None:
            self.disk_strikes += 1
            log.error(
                "disk full: %s. Nothing new is taken or started and nothing is lost; the service retries "
                "in %.0f s and resumes once there is space (free some in %s)",
                reason,
                delay,
                ", ".join(str(f) for f in self._folders()),
            )
            self._release_reserve()
        self.disk_full = printable(reason, 300)
        self.disk_retry_at = now + delay

    def _check_disk(self) -> None:
        now = time.monotonic()
        if self.disk_full is not None and now >= self.disk_retry_at:
            state_free = self._free(self.ws.state_dir) or 0
            reserved = self.reserve.is_file() and self.reserve.stat().st_size >= RESERVE_BYTES
            if self._a_folder_is_full() or not (
                reserved or (state_free >= MIN_FREE + RESERVE_BYTES and self._make_reserve())
            ):
                self.disk_retry_at = now + min(60.0, 2.0 * 2**self.disk_strikes)
            else:
                log.info("disk space is back; resuming (was: %s)", self.disk_full)
                self.disk_full = None
                self.repair_due = True
                self.wake.set()
                held, self.held = self.held, []
                for msg in held:
                    self._deliver(msg)
        self.space_short = self._space_for_runs()

    def _space_for_runs(self, quiet: bool = False) -> str | None:
        """Why no run may start now: less free space in the models folder than two model files."""
        store = self.rt.store
        if not store.counts().get(JobState.QUEUED.value):
            return None
        sizes = [0]
        for ds in store.datasets():
            cur = store.current_version(ds)
            if cur is not None:
                try:
                    sizes.append(os.stat(self.rt.registry.path(cur)).st_size)
                except OSError:
                    pass
        need = 2 * max(sizes) + MIN_FREE
        free = self._free(self.ws.models_dir)
        if free is None or free >= need:
            if self.space_short is not None and not quiet:
                log.info("enough disk space for a run again (%.0f MiB free)", (free or 0) / MIB)
            return None
        why = (
            f"waiting for disk space: {free / MIB:.0f} MiB free in {self.ws.models_dir}, a run needs about "
            f"{need / MIB:.0f} MiB (two model files); queued jobs start once there is space"
        )
        if self.space_short is None and not quiet:
            log.warning("%s", why)
        return why

    def _disk_full_failure(self, text: str) -> bool:
        """Did a run fail for want of space? Its message says so, or the disk is (nearly) full now."""
        if any(m in text for m in DISK_FULL_MARKERS):
            return True
        return self._a_folder_is_full() or self._space_for_runs(quiet=True) is not None

    def _defer_failure(self, job_id: str, error: str | None) -> str | None:
        """``Operations.end_job`` asks before failing a job: not when it failed for want of space."""
        text = error or ""
        ran = text.startswith(("the unlearning run failed", "the run finished but its model could not be registered"))
        if not (any(m in text for m in DISK_FULL_MARKERS) or (ran and self._disk_full_failure(text))):
            return None
        first = text.splitlines()[0] if text else "disk full"
        self._enter_disk_full(f"{job_id}: {first}")
        note = (
            f"waiting for disk space: {printable(first, 300)}; queued again (the attempt is not counted), "
            f"it runs once there is space"
        )
        self.rt.ops.requeue(job_id, note, charge=False)
        return note

    # -- main loop ------------------------------------------------------------
    def loop(self) -> int:
        rt = self.rt
        last_scan = -1e9
        last_beat = 0.0
        want_scan = True
        while not self.stopping:
            now = time.monotonic()
            if self.wake.is_set():
                self.wake.clear()
                want_scan = True
            settle_due = self.intake.settle_due
            due = settle_due is not None and now >= settle_due
            may_take = self.disk_full is None and now >= self.retry_at.get("intake", 0.0)
            if may_take and (want_scan or due or now - last_scan >= self.s.rescan_seconds):
                want_scan = False
                more = self._attempt("intake", self.intake.ingest, default=False)
                last_scan = time.monotonic()
                if more:
                    self.wake.set()
            self._attempt("control", self._control)
            if self.disk_full is None and self.space_short is None:
                self._attempt("schedule", lambda: self.scheduler.schedule(self.stopping))
            if rt.executor.running():
                msgs = self._attempt("results", lambda: rt.executor.poll(0.2), skip=False)
                if msgs is None:  # the executor itself failed: do not spin
                    self.stop_event.wait(0.2)
                for msg in msgs or []:
                    self._deliver(msg)
            else:
                if self.mode == "batch" and self._attempt("drained", self._drained, default=False):
                    break
                settle_due = self.intake.settle_due
                wait = 0.2 if settle_due is None else max(0.0, min(0.2, settle_due - time.monotonic()))
                self.wake.wait(wait)
            if time.monotonic() - last_beat >= 1.0:  # housekeeping, once a second
                self._housekeeping()
                last_beat = time.monotonic()
                self._batch_gives_up()
        return self.shutdown()

    def _batch_gives_up(self) -> None:
        """``piu batch`` (cron) does not wait for disk space all night: the next run takes the work."""
        if self.disk_full is None and self.space_short is None:
            self.waiting_since = None
            return
        now = time.monotonic()
        if self.waiting_since is None:
            self.waiting_since = now
        elif self.mode == "batch" and now - self.waiting_since >= BATCH_SPACE_WAIT:
            log.error(
                "batch: no disk space for %.0f s (%s); stopping with the work left queued for the next run",
                now - self.waiting_since,
                self.disk_full or self.space_short,
            )
            self.stopping = True

    def _control(self) -> None:
        for req in control.pending(self.rt.spool.control):
            control.answer(req, self.rt.ops.handle)

    def _deliver(self, msg: ExecMessage) -> None:
        """Hand one message of a run to :class:`Results`, minding the disk."""
        rt = self.rt
        batch = rt.batches.get(msg.batch_id)
        if msg.kind == "event" and self.disk_full is not None:
            return  # progress only; not worth a write while the disk is full
        if msg.kind == "done" and self.disk_full is not None and batch is not None:
            self.held.append(msg)  # recorded once there is space; the staged model waits in .staging/
            return
        if msg.kind == "error" and batch is not None and self._disk_full_failure(str(msg.payload)):
            first = str(msg.payload).splitlines()[0] if msg.payload else "the run failed"
            self._enter_disk_full(f"run {batch.id}: {first}")
            note = (
                f"waiting for disk space: the run failed ({printable(first, 300)}); queued again (the attempt "
                f"is not counted), it runs once there is space"
            )
            jobs = list(batch.job_ids)
            self._attempt(
                "results", lambda: self.results.handle(ExecMessage("interrupted", msg.batch_id, "")), skip=False
            )
            for j in jobs:
                self._attempt("results", self._requeuer(j, note), skip=False)
            self._attempt("results", lambda: rt.store.end_batch(msg.batch_id, "failed", note), skip=False)
            log.warning("run %s: %s", batch.id, note)
            return
        self._attempt("results", lambda: self.results.handle(msg), skip=False)

    def _requeuer(self, job_id: str, note: str) -> Callable[[], None]:
        return lambda: self.rt.ops.requeue(job_id, note, charge=False)

    def _handler(self, msg: ExecMessage) -> Callable[[], None]:
        return lambda: self.results.handle(msg)

    def _housekeeping(self) -> None:
        rt = self.rt
        lost = self._attempt("state check", rt.store.replaced, skip=False)
        if lost:
            self.fatal = (
                f"{lost}. Stopping now, starting no new work: what the service would record from here "
                f"on would be lost. Restore {rt.store.path} from a backup (or put the file back), then "
                f"start the service again; until then it refuses to start."
            )
            log.error("%s", self.fatal)
            self.stopping = True
            return
        self._attempt("spool check", self._check_jobs_dir)
        self._attempt("disk check", self._check_disk, skip=False)
        if self.disk_full is None:
            self._attempt("repair", self._repair)
        self._attempt("heartbeat", lambda: self._heartbeat("running"))
        self._attempt("control sweep", lambda: control.sweep(rt.spool.control, 2 * self.s.control_timeout_seconds))

    def _repair(self) -> None:
        """After an error: jobs left running by a run whose result could not be recorded,
        model files installed but never recorded, reports not written."""
        rt = self.rt
        live = {j for b in rt.batches.values() for j in b.job_ids}
        orphans = [j for j in rt.store.jobs((JobState.RUNNING,)) if j.id not in live]
        for job in orphans:
            if time.monotonic() - self.disk_seen < 600:
                rt.ops.requeue(
                    job.id,
                    "waiting for disk space: the run's result could not be recorded; queued "
                    "again (the attempt is not counted)",
                    charge=False,
                )
                log.warning("%s: queued again; its run's result could not be recorded (disk full)", job.id)
            elif job.attempts >= self.s.max_attempts:
                rt.end(
                    job.id,
                    JobState.FAILED,
                    f"gave up after {job.attempts} attempt(s) (service.max_attempts = "
                    f"{self.s.max_attempts}): the run's result could not be recorded "
                    f"(see the service log)",
                )
            else:
                rt.ops.requeue(
                    job.id, "the run's result could not be recorded (see the service log); queued again", charge=True
                )
                log.warning("%s: queued again; its run's result could not be recorded", job.id)
        live_batches = set(rt.batches)
        for batch_id in rt.store.running_batches():
            if batch_id not in live_batches:
                rt.store.end_batch(batch_id, "failed", "the run's result could not be recorded")
        rt.registry.discard_uncommitted(rt.store)
        if self.repair_due or orphans:
            reconcile(rt)
            self.repair_due = False

    @staticmethod
    def _dir_id(path: Path) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _check_jobs_dir(self) -> None:
        """``jobs/`` deleted or replaced: make the spool folders again and re-arm the watcher."""
        now_id = self._dir_id(self.ws.jobs_dir)
        spool = self.rt.spool
        folders = (spool.claimed, spool.control, spool.accepted, spool.rejected)
        # An inode number is reused at once (rm -rf jobs && mkdir jobs): the watcher's word and
        # the spool's own folders tell a new jobs/ as well.
        if now_id is not None and now_id == self.jobs_id and not self.spool_gone and all(f.is_dir() for f in folders):
            return
        if now_id is None:
            what = "was deleted"
        elif now_id != self.jobs_id or self.spool_gone:
            what = "was replaced by another folder"
        else:
            what = "lost its folders (" + ", ".join(f.name for f in folders if not f.is_dir()) + ")"
        self.spool_gone = False
        log.error(
            "spool %s %s; making its folders again and watching the new one (reports of finished jobs are "
            "written again)",
            self.ws.jobs_dir,
            what,
        )
        self.rt.spool.ensure()
        self.jobs_id = self._dir_id(self.ws.jobs_dir)
        self._stop_observer()
        self.observer = self._start_observer()
        reconcile(self.rt)
        self.wake.set()

    def _drained(self) -> bool:
        rt = self.rt
        return (
            not rt.store.queued_jobs()
            and not rt.spool.incoming(0.0)
            and not control.pending(rt.spool.control)
            and not rt.batches
            and not self.held
        )

    def shutdown(self) -> int:
        rt = self.rt
        if self.fatal is not None:  # the database is gone: record nothing more, end the runs now
            if rt.executor.running():
                log.error("killing %d run(s): their results could not be recorded", len(rt.executor.running()))
                rt.executor.kill_all()
                deadline = time.monotonic() + 60
                while rt.executor.running() and time.monotonic() < deadline:
                    self._attempt("results", lambda: rt.executor.poll(0.5), skip=False)
            log.error("stopped: the state database was lost (exit status %d)", EXIT_CONFIG)
            return EXIT_CONFIG
        interrupted = bool(rt.executor.running())
        if interrupted:
            log.info("stopping: asking %d run(s) to stop at a step boundary", len(rt.executor.running()))
            rt.executor.stop_all()
        while rt.executor.running():
            for msg in self._attempt("results", lambda: rt.executor.poll(0.5), default=[], skip=False):
                self._deliver(msg)
            self._attempt("heartbeat", lambda: self._heartbeat("stopping"), skip=False)
        held, self.held = self.held, []
        for msg in held:  # record finished runs if the disk allows it now; else they run again next time
            self._attempt("results", self._handler(msg), skip=False)
        if self.mode == "batch":
            if self.stopping and (interrupted or self._attempt("drained", rt.store.queued_jobs, default=[1])):
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
