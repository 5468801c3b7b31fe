"""`piu bench` end to end on the tiny preset: real training, real table,
JSON and CSV in the documented shape."""

import csv
import json

import pytest

from conftest import write_config

# Real training in a subprocess: minutes on an idle 2-core machine, several times that on a
# loaded one. The limits are hang guards, never speed targets.
pytestmark = pytest.mark.timeout(2400)

ROW_KEYS = {
    "method",
    "seed",
    "test_acc",
    "forget_acc",
    "retain_acc",
    "unseen_acc",
    "mia",
    "mia_std",
    "forgetting_score",
    "nomus",
    "seconds",
    "speedup_vs_retrain",
}


def test_bench_prints_table_and_writes_json(tmp_path, piu_cli):
    cfg = write_config(tmp_path / "config.toml")
    out = tmp_path / "res" / "bench.json"
    proc = piu_cli(
        "--config",
        cfg,
        "bench",
        "--preset",
        "tiny",
        "--methods",
        "piu-fr,retrain,finetune",
        "--seeds",
        "2",
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    for word in ("original", "retrain", "piu-fr", "finetune", "NoMUS", "MIA"):
        assert word in proc.stdout
    data = json.loads(out.read_text())
    assert data["dataset"] == "synthetic" and data["preset"] == "tiny"
    assert data["device"].startswith("cpu")
    assert data["config"]["methods"] == ["retrain", "piu-fr", "finetune"]
    rows = data["methods"]
    assert [(r["method"], r["seed"]) for r in rows] == [
        (m, s) for s in (0, 1) for m in ("original", "retrain", "piu-fr", "finetune")
    ]
    for r in rows:
        assert ROW_KEYS <= set(r)
        assert 0.0 <= r["test_acc"] <= 1.0 and 0.0 <= r["mia"] <= 1.0
        assert abs(r["forgetting_score"] - abs(r["mia"] - 0.5)) < 1e-9
        assert abs(r["nomus"] - (0.5 * r["test_acc"] + 0.5 * (1 - 2 * r["forgetting_score"]))) < 1e-9
        assert r["seconds"] > 0
    retrain = [r for r in rows if r["method"] == "retrain"]
    assert all(r["speedup_vs_retrain"] == 1.0 for r in retrain)
    piu = [r for r in rows if r["method"] == "piu-fr"][0]
    assert abs(piu["speedup_vs_retrain"] - retrain[0]["seconds"] / piu["seconds"]) < 1e-6
    with out.with_suffix(".csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)


def test_bench_reuses_cached_original(tmp_path, piu_cli):
    cfg = write_config(tmp_path / "config.toml")
    first = piu_cli("--config", cfg, "bench", "--methods", "neggrad", "--out", tmp_path / "a.json")
    second = piu_cli("--config", cfg, "bench", "--methods", "neggrad", "--out", tmp_path / "b.json")
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    a, b = (json.loads((tmp_path / n).read_text())["methods"][0] for n in ("a.json", "b.json"))
    assert a["method"] == "original" and a["seconds"] == b["seconds"]  # training time recorded once
    assert a["test_acc"] == b["test_acc"]
    assert len(list((tmp_path / "cache" / "models").glob("original-*.pt"))) == 1


def test_bench_rejects_unknown_method_and_bad_config(tmp_path, piu_cli):
    cfg = write_config(tmp_path / "config.toml")
    proc = piu_cli("--config", cfg, "bench", "--methods", "piu-fr,nope")
    assert proc.returncode == 2 and "unknown method 'nope'" in proc.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[engine]\ndevise = "cpu"\n')
    proc = piu_cli("--config", bad, "bench")
    assert proc.returncode == 2 and "engine.devise: unknown key" in proc.stderr


def test_bench_audit_adds_per_person_columns_and_json(tmp_path, piu_cli):
    cfg = write_config(tmp_path / "config.toml", "\n[audit]\nmodels = 4\n")
    out = tmp_path / "bench.json"
    args = ["--config", cfg, "bench", "--preset", "tiny", "--methods", "retrain,piu-fr", "--audit", "--out", out]
    proc = piu_cli(*args)
    assert proc.returncode == 0, proc.stderr
    for word in ("flagged", "audit AUC", "gap to retrain"):
        assert word in proc.stdout
    data = json.loads(out.read_text())
    assert data["config"]["audit"]["models"] == 4 and len(data["config"]["audit"]["pool_seeds"]) == 4
    rows = {r["method"]: r for r in data["methods"]}
    assert set(rows) == {"original", "retrain", "piu-fr"}
    forgotten = {p["identity"] for p in rows["original"]["audit"]["people"]}
    assert forgotten
    for r in rows.values():
        people = {p["identity"]: p["verdict"] for p in r["audit"]["people"]}
        assert set(people) == forgotten  # every row audits the same request's people
        assert set(people.values()) <= {"indistinguishable", "still recognisable", "conspicuously forgotten"}
        assert 0.0 <= r["flagged"] <= 1.0 and r["flagged"] == r["audit"]["summary"]["flagged_fraction"]
    assert rows["retrain"]["gap_to_retrain"] == 0.0  # retrain against itself
    assert rows["original"]["gap_to_retrain"] > 0.0 and rows["piu-fr"]["gap_to_retrain"] is not None
    header = out.with_suffix(".csv").read_text().splitlines()[0].split(",")
    assert header[-3:] == ["flagged", "audit_auc", "gap_to_retrain"]
