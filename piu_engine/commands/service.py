"""Service commands: workspace, models, manifests, the daemon and its queue.

``piu init``, ``piu train``, ``piu model import|list``, ``piu validate``,
``piu submit``, ``piu daemon``, ``piu batch``, ``piu status``,
``piu jobs list|show``, ``piu cancel``, ``piu retry``, ``piu identities``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from piu_engine.commands.workspace import load_workspace_config
from piu_engine.service.jobstate import ACTIVE_STATES, REPORTED_STATES, JobState

WIDTH = 100  # `piu status` and `piu jobs list` fit a terminal this wide


def _cmd_error(msg: str) -> Exception:
    from piu_engine.common.errors import CommandError

    return CommandError(msg)


def _workspace(args):
    from piu_engine.service.workspace import Workspace

    return Workspace.from_config(load_workspace_config(args))


def _client(args):
    from piu_engine.service.client import Client

    return Client(_workspace(args))


def _client_errors(func):
    """A refusal by the service is a one-line error, not a traceback."""

    def wrapped(*a, **kw):
        from piu_engine.service.client import ClientError

        try:
            return func(*a, **kw)
        except ClientError as exc:
            raise _cmd_error(str(exc)) from None

    return wrapped


def _print_json(obj: Any) -> None:
    from piu_engine.common import jsonout

    print(jsonout.dumps(obj, indent=2, sort_keys=True))


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: the start and the end kept (ids differ in both)."""
    if len(text) <= width:
        return text
    if width < 8:
        return text[: width - 1] + "…"
    tail = width // 3
    return text[: width - tail - 1] + "…" + text[-tail:]


def _fit(line: str, width: int = WIDTH) -> str:
    """One output line cut to ``width`` columns."""
    return line if len(line) <= width else line[: width - 1] + "…"


# ------------------------------------------------------------------ init
def cmd_init(args) -> int:
    from piu_engine.core.config import load_config
    from piu_engine.service.client import Client, daemon_start_hint
    from piu_engine.service.workspace import (
        Workspace,
        init_workspace,
        piu_executable,
        write_examples,
        write_jobs_readme,
    )

    try:
        config = init_workspace(Path(args.dir), args.preset, force=args.force)
    except (FileExistsError, ValueError) as exc:
        raise _cmd_error(str(exc)) from None
    ws = Workspace.from_config(load_config(config))
    dataset = ws.cfg.bench.dataset
    print(f"reading the identities of dataset {dataset!r} for examples/ ...", file=sys.stderr)
    try:
        identities = Client(ws).identity_lookup(dataset)
        examples = write_examples(ws, identities, force=args.force)
        write_jobs_readme(ws, identities[0], force=True)
    except Exception as exc:  # noqa: BLE001 - the workspace itself is ready; say what is missing
        print(f"piu init: warning: examples/ not written ({exc})", file=sys.stderr)
        examples = []
    piu = piu_executable()
    base = ws.cfg.base_dir.resolve()
    print(f"workspace ready: {config}")
    print("  jobs/README.md: the manifest format, where results land, how to check status")
    for path in examples:
        print(f"  example request: {path.relative_to(base)}")
    print("next:")
    print(f"  cd {base}")
    print(f"  {piu} train                       # version 0: the original model")
    print(f"  {daemon_start_hint(ws)}")
    if examples:
        print(f"  {piu} submit {examples[0].relative_to(base)}")
    print(f"  {piu} status")
    return 0


# ------------------------------------------------------------------ models
def _check_no_model(client, dataset: str) -> None:
    with client.reader() as reader:
        cur = reader.current_version(dataset) if reader else None
    if cur is not None:
        raise _cmd_error(
            f"dataset {dataset!r} already has models (current version {cur.version}); "
            f"version 0 is registered once per dataset"
        )


@_client_errors
def cmd_train(args) -> int:
    import os

    from piu_engine.core.checkpoint import save_checkpoint
    from piu_engine.core.forget import train_original
    from piu_engine.service.registry import Registry

    client = _client(args)
    ws = client.ws
    dataset = args.dataset or ws.cfg.bench.dataset
    ws.cfg.dataset(dataset)
    _check_no_model(client, dataset)
    ws.ensure()
    preset = args.preset or ws.preset

    def on_event(ev) -> None:
        if ev.steps and ev.step == ev.steps or ev.message:
            loss = f" loss {ev.loss:.4f}" if ev.loss is not None else ""
            print(f"  {ev.phase} epoch {ev.epoch}/{ev.epochs}{loss} {ev.message}".rstrip(), file=sys.stderr)

    print(f"training the original model on {dataset!r} (preset {preset})", file=sys.stderr)
    trained = train_original(ws.cfg, dataset, preset, on_event=on_event)
    reg = Registry(ws.models_dir).ensure()
    staged = reg.incoming / f"train-{dataset}-{os.getpid()}.pt"
    sha = save_checkpoint(trained.state_dict, staged)
    print(client.register(dataset, staged, sha, "train", dict(trained.metrics, seconds=trained.seconds)))
    m = trained.metrics
    print("  " + "  ".join(f"{k} {m[k]:.4f}" for k in ("test_acc", "mia", "nomus") if isinstance(m.get(k), float)))
    return 0


