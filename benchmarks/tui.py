"""The TUI as an admin over SSH feels it: time to first paint, memory and CPU
while idle, and how soon a cancel shows in its row.

A workspace made by ``piu init --preset tiny`` gets a state database with
queued jobs (written with the daemon's own StateStore; no model is trained).
``piu tui`` then runs in a real pseudo-terminal of 100x30; its resident
memory and CPU time are read from /proc while it sits idle. The cancel is
timed through Textual's pilot, from the confirming key to the row's state.

    .venv/bin/python benchmarks/tui.py [--idle-seconds 30] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import pty
import select
import struct
import sys
import tempfile
import termios
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import write_json  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def make_workspace(root: Path, jobs: int = 5) -> Path:
    from piu_engine.core.config import load_config
    from piu_engine.service.manifest import Manifest
    from piu_engine.service.state import StateStore
    from piu_engine.service.workspace import Workspace, init_workspace

    config = init_workspace(root / "ws", "tiny")
    ws = Workspace.from_config(load_config(config))
    store = StateStore(ws.db_path)
    names = [f"person-{i:04d}" for i in range(24)]
    store.ensure_identities("synthetic", {n: 6 for n in names})
    store.add_version(
        "synthetic", 0, None, "a" * 64, "synthetic/0/model.pt", "train", None, [], [], {"test_acc": 0.3, "mia": 0.8}
    )
    for k in range(jobs):
        m = Manifest(
            request_id=f"req-{k}",
            dataset="synthetic",
            identities=(names[k],),
            method="piu-fr",
            compare=(),
            requested_by="bench",
            reason="benchmark",
            priority=0,
        )
        store.record_accepted(f"{k:04d}-req-{k}.json", f"req-{k}.json", "0" * 64, m, {names[k]: ("requested", 6, None)})
    store.close()
    return config


def proc_sample(pid: int) -> tuple[float, int]:
    """(CPU seconds so far, resident bytes) of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    return cpu, rss


def idle(config: Path, seconds: float) -> dict:
    """Start `piu tui` in a 100x30 pty; first paint, then memory and CPU while idle."""
    pid, fd = pty.fork()
    if pid == 0:  # child: the TUI as a user starts it
        os.execv(sys.executable, [sys.executable, "-m", "piu_engine.cli", "--config", str(config), "tui"])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    start = time.monotonic()
    painted, seen = None, b""
    try:
        while time.monotonic() - start < 60:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    seen += os.read(fd, 65536)
                except OSError:
                    break
                if painted is None and b"req-0" in seen:  # the dashboard's first job row is on screen
                    painted = time.monotonic() - start
                    break
        deadline = time.monotonic() + 3.0  # let the start-up settle before measuring idle
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.05)[0]:
                os.read(fd, 65536)
        cpu0, _ = proc_sample(pid)
        t0, peak = time.monotonic(), 0
        while time.monotonic() - t0 < seconds:
            if select.select([fd], [], [], 0.2)[0]:
                os.read(fd, 65536)  # keep the pty drained, as a terminal would
            peak = max(peak, proc_sample(pid)[1])
        cpu1, rss = proc_sample(pid)
        elapsed = time.monotonic() - t0
        os.write(fd, b"q")
        t_quit = time.monotonic()
        _, status = os.waitpid(pid, 0)
        quit_s = time.monotonic() - t_quit
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.close(fd)
    return {
        "first_paint_s": painted,
        "idle_seconds": round(elapsed, 1),
        "idle_cpu_percent": 100 * (cpu1 - cpu0) / elapsed,
        "rss_mb": rss / 2**20,
        "peak_rss_mb": peak / 2**20,
        "quit_s": quit_s,
    }


def cancel_latency(config: Path) -> float:
    """Seconds from confirming a cancel to the row showing it (no daemon: applied under the lock)."""
    from piu_engine.core.config import load_config
    from piu_engine.service.workspace import Workspace
    from piu_tui.app import PiuApp
    from piu_tui.widgets.jobs_table import JobsTable

    async def run() -> float:
        app = PiuApp(Workspace.from_config(load_config(config)), poll_interval=1.0)
        async with app.run_test(size=(100, 30)) as pilot:
            while not app.screen.query(JobsTable) or not app.screen.query_one(JobsTable).row_count:
                await pilot.pause(0.05)
            table = app.screen.query_one(JobsTable)
            table.focus()
            while table.selected_job_id != "req-2":
                await pilot.press("down")
            await pilot.press("c")
            await pilot.pause()
            t0 = time.monotonic()
            await pilot.press("y")
            while "cancelled" not in str(table.get_row("req-2")):
                await pilot.pause(0.01)
                if time.monotonic() - t0 > 30:
                    raise RuntimeError("the cancel never showed")
            took = time.monotonic() - t0
            await pilot.press("q")
            return took

    return asyncio.run(run())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="piu-tui-bench-") as tmp:
        config = make_workspace(Path(tmp))
        out = idle(config, args.idle_seconds)
        out["cancel_to_row_s"] = cancel_latency(config)
    targets = {
        "first_paint_s": ("< 1 s on an idle machine", out["first_paint_s"] is not None and out["first_paint_s"] < 1.0),
        "rss_mb": ("< 150 MB", out["rss_mb"] < 150),
        "idle_cpu_percent": ("< 2 %", out["idle_cpu_percent"] < 2),
        "cancel_to_row_s": ("< 2 s", out["cancel_to_row_s"] < 2.0),
    }
    print(f"{'measure':<20} {'value':>10}  target")
    for key, value in out.items():
        target, met = targets.get(key, ("", None))
        shown = "-" if value is None else f"{value:.3f}"
        print(f"{key:<20} {shown:>10}  {target}{'' if met is None else ('  met' if met else '  NOT met')}")
    if args.json:
        write_json(Path(args.json), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
