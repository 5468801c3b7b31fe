"""What the daemon and every executor backend share: the task sent to a run,
the messages a run sends back, and the protocol every backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

FINAL = ("done", "interrupted", "error")


class ExecutorUnavailable(RuntimeError):
    """The configured executor backend cannot be used (package missing, cluster unreachable)."""


@dataclass
class ExecMessage:
    kind: str  # event | done | interrupted | error | crashed | cancelled
    batch_id: str
    payload: Any


class Executor(Protocol):
    """Every method the daemon calls on a backend (local processes, Ray)."""

    def free_slots(self) -> int: ...

    def submit(self, task: RunTask) -> str:
        """Start ``task``; returns the device it runs on."""

    def poll(self, timeout: float) -> list[ExecMessage]:
        """Messages from running tasks (waiting up to ``timeout`` for the first);
        a task that died without a final message yields 'crashed' or 'cancelled'."""

    def cancel(self, batch_id: str) -> None:
        """Stop a task now (it ends with a 'cancelled' message)."""

    def stop_all(self) -> None:
        """Ask every task to stop at its next step boundary."""

    def kill_all(self) -> None:
        """Kill every task now (a second SIGTERM)."""

    def running(self) -> list[str]: ...

    def describe(self) -> str:
        """Where runs execute, for status (device or cluster)."""

    def close(self) -> None:
        """Release the backend (disconnect from a cluster)."""


@dataclass
class RunTask:
    batch_id: str
    cfg: Any  # piu_engine.core.config.Config (pickled)
    dataset: str
    groups: dict[str, list[str]]
    already_forgotten: list[str]
    method: str
    params: dict[str, Any]
    compare: list[str]
    preset: str
    parent_weights: str
    out_weights: str
    device: str = ""  # "" = engine.device from config
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
