"""The daemon's decisions with a scripted executor (in-process, no training):
gate failures keep the current model, crashes are retried up to max_attempts,
retry re-queues, coalesced requests keep their own records."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from piu_engine.core.checkpoint import save_checkpoint
from piu_engine.core.config import load_config
from piu_engine.core.request import ForgetOutcome
from piu_engine.service.daemon import EXIT_OK, EXIT_SOME_FAILED, Daemon
from piu_engine.service.executors.base import ExecMessage
from piu_engine.service.operations import Operations
from piu_engine.service.registry import Registry
from piu_engine.service.state import StateStore
from piu_engine.service.workspace import Workspace, init_workspace

BIG = {"n_forget": 240, "n_unseen_eval": 300, "n_forget_identities": 24, "n_unseen_identities": 30, "n_test": 400}


class ScriptedExecutor:
    """An Executor whose runs end as the test says: ``script`` holds one callable per run."""

    def __init__(self, script):
        self.script = list(script)
        self.pending: list[ExecMessage] = []
        self.active: set[str] = set()
        self.tasks = []

    def free_slots(self) -> int:
        return 1 - len(self.active)

    def submit(self, task) -> str:
        self.tasks.append(task)
        self.active.add(task.batch_id)
        for kind, payload in self.script.pop(0)(task):
            self.pending.append(ExecMessage(kind, task.batch_id, payload))
        return "fake:0"

    def poll(self, timeout: float):
        out, self.pending = self.pending, []
        for m in out:
            if m.kind != "event":
                self.active.discard(m.batch_id)
        return out

    def cancel(self, batch_id: str) -> None:
        pass

    def stop_all(self) -> None:
        pass

    def kill_all(self) -> None:
        pass

    def running(self):
        return list(self.active)

    def describe(self) -> str:
        return "fake:0"

    def close(self) -> None:
        pass


def finished(mia: float, acc: float):
    def run(task):
        sha = save_checkpoint({"w": torch.ones(3)}, Path(task.out_weights))
        parent = dict(BIG, mia=0.62, test_acc=0.70)
        model = dict(BIG, mia=mia, test_acc=acc, forget_acc=0.1, forgetting_score=abs(mia - 0.5), nomus=0.8)
        out = ForgetOutcome(
            parent=parent,
            model=model,
            baselines={name: dict(model, mia=0.55) for name in task.compare},
            per_group={g: dict(model, n_forget=6) for g in task.groups},
            counts={"forget_images": 240},
            seconds=1.5,
            sha256=sha,
            method_params={"epochs": 1},
        )
        return [
            ("event", {"phase": "piu-fr:stage1", "epoch": 1, "epochs": 1, "step": 1, "steps": 1, "fraction": 1.0}),
            ("done", asdict(out)),
        ]

    return run


def crashed(task):
    return [("crashed", "worker process exited with code -9")]


@pytest.fixture
def ws(tmp_path) -> Workspace:
    config = init_workspace(tmp_path / "ws", "tiny")
    text = config.read_text().replace('device = "auto"', 'device = "cpu"')
    for key, value in {
        "min_mia_samples": 10,
        "min_mia_identities": 3,
        "min_test_samples": 10,
        "max_attempts": 2,
        "coalesce_seconds": 0.0,
        "settle_seconds": 0.0,
    }.items():
        text = re.sub(rf"^{key} = [^#\n]*", f"{key} = {value}", text, count=1, flags=re.M)
    if "settle_seconds" not in text:
        text = text.replace("[service]\n", "[service]\nsettle_seconds = 0.0\n")
    config.write_text(text)
    w = Workspace.from_config(load_config(config)).ensure()
    store = StateStore(w.db_path)
    reg = Registry(w.models_dir).ensure()
    staged = reg.incoming / "v0.pt"
    reg.register(store, "synthetic", staged, save_checkpoint({"w": torch.zeros(3)}, staged), "import")
    store.close()
    return w


def drop(w: Workspace, rid: str, *ids: str) -> None:
    w.spool().submit(
        f"{rid}.json", json.dumps({"request_id": rid, "dataset": "synthetic", "identities": list(ids)}).encode()
    )


def batch(w: Workspace, *script) -> tuple[int, ScriptedExecutor]:
    ex = ScriptedExecutor(script)
    return Daemon(w.cfg, mode="batch", executor=ex, lock_wait=0).run(), ex


def test_gate_failure_keeps_current_then_retry_succeeds(ws):
    drop(ws, "a", "person-0001")
    drop(ws, "b", "person-0002", "person-0003")
    code, ex = batch(ws, finished(mia=0.9, acc=0.69))
    assert code == EXIT_SOME_FAILED
    assert len(ex.tasks) == 1 and ex.tasks[0].groups == {"a": ["person-0001"], "b": ["person-0002", "person-0003"]}
    store = StateStore(ws.db_path)
    for rid in ("a", "b"):
        j = store.job(rid)
        assert j.state == "failed" and "acceptance gate failed: MIA 0.9000 outside 0.5 +- 0.1" in j.error
        assert j.metrics["mia"] == 0.9 and j.version is None
    assert store.current_version("synthetic").version == 0 and len(store.versions("synthetic")) == 1
    assert not list(Registry(ws.models_dir).staging.iterdir())
    text = (ws.jobs_dir / "failed/a/report.txt").read_text()
    assert "Acceptance gate: FAILED" in text and "unchanged; current is still synthetic version 0" in text

    ops = Operations(ws, store, Registry(ws.models_dir), ws.spool())
    ops.retry("a")
    store.close()
    code, ex = batch(ws, finished(mia=0.52, acc=0.69))
    assert code == EXIT_OK
    store = StateStore(ws.db_path)
    a = store.job("a")
    assert a.state == "done" and a.version == 1 and a.attempts == 1
    assert store.job("b").state == "failed"  # not retried: stays as it was
    assert store.current_version("synthetic").forgotten == ["person-0001"]
    assert not (ws.jobs_dir / "failed/a").exists() and (ws.jobs_dir / "done/a/report.json").exists()
    report = json.loads((ws.jobs_dir / "done/a/report.json").read_text())
    gated = {c["name"]: c["gated"] for c in report["gate"]["checks"]}
    assert report["gate"]["decision"] == "passed" and gated == {"mia": True, "test_acc": True, "audit": False}
    text = (ws.jobs_dir / "done/a/report.txt").read_text()
    assert "Acceptance gate: PASSED" in text and "Per-person audit: not audited (no reference pool" in text
    # the failed first attempt is kept: its run, and what the job was when it was retried
    kinds = [(h["kind"], h["state"]) for h in report["history"]]
    assert kinds == [("run", "failed"), ("retry", "failed"), ("run", "done")]
    assert "acceptance gate failed" in report["history"][1]["error"]
    assert "History" in text and "retried (it was failed after 1 attempt(s)): acceptance gate failed" in text
    assert report["request_metrics"]["n_forget"] == 6
    store.close()


def test_an_unmeasurable_mia_is_null_in_strict_json_and_not_nan_in_text(ws, capsys):
    """Too few forget images for the attack: the number is NaN in the engine,
    and every file and --json output a script parses stays strict JSON."""
    from piu_engine.cli import main

    drop(ws, "few", "person-0004")
    code, _ = batch(ws, finished(mia=float("nan"), acc=0.7))
    assert code == EXIT_OK

    def strict(text: str):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))

    report = strict((ws.jobs_dir / "done/few/report.json").read_text())
    assert report["new_model"]["metrics"]["mia"] is None and report["new_model"]["metrics"]["test_acc"] == 0.7
    assert "MIA not available" in json.dumps(report["gate"])
    text = (ws.jobs_dir / "done/few/report.txt").read_text()
    assert "nan" not in text  # shown as "-"
    config = str(ws.cfg.path)
    assert main(["--config", config, "jobs", "show", "few", "--json"]) == 0
    assert strict(capsys.readouterr().out)["metrics"]["mia"] is None
    assert main(["--config", config, "model", "list", "--json"]) == 0
    assert strict(capsys.readouterr().out)["versions"][-1]["metrics"]["mia"] is None


def test_baselines_are_reported(ws):
    ws.spool().submit(
        "cmp.json",
        json.dumps(
            {
                "request_id": "cmp",
                "dataset": "synthetic",
                "identities": ["person-0009"],
                "compare": ["retrain", "scrub"],
            }
        ).encode(),
    )
    code, ex = batch(ws, finished(mia=0.5, acc=0.7))
    assert code == EXIT_OK and ex.tasks[0].compare == ["retrain", "scrub"]
    report = json.loads((ws.jobs_dir / "done/cmp/report.json").read_text())
    assert set(report["baselines"]) == {"retrain", "scrub"}
    text = (ws.jobs_dir / "done/cmp/report.txt").read_text()
    assert "baseline retrain" in text and "baseline scrub" in text and "Baselines    : retrain, scrub" in text


def test_job_left_running_past_max_attempts_fails_at_start_up(ws):
    from piu_engine.service.manifest import manifest_from_dict

    store = StateStore(ws.db_path)
    m = manifest_from_dict({"request_id": "k", "dataset": "synthetic", "identities": ["person-0010"]})
    store.record_accepted("claim-k", "k.json", "00", m, {"person-0010": ("requested", 6, None)})
    for attempt in ("b1", "b2"):  # two starts, each ended by a kill -9 of the daemon
        store.start_batch(attempt, [store.job("k")], 0, "")
    assert store.job("k").state == "running" and store.job("k").attempts == 2
    store.close()
    code, ex = batch(ws)
    assert code == EXIT_SOME_FAILED and not ex.tasks
    store = StateStore(ws.db_path)
    job = store.job("k")
    assert job.state == "failed" and "gave up after 2 attempt(s)" in job.error and "kill -9" in job.error
    store.close()


def test_crashes_are_retried_up_to_max_attempts(ws):
    drop(ws, "c", "person-0004")
    code, ex = batch(ws, crashed, crashed)
    assert code == EXIT_SOME_FAILED and len(ex.tasks) == 2
    store = StateStore(ws.db_path)
    j = store.job("c")
    assert j.state == "failed" and j.attempts == 2
    assert "gave up after 2 attempt(s)" in j.error and "exited with code -9" in j.error
    store.close()


def test_same_people_share_one_measurement_and_already_forgotten(ws):
    drop(ws, "x1", "person-0005")
    drop(ws, "x2", "person-0005")
    code, ex = batch(ws, finished(mia=0.5, acc=0.7))
    assert code == EXIT_OK and list(ex.tasks[0].groups) == ["x1"]
    drop(ws, "x3", "person-0005")  # already forgotten: done without a run
    code, ex = batch(ws)
    assert code == EXIT_OK and not ex.tasks
    store = StateStore(ws.db_path)
    assert {store.job(i).state for i in ("x1", "x2", "x3")} == {"done"}
    assert store.job("x2").result["outcome"]["per_group"]["x2"]["n_forget"] == 6
    assert store.job_identities("x3")[0]["status"] == "already_forgotten"
    assert "already forgotten" in (ws.jobs_dir / "done/x3/report.txt").read_text()
    assert os.stat(ws.db_path).st_mode & 0o777 == 0o640
    store.close()


def test_init_and_model_import_through_the_cli(tmp_path, capsys):
    from piu_engine.cli import main

    target = tmp_path / "fresh"
    assert main(["init", str(target), "--preset", "tiny"]) == 0
    assert main(["init", str(target), "--preset", "tiny"]) == 2  # never overwrites a workspace by accident
    for d in ("jobs", ".piu/state", ".piu/models"):
        assert (target / d).is_dir() and os.stat(target / d).st_mode & 0o777 == 0o750
    config = str(target / "config.toml")
    from piu_engine.core.config import load_config
    from piu_engine.service.executors.settings import executor_config

    assert executor_config(load_config(config)).kind == "local"  # the section is written, and valid

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2), "x": Evil()}, evil)
    assert main(["--config", config, "model", "import", str(evil)]) == 2
    assert "weights_only" in capsys.readouterr().err
    good = tmp_path / "mine.pt"
    torch.save({"fc.weight": torch.ones(2, 2)}, good)
    assert main(["--config", config, "model", "import", str(good)]) == 0
    assert "registered synthetic version 0 (import)" in capsys.readouterr().out
    assert main(["--config", config, "model", "import", str(good)]) == 2  # version 0 exists already
    assert main(["--config", config, "model", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["versions"]
    assert [(r["version"], r["source"], r["current"]) for r in rows] == [(0, "import", True)]
    assert not list((target / ".piu/models/.incoming").iterdir())


def test_output_into_a_closed_pipe_is_quiet(tmp_path):
    """`piu identities | head -1`: the reader leaves early; no traceback."""
    import subprocess
    import sys

    from piu_engine.cli import main

    assert main(["init", str(tmp_path / "ws"), "--preset", "tiny"]) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "piu_engine.cli", "--config", str(tmp_path / "ws/config.toml"), "identities"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before it writes anything
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141 and err == "", err
