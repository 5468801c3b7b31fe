"""Per-job reports a privacy officer can file: ``report.json`` and ``report.txt``.

A report says who asked and why, which identities (with image counts) and
what became of each, the method and its parameters, the metrics of the
parent and of the new model with the number of samples each figure rests
on, the gate's decision, baselines when asked, times, and the model version
with its SHA-256. With a per-person audit, ``audit.png`` beside them shows
never-seen people's z with each forgotten person marked, before and after.
"""

from __future__ import annotations

import json
import math
import socket
import time
from typing import Any

import piu_engine
from piu_engine.common import jsonout
from piu_engine.common.text import first_line
from piu_engine.core.request import METRIC_NAMES
from piu_engine.service.state import AttemptRow, JobRow, VersionRow

REPORT_VERSION = 1
PICTURE = "audit.png"  # the audit's picture beside report.txt (piu_engine.core.audit.plot.PICTURE)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


def _version(v: VersionRow | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {"dataset": v.dataset, "version": v.version, "parent": v.parent, "sha256": v.sha256, "path": v.path}


def build_report(
    job: JobRow,
    state: str,
    *,
    identities: list[dict[str, Any]],
    parent: VersionRow | None = None,
    new: VersionRow | None = None,
    outcome: dict[str, Any] | None = None,
    gate: dict[str, Any] | None = None,
    batch: dict[str, Any] | None = None,
    error: str | None = None,
    device: str = "",
    note: str = "",
    history: list[AttemptRow] | None = None,
) -> dict[str, Any]:
    outcome = outcome or {}
    finished = job.finished_at or time.time()
    return {
        "report_version": REPORT_VERSION,
        "request_id": job.request_id or job.id,
        "state": state,
        "requested_by": job.requested_by,
        "reason": job.reason,
        "priority": job.priority,
        "manifest_file": job.file_name,
        "received_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(finished),
        "dataset": job.dataset,
        "identities": identities,
        "method": job.method,
        "params": outcome.get("method_params") or job.params,
        "method_notes": outcome.get("method_notes") or {},
        "compare": job.compare,
        "batch": batch,
        "parent_model": dict(_version(parent) or {}, metrics=outcome.get("parent", parent.metrics if parent else {}))
        if parent
        else None,
        "new_model": dict(_version(new) or {}, metrics=outcome.get("model", {}))
        if new or outcome.get("model")
        else None,
        "request_metrics": (outcome.get("per_group") or {}).get(job.id),
        "baselines": outcome.get("baselines") or {},
        "samples": outcome.get("counts") or {},
        "gate": gate,
        "audit": outcome.get("audit"),
        "audit_gate": audit_decision(gate),  # the gate's decision on the per-person verdicts alone
        "seconds": {
            "unlearning": outcome.get("seconds"),
            "total": None if job.started_at is None else round(finished - job.started_at, 3),
        },
        "attempts": job.attempts,
        "history": [attempt_record(a) for a in history or []],
        "error": error,
        "note": note,
        "host": socket.gethostname(),
        "device": device,
        "piu_version": piu_engine.__version__,
    }


def attempt_record(a: AttemptRow) -> dict[str, Any]:
    """One history entry as report.json (and `piu jobs show --json`) hold it."""
    d: dict[str, Any] = {"kind": a.kind, "at": _iso(a.at), "state": a.state, "error": a.error, "batch": a.batch_id}
    if a.kind == "run":
        d.update(device=a.device, finished_at=_iso(a.finished_at))
    else:
        d.update(attempts=a.attempts)
    return d


def history_lines(history: list[dict[str, Any]]) -> list[str]:
    """One line per run and retry of the job, oldest first (report.txt, `piu jobs show`, the TUI)."""
    out = []
    for h in history:
        at = (h.get("at") or "?")[:19].replace("T", " ")
        error = f": {first_line(h['error'], 100)}" if h.get("error") else ""
        if h["kind"] == "run":
            on = f" on {h['device']}" if h.get("device") else ""
            state = "ran to the end" if h["state"] == "done" else h["state"]  # its jobs' own outcome is below
            out.append(f"{at}  run {h['batch']}{on}: {state}{error}")
        else:
            out.append(f"{at}  retried (it was {h['state']} after {h.get('attempts')} attempt(s)){error}")
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "-" if v is None else str(v)


def _count(m: dict[str, Any], key: str) -> str:
    v = m.get(key)
    return "?" if v is None else str(v)


def _metrics_table(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    keys = [k for k in METRIC_NAMES if any(k in m for _, m in rows)]
    if not keys:
        return ["  (no metrics)"]
    width = max(len(name) for name, _ in rows)
    widths = [max(len(k), 7) for k in keys]
    head = "  ".join(f"{k:>{w}}" for k, w in zip(keys, widths))
    lines = ["  " + " " * width + "  " + head + "   images forget/unseen/test, identities forget/unseen"]
    for name, m in rows:
        cells = "  ".join(f"{_fmt(m.get(k)):>{w}}" for k, w in zip(keys, widths))
        n = (
            f"{_count(m, 'n_forget')}/{_count(m, 'n_unseen_eval')}/{_count(m, 'n_test')}, "
            f"{_count(m, 'n_forget_identities')}/{_count(m, 'n_unseen_identities')}"
        )
        lines.append(f"  {name:<{width}}  {cells}   {n}")
    return lines


AUDIT_QUESTION = (
    "Could someone holding the model tell whether this person was in its training data, "
    "as well as they could for people it never saw?"
)
VERDICT_MEANING = {
    "indistinguishable": "no: the model treats this person as it treats people it never saw",
    "still recognisable": "yes: the model still knows this person better than never-seen people",
    "conspicuously forgotten": "yes: the model knows this person markedly worse than never-seen people, "
    "which gives them away too",
    "not measured": "unknown: the model gave no finite score for this person's photos, so nothing can be said",
}


def _ci(ci: list | None) -> str:
    return f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci and None not in ci else ""


def _z(v: Any) -> str:
    """A z-score; stored JSON holds an unmeasurable one (NaN) as null."""
    return f"{v:+.2f}" if isinstance(v, (int, float)) and math.isfinite(v) else "NaN"


def _p(v: Any) -> str:
    return _fmt(v) if isinstance(v, (int, float)) and math.isfinite(v) else "NaN"


def _seeds(seeds: list | None) -> str:
    if not seeds:
        return ""
    shown = ", ".join(str(s) for s in seeds[:8]) + (f", ... ({len(seeds)} in all)" if len(seeds) > 8 else "")
    return f", model seeds {shown}"


def audit_check(gate: dict[str, Any] | None) -> dict[str, Any] | None:
    """The gate's check on the audit verdicts, as stored with the job."""
    return next((c for c in (gate or {}).get("checks", []) if c.get("name") == "audit"), None)


def audit_decision(gate: dict[str, Any] | None) -> str | None:
    """passed | failed | not gated for the audit check alone; None before a run ended."""
    check = audit_check(gate)
    if check is None:
        return None
    return "not gated" if not check.get("gated") else "passed" if check.get("passed") else "failed"


def _audit_lines(
    audit: dict[str, Any] | None, gate: dict[str, Any] | None = None, picture: dict[str, Any] | None = None
) -> list[str]:
    """The per-person audit in plain words: verdict, z and p for each person, before and after."""
    if not audit:
        return [
            "",
            "Per-person audit: not audited (no reference pool for this dataset; build one with "
            "`piu audit pool`, then every later request is audited).",
        ]
    if audit.get("error"):
        return ["", f"Per-person audit: not audited ({audit['error']})."]
    pool, new, old = audit.get("pool") or {}, audit.get("model") or {}, audit.get("parent") or {}
    before = {p["identity"]: p for p in old.get("people", [])}
    out = [
        "",
        f"Per-person audit against {pool.get('k')} reference models (pool seed {pool.get('seed')}"
        f"{_seeds(pool.get('model_seeds'))}; built {pool.get('completed') or pool.get('created') or '?'}), "
        f"two-sided at {100 * float(new.get('fpr') or 0):.0f}% false positives on never-seen people:",
        f"  {AUDIT_QUESTION}",
    ]
    for p in new.get("people", []):
        was = before.get(p["identity"])
        prior = f"; before: {was['verdict']} (z {_z(was.get('z'))})" if was else ""
        out.append(
            f"  - {p['identity']}: {p['verdict'].upper()} (z {_z(p.get('z'))}, p {_p(p.get('p_value'))}, "
            f"{p['photos']} photos){prior}"
        )
        out.append(f"      {VERDICT_MEANING.get(p['verdict'], '')}")
    s = new.get("summary") or {}
    if s:
        out.append(
            f"  Flagged {_fmt(s.get('flagged_fraction'))}{_ci(s.get('flagged_ci'))} of {s.get('n_people')} "
            f"people; AUC against {s.get('n_never_seen')} never-seen people {_fmt(s.get('auc'))}"
            f"{_ci(s.get('auc_ci'))} (0.5: indistinguishable)."
        )
    check, decision = audit_check(gate), audit_decision(gate)
    if check is not None and decision is not None:
        out.append(f"  Gate on these verdicts: {decision.upper()}: {check.get('note')}")
    if picture and picture.get("file"):
        out.append(
            f"  Picture: {picture['file']} beside this report (never-seen people's z, each forgotten person "
            "marked, before and after)."
        )
    elif picture and picture.get("note"):
        out.append(f"  No picture: {picture['note']}.")
    return out


def render_text(r: dict[str, Any]) -> str:
    out = [f"PIU forget request {r['request_id']}: {r['state'].upper()}", "=" * 60, ""]
    out += [
        f"Requested by : {r['requested_by'] or '(not given)'}",
        f"Reason       : {r['reason'] or '(not given)'}",
        f"Received     : {r['received_at']}",
        f"Finished     : {r['finished_at']}",
        f"Dataset      : {r['dataset']}",
        f"Method       : {r['method']}  params {json.dumps(r['params'], sort_keys=True)}",
    ]
    guide = (r.get("method_notes") or {}).get("guide")
    if guide:
        out.append(
            f"Guided by    : guide pool seed {guide.get('guide_pool_seed')} "
            f"({guide.get('guide_pool_models')} reference models, never the audit's): each forgotten person "
            "was moved to where models that never saw them put them"
        )
    if r.get("compare"):
        out.append(f"Baselines    : {', '.join(r['compare'])}")
    out += ["", f"Identities ({len(r['identities'])}):"]
    for i in r["identities"]:
        where = f" in version {i['version']}" if i.get("version") is not None else ""
        out.append(
            f"  - {i['identity']}: {i.get('images') if i.get('images') is not None else '?'} training images, "
            f"{i['status'].replace('_', ' ')}{where}"
        )
    if r.get("batch") and len(r["batch"].get("requests", [])) > 1:
        out += [
            "",
            f"Run together with {len(r['batch']['requests']) - 1} other request(s) in batch {r['batch']['id']}.",
        ]
    pm, nm = r.get("parent_model"), r.get("new_model")
    rows = []
    if pm:
        rows.append((f"parent v{pm.get('version')}", pm.get("metrics") or {}))
    if nm and nm.get("metrics"):
        rows.append((f"new v{nm.get('version')}" if nm.get("version") is not None else "new (not kept)", nm["metrics"]))
    for name, m in (r.get("baselines") or {}).items():
        rows.append((f"baseline {name}", m))
    if r.get("request_metrics"):
        rows.append(("this request", r["request_metrics"]))
    if rows:
        out += ["", "Metrics (MIA = membership inference on forget vs unseen evaluation images; 0.5 is ideal):"]
        out += _metrics_table(rows)
    out += _audit_lines(r.get("audit"), r.get("gate"), r.get("picture"))
    samples = r.get("samples") or {}
    if samples:
        out += ["", "Run's splits: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in samples.items())]
    g = r.get("gate")
    if g:
        decision = g.get("decision") or ("passed" if g["passed"] else "failed")
        out += ["", f"Acceptance gate: {decision.upper()}" + ("" if g.get("enabled", True) else " (disabled)")]
        if decision == "not gated":
            out.append(
                "  Nothing could be checked on this request's data (see each check below): the model "
                "was kept, but this is not a pass."
            )
        out += [f"  - {c['name']}: {c['note']}" for c in g.get("checks", [])]
    if nm and nm.get("version") is not None:
        out += [
            "",
            f"New model    : {nm['dataset']} version {nm['version']} (parent {nm.get('parent')})",
            f"File         : {nm.get('path')}",
            f"SHA-256      : {nm.get('sha256')}",
        ]
    elif pm:
        out += ["", f"Model        : unchanged; current is still {pm['dataset']} version {pm['version']}"]
    s = r.get("seconds") or {}
    out += [
        "",
        f"Time         : unlearning {_fmt(s.get('unlearning'))} s, total {_fmt(s.get('total'))} s, "
        f"attempts {r.get('attempts')}",
        f"Host         : {r['host']}  device {r.get('device') or '-'}  piu {r['piu_version']}",
    ]
    history = r.get("history") or []
    if len(history) > 1 or any(h["kind"] == "retry" for h in history):
        out += ["", "History      :", *("  " + line for line in history_lines(history))]
    if r.get("note"):
        out += ["", r["note"]]
    if r.get("error"):
        out += ["", "Error:", *("  " + line for line in str(r["error"]).splitlines())]
    return "\n".join(out) + "\n"


def audit_picture(report: dict[str, Any]) -> tuple[bytes | None, str]:
    """(PNG bytes, "") of the report's audit, or (None, why there is none).

    matplotlib is loaded here, on the first report with an audit, never by the
    light clients; without it (or if drawing fails) the report is still written
    and says why."""
    audit = report.get("audit")
    if not audit or audit.get("error") or not (audit.get("model") or {}).get("people"):
        return None, ""
    try:
        from piu_engine.core.audit.plot import render_png
    except ImportError as exc:
        if (exc.name or "").split(".")[0] == "matplotlib":
            return None, "matplotlib is not installed where the report was written (pip install matplotlib)"
        return None, f"the drawing code could not be loaded ({exc})"
    pm, nm = report.get("parent_model") or {}, report.get("new_model") or {}
    after = f"new v{nm['version']}" if nm.get("version") is not None else "new model (not kept)"
    titles = (f"before: parent v{pm.get('version')}" if pm else "before: parent model", f"after: {after}")
    key = jsonout.dumps([audit, titles], sort_keys=True)
    if key not in _PICTURES:  # a batch's reports share one audit: draw it once
        try:
            _PICTURES.clear()
            _PICTURES[key] = render_png(audit, *titles)
        except Exception as exc:  # noqa: BLE001 - a picture never costs the report
            return None, f"drawing it failed ({type(exc).__name__}: {exc})"
    return _PICTURES[key], ""


_PICTURES: dict[str, bytes] = {}


def report_files(report: dict[str, Any], manifest_json: str) -> dict[str, str | bytes]:
    """The files of a job's result folder: the report (with the audit picture when there is an audit)."""
    png, why = audit_picture(report)
    report = dict(report, picture={"file": PICTURE if png else None, "note": why} if png or why else None)
    files: dict[str, str | bytes] = {
        "report.json": jsonout.dumps(report, indent=2, sort_keys=True) + "\n",
        "report.txt": render_text(report),
        "manifest.json": manifest_json,
    }
    if png is not None:
        files[PICTURE] = png
    return files
