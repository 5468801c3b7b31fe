"""The ``jobs/`` spool directory (maildir style).

::

    jobs/NAME.json                incoming: writers create a temporary name, then rename
    jobs/.claimed/STAMP-NAME.json claimed by the daemon (atomic rename); unique names
    jobs/.control/                cancel/retry/register requests from the CLI to the daemon
    jobs/accepted/ID.json         valid manifests waiting or running (the DB is authoritative)
    jobs/rejected/NAME + NAME.error.txt
    jobs/done/ID/                 report.json, report.txt, manifest.json
    jobs/failed/ID/, jobs/cancelled/ID/   the same for jobs that did not produce a version

Only complete ``*.json`` files are taken: not hidden, and either known whole
(renamed in, or closed and parsable: see :mod:`.arrivals`) or unchanged for
``settle_seconds`` (so even a writer that does not rename is read whole).
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from piu_engine.service.fsutil import FILE_MODE, move, private_dirs, write_private
from piu_engine.service.jobstate import REPORTED_STATES


class Spool:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.claimed = self.root / ".claimed"
        self.control = self.root / ".control"
        self.accepted = self.root / "accepted"
        self.rejected = self.root / "rejected"

    def ensure(self) -> Spool:
        for d in (
            self.root,
            self.claimed,
            self.control,
            self.accepted,
            self.rejected,
            *(self.root / t for t in REPORTED_STATES),
        ):
            private_dirs(d)
        return self

    # -- incoming -------------------------------------------------------
    def incoming(
        self,
        settle_seconds: float = 0.0,
        now: float | None = None,
        whole: Callable[[str, os.stat_result], bool] | None = None,
    ) -> list[Path]:
        """Complete ``*.json`` files waiting in the spool, oldest first.

        ``whole(path, stat)`` may vouch for a file that has not settled yet.
        """
        now = time.time() if now is None else now
        found = []
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        for e in entries:
            if e.name.startswith(".") or not e.name.endswith(".json"):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if now - st.st_mtime < settle_seconds and not (whole and whole(e.path, st)):
                continue  # still being written (or just renamed in: harmless wait)
            found.append((st.st_mtime, e.name))
        return [self.root / name for _, name in sorted(found)]

    def claim(self, path: Path) -> Path | None:
        """Atomically take ``path``; None when someone else took it first."""
        target = self.claimed / f"{time.time_ns():020d}-{secrets.token_hex(3)}-{path.name}"
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None
        try:  # manifests name real people: owner and group only, whatever the writer's umask was
            if stat.S_ISREG(os.lstat(target).st_mode):
                os.chmod(target, FILE_MODE)
        except OSError:
            pass
        return target

    def claimed_files(self) -> list[Path]:
        return sorted(p for p in self.claimed.iterdir() if not p.name.startswith(".tmp"))

    @staticmethod
    def original_name(claimed: Path) -> str:
        parts = claimed.name.split("-", 2)
        return parts[2] if len(parts) == 3 else claimed.name

    # -- outcomes -------------------------------------------------------
    def accept(self, claimed: Path, request_id: str) -> Path:
        dst = self.accepted / f"{request_id}.json"
        move(claimed, dst)
        return dst

    def reject(self, claimed: Path, problems: list[str]) -> Path:
        """Move a bad file to ``rejected/`` beside ``NAME.error.txt``."""
        name = self.original_name(claimed)
        dst = self.rejected / name
        n = 1
        while dst.exists() or dst.is_symlink() or Path(f"{dst}.error.txt").exists():
            stem, dot, ext = name.rpartition(".")
            dst = self.rejected / (f"{stem}.{n}.{ext}" if dot else f"{name}.{n}")
            n += 1
        text = f"{name}: rejected, nothing was run.\n" + "".join(f"- {p}\n" for p in problems)
        write_private(Path(f"{dst}.error.txt"), text)
        move(claimed, dst)
        return dst

    def job_dir(self, state: str, request_id: str) -> Path:
        return self.root / state / request_id

    def finish(self, state: str, request_id: str, files: Mapping[str, str | bytes]) -> Path:
        """Write a terminal job folder (report, manifest) and drop stale ones."""
        out = private_dirs(self.job_dir(state, request_id))
        for name, data in files.items():
            write_private(out / name, data)
        for other in REPORTED_STATES:
            if other != state:
                stale = self.job_dir(other, request_id)
                if stale.is_dir():
                    for f in stale.iterdir():
                        f.unlink()
                    stale.rmdir()
        accepted = self.accepted / f"{request_id}.json"
        if accepted.exists():
            accepted.unlink()
        return out

    # -- writers (CLI side) ----------------------------------------------
    def submit(self, name: str, data: bytes) -> Path:
        """Drop a manifest atomically: temporary hidden name, then rename."""
        dst = self.root / name
        if dst.exists():
            raise FileExistsError(f"{dst} already exists in the spool")
        write_private(dst, data)  # atomic_write_bytes: hidden temp file in jobs/, fsync, rename
        return dst
