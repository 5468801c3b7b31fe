"""Model versions on disk: ``<models_dir>/<dataset>/<n>/model.pt``.

Version 0 of a dataset is the original model (``piu train`` or ``piu model
import``); each finished job adds version n+1 whose parent is the version it
started from. A run writes its checkpoint to ``.staging/``; only after the
gate passes is it renamed into its version folder, its SHA-256 checked, and
the version row plus the current pointer written in one transaction. A crash
at any point leaves at worst a staged file (partial by definition: start-up
removes it) or a whole version folder the database does not know (a crash
between moving it in and the commit, or a database restored from an older
backup): such a folder is never deleted but moved to ``.orphans/`` and
reported, so the current pointer never names a partial model and no model
is ever lost.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from piu_engine.common.errors import ChecksumError
from piu_engine.common.fsio import sha256_file
from piu_engine.service.fsutil import move, private_dirs
from piu_engine.service.state import StateStore, VersionRow

log = logging.getLogger("piu.daemon")


class RegistryError(RuntimeError):
    pass


class ModelChecksumError(RegistryError, ChecksumError):
    """A registered model file's SHA-256 is not the one the registry recorded."""


class Registry:
    def __init__(self, models_dir: Path):
        self.root = Path(models_dir)
        self.staging = self.root / ".staging"  # runs in progress; cleared at daemon start-up
        self.incoming = self.root / ".incoming"  # `piu train` / `piu model import` output awaiting registration
        self.orphans = self.root / ".orphans"  # version folders the database did not know: kept, never deleted
        # Installed by this process and not yet known to be recorded: (dataset, version) -> (file, sha256).
        self._installed: dict[tuple[str, int], tuple[Path, str]] = {}

    def ensure(self) -> Registry:
        private_dirs(self.root)
        private_dirs(self.staging)
        private_dirs(self.incoming)
        return self

    def version_folders(self) -> list[Path]:
        """Every ``<dataset>/<n>/`` folder under the models folder."""
        out: list[Path] = []
        try:
            datasets = sorted(self.root.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return out
        for ds in datasets:
            if ds.name.startswith(".") or ds.is_symlink() or not ds.is_dir():
                continue
            out += sorted(v for v in ds.iterdir() if v.name.isdigit() and v.is_dir() and not v.is_symlink())
        return out

    def quarantine(self, vdir: Path, why: str) -> Path:
        """Move a version folder out of the way, into ``.orphans/``; it is never deleted."""
        private_dirs(self.orphans)
        dst = self.orphans / f"{vdir.parent.name}-{vdir.name}-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9}"
        move(vdir, dst)
        log.warning(
            "model folder %s %s: moved it to %s (kept: delete it once you know it is not needed, or "
            "restore the state database that knows it)",
            vdir,
            why,
            dst,
        )
        return dst

    def relpath(self, dataset: str, version: int) -> str:
        return f"{dataset}/{version}/model.pt"

    def path(self, row: VersionRow) -> Path:
        return self.root / row.path

    def staging_path(self, name: str) -> Path:
        return self.staging / f"{name}.pt"

    def install(self, staged: Path, dataset: str, version: int, sha256: str) -> str:
        """Move a staged checkpoint into its version folder; returns the relative path."""
        if sha256_file(staged) != sha256:
            raise ChecksumError(f"{staged}: checksum differs from what the run reported")
        rel = self.relpath(dataset, version)
        dst = self.root / rel
        if os.path.lexists(dst.parent):  # left by a crash before the DB recorded it: keep it, out of the way
            self.quarantine(dst.parent, f"holds version {version}, which the state database does not know")
        private_dirs(dst.parent)
        move(staged, dst)
        self._installed[(dataset, version)] = (dst, sha256)
        return rel

    def discard_uncommitted(self, store: StateStore) -> list[Path]:
        """Remove model files this process installed whose database commit then failed
        (disk full): provably this process's own, never recorded, and the run is redone."""
        removed = []
        for (dataset, version), (path, sha) in list(self._installed.items()):
            if store.version(dataset, version) is not None:
                del self._installed[(dataset, version)]
                continue
            if path.is_file() and not path.is_symlink() and sha256_file(path) == sha:
                path.unlink()
                try:
                    os.rmdir(path.parent)
                except OSError:
                    pass
                log.warning(
                    "removed %s: installed for %s version %d, but recording it in the state database "
                    "failed; the run will be done again",
                    path,
                    dataset,
                    version,
                )
                removed.append(path)
            del self._installed[(dataset, version)]
        return removed

    def register(
        self, store: StateStore, dataset: str, staged: Path, sha256: str, source: str, metrics: dict | None = None
    ) -> VersionRow:
        """Register a staged checkpoint as version 0 of ``dataset`` (train or import)."""
        current = store.current_version(dataset)
        if current is not None:
            raise RegistryError(
                f"dataset {dataset!r} already has a model registry (current version "
                f"{current.version}); version 0 can be registered only once"
            )
        version = store.next_version(dataset)
        rel = self.install(staged, dataset, version, sha256)
        store.add_version(dataset, version, None, sha256, rel, source, None, [], [], metrics or {})
        registered = store.version(dataset, version)
        assert registered is not None  # written just above, in this process
        return registered

    def verify(self, row: VersionRow) -> Path:
        p = self.path(row)
        if not p.exists():
            raise RegistryError(f"model file of {row.dataset} version {row.version} is missing: {p}")
        actual = sha256_file(p)
        if actual != row.sha256:
            raise ModelChecksumError(
                f"checksum mismatch of {row.dataset} version {row.version}: {p} has SHA-256 {actual}, the registry "
                f"recorded {row.sha256} (the file was changed or damaged; restore it from a backup)"
            )
        return p

    def cleanup(self, store: StateStore, keep_staging: frozenset[str] = frozenset()) -> list[Path]:
        """Remove staged files (partial by definition) and move version folders the
        database does not know to ``.orphans/`` (never deleted); returns both."""
        removed: list[Path] = []
        if self.staging.is_dir():
            for f in self.staging.iterdir():
                if f.name in keep_staging:
                    continue
                if f.is_dir() and not f.is_symlink():
                    log.warning("%s: a folder in the staging area, not written by the service; left in place", f)
                    continue
                f.unlink()
                log.info("removed partial staged model file %s", f)
                removed.append(f)
        known = {(v.dataset, str(v.version)) for v in store.versions()}
        for vdir in self.version_folders():
            if (vdir.parent.name, vdir.name) not in known:
                self.quarantine(vdir, "is not in the state database")
                removed.append(vdir)
        return removed

    def prune(self, store: StateStore, dataset: str, keep: int) -> list[int]:
        """Delete model files of old versions; keeps version 0, current and the newest ``keep``."""
        if keep <= 0:
            return []
        rows = [v for v in store.versions(dataset) if not v.pruned]
        cur = store.current_version(dataset)
        newest = {v.version for v in sorted(rows, key=lambda v: v.version)[-keep:]}
        pruned = []
        for v in rows:
            if v.version == 0 or (cur and v.version == cur.version) or v.version in newest:
                continue
            p = self.path(v)
            if p.exists():
                p.unlink()
            try:
                os.rmdir(p.parent)
            except OSError:
                pass
            store.set_pruned(dataset, v.version)
            pruned.append(v.version)
        return pruned
