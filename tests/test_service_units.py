"""Service building blocks without a daemon: manifests, gate, spool, state, registry, reports."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest
from piu_engine.common.errors import ConfigError
from piu_engine.core.config import parse
from piu_engine.core.request import Metrics
from piu_engine.service import gate
from piu_engine.service.manifest import ManifestError, check_manifest, derive_request_id, load_manifest
from piu_engine.service.settings import GateConfig
from piu_engine.service.spool import Spool
from piu_engine.service.state import StateMissing, StateReader, StateStore

IDS = [f"person-{i:04d}" for i in range(24)]


@pytest.fixture(scope="module")
def cfg():
    return parse({"engine": {"device": "cpu"}, "bench": {"preset": "tiny"}})


def check(doc, cfg, share=0.25):
    return check_manifest(doc, cfg, lambda ds: IDS, share)


def problems(doc, cfg, share=0.25) -> str:
    with pytest.raises(ManifestError) as err:
        check(doc, cfg, share)
    return "\n".join(err.value.problems)


# ---------------------------------------------------------------- settings
def test_service_section_defaults_and_errors():
    c = parse({})
    s = c.section("service")
    assert (s.jobs_dir, s.state_dir, s.models_dir) == ("jobs", ".piu/state", ".piu/models")
    assert s.gate.min_mia_samples >= 1
    with pytest.raises(ConfigError, match=r"service\.gate\.mia_tolerance"):
        parse({"service": {"gate": {"mia_tolerance": 2.0}}})
    with pytest.raises(ConfigError, match=r"service\.max_parallel"):
        parse({"service": {"max_parallel": 0}})
    with pytest.raises(ConfigError, match=r"service\.nope: unknown key"):
        parse({"service": {"nope": 1}})
    with pytest.raises(ConfigError, match=r"service\.devices\[0\]"):
        parse({"service": {"devices": ["tpu"]}})


# ---------------------------------------------------------------- manifests
def test_good_manifest_is_normalised(cfg):
    m = check({"dataset": "synthetic", "identities": ["person-0001"], "requested_by": "DPO"}, cfg)
    assert m.method == "piu-fr" and m.compare == () and m.priority == 0
    assert m.request_id == derive_request_id(
        {"dataset": "synthetic", "identities": ["person-0001"], "requested_by": "DPO"}
    )
    assert m.id_derived
    m2 = check(
        {
            "request_id": "r-1",
            "dataset": "synthetic",
            "identities": ["person-0001"],
            "method": "piu-fr",
            "params": {"epochs": 1},
            "compare": ["retrain", "scrub"],
        },
        cfg,
    )
    assert m2.request_id == "r-1" and m2.params == {"epochs": 1} and m2.compare == ("retrain", "scrub")


@pytest.mark.parametrize(
    "doc, expected",
    [
        ([1, 2], "expected a JSON object"),
        ({"identities": ["person-0001"]}, "missing field: 'dataset'"),
        ({"dataset": "synthetic"}, "missing field: 'identities'"),
        ({"dataset": 3, "identities": ["person-0001"]}, "dataset: 3 is not of type 'string'"),
        ({"dataset": "synthetic", "identities": "person-0001"}, "identities: 'person-0001' is not of type 'array'"),
        ({"dataset": "synthetic", "identities": []}, "identities: [] should be non-empty"),
        ({"dataset": "synthetic", "identities": ["person-0001"], "priority": "high"}, "priority"),
        ({"dataset": "synthetic", "identities": ["person-0001"], "colour": "red"}, "unknown field"),
        ({"dataset": "nope", "identities": ["person-0001"]}, "unknown dataset 'nope'"),
        (
            {"dataset": "synthetic", "identities": ["person-0001", "mallory", "trudy"]},
            "2 not among the training identities of 'synthetic': 'mallory', 'trudy'",
        ),
        ({"dataset": "synthetic", "identities": IDS[:7]}, "asks to forget 7 of 24 training identities"),
        ({"dataset": "synthetic", "identities": ["person-0001"], "method": "magic"}, "unknown method 'magic'"),
        ({"dataset": "synthetic", "identities": ["person-0001"], "params": {"warp": 9}}, "warp"),
        ({"dataset": "synthetic", "identities": ["person-0001"], "compare": ["voodoo"]}, "voodoo"),
        ({"dataset": "synthetic", "identities": ["../../etc/passwd"]}, "looks like a path"),
        ({"dataset": "synthetic", "identities": ["person-0001"], "method": "/bin/sh"}, "looks like a path"),
        ({"request_id": "../x", "dataset": "synthetic", "identities": ["person-0001"]}, "request_id"),
        ({"request_id": "..", "dataset": "synthetic", "identities": ["person-0001"]}, "request_id"),
        ({"dataset": "synthetic", "identities": ["person-\u00001"]}, "looks like a path"),
    ],
)
def test_bad_manifests_name_what_is_wrong(cfg, doc, expected):
    assert expected in problems(doc, cfg)


def test_identities_may_contain_slashes_when_the_dataset_names_them_so(cfg):
    mufac_like = ["F0001/D", "F0002/GM"] + IDS
    m = check_manifest({"dataset": "synthetic", "identities": ["F0001/D"]}, cfg, lambda ds: mufac_like, 0.25)
    assert m.identities == ("F0001/D",)
    with pytest.raises(ManifestError, match="looks like a path"):
        check_manifest({"dataset": "synthetic", "identities": ["F0001/../x"]}, cfg, lambda ds: mufac_like, 0.25)


def test_all_problems_are_reported_at_once(cfg):
    text = problems({"dataset": "synthetic", "identities": ["x1", "x2"], "method": "magic"}, cfg)
    assert "unknown method 'magic'" in text and "'x1', 'x2'" in text


def test_file_level_checks(tmp_path, cfg):
    look = lambda ds: IDS  # noqa: E731
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"dataset": "synthetic", "identities": ["person-0002"]}))
    m, data = load_manifest(good, cfg, look, 4096, 0.25)
    assert m.identities == ("person-0002",) and data == good.read_bytes()

    cases = {
        "big.json": (b'{"dataset": "synthetic", "identities": ["' + b"a" * 5000 + b'"]}', "larger than"),
        "notjson.json": (b"{not json", "not valid JSON"),
        "latin1.json": ('{"dataset": "synthétique"}'.encode("latin-1"), "not UTF-8"),
        "dupkey.json": (b'{"dataset": "synthetic", "dataset": "x", "identities": ["person-0001"]}', "duplicate key"),
    }
    for name, (raw, expected) in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(ManifestError, match=expected):
            load_manifest(tmp_path / name, cfg, look, 4096, 0.25)
    (tmp_path / "link.json").symlink_to(good)
    with pytest.raises(ManifestError, match="symbolic link"):
        load_manifest(tmp_path / "link.json", cfg, look, 4096, 0.25)
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(ManifestError, match="not a regular file"):  # and never blocks
        load_manifest(tmp_path / "fifo.json", cfg, look, 4096, 0.25)


# ---------------------------------------------------------------- gate
def _metrics(mia, acc, n_forget=6, n_unseen=36, id_f=1, id_u=6, n_test=48):
    return Metrics(
        mia=mia,
        test_acc=acc,
        n_forget=n_forget,
        n_unseen_eval=n_unseen,
        n_forget_identities=id_f,
        n_unseen_identities=id_u,
        n_test=n_test,
    )


def test_gate_never_fails_on_too_few_samples():
    g = GateConfig(mia_tolerance=0.05, min_mia_samples=50, min_mia_identities=10, min_test_samples=50)
    r = gate.evaluate(g, _metrics(0.5, 0.7), _metrics(0.95, 0.1))  # awful numbers, but on 6 images and 48 tests
    assert r.passed and r.decision == "not gated"  # kept, but never shown as a pass
    notes = {c.name: c.note for c in r.checks}
    assert "not gated: too few samples" in notes["mia"] and "forget_images=6" in notes["mia"]
    assert "not gated: too few samples (test_images=48" in notes["test_acc"]


def test_gate_fails_with_the_numbers_when_samples_suffice():
    g = GateConfig(
        mia_tolerance=0.05, max_test_acc_drop=0.02, min_mia_samples=50, min_mia_identities=10, min_test_samples=50
    )
    big = dict(n_forget=200, n_unseen=300, id_f=20, id_u=30, n_test=400)
    r = gate.evaluate(g, _metrics(0.6, 0.70, **big), _metrics(0.58, 0.60, **big))
    assert not r.passed and r.decision == "failed"
    fails = r.failures()
    assert any("MIA 0.5800 outside 0.5 +- 0.05" in f for f in fails)
    assert any("test accuracy 0.6000 is below >= 0.6800" in f for f in fails)
    ok = gate.evaluate(g, _metrics(0.6, 0.70, **big), _metrics(0.52, 0.69, **big))
    gated = {c.name: c.gated for c in ok.checks}
    assert ok.passed and gated == {"mia": True, "test_acc": True, "audit": False} and ok.decision == "passed"
    assert "not audited: no reference pool" in ok.checks[-1].note
    off = gate.evaluate(GateConfig(enabled=False), _metrics(0.6, 0.7, **big), _metrics(0.9, 0.1, **big))
    assert off.passed and not off.enabled and off.decision == "not gated"


def _audit(*verdicts: str) -> dict:
    people = [
        {"identity": f"person-{i:04d}", "verdict": v, "z": 3.0 if v != "indistinguishable" else 0.1}
        for i, v in enumerate(verdicts)
    ]
    return {"pool": {"k": 16, "seed": 0}, "model": {"people": people}, "parent": {"people": people}}


def test_gate_with_a_pool_passes_only_if_every_person_is_indistinguishable():
    few = _metrics(0.5, 0.7)  # too few samples for the population MIA: the audit alone decides
    ok = gate.evaluate(GateConfig(), few, few, _audit("indistinguishable", "indistinguishable"))
    assert ok.passed and ok.decision == "passed"
    assert "all 2 forgotten people indistinguishable" in ok.checks[-1].note
    bad = gate.evaluate(GateConfig(), few, few, _audit("indistinguishable", "still recognisable"))
    assert not bad.passed and bad.decision == "failed"
    assert "person-0001 still recognisable (z +3.00)" in bad.failures()[0]
    over = gate.evaluate(GateConfig(), few, few, _audit("conspicuously forgotten"))
    assert not over.passed  # pushed below never-seen people is as recognisable as left above them
    relaxed = GateConfig(audit_verdicts=("indistinguishable", "conspicuously forgotten"))
    assert gate.evaluate(relaxed, few, few, _audit("conspicuously forgotten")).passed
    err = gate.evaluate(GateConfig(), few, few, {"error": "too few never-seen people"})
    assert err.decision == "not gated" and "not audited: too few never-seen people" in err.checks[-1].note
    nan = _audit("indistinguishable", "indistinguishable")
    nan["model"]["people"][1]["z"] = None  # a NaN score is stored as null
    unmeasured = gate.evaluate(GateConfig(), few, few, nan)
    assert unmeasured.decision == "not gated" and "no finite score for 1 of 2 people (person-0001)" in (
        unmeasured.checks[-1].note
    )
    nan["model"]["people"][0].update(verdict="still recognisable", z=3.0)  # one known failure decides
    mixed = gate.evaluate(GateConfig(), few, few, nan)
    assert mixed.decision == "failed" and "not measured: person-0001" in mixed.failures()[0]


def test_a_score_that_is_not_finite_is_not_measured_never_indistinguishable():
    from piu_engine.core.audit import calibrate

    z = [0.0, float("nan"), 5.0, -5.0, float("inf")]
    assert calibrate.verdicts(z, -2.0, 2.0) == [
        "indistinguishable",
        "not measured",
        "still recognisable",
        "conspicuously forgotten",
        "not measured",
    ]


def test_gate_missing_metrics_are_not_gated():
    r = gate.evaluate(GateConfig(), Metrics(), Metrics.from_dict({"mia": float("nan")}))
    assert r.passed and all(not c.gated for c in r.checks) and r.decision == "not gated"


# ---------------------------------------------------------------- spool and state
def test_private_dirs_whatever_the_umask_and_uncollected_replies_are_swept(tmp_path):
    from piu_engine.common.fsio import atomic_write_bytes
    from piu_engine.service import control

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "cache" / "images" / "x.pt", b"photos")
    finally:
        os.umask(old)
    for d in (tmp_path / "cache", tmp_path / "cache" / "images"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o750, d
    assert stat.S_IMODE(os.stat(tmp_path / "cache" / "images" / "x.pt").st_mode) == 0o640
    shared = tmp_path / "shared"  # an admin's setgid folder for the service's group
    shared.mkdir()
    os.chmod(shared, 0o2770)
    atomic_write_bytes(shared / "models" / "x.pt", b"weights")
    assert stat.S_IMODE(os.stat(shared / "models").st_mode) == 0o2750

    ctl = tmp_path / "control"
    ctl.mkdir()
    (ctl / "old.res.json").write_text("{}")
    (ctl / "new.res.json").write_text("{}")
    (ctl / "pending.req.json").write_text("{}")
    os.utime(ctl / "old.res.json", (time.time() - 120, time.time() - 120))
    assert [p.name for p in control.sweep(ctl, older_than=60)] == ["old.res.json"]
    assert sorted(p.name for p in ctl.iterdir()) == ["new.res.json", "pending.req.json"]


def test_arrivals_vouch_only_for_unchanged_whole_files(tmp_path):
    from piu_engine.service.arrivals import CLOSED, MOVED, Arrivals

    sp = Spool(tmp_path / "jobs").ensure()
    arr = Arrivals(max_bytes=1000)
    sp.submit("a.json", b'{"x": 1}')
    (sp.root / "b.json").write_text('{"x": ')
    arr.note(str(sp.root / "a.json"), MOVED)
    arr.note(str(sp.root / "b.json"), CLOSED)
    assert [p.name for p in sp.incoming(3600.0, whole=arr.is_whole)] == ["a.json"]  # b does not parse
    (sp.root / "b.json").write_text('{"x": 2}')
    assert [p.name for p in sp.incoming(3600.0, whole=arr.is_whole)] == ["a.json"]  # b changed since noted
    arr.note(str(sp.root / "b.json"), CLOSED)
    assert sorted(p.name for p in sp.incoming(3600.0, whole=arr.is_whole)) == ["a.json", "b.json"]
    with open(sp.root / "a.json", "a") as fh:  # rewritten after the rename: back to the settle rule
        fh.write(" ")
    arr.drop("b.json")
    assert sp.incoming(3600.0, whole=arr.is_whole) == []


def test_spool_claim_reject_and_settle(tmp_path):
    sp = Spool(tmp_path / "jobs").ensure()
    sp.submit("a.json", b"{}")
    (sp.root / ".hidden.json").write_text("{}")
    (sp.root / "notes.txt").write_text("x")
    assert [p.name for p in sp.incoming(0.0)] == ["a.json"]
    assert sp.incoming(3600.0) == []  # not settled yet
    os.chmod(sp.root / "a.json", 0o644)  # as a careless writer left it
    c = sp.claim(sp.root / "a.json")
    assert c is not None and c.parent == sp.claimed and Spool.original_name(c) == "a.json"
    assert stat.S_IMODE(os.stat(c).st_mode) == 0o640
    assert sp.claim(sp.root / "a.json") is None  # already taken
    dst = sp.reject(c, ["bad thing"])
    assert dst == sp.rejected / "a.json"
    assert "bad thing" in (sp.rejected / "a.json.error.txt").read_text()
    sp.submit("a.json", b"{}")
    dst2 = sp.reject(sp.claim(sp.root / "a.json"), ["again"])
    assert dst2.name == "a.1.json" and (sp.rejected / "a.1.json.error.txt").exists()
    assert stat.S_IMODE(os.stat(sp.rejected / "a.json.error.txt").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(sp.rejected).st_mode) == 0o750


def test_state_store_and_read_only_reader(tmp_path, cfg):
    db = tmp_path / "state" / "state.db"
    store = StateStore(db)
    m = check({"request_id": "r1", "dataset": "synthetic", "identities": ["person-0001"]}, cfg)
    store.record_accepted("c1", "r1.json", "00", m, {"person-0001": ("requested", 6, None)})
    store.record_rejected("c2", "bad.json", None, ["not valid JSON"])
    store.add_version("synthetic", 0, None, "ab" * 32, "synthetic/0/model.pt", "train", None, [], [], {"test_acc": 0.5})
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o640
    with StateReader(db) as r:
        assert r.counts()["queued"] == 1 and r.counts()["rejected"] == 1
        job = r.job("r1")
        assert job.identities == ["person-0001"] and job.summary()["state"] == "queued"
        assert r.job("rejected-2").error == "not valid JSON"
        assert r.current_version("synthetic").version == 0
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            r.conn.execute("DELETE FROM jobs")  # read-only
    store.close()


def test_reader_during_the_daemons_start_up_reads_as_no_state_yet(tmp_path):
    """The TUI or a CLI opening the state while a daemon is creating it (the file is there,
    its tables not yet) is told the state is not there yet, never a raw SQLite error."""
    empty = tmp_path / "empty" / "state.db"
    empty.parent.mkdir()
    empty.touch()  # created, nothing written
    with pytest.raises(StateMissing, match="still being created"):
        StateReader(empty)
    db = tmp_path / "wal" / "state.db"
    db.parent.mkdir()
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE other (x)")  # the writer is mid-way: a -wal, no meta table
    assert db.with_name("state.db-wal").exists()
    with pytest.raises(StateMissing, match="still being created"):
        StateReader(db)
    writer.close()


@pytest.mark.skipif(not hasattr(os, "fork") or os.geteuid() != 0, reason="acting as another user needs root")
def test_group_member_reads_the_state_after_the_daemon_stopped(cfg):
    """An admin in the service's group (not its user) opens the TUI after the
    daemon has stopped: SQLite removed the WAL files on close and the reader
    may not create them in the 0750 folder, yet the last state is readable."""
    import shutil
    import tempfile

    uid, gid = 48151, 48152  # an unprivileged user whose only group is the service's
    base = Path(tempfile.mkdtemp(prefix="piu-group-"))
    try:
        os.chmod(base, 0o755)
        db = base / "state" / "state.db"
        store = StateStore(db)
        m = check({"request_id": "r1", "dataset": "synthetic", "identities": ["person-0001"]}, cfg)
        store.record_accepted("c1", "r1.json", "00", m, {"person-0001": ("requested", 6, None)})
        store.close()
        assert sorted(p.name for p in db.parent.iterdir()) == ["state.db"]  # daemon gone: no -wal, no -shm
        for p in (db.parent, db):
            os.chown(p, 0, gid)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the group member
            result = b"ok"
            try:
                os.setgroups([gid])
                os.setgid(gid)
                os.setuid(uid)
                with StateReader(db) as r:
                    if [j.id for j in r.jobs()] != ["r1"]:
                        result = b"wrong rows"
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                result = repr(exc).encode()
            os.write(write, result)
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        with os.fdopen(read, "rb") as f:
            assert f.read().decode() == "ok"
        assert sorted(p.name for p in db.parent.iterdir()) == ["state.db"]  # and it wrote nothing there
    finally:
        shutil.rmtree(base)


def test_registry_cleanup_and_prune(tmp_path):
    import torch
    from piu_engine.core.checkpoint import save_checkpoint
    from piu_engine.service.registry import Registry

    store = StateStore(tmp_path / "s.db")
    reg = Registry(tmp_path / "models").ensure()
    for v in range(4):
        staged = reg.staging_path(f"b{v}")
        sha = save_checkpoint({"w": torch.full((2,), float(v))}, staged)
        rel = reg.install(staged, "synthetic", v, sha)
        store.add_version("synthetic", v, v - 1 if v else None, sha, rel, "forget", None, [], [], {})
    # a crash after the file moved in but before the DB recorded it leaves an orphan
    orphan = reg.root / "synthetic" / "4"
    orphan.mkdir()
    (orphan / "model.pt").write_bytes(b"partial")
    (reg.staging / "dead.pt").write_bytes(b"partial")
    removed = reg.cleanup(store)
    assert orphan in removed and not orphan.exists() and not (reg.staging / "dead.pt").exists()
    assert reg.prune(store, "synthetic", keep=1) == [1, 2]
    assert (reg.root / "synthetic/0/model.pt").exists() and (reg.root / "synthetic/3/model.pt").exists()
    assert not (reg.root / "synthetic/1/model.pt").exists()
    assert reg.verify(store.current_version("synthetic")).exists()
    store.close()


def test_example_manifests_are_valid(cfg):
    root = Path(__file__).resolve().parents[1] / "examples" / "manifests"
    files = sorted(root.glob("*.json"))
    assert files
    for f in files:
        doc = json.loads(f.read_text())
        if f.name.startswith("bad-"):
            with pytest.raises(ManifestError):
                check(doc, cfg)
        else:
            check(doc, cfg)


def test_service_modules_never_import_the_ui():
    import subprocess
    import sys

    mods = ["piu_engine.service.daemon", "piu_engine.service.state", "piu_engine.commands.service"]
    code = f"import sys, importlib\nfor m in {mods!r}: importlib.import_module(m)\nprint('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
