"""The daemon with ``[executor] kind = "ray"``: a real local Ray cluster, the real daemon.

One head node is started for the module (``ray start --head``, 2 CPUs and a
declared fake GPU resource, ``GPU_fake``, since these machines have no GPU)
and always stopped at teardown. Runs reserve ``num_gpus = 0`` plus
``GPU_fake``, so scheduling on a custom resource is exercised too. The rest of
the suite keeps the local executor.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from piu_engine.service.executors.ray_cluster import RayExecutor, classify  # noqa: E402

from test_service_daemon import (  # noqa: E402 - shared daemon helpers and fixtures
    PIU,
    daemon_up,
    daemons,
    done_or_failed,
    drop,
    job,
    job_state,
    manifest,
    piu,
    reader,
    trained_ws,
    wait_for,
    ws,
)

pytestmark = pytest.mark.timeout(300)
RAY = str(Path(sys.executable).parent / "ray")
__all__ = ["daemons", "trained_ws", "ws"]  # fixtures imported for this module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


@pytest.fixture(scope="module")
def ray_cluster():
    port = free_port()
    temp = tempfile.mkdtemp(prefix="piuray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    cmd = [
        RAY,
        "start",
        "--head",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=2",
        "--num-gpus=0",
        '--resources={"GPU_fake": 1}',
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ray_env())
        assert r.returncode == 0, r.stdout + r.stderr
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120, env=ray_env())
        shutil.rmtree(temp, ignore_errors=True)


def use_ray(ws: Path, address: str, **extra) -> None:
    """Edit the [executor] section `piu init` wrote, as an admin would."""
    lines = ['kind = "ray"', f"address = {json.dumps(address)}", "num_gpus = 0", "num_cpus = 1"]
    resources = extra.pop("resources", {"GPU_fake": 1})
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    lines.append("resources = {" + ", ".join(f"{k} = {v}" for k, v in resources.items()) + "}")
    text = (ws / "config.toml").read_text()
    text, n = re.subn(r'(?m)^kind = "local".*$', "\n".join(lines), text, count=1)
    assert n == 1
    (ws / "config.toml").write_text(text)


# ------------------------------------------------------------------------------ units
def test_failures_of_a_ray_run_map_to_what_the_daemon_does():
    import ray.exceptions as rex

    assert classify(rex.WorkerCrashedError())[0] == "crashed"  # node or worker lost: re-queued, attempt counted
    assert classify(rex.NodeDiedError("node gone"))[0] == "crashed"
    assert classify(rex.ObjectLostError("ab" * 14, "owner", ""))[0] == "crashed"
    assert classify(rex.TaskCancelledError(), cancelled=True)[0] == "cancelled"
    assert classify(rex.RaySystemError("gcs down"))[0] == "lost"  # cluster lost: fail running, keep queue
    assert classify(ConnectionError("refused"))[0] == "lost"
    assert classify(ValueError("bug"))[0] == "error"


def test_losing_the_cluster_fails_running_runs_and_keeps_the_queue(monkeypatch):
    import ray.exceptions as rex
    from piu_engine.service.executors import ray_cluster as ray_executor
    from piu_engine.service.executors.base import RunTask
    from piu_engine.service.executors.settings import ExecutorConfig

    class DeadCluster:
        def get(self, *a, **k):
            raise rex.RaySystemError("GCS is unreachable")

        wait = get

    ex = RayExecutor(ExecutorConfig(kind="ray", address="10.0.0.1:6379"), 2)
    ex.ray = DeadCluster()
    channel = type("Channel", (), {"drain": type("M", (), {"remote": staticmethod(lambda: None)})()})()
    task = RunTask("b1", None, "synthetic", {}, [], "piu-fr", {}, [], "tiny", "", "")
    ex.runs["b1"] = ray_executor._Run(task, object(), channel, 0.0)
    out = ex.poll(0.1)
    assert [(m.kind, m.batch_id) for m in out] == [("error", "b1")]
    assert "lost the Ray cluster at 10.0.0.1:6379" in out[0].payload and "GCS is unreachable" in out[0].payload
    assert ex.running() == [] and ex.lost
    monkeypatch.setattr(ex, "connect", lambda: (_ for _ in ()).throw(ray_executor.ExecutorUnavailable("down")))
    assert ex.free_slots() == 0  # nothing new starts: queued jobs stay queued until the cluster is back


def test_shared_path_maps_workspace_paths_for_the_workers(tmp_path):
    from piu_engine.service.executors.settings import ExecutorConfig

    ex = RayExecutor(ExecutorConfig(kind="ray", shared_path="/mnt/piu/ws"), 1, tmp_path)
    assert ex.worker_path(tmp_path / ".piu/models/.staging/b.pt") == "/mnt/piu/ws/.piu/models/.staging/b.pt"
    assert ex.worker_path("/elsewhere/data") == "/elsewhere/data"  # outside the workspace: same path
    same = RayExecutor(ExecutorConfig(kind="ray"), 1, tmp_path)
    assert same.worker_path(tmp_path / "x.pt") == str(tmp_path / "x.pt")


def test_unreachable_cluster_at_start_up_is_a_clear_error(ws):
    use_ray(ws, f"127.0.0.1:{free_port()}")  # nothing listens there
    r = subprocess.run(
        [*PIU, "--config", str(ws / "config.toml"), "daemon"],
        capture_output=True,
        text=True,
        timeout=120,
        env=ray_env(),
    )
    assert r.returncode == 69, r.stdout + r.stderr  # EX_UNAVAILABLE: systemd retries later
    assert "cannot reach the Ray cluster at 127.0.0.1:" in r.stderr
    assert "Traceback" not in r.stderr


# ------------------------------------------------------------------------- the cluster
def test_a_job_runs_on_the_ray_cluster_like_a_local_one(ws, daemons, ray_cluster):
    use_ray(ws, ray_cluster)
    d = daemons(ws)
    daemon_up(ws, d)
    drop(ws, "r1.json", manifest("ray-1", "person-0003", "person-0007"))
    wait_for(lambda: done_or_failed(ws, "ray-1"), what="ray-1 to finish", daemon=d)
    j = job(ws, "ray-1")
    assert j.state == "done", j.error
    assert (j.parent_version, j.version, j.attempts) == (0, 1, 1)
    done_report = ws / "jobs/done/ray-1/report.json"  # written right after the commit that says done
    wait_for(done_report.exists, what="ray-1's report", daemon=d)
    report = json.loads(done_report.read_text())
    assert "ray-1" in json.dumps(report)
    with reader(ws) as r:
        assert r.current_version("synthetic").version == 1
        batch = r.conn.execute("SELECT id, device, state FROM batches WHERE job_ids LIKE '%ray-1%'").fetchone()
        assert batch["state"] == "done" and batch["device"] == f"ray:{ray_cluster}"
        events = r.events(batch["id"])
    assert any(e.message.startswith("on Ray node") for e in events)  # it ran as a Ray task
    assert len(events) >= 3 and any(e.phase not in ("starting", "executor") for e in events), events
    assert events[-1].fraction == pytest.approx(1.0, abs=0.05) or max(e.fraction for e in events) > 0.5
    assert (ws / ".piu/models/synthetic/1/model.pt").exists()
    assert not list((ws / ".piu/models/.staging").iterdir())
    with reader(ws) as r:
        assert "Ray cluster" in r.heartbeat().device


def test_a_run_waits_for_its_resources_and_cancel_stops_it(ws, daemons, ray_cluster):
    use_ray(ws, ray_cluster, resources={"GPU_fake": 2})  # more than the cluster has: never scheduled
    d = daemons(ws)
    daemon_up(ws, d)
    drop(ws, "r2.json", manifest("ray-2", "person-0003"))
    wait_for(lambda: job_state(ws, "ray-2") == "running", what="ray-2 to start", daemon=d)
    assert "no node of the Ray cluster has the resources" in d.tail()
    r = piu(ws, "cancel", "ray-2")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: job_state(ws, "ray-2") == "cancelled", what="the cancel", daemon=d)
    with reader(ws) as rd:
        assert rd.current_version("synthetic").version == 0


def long_job(rid: str, ident: str = "person-0003") -> dict:
    return manifest(rid, ident, params={"epochs": 400, "early_stop": False})  # runs until stopped


def ran_steps(ws: Path, job_id: str) -> bool:
    j = job(ws, job_id)
    return j is not None and j.state == "running" and (j.progress or 0) > 0


def test_sigterm_stops_the_ray_run_at_a_step_boundary_and_requeues_it(ws, daemons, ray_cluster):
    import signal

    use_ray(ws, ray_cluster)
    d = daemons(ws)
    daemon_up(ws, d)
    drop(ws, "r3.json", long_job("ray-3"))
    wait_for(lambda: ran_steps(ws, "ray-3"), what="ray-3 to make progress", daemon=d)
    d.signal(signal.SIGTERM)
    assert d.wait(120) == 0, d.tail()
    j = job(ws, "ray-3")
    assert j.state == "queued" and j.attempts == 0, (j.state, j.attempts)  # not charged
    with reader(ws) as r:
        assert r.conn.execute("SELECT state FROM batches").fetchone()[0] == "interrupted"


def raylet_pids(marker: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "raylet" in cmd.split(" ")[0] and marker in cmd:
            out.append(int(p.name))
    return out


def test_a_worker_node_lost_mid_run_requeues_the_job(ws, daemons, ray_cluster):
    env = ray_env()
    r = subprocess.run(
        [
            RAY,
            "start",
            f"--address={ray_cluster}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--num-gpus=0",
            '--resources={"piu_victim": 1}',
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    victims = raylet_pids("piu_victim")
    assert victims, "the worker node's raylet was not found"
    use_ray(ws, ray_cluster, resources={"piu_victim": 1})  # runs only on the worker node
    d = daemons(ws)
    daemon_up(ws, d)
    drop(ws, "r4.json", long_job("ray-4"))
    wait_for(lambda: ran_steps(ws, "ray-4"), what="ray-4 to run on the worker node", daemon=d)
    for pid in victims:
        os.kill(pid, 9)  # the node dies mid-run
    first = job(ws, "ray-4").batch_id

    def requeued():
        j = job(ws, "ray-4")
        return j.batch_id != first or j.state == "queued"

    wait_for(requeued, 120, "the job to be re-queued", d)
    j = job(ws, "ray-4")
    assert j.state in ("queued", "running") and j.attempts in (1, 2), (j.state, j.attempts, j.error)
    with reader(ws) as rd:
        b = rd.conn.execute("SELECT state, error FROM batches WHERE id = ?", (first,)).fetchone()
        assert b["state"] == "crashed", tuple(b)
        assert rd.current_version("synthetic").version == 0
    piu(ws, "cancel", "ray-4")
    wait_for(lambda: job_state(ws, "ray-4") == "cancelled", 60, "the cancel", d)


def test_the_reference_pool_trains_as_parallel_ray_tasks_and_resumes(ws, ray_cluster):
    use_ray(ws, ray_cluster, resources={})
    r = piu(ws, "audit", "pool", "--models", "2", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "training on Ray cluster" in r.stderr and r.stderr.count("trained on Ray") == 2, r.stderr
    assert "pool ready: 2 models" in r.stdout
    again = piu(ws, "audit", "pool", "--models", "2", timeout=600)  # nothing left to train
    assert again.returncode == 0 and again.stderr.count("cached on Ray") == 2, again.stderr
    local = piu(ws, "audit", "pool", "--models", "2", "--local", timeout=600)
    assert local.returncode == 0 and "Ray" not in local.stderr, local.stderr
