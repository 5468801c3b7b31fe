"""Where a workspace keeps things, the instance lock, and ``piu init``.

A workspace is a folder with ``config.toml``; its ``[service]`` section
(defaults when absent) names the spool, state and model folders, relative
to the config file.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from piu_engine.core.config import Config
from piu_engine.service.fsutil import private_dirs, write_private
from piu_engine.service.settings import ServiceConfig, service_config
from piu_engine.service.spool import Spool

log = logging.getLogger("piu.daemon")


@dataclass
class Workspace:
    cfg: Config
    settings: ServiceConfig
    jobs_dir: Path
    state_dir: Path
    models_dir: Path

    @classmethod
    def from_config(cls, cfg: Config) -> Workspace:
        s = service_config(cfg)
        return cls(cfg, s, cfg.resolve(s.jobs_dir), cfg.resolve(s.state_dir), cfg.resolve(s.models_dir))

    @property
    def db_path(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "instance.lock"

    @property
    def owner_path(self) -> Path:
        return self.state_dir / "instance.json"

    @property
    def preset(self) -> str:
        return self.settings.preset or self.cfg.bench.preset

    def spool(self) -> Spool:
        return Spool(self.jobs_dir)

    def ensure(self) -> Workspace:
        private_dirs(self.state_dir)
        private_dirs(self.models_dir)
        self.spool().ensure()
        return self


class WorkspaceBusy(RuntimeError):
    """Another process holds the workspace (a daemon, ``piu batch``, or a CLI change)."""


class InstanceLock:
    """One writer per workspace: an flock on ``state/instance.lock``.

    The kernel drops the lock when the holder dies, kill -9 included.
    """

    def __init__(self, ws: Workspace, role: str):
        self.ws = ws
        self.role = role
        private_dirs(ws.state_dir)
        self.lock = FileLock(str(ws.lock_path), timeout=0)

    def holder(self) -> str:
        try:
            info = json.loads(self.ws.owner_path.read_text())
        except (OSError, ValueError):
            return "another process"
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
        return f"`piu {info.get('role', '?')}` (pid {info.get('pid', '?')}, since {started})"

    def acquire(self, wait: float = 0.0) -> InstanceLock:
        try:
            self.lock.acquire(timeout=wait)
        except Timeout:
            raise WorkspaceBusy(
                f"workspace {self.ws.cfg.base_dir} is already served by {self.holder()}; "
                f"only one instance may run (lock {self.ws.lock_path})"
            ) from None
        try:  # who holds the lock, for the message a second instance prints; the lock itself is the flock
            write_private(
                self.ws.owner_path, json.dumps({"pid": os.getpid(), "role": self.role, "started": time.time()})
            )
        except OSError as exc:  # disk full: the lock is held all the same
            log.warning("could not note the lock holder in %s: %s", self.ws.owner_path, exc)
        return self

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


CONFIG_TEMPLATE = """\
# PIU workspace, created by `piu init --preset {preset}`.
# Relative paths are relative to this file's folder.

[engine]
device = "auto"        # auto | cpu | cuda | cuda:N
seed = 0

[bench]
dataset = "synthetic"
preset = "{preset}"    # tiny (tests, seconds) | default (minutes on a CPU) | paper

[datasets.synthetic]
kind = "synthetic"     # built in: generated locally, nothing to download

[service]
jobs_dir = "jobs"              # drop forget-request manifests (*.json) here
state_dir = ".piu/state"       # state.db (SQLite, WAL) and the instance lock
models_dir = ".piu/models"     # model versions: <dataset>/<n>/model.pt
polling = false                # true on network filesystems (NFS, SMB)
rescan_seconds = 5.0           # full rescan of jobs/ this often (file events are only hints)
settle_seconds = 0.5           # files written in place: taken once unchanged this long (renamed-in: at once)
max_parallel = 1               # unlearning runs at once, one worker process each
batch_size = 16                # most requests coalesced into one run
coalesce_seconds = 1.0         # start a run once no manifest arrived for this long
max_attempts = 3
max_manifest_bytes = 65536
max_forget_share = 0.25        # most training identities one request may name
keep_versions = 0              # model files kept besides v0 and current; 0 = all

[executor]
kind = "local"                 # local: worker processes on this machine | ray: one Ray task per run
# address = "auto"             # ray: "auto", "HOST:6379" or "ray://HOST:10001"
# num_gpus = 1.0               # ray: GPUs one run reserves (0 on CPU-only clusters)

[service.gate]
enabled = true
mia_tolerance = 0.1            # MIA must be within 0.5 +- this ...
min_mia_samples = 50           # ... when >= this many images ...
min_mia_identities = 10        # ... and identities are on each side
max_test_acc_drop = 0.05       # test accuracy may drop at most this below the parent's
min_test_samples = 50
"""


JOBS_README = """\
# jobs/: where forget requests go

Drop a forget-request manifest (a `*.json` file) here, or run `piu submit FILE`,
which checks it first and writes it atomically. Writing a file yourself: write
it under a hidden name (`.NAME.json.tmp`) and rename it in; a renamed-in file is
taken at once. `piu` below is `{piu}`, run in {base}
(or with `--config {config}`).

