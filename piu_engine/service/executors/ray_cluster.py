"""Executor backend ``ray``: each unlearning run is one task on a Ray cluster.

Chosen with ``[executor] kind = "ray"``. The daemon is a Ray driver; it stays
the only owner of the state database, the registry and retries:

* each run is a task (``max_retries=0``, ``max_calls=1``) that calls the same
  :func:`piu_engine.service.executors.worker.execute` as a local worker process and writes
  its checkpoint to the daemon's staging path (seen through
  ``executor.shared_path`` on the workers); the daemon installs it through the
  registry exactly as for a local run;
* progress events go to a small per-run channel actor kept beside the daemon;
  :meth:`RayExecutor.poll` drains them, so they land in SQLite as local events do;
* ``cancel`` is ``ray.cancel(force=True)``; ``stop_all`` raises the run's stop
  flag, which the run checks at its step boundaries;
* a worker or node lost mid-run is reported as ``crashed``: the daemon re-queues
  the jobs and counts the attempt;
* the cluster unreachable at start-up raises :class:`ExecutorUnavailable`; the
  cluster lost later fails the running jobs with that reason, and no new run is
  started (the queue is kept) until the cluster answers again.

Ray is imported here only, and only when this backend is used.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from piu_engine.service.executors.base import ExecMessage, ExecutorUnavailable, RunTask
from piu_engine.service.executors.settings import ExecutorConfig

log = logging.getLogger("piu.executor.ray")

RECONNECT_SECONDS = 30.0  # after the cluster was lost, try to reconnect this often


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ExecutorUnavailable(
            f"[executor] kind = \"ray\" needs the Ray package: pip install 'piu[ray]' ({exc})"
        ) from None
    return ray


# -- remote side ----------------------------------------------------------------
_REMOTES: dict[str, Any] = {}


def _remotes(ray) -> tuple[Any, Any]:
    """The channel actor class and the run function, defined once per process."""
    if not _REMOTES:

        @ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)
        class RunChannel:
            """Progress events and the stop flag of one run."""

            def __init__(self):
                self.events: list[tuple] = []
                self.stop_requested = False

            def put(self, msg: tuple) -> None:
                self.events.append(msg)

            def drain(self) -> list[tuple]:
                out, self.events = self.events, []
                return out

            def stop(self) -> None:
                self.stop_requested = True

            def should_stop(self) -> bool:
                return self.stop_requested

            def flush(self) -> None:
                return None

        @ray.remote(max_retries=0, max_calls=1)
        def run_batch(task: RunTask, channel) -> tuple:
            return _remote_main(task, channel)

        _REMOTES["channel"], _REMOTES["run"] = RunChannel, run_batch
    return _REMOTES["channel"], _REMOTES["run"]


def _remote_main(task: RunTask, channel) -> tuple:
    """Body of the Ray task (runs on a worker node)."""
    import os

    import ray

    from piu_engine.service.executors import worker

    os.umask(0o027)
    checked = {"t": 0.0, "stop": False}

    def put(msg: tuple) -> None:
        try:
            channel.put.remote(msg)
        except Exception:  # noqa: BLE001 - the channel is gone: the daemon will see the result anyway
            pass

    def should_stop() -> bool:
        now = time.monotonic()
        if not checked["stop"] and now - checked["t"] >= 0.5:
            checked["t"] = now
            try:
                checked["stop"] = bool(ray.get(channel.should_stop.remote(), timeout=10))
            except Exception:  # noqa: BLE001
                pass
        return bool(checked["stop"])

    ctx = ray.get_runtime_context()
    put(
        (
            "event",
            task.batch_id,
            {
                "phase": "starting",
                "fraction": 0.0,
                "message": f"on Ray node {socket.gethostname()} ({ctx.get_node_id()[:12]})",
            },
        )
    )
    final = worker.execute(task, put, should_stop)
    try:  # calls from one caller run in order: once this returns, every event is in the channel
        ray.get(channel.flush.remote(), timeout=30)
    except Exception:  # noqa: BLE001
        pass
    return final


# -- daemon side ------------------------------------------------------------------
LOST_ERRORS = (
    "NodeDiedError",
    "WorkerCrashedError",
    "ObjectLostError",
    "OwnerDiedError",
    "ObjectReconstructionFailedError",
    "ObjectFetchTimedOutError",
    "LocalRayletDiedError",
    "OutOfMemoryError",
    "ActorDiedError",
    "RayActorError",
    "TaskUnschedulableError",
)
CLUSTER_ERRORS = ("RaySystemError", "RpcError", "AuthenticationError")


def classify(exc: BaseException, cancelled: bool = False) -> tuple[str, str]:
    """What a failed run ref means for the daemon: (message kind, reason)."""
    names = {c.__name__ for c in type(exc).__mro__}
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    if cancelled or "TaskCancelledError" in names:
        return ("cancelled" if cancelled else "crashed"), "cancelled"
    if "RayTaskError" in names:  # raised by PIU's code inside the task, whatever its type
        return "error", f"{type(exc).__name__}: {exc}"
    if names & set(CLUSTER_ERRORS) or isinstance(exc, ConnectionError):
        return "lost", f"{type(exc).__name__}: {text}"
    if names & set(LOST_ERRORS):
        return "crashed", f"the Ray worker running it was lost ({type(exc).__name__}: {text})"
    return "error", f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _keeping_signal_handlers():
    """Put the daemon's SIGTERM/SIGINT handlers back after ``ray.init``.

    Ray's core worker installs a C-level failure handler for SIGTERM that logs a stack and
    exits 1, so without this a ``systemctl stop`` would kill the daemon mid-run instead of
    stopping it at a step boundary and re-queueing the run.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # embedded in a thread: the host program owns signals
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


