"""Service latency and coalescing, measured on a real daemon.

1. Claim latency: a manifest is dropped into jobs/ (atomic rename, as
   `piu submit` does), one at a time; we time until the daemon has recorded
   it as a job in its SQLite state. p50 and p95 (target p50 < 0.5 s).
2. Coalescing: N requests, each for a different person, for one dataset
   handled with batch_size = N (one run) against batch_size = 1 (N runs);
   total wall-clock from the first drop until every request is finished, and
   the ratio.

Everything runs in temporary workspaces on the synthetic set; the preset must
have at least N training people (default: 150; tiny: 24).

    python benchmarks/service.py [--preset default] [--latency-samples 20] [--requests 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from piu_engine.core.config import load_config
from piu_engine.service.state import StateReader
from piu_engine.service.workspace import Workspace, init_workspace

import _common

FINAL = {"done", "failed", "rejected", "cancelled"}


def piu(ws: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "piu_engine.cli", "--config", str(ws / "config.toml"), *args],
        capture_output=True,
        text=True,
        check=True,
        **kw,
    )


def make_workspace(root: Path, name: str, template: Path | None, preset: str = "tiny", **service: object) -> Path:
    ws = root / name
    if template is not None:
        shutil.copytree(template, ws, symlinks=True)
    else:
        init_workspace(ws, preset)
    text = (ws / "config.toml").read_text()
    text = text.replace('device = "auto"', 'device = "cpu"')
    for key, value in service.items():
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {json.dumps(value)}", text)
    (ws / "config.toml").write_text(text)
    return ws


def start_daemon(ws: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "piu_engine.cli", "--config", str(ws / "config.toml"), "daemon"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = Workspace.from_config(load_config(ws / "config.toml")).db_path
    deadline = time.time() + 60
    while time.time() < deadline:
        if db.exists():
            try:
                with StateReader(db) as r:
                    hb = r.heartbeat()
                    if hb and hb.alive():
                        return proc
            except Exception:  # noqa: BLE001 - not created yet
                pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("daemon did not start within 60 s")


def stop_daemon(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def drop(ws: Path, request_id: str, identities: list[str]) -> None:
    manifest = {
        "request_id": request_id,
        "dataset": "synthetic",
        "identities": identities,
        "method": "neggrad",
        "params": {"epochs": 1},
        "requested_by": "benchmark",
        "reason": "service benchmark",
    }
    tmp = ws / "jobs" / f".{request_id}.tmp"
    tmp.write_text(json.dumps(manifest))
    os.replace(tmp, ws / "jobs" / f"{request_id}.json")


def wait_for(db: Path, predicate, timeout: float, interval: float = 0.01):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with StateReader(db) as r:
                value = predicate(r)
            if value:
                return value
        except Exception:  # noqa: BLE001 - the daemon may be mid-write
            pass
        time.sleep(interval)
    raise SystemExit("timed out waiting for the daemon")


def identities(ws: Path) -> list[str]:
    out = piu(ws, "identities", "--json")
    data = json.loads(out.stdout)
    rows = data if isinstance(data, list) else data.get("identities", [])
    return [r["identity"] if isinstance(r, dict) else r for r in rows]


def latency(ws: Path, people: list[str], samples: int) -> list[float]:
    db = Workspace.from_config(load_config(ws / "config.toml")).db_path
    proc = start_daemon(ws)
    try:
        times = []
        for k in range(samples):
            rid = f"lat-{k:03d}"
            start = time.perf_counter()
            drop(ws, rid, [people[k % len(people)]])
            wait_for(db, lambda r, rid=rid: r.job(rid) is not None, 60)
            times.append(time.perf_counter() - start)
            wait_for(db, lambda r, rid=rid: r.job(rid).state in FINAL, 600, 0.1)  # one at a time
        return times
    finally:
        stop_daemon(proc)


def coalesced_total(ws: Path, people: list[str], n: int) -> tuple[float, int]:
    db = Workspace.from_config(load_config(ws / "config.toml")).db_path
    proc = start_daemon(ws)
    try:
        start = time.perf_counter()
        ids = [f"co-{k:03d}" for k in range(n)]
        for k, rid in enumerate(ids):
            drop(ws, rid, [people[k % len(people)]])
        wait_for(db, lambda r: all((j := r.job(i)) is not None and j.state in FINAL for i in ids), 3600, 0.2)
        total = time.perf_counter() - start
        with StateReader(db) as r:
            batches = {r.job(i).batch_id for i in ids}
        return total, len(batches)
    finally:
        stop_daemon(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--latency-samples", type=int, default=20)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--json")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="piu-service-bench-"))
    try:
        base = make_workspace(root, "base", None, args.preset)
        piu(base, "train")
        people = identities(base)
        if len(people) < args.requests:
            raise SystemExit(
                f"--requests {args.requests}: the {args.preset} preset has only {len(people)} "
                f"training people, and each request names a different one"
            )
        # Distinct people per request, as many as the share limit allows per run.
        lat = latency(make_workspace(root, "latency", base), people, args.latency_samples)
        n = args.requests
        one, runs_one = coalesced_total(
            make_workspace(root, "one-run", base, batch_size=n, max_forget_share=1.0), people, n
        )
        many, runs_many = coalesced_total(
            make_workspace(root, "many-runs", base, batch_size=1, max_forget_share=1.0), people, n
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lat_sorted = sorted(lat)
    p50 = statistics.median(lat_sorted)
    p95 = lat_sorted[min(len(lat_sorted) - 1, int(round(0.95 * (len(lat_sorted) - 1))))]
    _common.print_table(
        ["measure", "value"],
        [
            ["claim latency p50", f"{p50 * 1000:.0f} ms"],
            ["claim latency p95", f"{p95 * 1000:.0f} ms"],
            [f"{n} requests, coalesced ({runs_one} run(s))", f"{one:.1f} s"],
            [f"{n} requests, separate ({runs_many} runs)", f"{many:.1f} s"],
            ["separate / coalesced", f"{many / one:.1f}x"],
        ],
        f"Service benchmark, {args.preset} preset ({_common.machine()})",
    )
    print(f"target claim p50 < 0.5 s: {'met' if p50 < 0.5 else 'NOT met'}")
    _common.write_json(
        args.json,
        {
            "machine": _common.machine(),
            "preset": args.preset,
            "latency_seconds": lat,
            "p50": p50,
            "p95": p95,
            "requests": n,
            "coalesced_seconds": one,
            "coalesced_runs": runs_one,
            "separate_seconds": many,
            "separate_runs": runs_many,
            "ratio": many / one,
        },
    )


if __name__ == "__main__":
    main()
