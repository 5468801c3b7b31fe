"""The ``jobs/`` spool directory (maildir style).

::

    jobs/NAME.json                incoming: writers create a temporary name, then rename
    jobs/.claimed/STAMP-NAME.json claimed by the daemon (atomic rename); unique names
    jobs/.claimed/.name.STAMP-... the original name of a file claimed under a shorter safe one
    jobs/.control/                cancel/retry/register requests from the CLI to the daemon
    jobs/accepted/ID.json         valid manifests waiting or running (the DB is authoritative)
    jobs/rejected/NAME + NAME.error.txt
    jobs/done/ID/                 report.json, report.txt, manifest.json
    jobs/failed/ID/, jobs/cancelled/ID/   the same for jobs that did not produce a version

Only complete ``*.json`` files are taken: not hidden, and either known whole
(renamed in, or closed and parsable: see :mod:`.arrivals`) or unchanged for
``settle_seconds`` (so even a writer that does not rename is read whole). A
file whose mtime lies in the future (clock skew) or that has other hard links
settles on "unchanged since it was first seen", not on its age.

Whatever a name is made of, what reaches the database, the logs and the
reports is :func:`printable`: a file name that is not UTF-8, holds control
characters or is too long to be claimed with a prefix is claimed under a
short safe name (:func:`safe_name`) and its original name is kept beside it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from piu_engine.service.fsutil import FILE_MODE, move, private_dirs, write_private
from piu_engine.service.jobstate import REPORTED_STATES
from piu_engine.service.state import printable, safe_text

log = logging.getLogger("piu.daemon")

MAX_NAME_BYTES = 200  # a name kept as it is; the claim prefix (28 bytes) and `.error.txt` must still fit in 255
SIDECAR = ".name."  # jobs/.claimed/.name.CLAIMED: the original name (bytes) of a file claimed under a safe one
REPORT_FILES = ("report.json", "report.txt", "manifest.json")
PICTURE_FILES = ("audit.png",)  # beside the report when the job was audited (not every report has one)
_STEM_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def plain_name(name: str) -> bool:
    """True when ``name`` can be used as it is: UTF-8, printable, short enough."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return size <= MAX_NAME_BYTES and printable(name) == name


def safe_name(name: str) -> str:
    """``name`` itself when :func:`plain_name`, else a short safe name derived from it
    (readable part + hash of the original bytes), keeping the ``.json`` suffix."""
    if plain_name(name):
        return name
    raw = os.fsencode(name)
    digest = hashlib.sha256(raw).hexdigest()[:12]
    stem = name[: -len(".json")] if name.endswith(".json") else name
    readable = _STEM_CHARS.sub("_", printable(stem)).strip("._")[:48] or "file"
    return f"{readable}~{digest}.json"


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_mtime_ns, st.st_size, st.st_ino, st.st_nlink


