"""The light clients work on a machine without the ML stack.

`piu status`, `piu jobs show`, `piu model list`, `piu cancel`, `piu retry`
and the TUI read and change the service's state through the in-process
client; none of them may need PyTorch, torchvision, scikit-learn or Ray.
Each runs here in a fresh interpreter in which importing any of those
raises, against a real workspace and state database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from test_tui import build_state

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "sklearn", "ray")
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def no_ml_env(tmp_path):
    """An environment whose interpreter cannot import the ML stack."""
    blocked = tmp_path / "blocked"
    for name in HEAVY:
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed here')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), str(ROOT)])}


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    s = build_state(tmp_path, monkeypatch)
    s.store.close()  # no daemon holds the workspace: cancel and retry apply directly under the lock
    return s


def piu(env, config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "piu_engine.cli", "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_read_and_control_commands_need_no_ml_stack(workspace, no_ml_env):
    cfg = workspace.config
    r = piu(no_ml_env, cfg, "status")
    assert r.returncode == 0, r.stderr
    assert "req-1004" in r.stdout and "running" in r.stdout
    status = json.loads(piu(no_ml_env, cfg, "status", "--json").stdout)
    assert {j["id"] for j in status["jobs"]} >= {"req-1001", "req-1005"}
    r = piu(no_ml_env, cfg, "jobs", "show", "req-1001")
    assert r.returncode == 0 and "req-1001" in r.stdout, r.stderr
    r = piu(no_ml_env, cfg, "model", "list")
    assert r.returncode == 0 and "synthetic" in r.stdout, r.stderr
    r = piu(no_ml_env, cfg, "cancel", "req-1005")
    assert r.returncode == 0 and "cancelled" in r.stdout, r.stderr
    r = piu(no_ml_env, cfg, "retry", "req-1002")
    assert r.returncode == 0 and "queued again" in r.stdout, r.stderr
    states = {j["id"]: j["state"] for j in json.loads(piu(no_ml_env, cfg, "status", "--json").stdout)["jobs"]}
    assert states["req-1005"] == "cancelled" and states["req-1002"] == "queued"


def test_the_tui_runs_and_cancels_without_the_ml_stack(workspace, no_ml_env):
    script = textwrap.dedent(f"""
        import asyncio, sys
        from piu_engine.core.config import load_config
        from piu_engine.service.workspace import Workspace
        from piu_tui.app import PiuApp
        from piu_tui.widgets.jobs_table import JobsTable

        async def main():
            app = PiuApp(Workspace.from_config(load_config({str(workspace.config)!r})), poll_interval=0.5)
            async with app.run_test(size=(120, 40)) as pilot:
                for _ in range(100):
                    await pilot.pause(0.05)
                    table = app.screen.query(JobsTable)
                    if table and table.first().row_count:
                        break
                table = app.screen.query_one(JobsTable)
                table.focus()
                while table.selected_job_id != "req-1005":
                    await pilot.press("down")
                await pilot.press("c", "y")
                for _ in range(100):  # the row shows the cancel within 5 s
                    await pilot.pause(0.05)
                    if "cancelled" in str(table.get_row("req-1005")):
                        break
                print("row:", str(table.get_row("req-1005")[1]).strip())
                await pilot.press("q")
            print("heavy:", sorted(m for m in {HEAVY!r} if m in sys.modules))

        asyncio.run(main())
    """)
    r = subprocess.run([sys.executable, "-c", script], env=no_ml_env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "row: cancelled" in r.stdout, r.stdout
    assert "heavy: []" in r.stdout, r.stdout


def test_imports_flow_one_way_no_cycles():
    """No import cycle in either package, counting imports inside functions and under TYPE_CHECKING."""
    import grimp

    graph = grimp.build_graph("piu_engine", "piu_tui")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycles.append(f"{module} -> {' -> '.join(back)}")
    assert not cycles, "\n".join(cycles[:10])
