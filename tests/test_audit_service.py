"""The per-person audit through the product: `piu audit pool` builds the reference
pool (resumable), `piu model list` shows it, and a forget request run by
`piu batch` is audited person by person, gated on the verdicts, and reported."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PIU = [sys.executable, "-m", "piu_engine.cli"]
pytestmark = pytest.mark.timeout(1800)


def piu(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PIU, "--config", str(ws / "config.toml"), *args], capture_output=True, text=True, timeout=1200
    )


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("audit") / "ws"
    r = subprocess.run([*PIU, "init", str(ws), "--preset", "tiny"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = (ws / "config.toml").read_text().replace('device = "auto"', 'device = "cpu"')
    (ws / "config.toml").write_text(text + "\n[audit]\nmodels = 4\n")
    r = piu(ws, "train")
    assert r.returncode == 0, r.stderr
    return ws


def test_pool_builds_resumes_and_shows_in_model_list(ws):
    r = piu(ws, "model", "list")
    assert "reference pool: none" in r.stdout
    r = piu(ws, "audit", "pool")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(": trained") == 4 and "pool ready: 4 models" in r.stdout
    pool_dir = Path(re.search(r"at (\S+) \(", r.stdout).group(1))
    victim = sorted(pool_dir.glob("model-001-*.pt"))[0]
    victim.unlink()  # as a kill -9 mid-build would leave it: that model only is trained again
    r = piu(ws, "audit", "pool")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(": trained") == 1 and r.stderr.count(": cached") == 3
    r = piu(ws, "model", "list")
    assert re.search(r"reference pool: synthetic \(preset tiny\), 4 models, pool seed 0, built", r.stdout), r.stdout


def test_a_request_is_audited_person_by_person_and_gated_on_it(ws):
    if not list((ws / ".piu").glob("**/pools/*/manifest.json")):
        assert piu(ws, "audit", "pool").returncode == 0
    manifest = ws / "one.json"
    manifest.write_text(
        json.dumps(
            {
                "request_id": "one-person",
                "dataset": "synthetic",
                "identities": ["person-0003"],
                "requested_by": "dpo",
                "reason": "art. 17",
            }
        )
    )
    assert piu(ws, "submit", str(manifest)).returncode == 0
    r = piu(ws, "batch")
    folder = next(p for p in (ws / "jobs").glob("*/one-person") if (p / "report.json").exists())
    report = json.loads((folder / "report.json").read_text())
    audit = report["audit"]
    assert audit["pool"]["k"] == 4
    people = audit["model"]["people"]
    assert [p["identity"] for p in people] == ["person-0003"]
    assert people[0]["verdict"] in ("indistinguishable", "still recognisable", "conspicuously forgotten")
    assert [p["identity"] for p in audit["parent"]["people"]] == ["person-0003"]  # before, for comparison
    check = next(c for c in report["gate"]["checks"] if c["name"] == "audit")
    assert check["gated"]  # with a pool the audit decides: never "not gated" for it
    assert check["passed"] == (people[0]["verdict"] == "indistinguishable")
    assert report["state"] == ("done" if check["passed"] and report["gate"]["passed"] else "failed")
    assert r.returncode == (0 if report["state"] == "done" else 1)
    text = (folder / "report.txt").read_text()
    assert "Per-person audit against 4 reference models" in text
    assert "Could someone holding the model tell whether this person was in its training data" in text
    assert f"person-0003: {people[0]['verdict'].upper()}" in text