@_client_errors
def cmd_model_import(args) -> int:
    import hashlib

    from piu_engine.common.fsio import atomic_write_bytes
    from piu_engine.core.checkpoint import load_checkpoint
    from piu_engine.service.registry import Registry

    client = _client(args)
    ws = client.ws
    dataset = args.dataset or ws.cfg.bench.dataset
    ws.cfg.dataset(dataset)
    _check_no_model(client, dataset)
    src = Path(args.file)
    if not src.is_file():
        raise _cmd_error(f"{src}: no such file")
    try:
        load_checkpoint(src)  # weights_only=True: refuses pickled code
    except Exception as exc:  # noqa: BLE001
        raise _cmd_error(f"{src}: not a loadable state dict of tensors (weights_only): {exc}") from None
    data = src.read_bytes()
    ws.ensure()
    staged = Registry(ws.models_dir).ensure().incoming / f"import-{dataset}-{hashlib.sha256(data).hexdigest()[:12]}.pt"
    atomic_write_bytes(staged, data)
    print(client.register(dataset, staged, hashlib.sha256(data).hexdigest(), "import", {}))
    return 0


def cmd_model_list(args) -> int:
    from piu_engine.core.audit.manifest import AUDIT_POOL, NO_AUDIT_POOL, POOL_LABELS, list_pools, pool_role

    client = _client(args)
    rows = client.versions(args.dataset)
    found = list_pools(client.ws.cfg.resolve(client.ws.cfg.engine.cache_dir), args.dataset)
    if args.json:  # the versions and the reference pools the audit tests against (size, seeds, when built)
        _print_json({"versions": [r.__dict__ for r in rows], "reference_pools": found})
        return 0
    if not rows:
        print("no models yet: run `piu train` or `piu model import FILE`")
        return 0
    print(f"{'dataset':<12} {'ver':>4} {'parent':>6} {'source':<7} {'forgotten':>9}  {'created':<19}  sha256")
    for r in rows:
        mark = " *" if r.current else (" (file pruned)" if r.pruned else "")
        print(
            f"{r.dataset:<12} {r.version:>4} {'-' if r.parent is None else r.parent:>6} {r.source:<7} "
            f"{len(r.forgotten):>9}  {_when(r.created_at):<19}  {r.sha256[:16]}{mark}"
        )
    print("* = current")
    roles = [pool_role(p, client.ws.cfg.audit) for p in found]
    for p, role in zip(found, roles):
        state = f"built {p['completed']}" if p["completed"] else f"{p['done']} of {p['k']} models built so far"
        what = f"{p['dataset']} (preset {p['preset']}), {p['k']} models, pool seed {p['seed']}"
        print(f"{POOL_LABELS[role]}: {what}, {state}")
    if rows and AUDIT_POOL not in roles:
        print(NO_AUDIT_POOL)
    return 0


# ------------------------------------------------------------------ manifests
def cmd_validate(args) -> int:
    manifest, problems = _client(args).check_file(Path(args.file))
    if args.json:
        _print_json(
            {
                "file": args.file,
                "valid": not problems,
                "problems": problems,
                "manifest": manifest.to_dict() if manifest else None,
            }
        )
    elif problems:
        print(f"{args.file}: INVALID")
        for p in problems:
            print(f"  - {p}")
    else:
        print(
            f"{args.file}: valid; request_id {manifest.request_id}, {len(manifest.identities)} identities, "
            f"dataset {manifest.dataset}, method {manifest.method}"
        )
    return 0 if not problems else 1


@_client_errors
def cmd_submit(args) -> int:
    from piu_engine.service.client import SubmitRefused

    try:
        sent = _client(args).submit_file(Path(args.file))
    except SubmitRefused as exc:
        print(f"{args.file}: not submitted", file=sys.stderr)
        for p in exc.problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"submitted {sent.request_id} -> {sent.path}")
    return 0


