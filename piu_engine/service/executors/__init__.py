"""Where unlearning runs execute: local worker processes or a Ray cluster.

The daemon talks to one :class:`~.base.Executor`; :func:`create_executor`
picks the backend ``[executor] kind`` names.
"""

from __future__ import annotations

from piu_engine.service.executors.base import Executor


def create_executor(cfg, settings) -> Executor:
    """The configured backend; ``ray`` connects now (``ExecutorUnavailable`` if it cannot)."""
    from piu_engine.service.executors.local import LocalProcessExecutor
    from piu_engine.service.executors.settings import executor_config

    ex = executor_config(cfg)
    if ex.kind == "ray":
        from piu_engine.service.executors.ray_cluster import RayExecutor

        return RayExecutor(ex, settings.max_parallel, cfg.base_dir).connect()
    return LocalProcessExecutor(settings.max_parallel, settings.devices, cfg.engine.device)