def _preflight(address: str, timeout: float) -> None:
    """Fail fast (Ray itself retries for minutes) when a HOST:PORT address does not answer."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorUnavailable(f'executor.address {address!r}: expected "auto", "HOST:PORT" or "ray://HOST:PORT"')
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ExecutorUnavailable(f"cannot reach the Ray cluster at {address}: {exc}") from None


@dataclass
class _Run:
    task: RunTask
    ref: Any
    channel: Any
    started: float
    cancelled: bool = False
    channel_ok: bool = True


class RayExecutor:
    """Same interface as :class:`~piu_engine.service.executor.LocalProcessExecutor`."""

    def __init__(self, settings: ExecutorConfig, max_parallel: int = 1, base_dir: Path | None = None):
        self.settings = settings
        self.max_parallel = max_parallel
        self.base_dir = Path(base_dir).resolve() if base_dir else None
        self.runs: dict[str, _Run] = {}
        self.ray: Any = None
        self.lost: str | None = None  # why the cluster is unusable now
        self._lost_at = 0.0

    # -- connection ---------------------------------------------------------
    def connect(self) -> RayExecutor:
        ray = _import_ray()
        address = self.settings.address
        _preflight(address, self.settings.connect_timeout_seconds)
        try:
            if ray.is_initialized():
                ray.shutdown()
            with _keeping_signal_handlers():
                ray.init(
                    address=address,
                    namespace=self.settings.namespace,
                    logging_level=logging.WARNING,
                    log_to_driver=True,
                    ignore_reinit_error=True,
                )
        except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError (ray:// without ray[client]) ...
            raise ExecutorUnavailable(
                f"cannot connect to the Ray cluster at {address}: {type(exc).__name__}: {exc}"
            ) from None
        self.ray = ray
        self.lost = None
        self._needs_check()
        log.info("connected to the Ray cluster at %s: %s", address, self.describe())
        return self

    def _needs_check(self) -> None:
        """Warn when no node can ever hold one run (it would wait forever)."""
        need = {"CPU": self.settings.num_cpus, "GPU": self.settings.num_gpus, **self.settings.resources}
        try:
            nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        except Exception:  # noqa: BLE001
            return
        fits = [n for n in nodes if all(n.get("Resources", {}).get(k, 0) >= v for k, v in need.items() if v)]
        if not fits:
            log.warning(
                "no node of the Ray cluster has the resources one run needs (%s); runs wait until such a node joins",
                ", ".join(f"{k}={v:g}" for k, v in need.items() if v),
            )

    def describe(self) -> str:
        try:
            total = self.ray.cluster_resources()
            nodes = sum(1 for n in self.ray.nodes() if n.get("Alive"))
            return (
                f"Ray cluster {self.settings.address} ({nodes} node(s), {total.get('CPU', 0):g} CPU, "
                f"{total.get('GPU', 0):g} GPU)"
            )
        except Exception:  # noqa: BLE001
            return f"Ray cluster {self.settings.address}"

    def close(self) -> None:
        if self.ray is not None and self.ray.is_initialized():
            try:
                self.ray.shutdown()
            except Exception:  # noqa: BLE001
                pass

    # -- paths --------------------------------------------------------------
    def worker_path(self, path: str | Path) -> str:
        """``path`` as the workers see it (``executor.shared_path`` replaces the workspace folder)."""
        p = Path(path)
        if not self.settings.shared_path or self.base_dir is None:
            return str(p)
        try:
            rel = p.resolve().relative_to(self.base_dir)
        except ValueError:
            return str(p)  # outside the workspace: must be mounted at the same path on the workers
        return str(Path(self.settings.shared_path) / rel)

    def _remote_task(self, task: RunTask) -> RunTask:
        if not self.settings.shared_path:
            return task
        cfg = task.cfg
        if cfg.path is not None:
            cfg = replace(cfg, path=Path(self.worker_path(cfg.path)))
        return replace(
            task,
            cfg=cfg,
            parent_weights=self.worker_path(task.parent_weights),
            out_weights=self.worker_path(task.out_weights),
        )

    # -- Executor interface -------------------------------------------------
    def free_slots(self) -> int:
        if self.lost is not None and not self._try_reconnect():
            return 0
        return self.max_parallel - len(self.runs)

    def _try_reconnect(self) -> bool:
        if time.monotonic() - self._lost_at < RECONNECT_SECONDS:
            return False
        self._lost_at = time.monotonic()
        try:
            self.connect()
        except ExecutorUnavailable as exc:
            log.warning("Ray cluster still unreachable: %s", exc)
            return False
        log.info("Ray cluster at %s is back; starting queued jobs again", self.settings.address)
        return True

    def submit(self, task: RunTask) -> str:
        if self.free_slots() <= 0:
            raise RuntimeError("executor is full" if self.lost is None else f"Ray cluster lost: {self.lost}")
        ray = self.ray
        channel_cls, run = _remotes(ray)
        opts: dict[str, Any] = {}
        try:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                node_id=ray.get_runtime_context().get_node_id(), soft=True
            )  # events stay beside the daemon
        except Exception:  # noqa: BLE001
            pass
        channel = channel_cls.options(**opts).remote()
        s = self.settings
        ref = run.options(
            num_cpus=s.num_cpus,
            num_gpus=s.num_gpus,
            resources=dict(s.resources) or None,
            name=f"piu-run-{task.batch_id}",
        ).remote(self._remote_task(task), channel)
        self.runs[task.batch_id] = _Run(task, ref, channel, time.time())
        return f"ray:{s.address}"

    def poll(self, timeout: float) -> list[ExecMessage]:
        out: list[ExecMessage] = []
        if not self.runs:
            return out
        ray = self.ray
        try:
            self._drain_all(out)
            refs = [r.ref for r in self.runs.values()]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0 if out else timeout, fetch_local=False)
            if not ready and not out:
                return out
            ready_set = set(ready)
            for batch_id, run in list(self.runs.items()):
                if run.ref in ready_set:
                    self._finish(batch_id, run, out)
        except Exception as exc:  # noqa: BLE001 - the cluster (GCS, raylet, client server) went away
            kind, reason = classify(exc)
            if kind != "lost":
                raise
            self._cluster_lost(reason, out)
        return out

    def _drain(self, run: _Run, out: list[ExecMessage], timeout: float = 10.0) -> None:
        if not run.channel_ok:
            return
        try:
            msgs = self.ray.get(run.channel.drain.remote(), timeout=timeout)
        except Exception as exc:  # noqa: BLE001
            kind, _ = classify(exc)
            if kind == "lost":
                raise
            if type(exc).__name__ == "GetTimeoutError":  # busy cluster: try again at the next poll
                return
            run.channel_ok = False  # its node died; the run's result tells what happened
            out.append(
                ExecMessage(
                    "event",
                    run.task.batch_id,
                    {"phase": "executor", "message": f"progress channel lost: {type(exc).__name__}"},
                )
            )
            return
        for kind, batch_id, payload in msgs:
            if kind == "event":
                out.append(ExecMessage(kind, batch_id, payload))

    def _drain_all(self, out: list[ExecMessage]) -> None:
        for run in self.runs.values():
            self._drain(run, out)

    def _finish(self, batch_id: str, run: _Run, out: list[ExecMessage]) -> None:
        ray = self.ray
        try:
            kind, _bid, payload = ray.get(run.ref, timeout=60)
            if run.cancelled:  # finished before the cancel took effect: its model is not used
                kind, payload = "cancelled", "cancelled"
            else:
                self._drain(run, out)
        except Exception as exc:  # noqa: BLE001
            kind, payload = classify(exc, run.cancelled)
            if kind == "lost":
                raise
            if kind != "cancelled":
                self._drain(run, out, timeout=2.0)
        out.append(ExecMessage(kind, batch_id, payload))
        self._release(batch_id)

    def _release(self, batch_id: str) -> None:
        run = self.runs.pop(batch_id, None)
        if run is not None:
            try:
                self.ray.kill(run.channel)
            except Exception:  # noqa: BLE001
                pass

    def _cluster_lost(self, reason: str, out: list[ExecMessage]) -> None:
        self.lost = reason
        self._lost_at = time.monotonic()
        log.error(
            "lost the Ray cluster at %s (%s): failing %d running run(s); queued jobs wait",
            self.settings.address,
            reason,
            len(self.runs),
        )
        for batch_id, run in list(self.runs.items()):
            if run.cancelled:
                out.append(ExecMessage("cancelled", batch_id, "cancelled"))
            else:
                out.append(ExecMessage("error", batch_id, f"lost the Ray cluster at {self.settings.address}: {reason}"))
        self.runs.clear()

    def cancel(self, batch_id: str) -> None:
        run = self.runs.get(batch_id)
        if run is None:
            return
        run.cancelled = True
        try:
            self.ray.cancel(run.ref, force=True)
        except Exception as exc:  # noqa: BLE001
            log.warning("ray.cancel of run %s: %s", batch_id, exc)

    def stop_all(self) -> None:
        for run in self.runs.values():
            try:
                run.channel.stop.remote()
            except Exception:  # noqa: BLE001
                pass

    def kill_all(self) -> None:
        for batch_id in list(self.runs):
            self.cancel(batch_id)

    def running(self) -> list[str]:
        return list(self.runs)
