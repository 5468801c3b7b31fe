"""The ``[service]`` section of ``config.toml``: spool, state, registry, gate.

Every key has a default, so a config file without ``[service]`` gives a
working service with its files beside the config file (``jobs/``,
``.piu/state``, ``.piu/models``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from piu_engine.common.errors import ConfigError
from piu_engine.common.settings import register_section


@dataclass(frozen=True)
class GateConfig:
    """Acceptance gate: the current pointer moves only when a run passes it."""

    enabled: bool = True
    mia_tolerance: float = 0.1  # MIA (forget vs unseen evaluation part) must be in 0.5 +- this
    max_test_acc_drop: float = 0.05  # test accuracy may fall at most this much below the parent's
    min_mia_samples: int = 50  # MIA is gated only with at least this many images on each side
    min_mia_identities: int = 10  # ... and at least this many identities on each side
    min_test_samples: int = 50  # test accuracy is gated only on at least this many test images
    # with a reference pool: the per-person verdicts a forgotten person may get (the rest fail the run)
    audit_verdicts: tuple[str, ...] = ("indistinguishable",)

    def validate(self, key: str) -> None:
        if not 0.0 <= self.mia_tolerance <= 0.5:
            raise ConfigError(f"{key}.mia_tolerance: must be in [0, 0.5], got {self.mia_tolerance}")
        if not 0.0 <= self.max_test_acc_drop <= 1.0:
            raise ConfigError(f"{key}.max_test_acc_drop: must be in [0, 1], got {self.max_test_acc_drop}")
        verdicts = ("indistinguishable", "still recognisable", "conspicuously forgotten")
        for v in self.audit_verdicts:
            if v not in verdicts:
                raise ConfigError(f"{key}.audit_verdicts: expected some of {', '.join(verdicts)}, got {v!r}")
        for name in ("min_mia_samples", "min_mia_identities", "min_test_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{key}.{name}: must be >= 1")


@dataclass(frozen=True)
class ServiceConfig:
    jobs_dir: str = "jobs"  # spool: drop manifests here
    state_dir: str = ".piu/state"  # SQLite state database and the instance lock
    models_dir: str = ".piu/models"  # model versions: <dataset>/<n>/model.pt
    preset: str = ""  # scale preset of the served models; "" = bench.preset
    polling: bool = False  # poll jobs/ instead of inotify (network filesystems)
    rescan_seconds: float = 5.0  # full rescan of jobs/ this often, whatever the watcher says
    settle_seconds: float = 0.5  # a file not known whole (see arrivals) is taken once unchanged this long
    max_parallel: int = 1  # unlearning runs at once (one worker process each)
    devices: tuple[str, ...] = ()  # one run per device, e.g. ["cuda:0", "cuda:1"]; () = engine.device
    batch_size: int = 16  # most requests coalesced into one unlearning run
    coalesce_seconds: float = 1.0  # a run starts once no manifest arrived for this long (at most 10x this wait)
    max_attempts: int = 3  # starts of a job (crash, kill -9) before it ends failed
    max_manifest_bytes: int = 65536  # larger manifest files are rejected unread
    max_forget_share: float = 0.25  # most training identities one request may name (share)
    keep_versions: int = 0  # model files kept besides version 0 and current; 0 = keep all
    control_timeout_seconds: float = 30.0  # how long cancel/retry/train wait for a running daemon
    gate: GateConfig = field(default_factory=GateConfig)

    def validate(self, key: str) -> None:
        for name in ("jobs_dir", "state_dir", "models_dir"):
            if not getattr(self, name):
                raise ConfigError(f"{key}.{name}: must not be empty")
        if self.preset:
            from piu_engine.core.config import PRESETS

            if self.preset not in PRESETS:
                raise ConfigError(f"{key}.preset: expected one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.rescan_seconds <= 0:
            raise ConfigError(f"{key}.rescan_seconds: must be > 0")
        if self.settle_seconds < 0:
            raise ConfigError(f"{key}.settle_seconds: must be >= 0")
        if self.max_parallel < 1:
            raise ConfigError(f"{key}.max_parallel: must be >= 1")
        for i, dev in enumerate(self.devices):
            if not (dev in ("cpu", "cuda") or dev.startswith("cuda:")):
                raise ConfigError(f"{key}.devices[{i}]: expected 'cpu', 'cuda' or 'cuda:N', got {dev!r}")
        if self.batch_size < 1:
            raise ConfigError(f"{key}.batch_size: must be >= 1")
        if self.coalesce_seconds < 0:
            raise ConfigError(f"{key}.coalesce_seconds: must be >= 0")
        if self.max_attempts < 1:
            raise ConfigError(f"{key}.max_attempts: must be >= 1")
        if self.max_manifest_bytes < 64:
            raise ConfigError(f"{key}.max_manifest_bytes: must be >= 64")
        if not 0.0 < self.max_forget_share <= 1.0:
            raise ConfigError(f"{key}.max_forget_share: must be in (0, 1], got {self.max_forget_share}")
        if self.keep_versions < 0:
            raise ConfigError(f"{key}.keep_versions: must be >= 0")
        if self.control_timeout_seconds <= 0:
            raise ConfigError(f"{key}.control_timeout_seconds: must be > 0")


register_section("service")(ServiceConfig)


def service_config(cfg) -> ServiceConfig:
    """The ``[service]`` section of a loaded config (defaults when absent)."""
    try:
        return cfg.section("service")
    except KeyError:
        return ServiceConfig()
