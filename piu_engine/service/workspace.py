"""Where a workspace keeps things, the instance lock, and ``piu init``.

A workspace is a folder with ``config.toml``; its ``[service]`` section
(defaults when absent) names the spool, state and model folders, relative
to the config file.
"""

from __future__ import annotations

import json
import logging
import os
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


def init_workspace(target: Path, preset: str = "tiny", force: bool = False) -> Path:
    """Write a ready workspace: config.toml, jobs/, state and model folders."""
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

    Workspace.from_config(load_config(config)).ensure()
    return config
