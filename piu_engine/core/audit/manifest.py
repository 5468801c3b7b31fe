"""The reference pool's manifest: one small JSON file beside the models,
rewritten atomically, that says what the pool is (size, seeds, who is in
which model) and how far building got. Standard library only, so the service
and the TUI can show a pool without loading the ML stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from piu_engine.common import jsonout
from piu_engine.common.fsio import atomic_write_bytes

if TYPE_CHECKING:  # only its type: this module stays standard library at run time
    from piu_engine.core.config import AuditConfig

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1


def manifest_path(pool_dir: Path) -> Path:
    return Path(pool_dir) / MANIFEST_NAME


def read_manifest(pool_dir: Path) -> dict[str, Any] | None:
    """The manifest of the pool in ``pool_dir``, or None when there is none yet."""
    path = manifest_path(pool_dir)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: manifest format {data.get('format')!r}, expected {MANIFEST_FORMAT}")
    return data


def write_manifest(pool_dir: Path, data: dict[str, Any]) -> Path:
    path = manifest_path(pool_dir)
    atomic_write_bytes(path, (jsonout.dumps({**data, "format": MANIFEST_FORMAT}, indent=1) + "\n").encode())
    return path


def progress(data: dict[str, Any]) -> tuple[int, int]:
    """(finished models, planned models) of a manifest."""
    models = data.get("models", [])
    return sum(1 for m in models if m.get("status") == "done"), len(models)


def list_pools(cache_dir: Path, dataset: str | None = None) -> list[dict[str, Any]]:
    """The reference pools in a cache folder, read from their manifests (no PyTorch)."""
    out = []
    for manifest in sorted(Path(cache_dir).glob(f"pools/*/{MANIFEST_NAME}")):
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        if dataset is None or data.get("dataset") == dataset:
            models = data.get("models", [])
            done = sum(1 for m in models if m.get("status") == "done")
            out.append(
                {
                    "dataset": data.get("dataset"),
                    "preset": data.get("preset"),
                    "k": data.get("k"),
                    "seed": data.get("seed"),
                    "model_seeds": data.get("model_seeds") or [],
                    "done": done,
                    "created": data.get("created"),
                    "completed": data.get("completed"),
                    "path": str(manifest.parent),
                }
            )
    return out


AUDIT_POOL, GUIDE_POOL, UNUSED_POOL = "audit", "guide", "unused"
POOL_LABELS = {  # how `piu model list` and the TUI's Models screen name each role
    AUDIT_POOL: "reference pool",
    GUIDE_POOL: "guide pool (PIU-FR's targets)",
    UNUSED_POOL: "unused pool (neither the audit's nor the guide's size and seed)",
}
NO_AUDIT_POOL = "reference pool: none (build one with `piu audit pool` so every request gets a per-person audit)"


def pool_role(pool: dict[str, Any], audit: AuditConfig) -> str:
    """The job a ``list_pools`` row does under the ``[audit]`` settings: the audit's
    pool (``seed``) or PIU-FR's guide pool (``guide_seed``), each of ``models``
    models; any other size or seed is a pool nothing reads (left from older settings).
    The one rule the CLI and the TUI both label pools by."""
    if pool.get("k") != audit.models:
        return UNUSED_POOL
    if pool.get("seed") == audit.seed:
        return AUDIT_POOL
    return GUIDE_POOL if pool.get("seed") == audit.guide_seed else UNUSED_POOL
