"""Independent trainings (the reference pool's K models) as parallel Ray tasks.

The caller passes the task function (``core.audit.pool.run_pool_task``), so
this module stays free of the ML stack. A task that fails does not stop the
others; the first error is raised once every task has answered. Each pool
task writes its model to the shared folder before it returns, so a rerun
after a lost task trains only what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from piu_engine.service.executors.ray_cluster import RayExecutor

log = logging.getLogger("piu.executor.ray")


def map_on_cluster(
    executor: RayExecutor,
    fn: Callable[..., Any],
    calls: Sequence[tuple],
    on_result: Callable[[Any], None] = lambda result: None,
) -> list[Any]:
    """``fn(*args)`` for every ``args`` in ``calls``, one task each, with the
    executor's resources per task; ``on_result`` sees each result as it arrives."""
    ray = executor.ray
    s = executor.settings
    remote = ray.remote(max_retries=1)(fn).options(
        num_cpus=s.num_cpus, num_gpus=s.num_gpus, resources=dict(s.resources) or None
    )
    pending = [remote.remote(*args) for args in calls]
    results: list[Any] = []
    first_error: BaseException | None = None
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        try:
            result = ray.get(ready[0])
        except Exception as exc:  # noqa: BLE001 - let the other tasks finish; report after
            log.error("a Ray task failed: %s", exc)
            first_error = first_error or exc
            continue
        results.append(result)
        on_result(result)
    if first_error is not None:
        raise first_error
    return results
