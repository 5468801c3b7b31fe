"""Service commands: workspace, models, manifests, the daemon and its queue.

``piu init``, ``piu train``, ``piu model import|list``, ``piu validate``,
``piu submit``, ``piu daemon``, ``piu batch``, ``piu status``,
``piu jobs show``, ``piu cancel``, ``piu retry``, ``piu identities``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from piu_engine.core.config import load_config
from piu_engine.service.jobstate import ACTIVE_STATES, JobState


def _cmd_error(msg: str) -> Exception:
    from piu_engine.common.errors import CommandError

    return CommandError(msg)


def _workspace(args):
    from piu_engine.service.workspace import Workspace

    return Workspace.from_config(load_config(args.config))


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


# ------------------------------------------------------------------ init
def cmd_init(args) -> int:
    from piu_engine.service.workspace import init_workspace

    try:
        config = init_workspace(Path(args.dir), args.preset, force=args.force)
    except (FileExistsError, ValueError) as exc:
        raise _cmd_error(str(exc)) from None
    print(f"workspace ready: {config}")
    print(f"next: cd {args.dir} && piu train && piu daemon   (then drop manifests into jobs/)")
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
    from piu_engine.core.audit.manifest import list_pools

    client = _client(args)
    rows = client.versions(args.dataset)
    found = list_pools(client.ws.cfg.resolve(client.ws.cfg.engine.cache_dir), args.dataset)
    if args.json:
        _print_json([r.__dict__ for r in rows])
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
    for p in found:
        state = f"built {p['completed']}" if p["completed"] else f"{p['done']} of {p['k']} models built so far"
        print(f"reference pool: {p['dataset']} (preset {p['preset']}), {p['k']} models, pool seed {p['seed']}, {state}")
    if rows and not found:
        print("reference pool: none (build one with `piu audit pool` so every request gets a per-person audit)")
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

    cfg = load_config(args.config)
    try:
        return run_service(cfg, mode=args.command, polling=True if args.polling else None)
    except WorkspaceBusy as exc:
        print(f"piu {args.command}: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except ExecutorUnavailable as exc:
        print(f"piu {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def _job_line(j) -> str:
    prog = ""
    if j.state == JobState.RUNNING:
        prog = f"{j.phase or ''} {100 * (j.progress or 0):.0f}%".strip()
    m = j.metrics or {}
    mia = f"mia {m['mia']:.3f}" if isinstance(m.get("mia"), (int, float)) else ""
    acc = f"acc {m['test_acc']:.3f}" if isinstance(m.get("test_acc"), (int, float)) else ""
    ver = f"v{j.version}" if j.version is not None else ""
    err = (
        (j.error or "").splitlines()[0][:70]
        if j.state in (JobState.FAILED, JobState.REJECTED, JobState.CANCELLED) and j.error
        else ""
    )
    return (
        f"{j.id[:30]:<30} {j.state:<9} {len(j.identities):>4} {j.method or '-':<10} {ver:>5} "
        f"{acc:<10} {mia:<10} {j.gate or '-':<9} {prog}{err}"
    )


def cmd_status(args) -> int:
    client = _client(args)
    status = client.status()
    if status is None:
        if args.json:
            _print_json({"daemon": None, "models": [], "counts": {}, "jobs": []})
        else:
            print(f"no service state yet at {client.ws.db_path}; start `piu daemon` or run `piu batch`")
        return 0
    hb, models, counts, jobs = status.heartbeat, status.models, status.counts, status.jobs
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
    else:
        alive = "running" if hb.alive() else f"not running (last seen {_when(hb.updated_at)})"
        print(f"service: {alive}; piu {hb.mode} pid {hb.pid} on {hb.host}, device {hb.device}")
    for v in models:
        print(
            f"model: {v.dataset} version {v.version} ({len(v.forgotten)} identities forgotten), sha256 {v.sha256[:16]}"
        )
    print("jobs: " + (", ".join(f"{n} {s}" for s, n in counts.items() if n) or "none"))
    shown = (
        jobs
        if args.all
        else [j for j in jobs if j.state in ACTIVE_STATES] + [j for j in jobs if j.state not in ACTIVE_STATES][-20:]
    )
    if shown:
        print(
            f"\n{'id':<30} {'state':<9} {'ids':>4} {'method':<10} {'model':>5} {'test':<10} {'MIA':<10} "
            f"{'gate':<9} progress"
        )
        for j in shown:
            print(_job_line(j))
    return 0


def cmd_jobs_show(args) -> int:
    client = _client(args)
    ws = client.ws
    detail = client.job(args.id, events=10)
    if detail is None:
        raise _cmd_error(f"no job {args.id!r}")
    job, idents, events = detail.job, detail.identities, detail.events
    if args.json:
        d = dict(job.__dict__, identities_detail=idents, recent_events=[e.__dict__ for e in events])
        _print_json(d)
        return 0
    report = Path(job.report_dir) / "report.txt" if job.report_dir else None
    if report is not None and report.exists():
        print(report.read_text("utf-8"), end="")
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
    p = sub.add_parser("init", help="create a ready workspace (config.toml, jobs/, state and model folders)")
    p.add_argument("dir")
    p.add_argument("--preset", choices=("tiny", "default"), default="default")
    p.add_argument("--force", action="store_true", help="overwrite an existing config.toml")
    p.set_defaults(func=_private(cmd_init))

    p = sub.add_parser("train", help="train the original model (version 0) of a dataset")
    p.add_argument("--dataset", default="", help="configured dataset (default: bench.dataset)")
    p.add_argument("--preset", default="", help="scale preset (default: service.preset, else bench.preset)")
    p.set_defaults(func=_private(cmd_train))

    p = sub.add_parser("model", help="model registry: import a checkpoint, list versions")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    q = msub.add_parser("import", help="register your own checkpoint (a state dict) as version 0")
    q.add_argument("file")
    q.add_argument("--dataset", default="")
    q.set_defaults(func=_private(cmd_model_import))
    q = msub.add_parser("list", help="list model versions")
    q.add_argument("--dataset", default=None)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_model_list)

    p = sub.add_parser("validate", help="check a forget-request manifest without submitting it")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("submit", help="validate a manifest and drop it into jobs/ atomically")
    p.add_argument("file")
    p.set_defaults(func=_private(cmd_submit))

    for name, text in (
        ("daemon", "run the forget-request service in the foreground (for systemd)"),
        ("batch", "process every pending request, then exit (0 = all succeeded; for cron)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--polling", action="store_true", help="poll jobs/ (network filesystems)")
        p.set_defaults(func=cmd_daemon)

    p = sub.add_parser("status", help="service, models and jobs")
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", action="store_true", help="list every job, not only the recent ones")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("jobs", help="inspect jobs")
    jsub = p.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    q = jsub.add_parser("show", help="one job: its report, or its progress while it runs")
    q.add_argument("id")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_jobs_show)

    p = sub.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("id")
    p.set_defaults(func=_private(cmd_cancel))

    p = sub.add_parser("retry", help="queue a failed or cancelled job again")
    p.add_argument("id")
    p.set_defaults(func=_private(cmd_retry))

    p = sub.add_parser("identities", help="training identities and whether they were forgotten")
    p.add_argument("--dataset", default="")
    p.add_argument("--forgotten", action="store_true", help="only identities already forgotten")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_identities)