A manifest is one JSON object:

    {{"request_id": "dsr-0001", "dataset": "{dataset}", "identities": ["{identity}"],
     "requested_by": "Data Protection Office", "reason": "GDPR Art. 17, ticket DSR-0001"}}

- `dataset` (required): a `[datasets.NAME]` of config.toml.
- `identities` (required): the people to forget, as the dataset names them (`piu identities`).
- optional: `request_id` (else derived from the content; never reused), `method`
  (default `piu-fr`), `params` (the method's settings), `compare` (baselines for the
  report, e.g. `["retrain"]`), `requested_by`, `reason`, `priority` (higher runs first).

Check a manifest without submitting it: `piu validate FILE`. Ready-made ones for
this workspace's dataset, with real identities: `examples/` beside this folder.

Where things land:

| where | what |
| --- | --- |
| `jobs/NAME.json` | waiting to be read |
| `jobs/accepted/ID.json` | valid, queued or running |
| `jobs/rejected/NAME` + `NAME.error.txt` | refused, and every reason why; nothing ran |
| `jobs/done/ID/` | `report.txt`, `report.json`, `manifest.json` of a finished request |
| `jobs/failed/ID/`, `jobs/cancelled/ID/` | the same for requests that made no new model |

Checking on requests: `piu status` (daemon, models, jobs), `piu jobs list --state failed`,
`piu jobs show ID` (the report once done), `piu tui` (the terminal UI).
Nothing runs unless the daemon does (`piu daemon`, see `piu status`) or cron runs `piu batch`.
"""


def piu_executable() -> str:
    """The ``piu`` of the running interpreter's environment (a venv's ``bin/piu``), else ``piu``."""
    beside = Path(sys.executable).with_name("piu")  # not resolved: a venv's python is a symlink
    return str(beside) if os.access(beside, os.X_OK) else "piu"


def write_jobs_readme(ws: Workspace, identity: str = "person-0003", force: bool = False) -> Path:
    """``jobs/README.md``: the manifest format in brief, where results land, how to check on them."""
    path = ws.jobs_dir / "README.md"
    if path.exists() and not force:
        return path
    config = ws.cfg.path.resolve() if ws.cfg.path else ws.cfg.base_dir / "config.toml"
    text = JOBS_README.format(
        piu=piu_executable(),
        base=ws.cfg.base_dir.resolve(),
        config=config,
        dataset=ws.cfg.bench.dataset,
        identity=identity,
    )
    write_private(path, text)
    return path


def example_manifests(dataset: str, identities: list[str], max_share: float) -> dict[str, dict]:
    """Example requests on ``dataset``'s real training identities: one person, several, with params.

    Each names other people, so all of them can be submitted one after another."""
    if not identities:
        raise ValueError(f"dataset {dataset!r} has no training identities to build examples from")
    most = max(1, int(max_share * len(identities)))
    pool = list(identities)
    one, pool = pool[:1], pool[1:] or pool
    several, pool = pool[: min(3, most)], pool[min(3, most) :] or pool
    tuned = pool[: min(2, most)]
    dpo = "Data Protection Office <dpo@example.org>"
    return {
        "one-person.json": {
            "request_id": "example-one-person",
            "dataset": dataset,
            "identities": one,
            "requested_by": dpo,
            "reason": "GDPR Art. 17 erasure request, ticket DSR-0001",
        },
        "several-people.json": {
            "request_id": "example-several-people",
            "dataset": dataset,
            "identities": several,
            "requested_by": dpo,
            "reason": "erasure requests DSR-0002 to DSR-0004, handled together",
            "priority": 5,
        },
        "with-params.json": {
            "request_id": "example-with-params",
            "dataset": dataset,
            "identities": tuned,
            "method": "piu-fr",
            "params": {"epochs": 4},
            "compare": ["retrain"],
            "requested_by": "Privacy audit team",
            "reason": "compare PIU-FR (4 epochs) against retraining on the same request",
        },
    }


def write_examples(ws: Workspace, identities: list[str], force: bool = False) -> list[Path]:
    """``examples/*.json`` in the workspace (beside ``jobs/``), for its dataset; existing files are kept."""
    folder = ws.cfg.base_dir / "examples"
    private_dirs(folder)
    written = []
    for name, doc in example_manifests(ws.cfg.bench.dataset, identities, ws.settings.max_forget_share).items():
        path = folder / name
        if force or not path.exists():
            write_private(path, json.dumps(doc, indent=2) + "\n")
        written.append(path)
    return written


def init_workspace(target: Path, preset: str = "tiny", force: bool = False) -> Path:
    """Write a ready workspace: config.toml, jobs/ (with its README.md), state and model folders.

    ``piu init`` also writes ``examples/`` (:func:`write_examples`), which reads the dataset."""
    from piu_engine.core.config import PRESETS

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    config = target / "config.toml"
    if config.exists() and not force:
        raise FileExistsError(f"{config} already exists (use --force to overwrite)")
    write_private(config, CONFIG_TEMPLATE.format(preset=preset))
    os.chmod(config, 0o640)
    from piu_engine.core.config import load_config

    ws = Workspace.from_config(load_config(config)).ensure()
    write_jobs_readme(ws, force=force)
    return config
