"""The forget-request service: ``piu daemon`` (foreground, for systemd) and
``piu batch`` (process everything pending, then exit; for cron).

One loop in one thread owns the state database. File-system events only
wake it up; it also rescans ``jobs/`` at start-up and every
``service.rescan_seconds``. Jobs run in worker processes through an
:class:`~piu_engine.service.executors.base.Executor`.

Exactly once: a manifest is claimed by an atomic rename, recorded in the
database, and only then moved to its final place; start-up reconciles
claimed files against the database. A job's new model version, the current
pointer, the forgotten identities and the job's ``done`` state are written
in one transaction, after the checkpoint is in its version folder. A run cut
by a crash or kill -9 is re-queued (``attempts`` counts starts; after
``service.max_attempts`` the job fails with the reason). SIGTERM asks the
runs to stop at a step boundary, re-queues them uncharged, and exits 0.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from piu_engine.core.config import Config
from piu_engine.service import control, gate as gate_mod
from piu_engine.service.arrivals import CLOSED, MOVED, Arrivals
from piu_engine.service.executors import create_executor
from piu_engine.service.executors.base import ExecMessage, Executor
from piu_engine.service.fsutil import UMASK
from piu_engine.service.manifest import IdentityCache, ManifestError, check_manifest, parse_json, read_manifest_bytes
from piu_engine.service.operations import Operations
from piu_engine.service.registry import Registry, RegistryError
from piu_engine.service.spool import Spool
from piu_engine.service.state import TERMINAL_STATES, JobRow, StateStore
from piu_engine.service.executors.base import RunTask
from piu_engine.service.workspace import InstanceLock, Workspace

log = logging.getLogger("piu.daemon")

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_INTERRUPTED = 3
EXIT_BUSY = 75  # EX_TEMPFAIL: another instance serves the workspace
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the executor backend (Ray cluster) cannot be reached


def run_key(job: JobRow) -> str:
    """Jobs with equal keys can share one unlearning run."""
    return json.dumps([job.dataset, job.method, job.params, sorted(job.compare)], sort_keys=True)


@dataclass
class Batch:
    id: str
    dataset: str
    job_ids: list[str]
    parent_version: int
    groups: dict[str, list[str]]
    staged: Path
    device: str = ""
    measured_as: dict[str, str] = field(default_factory=dict)  # job -> job whose group the engine measured
    cancel: set[str] = field(default_factory=set)


class Daemon:
    def __init__(self, cfg: Config, mode: str = "daemon", executor: Executor | None = None,
                 polling: bool | None = None, lock_wait: float = 3.0):
        self.cfg = cfg
        self.mode = mode
        self.ws = Workspace.from_config(cfg)
        self.s = self.ws.settings
        self.polling = self.s.polling if polling is None else polling
        self.executor = executor
        self._owns_executor = False
        self.lock_wait = lock_wait
        self.identities = IdentityCache(cfg, self.ws.preset)
        self.wake = threading.Event()
        self.arrivals = Arrivals(self.s.max_manifest_bytes)
        self._settle_due: float | None = None  # when the next unsettled file may be taken
        self.stopping = False
        self.batches: dict[str, Batch] = {}
        self.ended: dict[str, str] = {}  # jobs that reached a final state during this run
        self.started_at = time.time()
        self.device_name = ""
        self._ensured: set[str] = set()
        self._hold_start: float | None = None  # coalescing window: manifests are still arriving
        self._last_arrival = 0.0

    # -- lifecycle ----------------------------------------------------------
    def run(self) -> int:
        os.umask(UMASK)
        self.ws.ensure()
        lock = InstanceLock(self.ws, self.mode).acquire(wait=self.lock_wait)
        try:
            if self.executor is None:  # [executor] kind; a cluster that does not answer ends start-up here
                self.executor = create_executor(self.cfg, self.s)
                self._owns_executor = True
            self.store = StateStore(self.ws.db_path)
            self.registry = Registry(self.ws.models_dir).ensure()
            self.spool = self.ws.spool().ensure()
            self.ops = Operations(self.ws, self.store, self.registry, self.spool)
            self.ops.on_cancel_running = self._cancel_running
            self.device_name = self._describe_device()
            previous = self._install_signals()
            observer = self._start_observer()  # before saying "running": a file dropped after that is seen
            try:
                self._heartbeat("running")
                log.info("piu %s started (pid %d) on %s; spool %s", self.mode, os.getpid(), self.device_name,
                         self.ws.jobs_dir)
                self.recover()
                code = self.loop()
            finally:
                for sig, old in previous.items():
                    signal.signal(sig, old)
                if observer is not None:
                    observer.stop()
                    observer.join(timeout=5)
                self._heartbeat("stopped")
                self.store.close()
            return code
        finally:
            if self._owns_executor:
                self.executor.close()
            lock.release()

    def _describe_device(self) -> str:
        return self.executor.describe()

    def _install_signals(self) -> dict[int, Any]:
        def handler(signum, _frame):
            if self.stopping:  # second signal: do not wait for a step boundary
                log.warning("second %s: killing running workers", signal.Signals(signum).name)
                self.executor.kill_all()
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
        self.store.heartbeat_update(self.mode, self.device_name, state, self.started_at)

    # -- start-up recovery ---------------------------------------------------
    def recover(self) -> None:
        for job in self.store.jobs(("running",)):
            if job.attempts >= self.s.max_attempts:
                self._end(job.id, "failed",
                          f"gave up after {job.attempts} attempt(s) (service.max_attempts = {self.s.max_attempts}): "
                          f"the service stopped while the job was running (crash, kill -9 or power loss)")
            else:
                log.info("re-queueing %s: the service stopped during attempt %d", job.id, job.attempts)
                self.store.set_job(job.id, state="queued", phase=None, progress=None)
        for row in self.store.conn.execute("SELECT id FROM batches WHERE state = 'running'").fetchall():
            self.store.end_batch(row[0], "crashed", "the service stopped while this run was in progress")
        removed = self.registry.cleanup(self.store)
        for p in removed:
            log.info("removed partial model file %s", p)
        for claimed in self.spool.claimed_files():
            self.process_claimed(claimed)
        for job in self.store.jobs(("done", "failed", "cancelled")):
            if not (self.spool.job_dir(job.state, job.id) / "report.json").exists():
                self.ops.write_report(job.id)
        for f in self.spool.accepted.iterdir():
            job = self.store.job(f.stem)
            if job is not None and job.state in TERMINAL_STATES:
                f.unlink()

    # -- main loop ------------------------------------------------------------
    def loop(self) -> int:
        last_scan = -1e9
        last_beat = 0.0
        while not self.stopping:
            now = time.monotonic()
            due = self._settle_due is not None and now >= self._settle_due
            if self.wake.is_set() or due or now - last_scan >= self.s.rescan_seconds:
                self.wake.clear()
                more = self.ingest()
                last_scan = time.monotonic()
                if more:
                    self.wake.set()
            for req in control.pending(self.spool.control):
                control.answer(req, self.ops.handle)
            self.schedule()
            if self.executor.running():
                for msg in self.executor.poll(0.2):
                    self.handle(msg)
            else:
                if self.mode == "batch" and self._drained():
                    break
                wait = 0.2 if self._settle_due is None else max(0.0, min(0.2, self._settle_due - time.monotonic()))
                self.wake.wait(wait)
            if time.monotonic() - last_beat >= 1.0:  # housekeeping, once a second
                self._heartbeat("running")
                control.sweep(self.spool.control, 2 * self.s.control_timeout_seconds)
                last_beat = time.monotonic()
        return self.shutdown()

    def _drained(self) -> bool:
        return (not self.store.queued_jobs() and not self.spool.incoming(0.0)
                and not control.pending(self.spool.control) and not self.batches)

    def shutdown(self) -> int:
        interrupted = bool(self.executor.running())
        if interrupted:
            log.info("stopping: asking %d run(s) to stop at a step boundary", len(self.executor.running()))
            self.executor.stop_all()
        while self.executor.running():
            for msg in self.executor.poll(0.5):
                self.handle(msg)
            self._heartbeat("stopping")
        if self.mode == "batch":
            if self.stopping and (interrupted or self.store.queued_jobs()):
                return EXIT_INTERRUPTED
            bad = sorted(j for j, s in self.ended.items() if s != "done")
            if bad:
                log.warning("batch: %d job(s) did not succeed: %s", len(bad), ", ".join(bad))
                return EXIT_SOME_FAILED
        log.info("stopped")
        return EXIT_OK

    def _end(self, job_id: str, state: str, error: str | None = None, **fields: Any) -> None:
        self.ops.end_job(job_id, state, error, **fields)
        self.ended[job_id] = state
        log.info("%s %s%s", job_id, state, f": {error.splitlines()[0]}" if error else "")

    # -- intake ---------------------------------------------------------------
    def ingest(self, limit: int = 500) -> bool:
        """Claim and check complete manifests; True when more are waiting."""
        files = self.spool.incoming(self.s.settle_seconds, whole=self.arrivals.is_whole)
        for path in files[:limit]:
            self.arrivals.drop(path.name)
            claimed = self.spool.claim(path)
            if claimed is not None:
                self.process_claimed(claimed)
        settling = len(files) < limit and any(self.spool.incoming(0.0))
        if files or settling:
            self._arrival()
        # Files still being written: look again soon, without spinning.
        self._settle_due = time.monotonic() + min(0.05, self.s.settle_seconds) if settling else None
        return len(files) > limit

    def _arrival(self) -> None:
        now = time.monotonic()
        if self._hold_start is None:
            self._hold_start = now
        self._last_arrival = now

    def _holding(self) -> bool:
        """Wait while manifests keep arriving, so that they share a run (bounded wait)."""
        if self._hold_start is None:
            return False
        now = time.monotonic()
        c = self.s.coalesce_seconds
        if now - self._last_arrival < c and now - self._hold_start < 10 * c:
            return True
        self._hold_start = None
        return False

    def process_claimed(self, claimed: Path) -> None:
        row = self.store.request_by_claim(claimed.name)
        if row is not None:  # recorded before a crash; finish the move
            if row["outcome"] == "accepted":
                self.spool.accept(claimed, row["job_id"])
            else:
                self.spool.reject(claimed, (row["error"] or "rejected").splitlines())
            return
        name = Spool.original_name(claimed)
        sha, rid, problems = None, None, []
        manifest = None
        try:
            data = read_manifest_bytes(claimed, self.s.max_manifest_bytes)
            sha = hashlib.sha256(data).hexdigest()
            doc = parse_json(data)
            if isinstance(doc, dict) and isinstance(doc.get("request_id"), str):
                rid = doc["request_id"]
            manifest = check_manifest(doc, self.cfg, self.identities, self.s.max_forget_share)
            rid = manifest.request_id
            seen = self.store.job(manifest.request_id)
            if seen is not None and seen.id == manifest.request_id:
                how = "the same content" if manifest.id_derived else "this request_id"
                problems = [f"request_id {rid!r}: a request with {how} was received before (job is {seen.state}); "
                            f"a request is never run twice: use a new request_id"
                            + (f", or `piu retry {rid}`" if seen.state in ("failed", "cancelled") else "")]
        except ManifestError as exc:
            problems = exc.problems
        except Exception as exc:  # noqa: BLE001 - the daemon never dies on input
            log.exception("unexpected error while checking %s", name)
            problems = [f"could not be checked: {type(exc).__name__}: {exc}"]
        if problems:
            job_id = self.store.record_rejected(claimed.name, name, sha, problems, rid)
            self.spool.reject(claimed, problems)
            self.ended[job_id] = "rejected"
            log.warning("rejected %s: %s", name, "; ".join(problems))
            return
        info = self.identities.info(manifest.dataset)
        if manifest.dataset not in self._ensured:
            self.store.ensure_identities(manifest.dataset, dict(info.images_per_identity))
            self._ensured.add(manifest.dataset)
        forgotten = {r.identity: r.version for r in self.store.identities(manifest.dataset, forgotten_only=True)}
        status = {
            i: (("already_forgotten", info.images_per_identity.get(i), forgotten[i]) if i in forgotten
                else ("requested", info.images_per_identity.get(i), None))
            for i in manifest.identities
        }
        self.store.record_accepted(claimed.name, name, sha, manifest, status)
        self.spool.accept(claimed, manifest.request_id)
        log.info("accepted %s as %s: %d identities, method %s", name, manifest.request_id,
                 len(manifest.identities), manifest.method)

    # -- scheduling -------------------------------------------------------------
    def schedule(self) -> None:
        if self._holding():
            return
        while not self.stopping and self.executor.free_slots() > 0:
            batch = self._next_batch()
            if not batch:
                return
            self._start(batch)

    def _next_batch(self) -> list[JobRow] | None:
        busy = {b.dataset for b in self.batches.values()}  # one run per dataset: lineages stay linear
        chosen: list[JobRow] = []
        key = None
        forgotten_by_ds: dict[str, set[str]] = {}
        for job in self.store.queued_jobs():
            if job.dataset in busy:
                continue
            if chosen and (run_key(job) != key or len(chosen) >= self.s.batch_size):
                continue
            current = self.store.current_version(job.dataset)
            if current is None:
                self._end(job.id, "failed", f"no model for dataset {job.dataset!r} yet: run `piu train` or "
                                            f"`piu model import FILE`, then `piu retry {job.id}`")
                continue
            gone = forgotten_by_ds.setdefault(job.dataset, set(current.forgotten))
            if all(i in gone for i in job.identities):
                self._already_done(job, current)
                continue
            if not chosen:
                key = run_key(job)
            chosen.append(job)
        return chosen or None

    def _already_done(self, job: JobRow, current) -> None:
        where = {r.identity: r.version for r in self.store.identities(job.dataset, forgotten_only=True)}
        for i in job.identities:
            self.store.set_identity_status(job.id, i, "already_forgotten", where.get(i))
        self._end(job.id, "done", None, parent_version=current.version, version=current.version,
                  metrics=current.metrics, result={"note": f"All identities were already forgotten; the current "
                                                           f"model ({job.dataset} version {current.version}) already "
                                                           f"satisfies this request, so nothing was run."})

    def _start(self, jobs: list[JobRow]) -> None:
        dataset = jobs[0].dataset
        parent = self.store.current_version(dataset)
        try:
            parent_path = self.registry.verify(parent)
        except (RegistryError, OSError, ValueError) as exc:
            for j in jobs:
                self._end(j.id, "failed", f"cannot use the parent model: {exc}")
            return
        gone = set(parent.forgotten)
        groups: dict[str, list[str]] = {}
        for j in jobs:
            for i in j.identities:
                if i in gone:
                    self.store.set_identity_status(j.id, i, "already_forgotten",
                                                   self._forgotten_in(dataset, i))
            groups[j.id] = [i for i in j.identities if i not in gone]
        # The engine measures each group on its own forget set; requests naming the same
        # people share one measurement.
        same: dict[tuple[str, ...], str] = {}
        rep = {jid: same.setdefault(tuple(sorted(ids)), jid) for jid, ids in groups.items()}
        engine_groups = {jid: ids for jid, ids in groups.items() if rep[jid] == jid}
        batch_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        staged = self.registry.staging_path(batch_id)
        j0 = jobs[0]
        task = RunTask(batch_id=batch_id, cfg=self.cfg, dataset=dataset, groups=engine_groups,
                       already_forgotten=list(parent.forgotten), method=j0.method, params=j0.params,
                       compare=j0.compare, preset=self.ws.preset, parent_weights=str(parent_path),
                       out_weights=str(staged), seed=self.cfg.engine.seed)
        self.store.start_batch(batch_id, jobs, parent.version, "")
        batch = Batch(batch_id, dataset, [j.id for j in jobs], parent.version, groups, staged, "", rep)
        self.batches[batch_id] = batch
        try:
            batch.device = self.executor.submit(task)
        except Exception as exc:  # noqa: BLE001 - counts as a crashed attempt
            log.exception("run %s: could not start a worker", batch_id)
            self.handle(ExecMessage("crashed", batch_id, f"could not start a worker: {type(exc).__name__}: {exc}"))
            return
        device = batch.device
        with self.store.tx() as c:
            c.execute("UPDATE batches SET device = ? WHERE id = ?", (device, batch_id))
        log.info("run %s started: %d request(s), %d identities, %s from %s v%d on %s", batch_id, len(jobs),
                 len({i for g in groups.values() for i in g}), j0.method, dataset, parent.version,
                 device or self.device_name)

    def _forgotten_in(self, dataset: str, identity: str) -> int | None:
        r = self.store.conn.execute("SELECT version FROM identities WHERE dataset = ? AND identity = ? AND "
                                    "state = 'forgotten'", (dataset, identity)).fetchone()
        return r[0] if r else None

    def _cancel_running(self, job: JobRow) -> str:
        batch = self.batches.get(job.batch_id or "")
        if batch is None:
            self._end(job.id, "cancelled", "cancelled by `piu cancel`")
            return f"{job.id}: cancelled"
        batch.cancel.add(job.id)
        self.executor.cancel(batch.id)
        others = [j for j in batch.job_ids if j != job.id]
        extra = f"; {len(others)} other request(s) of the same run go back to the queue" if others else ""
        return f"{job.id}: cancelling its run {batch.id}{extra}"

    # -- results --------------------------------------------------------------
    def handle(self, msg: ExecMessage) -> None:
        batch = self.batches.get(msg.batch_id)
        if batch is None:
            return
        if msg.kind == "event":
            ev = msg.payload
            self.store.add_event(batch.id, ev, float(ev.get("fraction") or 0.0))
            return
        del self.batches[batch.id]
        try:
            if msg.kind == "done":
                try:
                    self._finish(batch, msg.payload)
                except Exception as exc:  # noqa: BLE001 - e.g. a checksum mismatch: fail the jobs, keep serving
                    log.exception("run %s: could not register its result", batch.id)
                    self.store.end_batch(batch.id, "failed", str(exc))
                    for j in batch.job_ids:
                        if self.store.job(j).state == "running":
                            self._end(j, "failed", f"the run finished but its model could not be registered: "
                                                   f"{type(exc).__name__}: {exc}")
            elif msg.kind == "interrupted":
                self.store.end_batch(batch.id, "interrupted", "stopped at a step boundary (SIGTERM)")
                self._requeue(batch.job_ids, charge=False)
            elif msg.kind == "cancelled":
                self.store.end_batch(batch.id, "cancelled")
                for j in batch.job_ids:
                    if j in batch.cancel:
                        self._end(j, "cancelled", "cancelled by `piu cancel` while running")
                self._requeue([j for j in batch.job_ids if j not in batch.cancel], charge=False)
            elif msg.kind == "crashed":
                self.store.end_batch(batch.id, "crashed", str(msg.payload))
                for job_id in batch.job_ids:
                    job = self.store.job(job_id)
                    if job.attempts >= self.s.max_attempts:
                        self._end(job_id, "failed", f"gave up after {job.attempts} attempt(s) "
                                                    f"(service.max_attempts = {self.s.max_attempts}): {msg.payload}")
                    else:
                        self._requeue([job_id], charge=True)
            else:  # error
                self.store.end_batch(batch.id, "failed", str(msg.payload))
                for j in batch.job_ids:
                    self._end(j, "failed", f"the unlearning run failed: {msg.payload}", phase=None)
        finally:
            batch.staged.unlink(missing_ok=True)

    def _requeue(self, job_ids: list[str], charge: bool) -> None:
        for j in job_ids:
            job = self.store.job(j)
            self.store.set_job(j, state="queued", phase=None, progress=None,
                               attempts=job.attempts if charge else max(0, job.attempts - 1))

    def _finish(self, batch: Batch, outcome: dict[str, Any]) -> None:
        store = self.store
        parent = store.version(batch.dataset, batch.parent_version)
        result = gate_mod.evaluate(self.s.gate, outcome.get("parent") or {}, outcome.get("model") or {},
                                   outcome.get("counts") or {})
        all_ids = [i for g in batch.groups.values() for i in g]
        common = {"batch": {"id": batch.id, "requests": batch.job_ids, "identities_total": len(set(all_ids))},
                  "gate": result.to_dict(), "device": batch.device or self.device_name}

        def job_result(job_id: str) -> dict[str, Any]:
            o = dict(outcome)
            o["per_group"] = {job_id: (outcome.get("per_group") or {}).get(batch.measured_as.get(job_id, job_id))}
            return dict(common, outcome=o)

        fields = dict(metrics=outcome.get("model"), parent_metrics=outcome.get("parent"),
                      seconds=outcome.get("seconds"), phase=None, progress=1.0)
        if not result.passed:
            store.end_batch(batch.id, "failed", "acceptance gate failed")
            why = "; ".join(result.failures())
            for j in batch.job_ids:
                self._end(j, "failed", f"acceptance gate failed: {why}; the current model is unchanged "
                                       f"({batch.dataset} version {batch.parent_version})",
                          result=job_result(j), **fields)
            return
        version = store.next_version(batch.dataset)
        rel = self.registry.install(batch.staged, batch.dataset, version, outcome["sha256"])
        forgotten = list(dict.fromkeys([*parent.forgotten, *all_ids]))
        who = {}
        for job_id, ids in batch.groups.items():
            for i in ids:
                who.setdefault(i, job_id)
        with store.tx():  # one transaction: version, current pointer, identities, jobs done
            store.add_version(batch.dataset, version, parent.version, outcome["sha256"], rel, "forget",
                              batch.job_ids and store.job(batch.job_ids[0]).method, batch.job_ids, forgotten,
                              outcome.get("model") or {})
            store.mark_forgotten(batch.dataset, who, version)
            for job_id, ids in batch.groups.items():
                for i in ids:
                    store.set_identity_status(job_id, i, "forgotten", version)
                store.set_job(job_id, state="done", error=None, finished_at=time.time(), version=version,
                              sha256=outcome["sha256"], result=job_result(job_id), **fields)
            store.end_batch(batch.id, "done")
        for job_id in batch.job_ids:
            self.ended[job_id] = "done"
            self.ops.write_report(job_id)
        log.info("run %s done: %s version %d (parent %d), %d request(s)", batch.id, batch.dataset, version,
                 parent.version, len(batch.job_ids))
        for v in self.registry.prune(store, batch.dataset, self.s.keep_versions):
            log.info("pruned model file of %s version %d (service.keep_versions = %d)", batch.dataset, v,
                     self.s.keep_versions)


def run_service(cfg: Config, mode: str = "daemon", polling: bool | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return Daemon(cfg, mode=mode, polling=polling).run()
