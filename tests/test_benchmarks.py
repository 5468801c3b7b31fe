"""The benchmark scripts run on the tiny preset and write valid JSON
(their speed targets live in the scripts' output and the README, not here)."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, write_config

pytestmark = pytest.mark.timeout(2400)  # hang guards for real training: a loaded machine is slow


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *args], capture_output=True, text=True, timeout=1800, cwd=ROOT
    )


def test_unlearning_benchmark_on_tiny(tmp_path):
    cfg = write_config(tmp_path / "config.toml")
    out = tmp_path / "u.json"
    proc = run_script(
        "unlearning.py",
        "--config",
        str(cfg),
        "--preset",
        "tiny",
        "--seeds",
        "2",
        "--methods",
        "retrain,piu-fr",
        "--ab-repeats",
        "1",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert set(data["summary"]) == {"original", "retrain", "piu-fr", "piu-fr (no early stop)"}
    assert len([r for r in data["rows"] if r["method"] == "piu-fr"]) == 2
    assert [len(data["early_stop_ab_seconds"][k]) for k in ("with", "without")] == [2, 2]
    assert "target early stopping cuts time" in proc.stdout
    assert "target NoMUS" in proc.stdout and "± " in proc.stdout


def test_throughput_benchmark_runs(tmp_path):
    out = tmp_path / "t.json"
    proc = run_script("throughput.py", "--steps", "3", "--repeats", "1", "--images", "128", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["ratio"] > 0 and len(data["images_per_second"]) == 2


def test_gpu_benchmark_script_runs_on_cpu_with_tiny(tmp_path):
    out = tmp_path / "g.json"
    proc = run_script(
        "gpu.py",
        "--device",
        "cpu",
        "--preset",
        "tiny",
        "--methods",
        "retrain,piu-fr",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert [r["method"] for r in data["rows"]] == ["original", "retrain", "piu-fr", "piu-fr (no early stop)"]
    assert "total wall-clock" in proc.stdout


def test_service_benchmark_on_tiny(tmp_path):
    out = tmp_path / "s.json"
    proc = run_script("service.py", "--preset", "tiny", "--latency-samples", "2", "--requests", "3", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert len(data["latency_seconds"]) == 2 and data["p50"] > 0
    assert data["coalesced_runs"] == 1 and data["separate_runs"] == 3
    assert "claim latency p50" in proc.stdout


def test_audit_benchmark_on_tiny(tmp_path):
    cfg = write_config(tmp_path / "config.toml")
    out = tmp_path / "a.json"
    args = ["--config", str(cfg), "--preset", "tiny", "--seeds", "1", "--pool-size", "4", "--sizes", "1"]
    proc = run_script("audit.py", *args, "--lineage", "1", "--n-boot", "50", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["report_seeds"] == [100] and not set(data["report_seeds"]) & set(data["development_seeds"])
    assert (data["pool"]["seed"], data["guide_pool"]["seed"], data["guide_pool"]["k"]) == (0, 1, 4)
    scen = {(r["scenario"], r["method"]) for r in data["rows"] if r["scenario"] != "lineage"}
    assert scen == {("1 person", m) for m in ("original", "retrain", "piu-fr")}
    steps = sorted({r["step"] for r in data["rows"] if r["scenario"] == "lineage"})
    assert steps == [1]
    assert "Paired difference to retrain" in proc.stdout and "NoMUS" in proc.stdout
    assert json.loads((tmp_path / "a.json.partial").read_text())["seeds_done"] == [100]
    # a run cut short resumes from its .partial file: the seeds done there are not run again
    again = tmp_path / "b.json"
    proc = run_script(
        "audit.py", *args, "--lineage", "1", "--n-boot", "50", "--json", str(again),
        "--resume", str(tmp_path / "a.json.partial"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "resuming: seeds [100]" in proc.stderr + proc.stdout
    assert json.loads(again.read_text())["rows"] == data["rows"]


def test_one_person_benchmark_on_tiny(tmp_path):
    cfg = write_config(tmp_path / "config.toml")
    out = tmp_path / "o.json"
    args = ["--config", str(cfg), "--preset", "tiny", "--requests", "3", "--originals", "1", "--json", str(out)]
    proc = run_script("one_person.py", *args, "--pool-size", "4")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert len(rows) == 3 and all(r["outcome"] in ("ok", "failed", "non-finite") for r in rows)
    assert data["guide_pool"]["seed"] == 1 and all(r["guided"] for r in rows if r["outcome"] == "ok")
    assert "non-finite model" in proc.stdout and "guided by pool seed 1" in proc.stdout
