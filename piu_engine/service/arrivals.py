"""Which files in ``jobs/`` are known to be whole before they have settled.

A file renamed into ``jobs/`` (how ``piu submit`` and careful scripts deliver)
is whole the moment it appears; a file closed after writing is whole when it
parses as JSON (a writer that appends in several opens leaves an unparsable
prefix). The file watcher records both, with the file's size and mtime at that
moment, so the daemon takes them at once instead of waiting
``service.settle_seconds``. A file that changed since, any other file, and
every file when no watcher runs still waits for the settle rule.
"""

from __future__ import annotations

import json
import os
import threading

MOVED = "moved"
CLOSED = "closed"


def _signature(st: os.stat_result) -> tuple[int, int]:
    return st.st_mtime_ns, st.st_size


class Arrivals:
    """Thread-safe notes from the watcher thread, read by the daemon loop."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[str, tuple[int, int]]] = {}

    def note(self, path: str, how: str) -> None:
        """Record that ``path`` was renamed in (MOVED) or closed after writing (CLOSED)."""
        name = os.path.basename(path)
        if name.startswith(".") or not name.endswith(".json"):
            return
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return
        with self._lock:
            self._seen[name] = (how, _signature(st))

    def drop(self, name: str) -> None:
        with self._lock:
            self._seen.pop(os.path.basename(name), None)

    def is_whole(self, path: str, st: os.stat_result) -> bool:
        """True when ``path`` is unchanged since the watcher saw it complete."""
        name = os.path.basename(path)
        with self._lock:
            seen = self._seen.get(name)
        if seen is None or seen[1] != _signature(st):
            return False
        how = seen[0]
        if how == MOVED:
            return True
        if st.st_size > self.max_bytes:
            return False  # let the normal path reject it with its message
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as fh:
                json.loads(fh.read(self.max_bytes + 1))
        except (OSError, ValueError):
            return False
        return True
