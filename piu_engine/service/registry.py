"""Model versions on disk: ``<models_dir>/<dataset>/<n>/model.pt``.

Version 0 of a dataset is the original model (``piu train`` or ``piu model
import``); each finished job adds version n+1 whose parent is the version it
started from. A run writes its checkpoint to ``.staging/``; only after the
gate passes is it renamed into its version folder, its SHA-256 checked, and
the version row plus the current pointer written in one transaction. A crash
at any point leaves at worst an orphan file, which start-up removes: the
current pointer never names a partial model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from piu_engine.common.errors import ChecksumError
from piu_engine.common.fsio import sha256_file
from piu_engine.service.fsutil import move, private_dirs
from piu_engine.service.state import StateStore, VersionRow


class RegistryError(RuntimeError):
    pass


class Registry:
    def __init__(self, models_dir: Path):
        self.root = Path(models_dir)
        self.staging = self.root / ".staging"  # runs in progress; cleared at daemon start-up
        self.incoming = self.root / ".incoming"  # `piu train` / `piu model import` output awaiting registration

    def ensure(self) -> Registry:
        private_dirs(self.root)
        private_dirs(self.staging)
        private_dirs(self.incoming)
        return self

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
        if dst.parent.exists():  # an orphan left by a crash before the DB recorded it
            shutil.rmtree(dst.parent)
        private_dirs(dst.parent)
        move(staged, dst)
        return rel

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
            raise ChecksumError(f"{p}: SHA-256 {actual}, registry says {row.sha256}")
        return p

    def cleanup(self, store: StateStore, keep_staging: frozenset[str] = frozenset()) -> list[Path]:
        """Remove staged files and version folders the database does not know."""
        removed: list[Path] = []
        if self.staging.is_dir():
            for f in self.staging.iterdir():
                if f.name not in keep_staging:
                    f.unlink()
                    removed.append(f)
        known = {(v.dataset, str(v.version)) for v in store.versions()}
        if self.root.is_dir():
            for ds in self.root.iterdir():
                if ds.name.startswith(".") or not ds.is_dir():
                    continue
                for vdir in ds.iterdir():
                    if vdir.is_dir() and vdir.name.isdigit() and (ds.name, vdir.name) not in known:
                        shutil.rmtree(vdir)
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
