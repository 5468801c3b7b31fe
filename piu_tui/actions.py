"""What the TUI does besides reading: submit a manifest, cancel or retry a job,
read a report. No Textual here; the screens call these in thread workers.

The TUI never writes the state database. A new request goes into ``jobs/``
exactly as ``piu submit`` drops it (validated by the service's own manifest
checks, written under a hidden name and renamed). Cancel and retry run the
real ``piu cancel ID`` / ``piu retry ID`` command, which asks the running
daemon through ``jobs/.control/`` (or, with no daemon, applies the change
under the workspace lock as the single writer), so the TUI behaves exactly
like the CLI an admin would type.
"""
from __future__ import annotations

import getpass
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from piu_engine.service.workspace import Workspace
from piu_tui.viewmodel import IdentityChoice, SubmitChoices

ControlRunner = Callable[[str, str], "ActionResult"]  # (op, job_id) -> result


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    message: str
    problems: tuple[str, ...] = ()
    path: str = ""
    request_id: str = ""


# ------------------------------------------------------------------ cancel / retry
def cli_control(config_path: Path | None, timeout: float = 120.0) -> ControlRunner:
    """A runner that calls ``piu [--config FILE] cancel|retry ID`` in a subprocess."""

    def run(op: str, job_id: str) -> ActionResult:
        if op not in ("cancel", "retry"):
            raise ValueError(f"unknown operation {op!r}")
        cmd = [sys.executable, "-m", "piu_engine.cli"]
        if config_path is not None:
            cmd += ["--config", str(config_path)]
        cmd += [op, job_id]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return ActionResult(False, f"piu {op} {job_id}: no answer within {timeout:.0f} s")
        except OSError as exc:
            return ActionResult(False, f"piu {op} {job_id}: cannot run: {exc}")
        out = (proc.stdout.strip() or proc.stderr.strip() or f"exit status {proc.returncode}").splitlines()
        text = out[-1] if out else ""
        if text.startswith("piu: error: "):
            text = text[len("piu: error: "):]
        return ActionResult(proc.returncode == 0, text)

    return run


# ------------------------------------------------------------------ reports
def read_report(path: str | Path, limit: int = 2_000_000) -> str:
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    text = data[:limit].decode("utf-8", errors="replace")
    if len(data) > limit:
        text += f"\n… (truncated at {limit} bytes; see {path})\n"
    return text


# ------------------------------------------------------------------ submit
class Submitter:
    """Validates and submits forget requests for one workspace.

    The identity lookup is the service's own (:class:`IdentityCache`): what
    the form accepts, ``piu validate`` and the daemon accept too. It loads a
    dataset once per session (seconds), so it is built lazily in a worker.
    """

    def __init__(self, ws: Workspace):
        self.ws = ws
        self._cache = None

    @property
    def identity_lookup(self):
        if self._cache is None:
            from piu_engine.service.manifest import IdentityCache

            self._cache = IdentityCache(self.ws.cfg, self.ws.preset)
        return self._cache

    def choices(self, reader_identities: Callable[[str], list[Any]] | None = None) -> SubmitChoices:
        from piu_engine.core.methods.catalog import CATALOG
        from piu_engine.service.manifest import DEFAULT_METHOD

        datasets = sorted(self.ws.cfg.datasets)
        methods = list(CATALOG)
        baselines = sorted(methods, key=lambda n: (n != "retrain", methods.index(n)))
        out = SubmitChoices(datasets=datasets, methods=methods, default_method=DEFAULT_METHOD, baselines=baselines)
        for ds in datasets:
            rows = reader_identities(ds) if reader_identities else []
            if rows:
                out.identities[ds] = [IdentityChoice(r.identity, r.images,
                                                     "queued" if r.state == "requested" else r.state) for r in rows]
                known = len(rows)
            else:
                try:
                    info = self.identity_lookup.info(ds)
                except Exception:  # noqa: BLE001 - a dataset that cannot load offers no identities
                    out.identities[ds] = []
                    continue
                out.identities[ds] = [IdentityChoice(i, info.images_per_identity.get(i), "present")
                                      for i in info.train_identities]
                known = len(info.train_identities)
            out.max_per_request[ds] = int(self.ws.settings.max_forget_share * known)
        return out

    @staticmethod
    def build_doc(*, dataset: str, identities: Sequence[str], method: str, compare: Sequence[str] = (),
                  requested_by: str = "", reason: str = "", priority: str | int = 0,
                  request_id: str = "") -> dict[str, Any]:
        doc: dict[str, Any] = {"dataset": dataset, "identities": list(identities), "method": method}
        if compare:
            doc["compare"] = list(compare)
        if requested_by:
            doc["requested_by"] = requested_by
        if reason:
            doc["reason"] = reason
        if request_id.strip():
            doc["request_id"] = request_id.strip()
        if str(priority).strip() not in ("", "0"):
            try:
                doc["priority"] = int(str(priority).strip())
            except ValueError:
                doc["priority"] = str(priority)  # the schema check reports it
        return doc

    def check(self, doc: dict[str, Any]):
        """(manifest, problems) as ``piu validate`` finds them."""
        from piu_engine.service.manifest import ManifestError, check_manifest
        from piu_engine.service.state import StateMissing, StateReader

        try:
            manifest = check_manifest(doc, self.ws.cfg, self.identity_lookup, self.ws.settings.max_forget_share)
        except ManifestError as exc:
            return None, list(exc.problems)
        try:
            with StateReader(self.ws.db_path) as reader:
                seen = reader.job(manifest.request_id)
        except StateMissing:
            seen = None
        if seen is not None and seen.id == manifest.request_id:
            return manifest, [f"request_id {manifest.request_id!r} was received before (job is {seen.state}); "
                              f"use a new request id"]
        if (self.ws.jobs_dir / f"{manifest.request_id}.json").exists():
            return manifest, [f"request {manifest.request_id} is already waiting in {self.ws.jobs_dir}"]
        return manifest, []

    def submit(self, doc: dict[str, Any]) -> ActionResult:
        manifest, problems = self.check(doc)
        if problems:
            return ActionResult(False, "not submitted", tuple(problems))
        body = dict(doc, request_id=manifest.request_id)  # pin a derived id, as `piu submit` does
        data = (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("utf-8")
        try:  # write_private: hidden temporary name, fsync, rename; mode 0640 whatever the umask
            dst = self.ws.spool().ensure().submit(f"{manifest.request_id}.json", data)
        except FileExistsError as exc:
            return ActionResult(False, f"{exc}: request {manifest.request_id} is already waiting")
        except OSError as exc:
            return ActionResult(False, f"cannot write into {self.ws.jobs_dir}: {exc}")
        return ActionResult(True, f"submitted {manifest.request_id} → {dst.name}", path=str(dst),
                            request_id=manifest.request_id)


def default_requester() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return ""


@dataclass
class Services:
    """Everything the app needs that is not Textual, injected (tests pass fakes or temp paths)."""

    ws: Workspace
    config_path: Path | None
    control: ControlRunner
    submitter: Submitter = field(init=False)

    def __post_init__(self) -> None:
        self.submitter = Submitter(self.ws)
