"""What the TUI does besides reading: submit a manifest, cancel or retry a job,
read a report. No Textual here; the screens call these in thread workers.

Everything goes through the service's in-process client
(:class:`~piu_engine.service.client.Client`), the same one ``piu submit``,
``piu cancel`` and ``piu retry`` use: a request is validated by the
service's own checks and dropped into ``jobs/``; cancel and retry ask the
running daemon through ``jobs/.control/`` (or, with no daemon, apply the
change under the workspace lock). The TUI never starts a subprocess and
never writes the state database itself.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from piu_engine.service.client import Client, ClientError, SubmitRefused
from piu_engine.service.manifest import IdentityCache, Manifest
from piu_engine.service.state import IdentityRow
from piu_engine.service.workspace import Workspace

from piu_tui.viewmodel.views import IdentityChoice, SubmitChoices

ControlRunner = Callable[[str, str], "ActionResult"]  # (op, job_id) -> result


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    message: str
    problems: tuple[str, ...] = ()
    path: str = ""
    request_id: str = ""


# ------------------------------------------------------------------ cancel / retry
def client_control(client: Client) -> ControlRunner:
    """A runner that cancels or retries through the in-process client."""

    def run(op: str, job_id: str) -> ActionResult:
        if op not in ("cancel", "retry"):
            raise ValueError(f"unknown operation {op!r}")
        try:
            return ActionResult(True, client.cancel(job_id) if op == "cancel" else client.retry(job_id))
        except (ClientError, OSError) as exc:
            return ActionResult(False, str(exc))

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
    """The submit form's choices and its one submit path (the client's).

    The identity lookup is the service's own: what the form accepts,
    ``piu validate`` and the daemon accept too. It loads a dataset once per
    session (seconds), so the screens call it in a worker.
    """

    def __init__(self, client: Client):
        self.client = client
        self.ws = client.ws

    @property
    def identity_lookup(self) -> IdentityCache:
        return self.client.identity_lookup

    def choices(self, reader_identities: Callable[[str], list[IdentityRow]] | None = None) -> SubmitChoices:
        from piu_engine.core.methods.catalog import CATALOG
        from piu_engine.service.manifest import DEFAULT_METHOD

        datasets = sorted(self.ws.cfg.datasets)
        methods = list(CATALOG)
        baselines = sorted(methods, key=lambda n: (n != "retrain", methods.index(n)))
        out = SubmitChoices(datasets=datasets, methods=methods, default_method=DEFAULT_METHOD, baselines=baselines)
        for ds in datasets:
            rows = reader_identities(ds) if reader_identities else []
            if rows:
                out.identities[ds] = [
                    IdentityChoice(r.identity, r.images, "queued" if r.state == "requested" else r.state) for r in rows
                ]
                known = len(rows)
            else:
                try:
                    info = self.identity_lookup.info(ds)
                except Exception:  # noqa: BLE001 - a dataset that cannot load offers no identities
                    out.identities[ds] = []
                    continue
                out.identities[ds] = [
                    IdentityChoice(i, info.images_per_identity.get(i), "present") for i in info.train_identities
                ]
                known = len(info.train_identities)
            out.max_per_request[ds] = int(self.ws.settings.max_forget_share * known)
        return out

    @staticmethod
    def build_doc(
        *,
        dataset: str,
        identities: Sequence[str],
        method: str,
        compare: Sequence[str] = (),
        requested_by: str = "",
        reason: str = "",
        priority: str | int = 0,
        request_id: str = "",
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {"dataset": dataset, "identities": list(identities), "method": method}
        if params:
            doc["params"] = dict(params)
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

    def check(self, doc: dict[str, Any]) -> tuple[Manifest | None, list[str]]:
        """(manifest, problems) as ``piu validate`` finds them."""
        return self.client.check(doc)

    def submit(self, doc: dict[str, Any]) -> ActionResult:
        try:
            sent = self.client.submit(doc)
        except SubmitRefused as exc:
            return ActionResult(False, "not submitted", tuple(exc.problems))
        except ClientError as exc:
            return ActionResult(False, str(exc))
        return ActionResult(
            True, f"submitted {sent.request_id} → {sent.path.name}", path=str(sent.path), request_id=sent.request_id
        )


def default_requester() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return ""


class Services:
    """Everything the app needs that is not Textual, injected (tests pass fakes or temp paths).

    ``control`` cancels or retries a job; by default (None) through the in-process client.
    """

    def __init__(self, ws: Workspace, control: ControlRunner | None = None) -> None:
        self.ws = ws
        self.client = Client(ws)
        self.submitter = Submitter(self.client)
        self.control: ControlRunner = control if control is not None else client_control(self.client)
