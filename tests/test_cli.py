"""The `piu` command as an SSH admin meets it: --version, "did you mean", help on
every argument, `piu jobs list` filters, a `piu status` that fits 100 columns in
the TUI's job order, clear errors for a missing or misnamed config, the
command that starts a daemon that is down, the files `piu init` writes, and
the README's quick start run as written.

Everything runs the real entry point (``main(argv)`` in process, or the
installed ``piu`` / ``python -m piu_engine.cli`` in a subprocess) on real
workspaces and state databases.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

import pytest
from piu_engine.cli import build_parser, main
from piu_engine.service import client as client_mod
from piu_engine.service import state as state_mod

from test_tui import NAMES, T0, _accept, _manifest, build_state

ROOT = Path(__file__).resolve().parents[1]
PIU_BIN = Path(sys.executable).with_name("piu")
pytestmark = pytest.mark.timeout(600)


def run_piu(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter, with no $PIU_CONFIG unless ``env`` sets one."""
    base = {k: v for k, v in os.environ.items() if k != "PIU_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "piu_engine.cli", *map(str, args)],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def usage_error(capsys, argv: list[str]) -> str:
    """argparse's exit status 2 and its message."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def state(tmp_path, monkeypatch):
    """A workspace (``piu init --preset tiny``) whose state database holds a job in every state,
    a long-named job, and one received a minute ago; the store's frozen clock is undone after."""
    s = build_state(tmp_path, monkeypatch)
    long_id = "dsr-2026-" + "x" * 90 + "-tail42"
    s.at(T0 - 30)
    _accept(s, _manifest(long_id, NAMES[16:18], method="advanced-neggrad"))
    s.store.set_job(long_id, state="failed", finished_at=T0 - 20, error="worker crashed: " + "boom " * 60)
    s.at(time.time() - 60)
    _accept(s, _manifest("req-recent", [NAMES[20]]))
    s.store.close()
    monkeypatch.setattr(state_mod, "time", time)  # back to the real clock: the heartbeat is old, the daemon down
    s.long_id = long_id
    return s


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------ --version, did you mean, help
def test_version_comes_from_the_package_metadata():
    r = subprocess.run([str(PIU_BIN), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"piu {version('piu')}"


def test_mistyped_commands_choices_and_options_get_a_suggestion(capsys, tmp_path):
    err = usage_error(capsys, ["stauts"])
    assert "invalid choice: 'stauts'" in err and "did you mean 'status'?" in err
    err = usage_error(capsys, ["jobs", "lst"])
    assert "did you mean 'list'?" in err
    err = usage_error(capsys, ["init", str(tmp_path / "w"), "--preset", "tiyn"])
    assert "did you mean 'tiny'?" in err and not (tmp_path / "w").exists()
    err = usage_error(capsys, ["status", "--jsno"])
    assert "unrecognized arguments: --jsno" in err and "did you mean '--json'?" in err
    assert "usage: piu status" in err  # the usage of the subcommand that was meant
    err = usage_error(capsys, ["jobs", "list", "--state", "done,runing"])
    assert "unknown job state 'runing'; did you mean 'running'?" in err
    err = usage_error(capsys, ["xyzzy"])  # nothing close: no suggestion, the choices are listed
    assert "did you mean" not in err and "choose from" in err


def _walk(parser: argparse.ArgumentParser, path: str):
    for action in parser._actions:
        yield path, action
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield f"{path} {choice.dest}", choice
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")


def test_every_argument_of_every_subcommand_has_help():
    parser = build_parser()
    seen, missing = set(), []
    for path, action in _walk(parser, "piu"):
        if isinstance(action, argparse._HelpAction):
            continue
        seen.add(path)
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
            missing.append(f"{path}: {action.option_strings or action.dest}")
    assert not missing, "arguments without help:\n" + "\n".join(missing)
    assert {"piu jobs list", "piu model import", "piu data check", "piu audit pool", "piu tui"} <= seen


# ------------------------------------------------------------------ piu jobs list
def ids_of(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("id "))
    return [line.split()[0] for line in lines[start + 1 :] if line.strip() and not line.startswith("(")]


def test_jobs_list_filters(state, capsys):
    cfg = state.config
    code, out, _ = cli(capsys, "--config", cfg, "jobs", "list", "--json")
    assert code == 0
    everything = json.loads(out)
    assert len(everything) == 8
    assert [j["state"] for j in everything[:3]] == ["running", "queued", "queued"]

    def listed(*flags) -> list[str]:
        code, out, err = cli(capsys, "--config", cfg, "jobs", "list", "--json", *flags)
        assert code == 0, err
        return [j["id"] for j in json.loads(out)]

    assert listed("--state", "failed") == [state.long_id, "req-1002"]  # newest finished first
    assert listed("--state", "queued,running") == ["req-1004", "req-1005", "req-recent"]
    assert listed("--state", "done", "--state", "cancelled") == ["req-1003", "req-1001"]
    assert listed("--identity", NAMES[4]) == ["req-1004"]  # 1004 asked for NAMES[3:6]
    assert listed("--identity", NAMES[1], "--identity", NAMES[7]) == ["req-1002", "req-1001"]
    assert listed("--identity", "nobody-at-all") == []
    assert listed("--dataset", "synthetic", "--state", "cancelled") == ["req-1003"]
    since = datetime.fromtimestamp(T0 - 1500).isoformat(timespec="seconds")  # a local date and time
    assert set(listed("--since", since)) == {"req-1003", "req-1004", "req-1005", state.long_id, "req-recent"}
    assert listed("--since", "10m") == ["req-recent"]  # an age, from now
    assert listed("--since", "2999-01-01") == []
    assert listed("--limit", "2") == [j["id"] for j in everything[:2]]
    assert listed("--state", "done,failed", "--limit", "1") == [state.long_id]

    code, out, _ = cli(capsys, "--config", cfg, "jobs", "list", "--state", "cancelled")
    assert code == 0 and ids_of(out) == ["req-1003"] and "state" in out.splitlines()[0]
    code, out, _ = cli(capsys, "--config", cfg, "jobs", "list", "--identity", "nobody")
    assert code == 0 and out.strip() == "no jobs match"

    code, _, err = cli(capsys, "--config", cfg, "jobs", "list", "--dataset", "synthtic")
    assert code == 2 and "unknown dataset 'synthtic'; did you mean 'synthetic'?" in err
    for bad, message in (
        (["--since", "yesterday"], "expected an age (30m, 3h, 2d, 1w), a date"),
        (["--limit", "0"], "must be at least 1"),
        (["--state", "finished"], "unknown job state 'finished'"),
    ):
        assert message in usage_error(capsys, ["--config", str(cfg), "jobs", "list", *bad])


def test_since_ages_and_dates():
    from piu_engine.commands.service import parse_since

    assert parse_since("3h", now=T0) == T0 - 3 * 3600
    assert parse_since("90m", now=T0) == T0 - 5400
    assert parse_since("2d", now=T0) == T0 - 2 * 86400
    assert parse_since("1w", now=T0) == T0 - 7 * 86400
    assert parse_since("2026-12-01") == datetime(2026, 12, 1).timestamp()
    assert parse_since("2026-12-01T09:30") == datetime(2026, 12, 1, 9, 30).timestamp()
    with pytest.raises(argparse.ArgumentTypeError):
        parse_since("3 hours")


# ------------------------------------------------------------------ piu status
def test_status_fits_100_columns_in_the_tuis_job_order(state, capsys):
    from piu_engine.service.client import Client, order_jobs
    from piu_tui.viewmodel.sources import StateSource

    code, out, err = cli(capsys, "--config", state.config, "status")
    assert code == 0, err
    lines = out.splitlines()
    too_wide = [line for line in lines if len(line) > 100 and not line.startswith("start it: ")]
    assert not too_wide, too_wide
    shown = ids_of(out)

    rows = Client(state.ws).status().jobs
    expected = [j.id for j in order_jobs(rows)]
    tui = [j.id for j in StateSource(state.ws.db_path, lambda: T0).dashboard().jobs]
    assert tui == expected  # the dashboard and the CLI share one order ...
    assert len(shown) == len(expected)
    for got, want in zip(shown, expected):  # ... and the CLI shows it (long ids shortened)
        assert got == want or (got.startswith(want[:10]) and got.endswith(want[-6:]) and "…" in got)
    assert shown[:3] == ["req-1004", "req-1005", "req-recent"]  # running, then the queue
    long_line = next(line for line in lines if line.startswith("dsr-2026-"))
    assert "-tail42" in long_line and "advance…grad" in long_line and "worker crashed" in long_line
    assert len(long_line) == 100 and long_line.endswith("…")


def test_status_names_the_problem_a_running_daemon_reports(state, capsys):
    from piu_engine.service.state import StateStore

    store = StateStore(state.ws.db_path)
    store.heartbeat_update("daemon", "cpu", "running", time.time() - 5, problem="disk full: .piu/models (retrying)")
    store.close()
    code, out, err = cli(capsys, "--config", state.config, "status")
    assert code == 0, err
    assert "service: running" in out and "problem: disk full: .piu/models (retrying)" in out
    assert "start it:" not in out


def test_status_lists_the_20_newest_finished_unless_all(state, capsys, monkeypatch):
    from piu_engine.service.state import StateStore

    store = StateStore(state.ws.db_path)
    for k in range(25):
        rid = f"old-{k:02d}"
        store.record_accepted(
            f"x-{rid}.json", f"{rid}.json", "0" * 64, _manifest(rid, [NAMES[22]]), {NAMES[22]: ("requested", 6, None)}
        )
        store.set_job(rid, state="cancelled", finished_at=T0 - 100000 + k, error="cancelled")
    store.close()
    code, out, _ = cli(capsys, "--config", state.config, "status")
    shown = ids_of(out)
    assert code == 0 and len(shown) == 3 + 20  # the three active jobs and the 20 newest finished
    assert "old-00" not in shown and "(10 older finished jobs not shown" in out
    code, out, _ = cli(capsys, "--config", state.config, "status", "--all")
    assert len(ids_of(out)) == 33 and ids_of(out)[-1] == "old-00"


# ------------------------------------------------------------------ config errors
def test_config_naming_a_folder_is_a_clear_error(tmp_path):
    ws = tmp_path / "ws"
    assert main(["init", str(ws), "--preset", "tiny"]) == 0
    for command in (["status"], ["jobs", "list"], ["bench", "--quiet"], ["tui"]):
        r = run_piu("--config", ws, *command, cwd=tmp_path)
        assert r.returncode == 2, (command, r.stderr)
        assert "Traceback" not in r.stderr
        assert f"--config {ws}: is a directory, not a config file; did you mean --config {ws}/config.toml?" in r.stderr
    r = run_piu("status", cwd=tmp_path, env={"PIU_CONFIG": str(ws)})
    assert r.returncode == 2 and "$PIU_CONFIG" in r.stderr and "is a directory" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_piu("--config", empty, "status")
    assert r.returncode == 2 and "no config.toml in it" in r.stderr and "piu init" in r.stderr


@pytest.mark.parametrize("command", [["status"], ["tui"], ["daemon"], ["batch"], ["jobs", "list"]])
def test_no_config_anywhere_is_an_error_naming_where_it_looked(tmp_path, command):
    r = run_piu(*command, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr
    assert f"`piu {' '.join(command)}` found no config.toml" in err
    assert "--config was not given" in err and "$PIU_CONFIG is not set" in err and str(tmp_path) in err
    assert "piu init DIR" in err and "Traceback" not in err
    assert not (tmp_path / "jobs").exists() and not (tmp_path / ".piu").exists()  # nothing served here


# ------------------------------------------------------------------ the daemon is down: how to start it
def test_status_names_the_command_that_starts_the_daemon(state, capsys, monkeypatch, tmp_path):
    units = tmp_path / "systemd"
    units.mkdir()
    monkeypatch.setattr(client_mod, "SYSTEMD_UNIT_DIRS", (units,))
    config = state.config.resolve()

    code, out, _ = cli(capsys, "--config", state.config, "status")
    assert code == 0 and "service: not running (last seen" in out
    hint = next(line for line in out.splitlines() if line.startswith("start it: "))
    assert f"setsid nohup {PIU_BIN} --config {config} daemon >> {config.parent}/.piu/daemon.log 2>&1" in hint
    assert hint.endswith("< /dev/null &")

    unit = (ROOT / "deploy/piu-daemon.service").read_text()
    (units / "piu-daemon.service").write_text(unit)  # installed as shipped: serves /srv/piu, not this one
    _, out, _ = cli(capsys, "--config", state.config, "status")
    assert "setsid nohup" in out and "systemctl" not in out
    (units / "piu-daemon.service").write_text(unit.replace("/srv/piu", str(config.parent)))
    _, out, _ = cli(capsys, "--config", state.config, "status")
    assert "start it: sudo systemctl start piu-daemon" in out and "setsid" not in out

    fresh = tmp_path / "fresh"
    assert main(["init", str(fresh), "--preset", "tiny"]) == 0
    capsys.readouterr()
    code, out, _ = cli(capsys, "--config", fresh / "config.toml", "status")
    assert code == 0 and "service: never started" in out and f"--config {fresh.resolve()}/config.toml daemon" in out


# ------------------------------------------------------------------ piu init: jobs/README.md and examples/
def test_init_writes_a_jobs_readme_and_examples_that_validate(tmp_path):
    ws = tmp_path / "ws"
    r = run_piu("init", ws, "--preset", "tiny")
    assert r.returncode == 0, r.stderr
    assert "examples/one-person.json" in r.stdout and str(PIU_BIN) in r.stdout and "setsid nohup" in r.stdout

    readme = (ws / "jobs/README.md").read_text()
    for needed in ('"dataset": "synthetic"', "identities", "piu validate FILE", "jobs/done/ID/", "piu status"):
        assert needed in readme, needed
    assert str(PIU_BIN) in readme and str(ws.resolve() / "config.toml") in readme

    config = ws / "config.toml"
    r = run_piu("--config", config, "identities", "--json")
    assert r.returncode == 0, r.stderr
    training = {row["identity"] for row in json.loads(r.stdout)}
    examples = sorted((ws / "examples").glob("*.json"))
    assert [p.name for p in examples] == ["one-person.json", "several-people.json", "with-params.json"]
    docs = {p.name: json.loads(p.read_text()) for p in examples}
    assert len(docs["one-person.json"]["identities"]) == 1
    assert len(docs["several-people.json"]["identities"]) > 1
    assert docs["with-params.json"]["params"] and docs["with-params.json"]["compare"] == ["retrain"]
    named = [i for d in docs.values() for i in d["identities"]]
    assert set(named) <= training and len(named) == len(set(named))  # real people, each in one example
    for path in examples:
        r = run_piu("--config", config, "validate", path, "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(r.stdout)["valid"] is True

    broken = ws / "examples/with-params.json"  # the check above can fail: a bad example does
    broken.write_text(json.dumps(dict(docs["with-params.json"], params={"epochs": "four"})))
    assert run_piu("--config", config, "validate", broken).returncode == 1


# ------------------------------------------------------------------ README quick start, as written
def quick_start_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"### Quick start\n.*?```sh\n(.*?)```", text, re.S)
    assert block, "README has no quick-start block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_quick_start_names_piu_and_never_backgrounds_bare():
    lines = quick_start_lines()
    assert lines[0].startswith("PIU=/path/to/repo/.venv/bin/piu")
    assert all(line.startswith(("PIU=", "$PIU ", "cd ", "setsid nohup $PIU ")) for line in lines), lines
    daemon = [line for line in lines if " daemon" in line]
    assert len(daemon) == 1 and "setsid nohup $PIU daemon" in daemon[0] and "> " in daemon[0]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_readme_quick_start_works_as_written(tmp_path):
    """Each line of the quick start, in one shell, from a new home folder; the daemon it starts
    must outlive that shell and its session, and the last line shows the finished report."""
    lines = quick_start_lines()
    *setup, show = lines
    script = "\n".join(["set -e", f"PIU={PIU_BIN}", *setup[1:]]) + "\n"
    env = {k: v for k, v in os.environ.items() if k != "PIU_CONFIG"}
    env["HOME"] = str(tmp_path)
    shell = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # like a login session, hung up below
    )
    out, err = shell.communicate(timeout=1500)
    ws = tmp_path / "piu-ws"
    config = ws / "config.toml"
    assert shell.returncode == 0, out + err
    assert "submitted example-one-person" in out
    try:
        os.killpg(shell.pid, signal.SIGHUP)  # the SSH session ends
    except ProcessLookupError:
        pass
    pid = None
    try:
        deadline = time.time() + 900
        while True:
            status = json.loads(run_piu("--config", config, "status", "--json").stdout)
            pid = (status["daemon"] or {}).get("pid") or pid
            states = {j["id"]: j["state"] for j in status["jobs"]}
            if states.get("example-one-person") in ("done", "failed"):
                break
            assert time.time() < deadline, (status, (ws / ".piu/daemon.log").read_text()[-3000:])
            time.sleep(2)
        assert status["daemon"]["alive"], "the daemon did not outlive its shell"
        r = subprocess.run(
            ["bash", "-c", f"set -e\nPIU={PIU_BIN}\n{show}"], cwd=ws, env=env, capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        assert "PIU forget request example-one-person" in r.stdout
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(120):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.5)
