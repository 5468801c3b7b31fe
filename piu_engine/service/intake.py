"""Intake: claim manifests from ``jobs/`` and record each as a job or a rejection.

Exactly once: a manifest is claimed by an atomic rename, recorded in the
database, and only then moved to its final place; a claimed file found at
start-up is finished from what the database says about it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from piu_engine.service.arrivals import Arrivals
from piu_engine.service.jobstate import JobState
from piu_engine.service.manifest import Manifest, ManifestError, check_manifest, parse_json, read_manifest_bytes
from piu_engine.service.runtime import Runtime
from piu_engine.service.spool import Spool

log = logging.getLogger("piu.daemon")


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
        files = spool.incoming(s.settle_seconds, whole=self.arrivals.is_whole)
        for path in files[:limit]:
            self.arrivals.drop(path.name)
            claimed = spool.claim(path)
            if claimed is not None:
                self.process_claimed(claimed)
        settling = len(files) < limit and any(spool.incoming(0.0))
        if files or settling:
            self.on_arrival()
        # Files still being written: look again soon, without spinning.
        self.settle_due = time.monotonic() + min(0.05, s.settle_seconds) if settling else None
        return len(files) > limit

    def process_claimed(self, claimed: Path) -> None:
        rt = self.rt
        row = rt.store.request_by_claim(claimed.name)
        if row is not None:  # recorded before a crash; finish the move
            if row["outcome"] == "accepted":
                rt.spool.accept(claimed, row["job_id"])
            else:
                rt.spool.reject(claimed, (row["error"] or "rejected").splitlines())
            return
        name = Spool.original_name(claimed)
        sha, rid, manifest, problems = self._check(claimed, name)
        if manifest is None or problems:
            job_id = rt.store.record_rejected(claimed.name, name, sha, problems, rid)
            rt.spool.reject(claimed, problems)
            rt.ended[job_id] = JobState.REJECTED
            log.warning("rejected %s: %s", name, "; ".join(problems))
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
        rt.store.record_accepted(claimed.name, name, sha or "", manifest, status)
        rt.spool.accept(claimed, manifest.request_id)
        log.info(
            "accepted %s as %s: %d identities, method %s",
            name,
            manifest.request_id,
            len(manifest.identities),
            manifest.method,
        )

    def _check(self, claimed: Path, name: str) -> tuple[str | None, str | None, Manifest | None, list[str]]:
        """(sha256, request id as far as known, manifest, problems) of a claimed file;
        the daemon never dies on input."""
        rt = self.rt
        s = rt.settings
        sha: str | None = None
        rid: str | None = None
        try:
            data = read_manifest_bytes(claimed, s.max_manifest_bytes)
            sha = hashlib.sha256(data).hexdigest()
            doc = parse_json(data)
            if isinstance(doc, dict) and isinstance(doc.get("request_id"), str):
                rid = doc["request_id"]
            manifest = check_manifest(doc, rt.cfg, rt.identities, s.max_forget_share)
        except ManifestError as exc:
            return sha, rid, None, list(exc.problems)
        except Exception as exc:  # noqa: BLE001 - the daemon never dies on input
            log.exception("unexpected error while checking %s", name)
            return sha, rid, None, [f"could not be checked: {type(exc).__name__}: {exc}"]
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