class Spool:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.claimed = self.root / ".claimed"
        self.control = self.root / ".control"
        self.accepted = self.root / "accepted"
        self.rejected = self.root / "rejected"
        self._sightings: dict[str, tuple[tuple[int, int, int, int], float]] = {}

    def ensure(self) -> Spool:
        for d in (
            self.root,
            self.claimed,
            self.control,
            self.accepted,
            self.rejected,
            *(self.root / t for t in REPORTED_STATES),
        ):
            if d != self.root and (d.is_symlink() or (os.path.lexists(d) and not d.is_dir())):
                aside = d.with_name(f"{d.name}.not-a-folder.{time.time_ns()}")
                os.rename(d, aside)  # a file or link where a spool folder belongs: keep it, out of the way
                log.error("%s was not a folder: moved it to %s", d, aside)
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

        ``whole(path, stat)`` may vouch for a file that has not settled yet. A
        file with an mtime in the future, or with more than one hard link, is
        taken once it has not changed for ``settle_seconds`` since first seen.
        """
        now = time.time() if now is None else now
        mono = time.monotonic()
        found = []
        try:
            entries = list(os.scandir(self.root))
        except (FileNotFoundError, NotADirectoryError):
            return []
        seen: dict[str, tuple[tuple[int, int, int, int], float]] = {}
        for e in entries:
            if e.name.startswith(".") or not e.name.endswith(".json"):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            sig = _identity(st)
            prev = self._sightings.get(e.name)
            first = prev[1] if prev is not None and prev[0] == sig else mono
            seen[e.name] = (sig, first)
            if settle_seconds <= 0:
                settled = True
            elif st.st_mtime > now + 1.0 or st.st_nlink > 1:
                settled = mono - first >= settle_seconds  # clock skew or a shared inode: unchanged since seen
            else:
                settled = now - st.st_mtime >= settle_seconds
            if not settled and not (whole and st.st_nlink <= 1 and whole(e.path, st)):
                continue  # still being written (or just renamed in: harmless wait)
            found.append((min(st.st_mtime, now), e.name))
        self._sightings = seen
        return [self.root / name for _, name in sorted(found)]

    def claim(self, path: Path) -> Path | None:
        """Atomically take ``path``; None when someone else took it first.

        A name that is not :func:`plain_name` is claimed under :func:`safe_name`;
        its original name (bytes) is written beside the claimed file first.
        A file with other hard links is claimed without touching its mode: the
        inode is shared with a file outside the spool.
        """
        name = path.name
        short = safe_name(name)
        target = self.claimed / f"{time.time_ns():020d}-{secrets.token_hex(3)}-{short}"
        sidecar = self.claimed / f"{SIDECAR}{target.name}"
        if short != name:
            write_private(sidecar, os.fsencode(name))
        try:
            st = os.lstat(path)
            os.rename(path, target)
        except FileNotFoundError:
            sidecar.unlink(missing_ok=True)
            return None
        except BaseException:
            sidecar.unlink(missing_ok=True)
            raise
        try:  # manifests name real people: owner and group only, whatever the writer's umask was
            if stat.S_ISREG(st.st_mode) and st.st_nlink <= 1 and os.lstat(target).st_nlink <= 1:
                os.chmod(target, FILE_MODE)
        except OSError:
            pass
        return target

    def claimed_files(self) -> list[Path]:
        try:
            return sorted(p for p in self.claimed.iterdir() if not p.name.startswith("."))
        except FileNotFoundError:
            return []

    def stale_sidecars(self) -> list[Path]:
        """Original-name notes whose claimed file is gone (a crash between note and rename)."""
        out = []
        try:
            for p in self.claimed.iterdir():
                if p.name.startswith(SIDECAR) and not os.path.lexists(self.claimed / p.name[len(SIDECAR) :]):
                    out.append(p)
        except FileNotFoundError:
            pass
        return out

    @staticmethod
    def original_name(claimed: Path) -> str:
        """The name the file was claimed under (a safe name for odd originals)."""
        parts = claimed.name.split("-", 2)
        return parts[2] if len(parts) == 3 else claimed.name

    def original_name_of(self, claimed: Path) -> str:
        """The name the file had in ``jobs/`` (may hold surrogate escapes: see :func:`printable`)."""
        try:
            return os.fsdecode(self._sidecar(claimed).read_bytes())
        except OSError:
            return self.original_name(claimed)

    def _sidecar(self, claimed: Path) -> Path:
        return claimed.with_name(f"{SIDECAR}{claimed.name}")

    def _done_with(self, claimed: Path) -> None:
        self._sidecar(claimed).unlink(missing_ok=True)

    # -- outcomes -------------------------------------------------------
    def accept(self, claimed: Path, request_id: str) -> Path:
        dst = self.accepted / f"{request_id}.json"
        move(claimed, dst)
        self._done_with(claimed)
        return dst

    def reject(self, claimed: Path, problems: list[str]) -> Path:
        """Move a bad file to ``rejected/`` beside ``NAME.error.txt``.

        A file with other hard links is not kept: only its name in the spool is
        removed (its inode belongs to a file outside the spool too).
        """
        name = self.original_name(claimed)
        original = self.original_name_of(claimed)
        dst = self.rejected / name
        n = 1
        while os.path.lexists(dst) or os.path.lexists(f"{dst}.error.txt"):
            stem, dot, ext = name.rpartition(".")
            dst = self.rejected / (f"{stem}.{n}.{ext}" if dot else f"{name}.{n}")
            n += 1
        try:
            st: os.stat_result | None = os.lstat(claimed)
        except FileNotFoundError:
            st = None
        shared = st is not None and stat.S_ISREG(st.st_mode) and st.st_nlink > 1
        head = f"{printable(original)}: rejected, nothing was run."
        if original != name:
            head += f"\n(the file name was not usable as it is: kept here as {name})"
        if shared:
            head += "\n(the file had other hard links: only its name in jobs/ was removed, its content is not kept)"
        text = head + "\n" + "".join(f"- {safe_text(p)}\n" for p in problems)
        write_private(Path(f"{dst}.error.txt"), text)
        if st is None:
            pass  # moved on before a crash
        elif shared:
            os.unlink(claimed)
        else:
            move(claimed, dst)
        self._done_with(claimed)
        return dst

    def job_dir(self, state: str, request_id: str) -> Path:
        return self.root / state / request_id

    def _make_job_dir(self, out: Path) -> Path:
        if out.is_symlink() or (os.path.lexists(out) and not out.is_dir()):
            aside = out.with_name(f".{out.name}.not-a-folder.{time.time_ns()}")
            os.rename(out, aside)  # never write a report through a link planted in the spool
            log.error("%s was not a folder: moved it to %s", out, aside)
        return private_dirs(out)

    def finish(self, state: str, request_id: str, files: Mapping[str, str | bytes]) -> Path:
        """Write a terminal job folder (report, manifest) and drop stale ones.

        ``report.json`` is written last: once it is there, the others are too.
        """
        out = self._make_job_dir(self.job_dir(state, request_id))
        for name in sorted(files, key=lambda n: n == "report.json"):
            target = out / name
            if target.is_symlink() or (os.path.lexists(target) and not target.is_file()):
                aside = out / f".{name}.not-a-file.{time.time_ns()}"
                os.rename(target, aside)
                log.error("%s was not a regular file: moved it to %s", target, aside)
            write_private(target, files[name])
        for other in REPORTED_STATES:
            if other != state:
                self._drop_stale(self.job_dir(other, request_id))
        accepted = self.accepted / f"{request_id}.json"
        if accepted.is_file() and not accepted.is_symlink():
            accepted.unlink()
        return out

    def _drop_stale(self, stale: Path) -> None:
        if stale.is_symlink() or not stale.is_dir():
            return
        for f in stale.iterdir():
            if f.name in REPORT_FILES + PICTURE_FILES or (f.name.startswith(".") and f.name.endswith(".tmp")):
                if f.is_file() or f.is_symlink():
                    f.unlink()
        try:
            stale.rmdir()
        except OSError:  # something else was put there: leave it, say so
            log.warning("%s holds files the service did not write; left in place", stale)

    def stale_temp_files(self, older_than: float = 0.0, now: float | None = None) -> list[Path]:
        """Temporary files of interrupted atomic writes in the folders the service writes."""
        now = time.time() if now is None else now
        dirs = [self.accepted, self.rejected, self.claimed]
        for state in REPORTED_STATES:
            try:
                dirs += [d for d in (self.root / state).iterdir() if d.is_dir() and not d.is_symlink()]
            except (FileNotFoundError, NotADirectoryError):
                pass
        out = []
        for d in dirs:
            try:
                entries = list(os.scandir(d))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for e in entries:
                if e.name.startswith(".") and e.name.endswith(".tmp") and e.is_file(follow_symlinks=False):
                    try:
                        if now - e.stat(follow_symlinks=False).st_mtime >= older_than:
                            out.append(Path(e.path))
                    except FileNotFoundError:
                        continue
        return out

    # -- writers (CLI side) ----------------------------------------------
    def submit(self, name: str, data: bytes) -> Path:
        """Drop a manifest atomically: temporary hidden name, then rename."""
        dst = self.root / name
        if dst.exists():
            raise FileExistsError(f"{dst} already exists in the spool")
        write_private(dst, data)  # atomic_write_bytes: hidden temp file in jobs/, fsync, rename
        return dst
