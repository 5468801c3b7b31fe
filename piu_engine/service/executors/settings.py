"""The ``[executor]`` section of ``config.toml``: where unlearning runs execute.

``kind = "local"`` (the default) runs each run in a worker process on this
machine (``service.max_parallel``, ``service.devices``). ``kind = "ray"``
sends each run to a Ray cluster as one task; the daemon stays the only
owner of the state database and of retries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from piu_engine.common.errors import ConfigError
from piu_engine.common.settings import register_section

EXECUTOR_KINDS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorConfig:
    kind: str = "local"  # local | ray
    address: str = "auto"  # ray: "auto" (a cluster started on this machine), "HOST:6379" or "ray://HOST:10001"
    num_gpus: float = 1.0  # ray: GPUs one run reserves (0 on CPU-only clusters)
    num_cpus: float = 1.0  # ray: CPUs one run reserves
    resources: dict[str, float] = field(default_factory=dict)  # ray: custom resources one run needs
    shared_path: str = ""  # ray: this workspace's folder as the workers see it; "" = the same path
    namespace: str = "piu"  # ray: namespace of the daemon's job on the cluster
    connect_timeout_seconds: float = 10.0  # ray: how long start-up waits for the cluster before failing

    def validate(self, key: str) -> None:
        if self.kind not in EXECUTOR_KINDS:
            raise ConfigError(f"{key}.kind: expected one of {', '.join(EXECUTOR_KINDS)}, got {self.kind!r}")
        if not self.address.strip():
            raise ConfigError(f'{key}.address: must not be empty (use "auto" or "HOST:PORT")')
        if self.num_gpus < 0:
            raise ConfigError(f"{key}.num_gpus: must be >= 0")
        if self.num_cpus < 0:
            raise ConfigError(f"{key}.num_cpus: must be >= 0")
        for name, amount in self.resources.items():
            if amount < 0:
                raise ConfigError(f"{key}.resources.{name}: must be >= 0")
            if name in ("CPU", "GPU"):
                raise ConfigError(f"{key}.resources.{name}: use {key}.num_{name.lower()}s instead")
        if self.connect_timeout_seconds <= 0:
            raise ConfigError(f"{key}.connect_timeout_seconds: must be > 0")


register_section("executor")(ExecutorConfig)


def executor_config(cfg) -> ExecutorConfig:
    """The ``[executor]`` section of a loaded config (defaults when absent)."""
    try:
        return cfg.section("executor")
    except KeyError:
        return ExecutorConfig()
