"""Intake: claim manifests from ``jobs/`` and record each as a job or a rejection.

Exactly once: a manifest is claimed by an atomic rename, recorded in the
database, and only then moved to its final place; a claimed file found at
start-up, or left by a pass that could not finish (database locked, disk
full), is finished from what the database says about it.

Whatever a file is called or holds, what reaches the database, the logs and
the reports is printable text (:func:`~piu_engine.service.state.printable`).
A file with other hard links is refused without reading it, changing its
mode or keeping its content: only its name in ``jobs/`` is removed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path

from piu_engine.service.arrivals import Arrivals
from piu_engine.service.jobstate import JobState
from piu_engine.service.manifest import Manifest, ManifestError, check_manifest, parse_json, read_manifest_bytes
from piu_engine.service.runtime import Runtime
from piu_engine.service.state import is_disk_full, is_locked, printable, safe_text

log = logging.getLogger("piu.daemon")


def transient(exc: BaseException) -> bool:
    """An error that passes (disk full, database locked): retry later, decide nothing."""
    return is_disk_full(exc) or is_locked(exc)


class Intake:
    def __init__(self, rt: Runtime, arrivals: Arrivals, on_arrival: Callable[[], None]):
        self.rt = rt
        self.arrivals = arrivals
        self.on_arrival = on_arrival  # a manifest arrived: the scheduler's coalescing window
        self.settle_due: float | None = None  # when the next unsettled file may be taken
        self._ensured: set[str] = set()

    def ingest(self, limit: int = 500) -> bool:
        """Claim and check complete manifests; True when more are waiting."""
        s, spool = self.rt.settings, self.rt.spool
        for claimed in spool.claimed_files():  # left by a pass cut short (database locked, disk full)
            self.process_claimed(claimed)
        files = spool.incoming(s.settle_seconds, whole=self.arrivals.is_whole)
        for path in files[:limit]:
            self.arrivals.drop(path.name)
            taken = spool.claim(path)
            if taken is not None:
                self.process_claimed(taken)
        settling = len(files) < limit and any(spool.incoming(0.0))
        if files or settling:
            self.on_arrival()
        # Files still being written: look again soon, without spinning.
        self.settle_due = time.monotonic() + min(0.05, s.settle_seconds) if settling else None
        return len(files) > limit

    def process_claimed(self, claimed: Path) -> None:
        """Record and move on one claimed file. Transient errors (database locked,
        disk full) are raised and the file stays claimed for the next pass; any
        other error rejects the file with the reason, so no file is retried forever."""
        try:
            self._process(claimed)
        except Exception as exc:  # noqa: BLE001 - the daemon never dies on input
            if transient(exc):
                raise
            log.exception("could not process %s", printable(claimed.name))
            self._reject_unprocessable(claimed, exc)

    def _reject_unprocessable(self, claimed: Path, exc: Exception) -> None:
        rt = self.rt
        if not os.path.lexists(claimed):
            return
        row = rt.store.request_by_claim(claimed.name)
        problems = [f"could not be processed: {type(exc).__name__}: {printable(str(exc), 500)}"]
        if row is None:
            name = printable(rt.spool.original_name_of(claimed))
            job_id = rt.store.record_rejected(claimed.name, name, None, problems)
            rt.ended[job_id] = JobState.REJECTED
        elif row["outcome"] == "accepted":  # recorded, only the move failed: try it once more next time
            raise exc
        rt.spool.reject(claimed, problems)

    def _process(self, claimed: Path) -> None:
        rt = self.rt
        row = rt.store.request_by_claim(claimed.name)
        if row is not None:  # recorded before a crash or an interrupted pass; finish the move
            if row["outcome"] == "accepted":
                rt.spool.accept(claimed, row["job_id"])
            else:
                rt.spool.reject(claimed, (row["error"] or "rejected").splitlines())
            return
        original = rt.spool.original_name_of(claimed)
        name = printable(original)  # what the database, the logs and the reports show
        sha, rid, manifest, problems = self._check(claimed, name)
        if manifest is None or problems:
            self._reject(claimed, name, sha, problems, rid)
            return
        info = rt.identities.info(manifest.dataset)
        if manifest.dataset not in self._ensured:
            rt.store.ensure_identities(manifest.dataset, dict(info.images_per_identity))
            self._ensured.add(manifest.dataset)
        forgotten = {r.identity: r.version for r in rt.store.identities(manifest.dataset, forgotten_only=True)}
        status = {
            i: (
                ("already_forgotten", info.images_per_identity.get(i), forgotten[i])
                if i in forgotten
                else ("requested", info.images_per_identity.get(i), None)
            )
            for i in manifest.identities
        }
        try:
            rt.store.record_accepted(claimed.name, name, sha or "", manifest, status)
        except sqlite3.IntegrityError as exc:  # the id is taken after all (an older database's rejected-N, ...)
            self._reject(
                claimed,
                name,
                sha,
                [
                    f"request_id {manifest.request_id!r} cannot be recorded: it is "
                    f"already taken ({exc}); use a new request_id"
                ],
                manifest.request_id,
            )
            return
        except UnicodeEncodeError as exc:  # text the checks missed: never crash on storing it
            self._reject(
                claimed,
                name,
                sha,
                [f"not encodable as UTF-8: {exc.reason} at position {exc.start}"],
                manifest.request_id,
            )
            return
        rt.spool.accept(claimed, manifest.request_id)
        log.info(
            "accepted %s as %s: %d identities, method %s",
            name,
            manifest.request_id,
            len(manifest.identities),
            manifest.method,
        )

    def _reject(self, claimed: Path, name: str, sha: str | None, problems: list[str], rid: str | None) -> None:
        rt = self.rt
        problems = [safe_text(p) or "" for p in problems]
        job_id = rt.store.record_rejected(claimed.name, name, sha, problems, rid)
        rt.spool.reject(claimed, problems)
        rt.ended[job_id] = JobState.REJECTED
        log.warning("rejected %s: %s", name, "; ".join(p.replace("\n", " ") for p in problems))

    def _check(self, claimed: Path, name: str) -> tuple[str | None, str | None, Manifest | None, list[str]]:
        """(sha256, request id as far as known, manifest, problems) of a claimed file;
        the daemon never dies on input."""
        rt = self.rt
        s = rt.settings
        sha: str | None = None
        rid: str | None = None
        try:
            st = os.lstat(claimed)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                return (
                    None,
                    None,
                    None,
                    [
                        f"{name}: a hard link ({st.st_nlink} names for one file): hard-linked files are not taken, "
                        f"so that a file elsewhere is never changed, read or kept by the service; only its name in "
                        f"jobs/ was removed. Copy the file into jobs/ (or use `piu submit FILE`)"
                    ],
                )
            data = read_manifest_bytes(claimed, s.max_manifest_bytes)
            sha = hashlib.sha256(data).hexdigest()
            doc = parse_json(data)
            if isinstance(doc, dict) and isinstance(doc.get("request_id"), str):
                rid = printable(doc["request_id"], 200)
            manifest = check_manifest(doc, rt.cfg, rt.identities, s.max_forget_share)
        except ManifestError as exc:
            problems = [p.replace(claimed.name, name) for p in exc.problems]  # the name the writer knows
            return sha, rid, None, problems
        except Exception as exc:  # noqa: BLE001 - the daemon never dies on input
            if transient(exc):
                raise
            log.exception("unexpected error while checking %s", name)
            return sha, rid, None, [f"could not be checked: {type(exc).__name__}: {printable(str(exc), 500)}"]
        rid = manifest.request_id
        seen = rt.store.job(rid)
        if seen is not None and seen.id == rid:
            how = "the same content" if manifest.id_derived else "this request_id"
            retry = f", or `piu retry {rid}`" if seen.state in (JobState.FAILED, JobState.CANCELLED) else ""
            return (
                sha,
                rid,
                manifest,
                [
                    f"request_id {rid!r}: a request with {how} was received before (job is "
                    f"{seen.state}); a request is never run twice: use a new request_id{retry}"
                ],
            )
        return sha, rid, manifest, []
