"""The thread pool the app's workers run in: daemon threads that quitting never waits for.

Textual runs ``@work(thread=True)`` workers in the event loop's default
executor. The standard pool joins its threads when the loop closes, so ``q``
during a slow read (a dataset's identity list, a state database on NFS)
froze the terminal until the read ended. The reads are read-only and their
results are dropped once the app has gone, so nothing is lost by leaving
them behind.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class DaemonThreadExecutor(ThreadPoolExecutor):
    """Each call in a new daemon thread; ``shutdown`` returns at once."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting worker
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=run, name="piu-worker", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to join: the threads are daemons."""