# ------------------------------------------------------------------ service
def cmd_daemon(args) -> int:
    from piu_engine.service.daemon import EXIT_BUSY, EXIT_UNAVAILABLE, run_service
    from piu_engine.service.executors.base import ExecutorUnavailable
    from piu_engine.service.workspace import WorkspaceBusy

    cfg = load_workspace_config(args)
    try:
        return run_service(cfg, mode=args.command, polling=True if args.polling else None)
    except WorkspaceBusy as exc:
        print(f"piu {args.command}: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except ExecutorUnavailable as exc:
        print(f"piu {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


JOB_HEADER = (
    f"{'id':<26} {'state':<9} {'ids':>3} {'method':<12} {'model':>5} {'test':>5} {'MIA':>5} {'gate':<9} "
    "progress / error"
)


def _metric(m: dict[str, Any], key: str) -> str:
    v = m.get(key)
    return f"{v:.3f}" if isinstance(v, (int, float)) and v == v else "-"


def _job_line(j) -> str:
    """One job in at most :data:`WIDTH` columns (long ids keep their start and end)."""
    tail = ""
    if j.state == JobState.RUNNING:
        tail = f"{j.phase or ''} {100 * (j.progress or 0):.0f}%".strip()
    elif j.state in (JobState.FAILED, JobState.REJECTED, JobState.CANCELLED) and j.error:
        tail = j.error.strip().splitlines()[0] if j.error.strip() else ""
    m = j.metrics or {}
    ids = len(j.identities)
    line = (
        f"{_shorten(j.id, 26):<26} {j.state:<9} {ids if ids < 1000 else '1k+':>3} "
        f"{_shorten(j.method or '-', 12):<12} {'v' + str(j.version) if j.version is not None else '':>5} "
        f"{_metric(m, 'test_acc'):>5} {_metric(m, 'mia'):>5} {j.gate or '-':<9} {tail}"
    )
    return _fit(line.rstrip())


def _print_jobs(jobs) -> None:
    print(JOB_HEADER)
    for j in jobs:
        print(_job_line(j))


def cmd_status(args) -> int:
    from piu_engine.service.client import daemon_start_hint, order_jobs

    client = _client(args)
    status = client.status()
    if status is None:
        if args.json:
            _print_json({"daemon": None, "models": [], "counts": {}, "jobs": []})
        else:
            print(_fit(f"service: never started (no state yet at {client.ws.db_path})"))
            print(f"start it: {daemon_start_hint(client.ws)}")
        return 0
    hb, models, counts, jobs = status.heartbeat, status.models, status.counts, order_jobs(status.jobs)
    if args.json:
        _print_json(
            {
                "daemon": None if hb is None else dict(hb.__dict__, alive=hb.alive()),
                "models": [
                    {"dataset": v.dataset, "version": v.version, "sha256": v.sha256, "forgotten": len(v.forgotten)}
                    for v in models
                ],
                "counts": counts,
                "jobs": [j.summary() for j in jobs],
            }
        )
        return 0
    if hb is None:
        print("service: never started")
    elif hb.alive():
        print(_fit(f"service: running; piu {hb.mode} pid {hb.pid} on {hb.host}, device {hb.device}"))
    else:
        print(_fit(f"service: not running (last seen {_when(hb.updated_at)}, piu {hb.mode} pid {hb.pid} on {hb.host})"))
    if hb is not None and hb.alive() and hb.problem:
        print(_fit(f"problem: {hb.problem}"))
    if hb is None or not hb.alive():
        print(f"start it: {daemon_start_hint(client.ws)}")
    for v in models:
        print(
            _fit(
                f"model: {v.dataset} version {v.version} ({len(v.forgotten)} identities forgotten), "
                f"sha256 {v.sha256[:16]}"
            )
        )
    print(_fit("jobs: " + (", ".join(f"{n} {s}" for s, n in counts.items() if n) or "none")))
    active = [j for j in jobs if j.state in ACTIVE_STATES]
    finished = [j for j in jobs if j.state not in ACTIVE_STATES]
    shown = jobs if args.all else active + finished[:20]
    if shown:
        print()
        _print_jobs(shown)
    if len(shown) < len(jobs):
        print(f"({len(jobs) - len(shown)} older finished jobs not shown: `piu status --all` or `piu jobs list`)")
    return 0


# ------------------------------------------------------------------ jobs list
STATE_NAMES = tuple(s.value for s in JobState)
_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def did_you_mean(value: str, choices) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(value, [str(c) for c in choices], n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def parse_states(text: str) -> list[str]:
    """``--state running,queued``: job states, each checked."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part not in STATE_NAMES:
            raise argparse.ArgumentTypeError(
                f"unknown job state {part!r}{did_you_mean(part, STATE_NAMES)} (states: {', '.join(STATE_NAMES)})"
            )
        out.append(part)
    if not out:
        raise argparse.ArgumentTypeError(f"expected one or more of {', '.join(STATE_NAMES)}")
    return out


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: an age (``30m``, ``3h``, ``2d``, ``1w``) or a local date / date and time; epoch seconds."""
    m = _AGE.match(text.strip().lower())
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an age (30m, 3h, 2d, 1w), a date (2026-12-01) or a date and time (2026-12-01T09:30), "
            f"got {text!r}"
        ) from None
    return when.timestamp()  # naive: local time, as `piu status` shows times


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def cmd_jobs_list(args) -> int:
    client = _client(args)
    if args.dataset and args.dataset not in client.ws.cfg.datasets:
        configured = sorted(client.ws.cfg.datasets)
        raise _cmd_error(
            f"unknown dataset {args.dataset!r}{did_you_mean(args.dataset, configured)} "
            f"(configured: {', '.join(configured) or 'none'})"
        )
    states = [s for group in args.state or () for s in group]
    jobs = client.jobs(
        states=states, identities=args.identity or (), dataset=args.dataset or None, since=args.since, limit=args.limit
    )
    if args.json:
        _print_json([j.summary() for j in jobs])
        return 0
    if not jobs:
        print("no jobs match" if (states or args.identity or args.dataset or args.since) else "no jobs yet")
        return 0
    _print_jobs(jobs)
    return 0


def cmd_jobs_show(args) -> int:
    client = _client(args)
    ws = client.ws
    detail = client.job(args.id, events=10)
    if detail is None:
        raise _cmd_error(f"no job {args.id!r}")
    job, idents, events = detail.job, detail.identities, detail.events
    from piu_engine.service.report import attempt_record, history_lines

    history = [attempt_record(a) for a in detail.history]
    if args.json:
        d = dict(job.__dict__, identities_detail=idents, recent_events=[e.__dict__ for e in events], history=history)
        _print_json(d)
        return 0
    report = Path(job.report_dir) / "report.txt" if job.report_dir else None
    if report is not None and report.exists() and job.state in REPORTED_STATES:
        print(report.read_text("utf-8"), end="")  # it holds the history up to its end
        return 0
    print(f"job {job.id}: {job.state} (attempt {job.attempts})")
    if job.state == JobState.REJECTED:
        print(f"  file {job.file_name} -> {ws.jobs_dir / 'rejected'}, received {_when(job.created_at)}")
        print("  error: " + (job.error or "").replace("\n", "\n    "))
        return 0
    print(f"  dataset {job.dataset}, method {job.method}, params {json.dumps(job.params)}")
    print(f"  requested by {job.requested_by or '-'}: {job.reason or '-'}")
    print(f"  received {_when(job.created_at)}, started {_when(job.started_at)}")
    for i in idents:
        print(f"  - {i['identity']}: {i['images']} images, {i['status']}")
    if job.state == JobState.RUNNING:
        print(f"  progress: {job.phase} {100 * (job.progress or 0):.0f}%")
        for e in events:
            loss = f" loss {e.loss:.4f}" if e.loss is not None else ""
            print(f"    {_when(e.ts)} {e.phase} epoch {e.epoch}/{e.epochs} step {e.step}/{e.steps}{loss} {e.message}")
    if job.error:
        print("  error: " + job.error.replace("\n", "\n    "))
    if history:
        print("  history:")
        for line in history_lines(history):
            print("    " + line)
    return 0


@_client_errors
def cmd_cancel(args) -> int:
    print(_client(args).cancel(args.id))
    return 0


@_client_errors
def cmd_retry(args) -> int:
    print(_client(args).retry(args.id))
    return 0


def cmd_identities(args) -> int:
    client = _client(args)
    dataset = args.dataset or client.ws.cfg.bench.dataset
    client.ws.cfg.dataset(dataset)
    rows = client.identities(dataset, forgotten_only=args.forgotten)
    if args.json:
        _print_json([r.__dict__ for r in rows])
        return 0
    for r in rows:
        extra = f"  in v{r.version} by {r.job_id} on {_when(r.forgotten_at)}" if r.state == "forgotten" else ""
        unit = "image " if r.images == 1 else "images"
        print(f"{r.identity:<24} {r.images if r.images is not None else '?':>5} {unit}  {r.state}{extra}")
    if not rows:
        print("no identities forgotten yet" if args.forgotten else "no identities")
    return 0


# ------------------------------------------------------------------ parser
def _private(func):
    """Files this command creates are readable by the service's user and group only."""

    def wrapped(args):
        import os

        from piu_engine.service.fsutil import UMASK

        os.umask(UMASK)
        return func(args)

    return wrapped


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init", help="create a ready workspace (config.toml, jobs/ and its README, examples/, state and model folders)"
    )
    p.add_argument("dir", help="the workspace folder (created if missing)")
    p.add_argument(
        "--preset",
        choices=("tiny", "default"),
        default="default",
        help="scale of the built-in synthetic data: tiny (seconds, tests) or default (minutes on a CPU)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing config.toml and examples/")
    p.set_defaults(func=_private(cmd_init))

    p = sub.add_parser("train", help="train the original model (version 0) of a dataset")
    p.add_argument("--dataset", default="", help="configured dataset (default: bench.dataset)")
    p.add_argument("--preset", default="", help="scale preset (default: service.preset, else bench.preset)")
    p.set_defaults(func=_private(cmd_train))

    p = sub.add_parser("model", help="model registry: import a checkpoint, list versions")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION", help="what to do")
    q = msub.add_parser("import", help="register your own checkpoint (a state dict) as version 0")
    q.add_argument("file", help="the checkpoint: a state dict that loads with torch.load(weights_only=True)")
    q.add_argument("--dataset", default="", help="configured dataset (default: bench.dataset)")
    q.set_defaults(func=_private(cmd_model_import))
    q = msub.add_parser("list", help="list model versions")
    q.add_argument("--dataset", default=None, help="only this dataset's versions (default: all)")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.set_defaults(func=cmd_model_list)

    p = sub.add_parser("validate", help="check a forget-request manifest without submitting it")
    p.add_argument("file", help="the manifest (a JSON file)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON (for tools)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("submit", help="validate a manifest and drop it into jobs/ atomically")
    p.add_argument("file", help="the manifest (a JSON file); checked first, nothing is written if invalid")
    p.set_defaults(func=_private(cmd_submit))

    for name, text in (
        ("daemon", "run the forget-request service in the foreground (for systemd)"),
        ("batch", "process every pending request, then exit (0 = all succeeded; for cron)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--polling", action="store_true", help="poll jobs/ (network filesystems)")
        p.set_defaults(func=cmd_daemon)

    p = sub.add_parser("status", help="service, models and jobs")
    p.add_argument("--json", action="store_true", help="print JSON (every job) instead of the summary")
    p.add_argument("--all", action="store_true", help="list every job, not only the active and the 20 latest")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("jobs", help="list and inspect jobs")
    jsub = p.add_subparsers(dest="jobs_command", required=True, metavar="ACTION", help="what to do")
    q = jsub.add_parser("list", help="jobs, filtered: running first, then the queue, then newest finished")
    q.add_argument(
        "--state",
        action="append",
        type=parse_states,
        metavar="STATE[,STATE]",
        help=f"only jobs in these states (repeatable or comma-separated: {', '.join(STATE_NAMES)})",
    )
    q.add_argument("--identity", action="append", metavar="ID", help="only jobs naming this person (repeatable)")
    q.add_argument("--dataset", default="", metavar="NAME", help="only jobs on this configured dataset")
    q.add_argument(
        "--since",
        type=parse_since,
        metavar="WHEN",
        help="only jobs received since: an age (30m, 3h, 2d, 1w) or a local date/time (2026-12-01, 2026-12-01T09:30)",
    )
    q.add_argument("--limit", type=_positive, metavar="N", help="at most N jobs (the first in the order above)")
    q.add_argument("--json", action="store_true", help="print JSON (as `piu status --json` lists jobs)")
    q.set_defaults(func=cmd_jobs_list)
    q = jsub.add_parser("show", help="one job: its report, or its progress while it runs")
    q.add_argument("id", help="the job's id (its request_id)")
    q.add_argument("--json", action="store_true", help="print the job, its people and recent events as JSON")
    q.set_defaults(func=cmd_jobs_show)

    p = sub.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("id", help="the job's id (its request_id)")
    p.set_defaults(func=_private(cmd_cancel))

    p = sub.add_parser("retry", help="queue a failed or cancelled job again")
    p.add_argument("id", help="the job's id (its request_id)")
    p.set_defaults(func=_private(cmd_retry))

    p = sub.add_parser("identities", help="training identities and whether they were forgotten")
    p.add_argument("--dataset", default="", help="configured dataset (default: bench.dataset)")
    p.add_argument("--forgotten", action="store_true", help="only identities already forgotten")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_identities)
