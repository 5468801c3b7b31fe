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
    pools = json.loads(piu(ws, "model", "list", "--json").stdout)["reference_pools"]
    assert [(p["dataset"], p["k"], p["seed"], len(p["model_seeds"]), p["done"]) for p in pools] == [
        ("synthetic", 4, 0, 4, 4)
    ]
    assert pools[0]["completed"]


def test_a_request_is_audited_person_by_person_and_gated_on_it(ws):
    if not list((ws / ".piu").glob("**/pools/*/manifest.json")):
        assert piu(ws, "audit", "pool").returncode == 0
    # the guide pool: PIU-FR's per-person targets come from it, never from the pool that audits
    r = piu(ws, "audit", "pool", "--guide")
    assert r.returncode == 0, r.stderr
    assert "guide pool (PIU-FR's per-person targets)" in r.stderr and "pool seed 1" in r.stderr
    listing = piu(ws, "model", "list").stdout
    guide_line = r"guide pool \(PIU-FR's targets\): synthetic \(preset tiny\), 4 models, pool seed 1, built"
    assert re.search(guide_line, listing), listing
    assert re.search(r"reference pool: synthetic \(preset tiny\), 4 models, pool seed 0, built", listing), listing
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
    assert audit["pool"]["k"] == 4 and audit["pool"]["seed"] == 0
    guide = report["method_notes"]["guide"]
    assert (guide["guide_pool_seed"], guide["guide_pool_models"], guide["guide_people"]) == (1, 4, 1)
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
    assert "Guided by    : guide pool seed 1 (4 reference models, never the audit's)" in text
    assert "Per-person audit against 4 reference models" in text
    assert "Could someone holding the model tell whether this person was in its training data" in text
    assert f"person-0003: {people[0]['verdict'].upper()}" in text
    assert f"model seeds {', '.join(str(s) for s in audit['pool']['model_seeds'])}; built" in text
    assert f"Gate on these verdicts: {'PASSED' if check['passed'] else 'FAILED'}" in text
    # the picture beside the report: never-seen people's z with person-0003 marked, before and after
    png = (folder / "audit.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "Picture: audit.png beside this report" in text
    assert report["picture"] == {"file": "audit.png", "note": ""}
    assert report["audit_gate"] == ("passed" if check["passed"] else "failed")


# ------------------------------------------------------------------ the picture beside the report (no training)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def audited(tmp_path, monkeypatch):
    """A workspace whose state holds audited jobs in every gate state, reports written (see test_tui)."""
    from test_tui import add_audited_jobs, build_state

    s = build_state(tmp_path, monkeypatch)
    add_audited_jobs(s)
    yield s
    s.store.close()


def test_report_has_each_verdict_the_pool_the_gate_and_the_picture(audited):
    folder = audited.ws.jobs_dir / "failed" / "req-2002"
    png = (folder / "audit.png").read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 10_000
    report = json.loads((folder / "report.json").read_text())
    assert report["picture"] == {"file": "audit.png", "note": ""} and report["audit_gate"] == "failed"
    assert report["audit"]["pool"]["k"] == 4 and report["audit"]["pool"]["model_seeds"] == [11, 12, 13, 14]
    text = (folder / "report.txt").read_text()
    assert "Per-person audit against 4 reference models (pool seed 0, model seeds 11, 12, 13, 14; built" in text
    assert "Guided by    : guide pool seed 1 (4 reference models, never the audit's)" in text
    assert report["method_notes"]["guide"]["guide_pool_seed"] == 1
    assert "person-0018: STILL RECOGNISABLE (z +3.40, p 0.0000, 6 photos); before: still recognisable (z +4.20)" in text
    assert "person-0020: INDISTINGUISHABLE (z NaN, p NaN, 6 photos)" in text  # stored as null, shown as NaN
    assert "Gate on these verdicts: FAILED: 1 of 2 forgotten people not indistinguishable" in text
    assert "Picture: audit.png beside this report" in text
    assert "Acceptance gate: FAILED" in text
    passed = (audited.ws.jobs_dir / "done" / "req-2001" / "report.txt").read_text()
    assert "Gate on these verdicts: PASSED: all 2 forgotten people indistinguishable" in passed
    assert (audited.ws.jobs_dir / "done" / "req-2001" / "audit.png").read_bytes()[:8] == PNG_MAGIC


def test_without_matplotlib_the_report_is_written_and_says_why(audited, monkeypatch):
    from piu_engine.service import report as report_mod
    from piu_engine.service.operations import Operations
    from piu_engine.service.registry import Registry

    folder = audited.ws.jobs_dir / "failed" / "req-2002"
    (folder / "audit.png").unlink()
    for name in ["matplotlib", *(m for m in sys.modules if m.startswith("matplotlib."))]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now raises ImportError
    monkeypatch.delitem(sys.modules, "piu_engine.core.audit.plot", raising=False)
    monkeypatch.setattr(report_mod, "_PICTURES", {})
    ws = audited.ws
    Operations(ws, audited.store, Registry(ws.models_dir).ensure(), ws.spool().ensure()).write_report("req-2002")
    assert not (folder / "audit.png").exists()
    text = (folder / "report.txt").read_text()
    assert "person-0018: STILL RECOGNISABLE" in text
    assert "No picture: matplotlib is not installed where the report was written" in text
    assert json.loads((folder / "report.json").read_text())["picture"]["file"] is None


def test_a_retried_job_leaves_no_stale_picture_behind(audited):
    """The failed folder's audit.png goes with its report when the job ends elsewhere (spool's stale drop)."""
    spool = audited.ws.spool()
    spool.finish("done", "req-2002", {"report.json": "{}\n"})
    assert not (audited.ws.jobs_dir / "failed" / "req-2002").exists()
