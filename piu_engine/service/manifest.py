"""Forget-request manifests: read safely, check against the schema and the
workspace, and normalise.

Reading never follows a symlink, never blocks on a FIFO and never reads more
than the configured size. Every problem found is reported, not only the
first, so the error file beside a rejected manifest says exactly what to fix.

Text is checked as text: a string that cannot be written as UTF-8 (a lone
surrogate such as ``"\\ud800"``), control characters (C0, DEL, C1) and bidi
overrides (which make a report say something else than it holds) are
rejected, naming the field. Patterns match the whole string (``fullmatch``:
``$`` would let ``"abc\\n"`` through), and numbers must be finite (strict JSON).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from piu_engine.common import jsonout
from piu_engine.common.errors import ConfigError
from piu_engine.core.config import Config

DEFAULT_METHOD = "piu-fr"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")  # always with fullmatch
RESERVED_PREFIX = "rejected-"  # the service names rejected files' jobs rejected-N
TEXT_FIELDS = ("request_id", "dataset", "method", "requested_by", "reason")
MULTILINE_FIELDS = ("requested_by", "reason")  # may hold tabs and newlines
BIDI_CONTROLS = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A))


def valid_request_id(value: object) -> bool:
    return isinstance(value, str) and REQUEST_ID_RE.fullmatch(value) is not None


class ManifestError(ValueError):
    """A manifest is unusable; ``problems`` lists every reason, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Manifest:
    request_id: str
    dataset: str
    identities: tuple[str, ...]
    method: str = DEFAULT_METHOD
    compare: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    requested_by: str = ""
    reason: str = ""
    priority: int = 0
    id_derived: bool = False  # request_id was computed from the content

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["identities"] = list(self.identities)
        d["compare"] = list(self.compare)
        d.pop("id_derived")
        return d

    def to_json(self) -> str:
        return jsonout.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @property
    def run_key(self) -> str:
        """Requests with equal keys can share one unlearning run."""
        return json.dumps([self.dataset, self.method, self.params, sorted(self.compare)], sort_keys=True)


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    text = resources.files("piu_engine.service").joinpath("manifest.schema.json").read_text("utf-8")
    return json.loads(text)


def read_manifest_bytes(path: Path, max_bytes: int) -> bytes:
    """Read a manifest file without following symlinks or blocking; size-capped."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ManifestError([f"{path.name}: file not found"]) from None
    if stat.S_ISLNK(st.st_mode):
        raise ManifestError([f"{path.name}: is a symbolic link; copy the file itself into jobs/"])
    if not stat.S_ISREG(st.st_mode):
        raise ManifestError([f"{path.name}: not a regular file"])
    if st.st_size > max_bytes:
        raise ManifestError([f"{path.name}: {st.st_size} bytes, larger than service.max_manifest_bytes = {max_bytes}"])
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ManifestError([f"{path.name}: cannot open: {exc.strerror}"]) from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ManifestError([f"{path.name}: not a regular file"])
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ManifestError([f"{path.name}: larger than service.max_manifest_bytes = {max_bytes}"])
    return data


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


class _NotStrictJSON(ValueError):
    pass


def _no_constants(name: str) -> Any:
    raise _NotStrictJSON(f"{name} is not a JSON number (JSON allows finite numbers only)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotStrictJSON(f"the number {text[:40]} is out of range")
    return value


def parse_json(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError([f"not UTF-8 text (byte {exc.start})"]) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants, parse_float=_finite_float
        )
    except json.JSONDecodeError as exc:
        raise ManifestError([f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from None
    except ValueError as exc:  # duplicate key, NaN / Infinity, a number out of range
        raise ManifestError([f"not valid JSON: {exc}"]) from None
    except RecursionError:
        raise ManifestError(["not valid JSON: nested too deeply"]) from None


def _where(err) -> str:
    parts = [(p if p.isprintable() else _show(p)) if isinstance(p, str) else f"[{p}]" for p in err.absolute_path]
    return ".".join(parts).replace(".[", "[") or "(top level)"


def schema_problems(doc: Any) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    problems = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        where = _where(err)
        if err.validator == "required":
            problems.append(f"missing field: {err.message.split(' ')[0]}")
        elif err.validator == "additionalProperties":
            problems.append(f"unknown field: {err.message}")
        elif err.validator in ("pattern", "not") and where == "request_id":
            continue  # said once, by request_id_problems (fullmatch: "abc\\n" is not "abc")
        else:
            problems.append(f"{where}: {err.message}")
    return problems


def request_id_problems(doc: dict[str, Any]) -> list[str]:
    rid = doc.get("request_id")
    if not isinstance(rid, str):
        return []  # absent (derived) or the wrong type (the schema says so)
    problems = []
    shown = _show(rid if len(rid) <= 140 else rid[:137] + "...")
    if not valid_request_id(rid):
        problems.append(f"request_id: {shown} must be 1-128 letters, digits, '.', '_' or '-', not starting with '.'")
    if rid.lower().startswith(RESERVED_PREFIX):
        problems.append(
            f"request_id: {shown} starts with {RESERVED_PREFIX!r}, which the service reserves for "
            f"the records of rejected files; choose another request_id"
        )
    return problems


def _describe(chars: list[str]) -> str:
    shown = sorted(set(chars))[:5]
    return ", ".join(f"U+{ord(c):04X}" for c in shown) + (" ..." if len(set(chars)) > 5 else "")


def _text_problem(where: str, value: str, multiline: bool = False) -> str | None:
    """Why ``value`` cannot be taken as text, or None."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        bad = [c for c in value if 0xD800 <= ord(c) <= 0xDFFF]
        return (
            f"{where}: not encodable as UTF-8 (lone surrogate {_describe(bad)}; a JSON \\uD8xx escape must be "
            f"followed by its \\uDCxx pair)"
        )
    allowed = "\t\n" if multiline else ""
    controls = [c for c in value if (ord(c) < 32 and c not in allowed) or 0x7F <= ord(c) <= 0x9F]
    if controls:
        return f"{where}: contains control characters ({_describe(controls)})"
    bidi = [c for c in value if ord(c) in BIDI_CONTROLS]
    if bidi:
        return (
            f"{where}: contains bidirectional override characters ({_describe(bidi)}), which make text "
            f"display differently from what it holds"
        )
    return None


def text_problems(doc: dict[str, Any]) -> list[str]:
    """Every string of the manifest (keys too) must be UTF-8 text without control or bidi characters."""
    problems: list[str] = []

    def visit(where: str, value: Any, multiline: bool = False, depth: int = 0) -> None:
        if depth > 32:
            return
        if isinstance(value, str):
            p = _text_problem(where, value, multiline)
            if p:
                problems.append(p)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                visit(f"{where}[{i}]", v, depth=depth + 1)
        elif isinstance(value, dict):
            for k, v in value.items():
                key_where = f"{where} key {_show(k)}" if where else f"field {_show(k)}"
                p = _text_problem(key_where, k) if isinstance(k, str) else None
                if p:
                    problems.append(p)
                    continue
                visit(f"{where}.{k}" if where else k, v, multiline=not where and k in MULTILINE_FIELDS, depth=depth + 1)

    visit("", doc)
    return problems


def _show(value: str) -> str:
    """``repr`` that is safe to print whatever ``value`` holds."""
    return repr(value).encode("ascii", "backslashreplace").decode("ascii")


def _path_like(value: str) -> bool:
    return "/" in value or "\\" in value or ".." in value or "\x00" in value or value.startswith("~")


def smuggling_problems(doc: dict[str, Any], known_identities: frozenset[str] = frozenset()) -> list[str]:
    """Names must be names: no path separators, '..' or NUL (control characters:
    :func:`text_problems`).

    Identities are the exception when they are exactly a training identity of
    the dataset (MUFAC names people ``F0001/D``); the service never builds a
    path from an identity.
    """
    problems = []

    def check_name(where: str, value: Any) -> None:
        if isinstance(value, str) and _path_like(value):
            problems.append(
                f"{where}: {_show(value)} looks like a path ('/', '\\', '..', '~' or NUL); a plain name is expected"
            )

    for key in ("request_id", "dataset", "method"):
        check_name(key, doc.get(key))
    for key in ("identities", "compare"):
        if isinstance(doc.get(key), list):
            for i, v in enumerate(doc[key]):
                if key == "identities" and v in known_identities and "\x00" not in v:
                    continue
                check_name(f"{key}[{i}]", v)
    params = doc.get("params")
    if isinstance(params, dict):
        for k, v in params.items():
            check_name(f"params key {_show(k) if isinstance(k, str) else k}", k)
            if isinstance(v, str):
                check_name(f"params.{k}", v)
    return problems


def derive_request_id(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "request_id"}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "req-" + hashlib.sha256(canon.encode("utf-8")).hexdigest()[:16]


IdentityLookup = Callable[[str], list[str]]  # dataset -> training identities


def check_manifest(doc: Any, cfg: Config, train_identities: IdentityLookup, max_forget_share: float) -> Manifest:
    """Check a parsed manifest against schema, config, methods and dataset."""
    if not isinstance(doc, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(doc), "a number")
        raise ManifestError([f"expected a JSON object {{...}} at the top level, got {kind}"])
    problems = text_problems(doc)
    if any("not encodable as UTF-8" in p for p in problems):  # text that cannot even be stored: stop here
        raise ManifestError(problems)
    problems += schema_problems(doc) + request_id_problems(doc)
    dataset = doc.get("dataset")
    known: list[str] | None = None
    if isinstance(dataset, str) and dataset in cfg.datasets:
        try:
            known = list(train_identities(dataset))
        except Exception as exc:  # noqa: BLE001 - a dataset that cannot load is the request's problem too
            problems.append(f"dataset: {dataset!r} cannot be read: {exc}")
    known_set = frozenset(known or ())
    problems += smuggling_problems(doc, known_set)
    if problems:
        raise ManifestError(problems)

    method = doc.get("method", DEFAULT_METHOD)
    compare = list(doc.get("compare", []))
    params = dict(doc.get("params", {}))
    if dataset not in cfg.datasets:
        problems.append(f"dataset: unknown dataset {dataset!r}; configured: {', '.join(sorted(cfg.datasets))}")
    from piu_engine.core.methods.catalog import validate_overrides

    try:
        validate_overrides(method, params, key="params")
    except ConfigError as exc:
        problems.append(f"method/params: {exc}")
    for i, name in enumerate(compare):
        try:
            validate_overrides(name, {}, key=f"compare[{i}]")
        except ConfigError as exc:
            problems.append(str(exc))
    if method in compare:
        problems.append(f"compare: lists the request's own method {method!r}")
    if known is not None:
        unknown = [i for i in doc["identities"] if i not in known_set]
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:50]) + (" ..." if len(unknown) > 50 else "")
            problems.append(f"identities: {len(unknown)} not among the training identities of {dataset!r}: {shown}")
        limit = int(max_forget_share * len(known))
        if len(doc["identities"]) > limit:
            problems.append(
                f"identities: asks to forget {len(doc['identities'])} of {len(known)} training identities; "
                f"service.max_forget_share = {max_forget_share} allows at most {limit} per request"
            )
    if problems:
        raise ManifestError(problems)
    rid = doc.get("request_id")
    return Manifest(
        request_id=rid or derive_request_id(doc),
        dataset=str(dataset),
        identities=tuple(doc["identities"]),
        method=method,
        compare=tuple(compare),
        params=params,
        requested_by=doc.get("requested_by", ""),
        reason=doc.get("reason", ""),
        priority=int(doc.get("priority", 0)),
        id_derived=rid is None,
    )


def manifest_from_dict(d: dict[str, Any]) -> Manifest:
    """Rebuild a manifest stored by the service (already validated)."""
    return Manifest(
        request_id=d["request_id"],
        dataset=d["dataset"],
        identities=tuple(d["identities"]),
        method=d.get("method", DEFAULT_METHOD),
        compare=tuple(d.get("compare", ())),
        params=dict(d.get("params", {})),
        requested_by=d.get("requested_by", ""),
        reason=d.get("reason", ""),
        priority=int(d.get("priority", 0)),
    )


class IdentityCache:
    """Training identities per dataset, loaded once per process."""

    def __init__(self, cfg: Config, preset: str):
        self.cfg = cfg
        self.preset = preset
        self._info: dict[str, Any] = {}

    def info(self, dataset: str):
        if dataset not in self._info:
            from piu_engine.core.forget import describe_dataset

            self._info[dataset] = describe_dataset(self.cfg, dataset, self.preset)
        return self._info[dataset]

    def __call__(self, dataset: str) -> list[str]:
        return list(self.info(dataset).train_identities)

    def images(self, dataset: str, identity: str) -> int:
        return int(self.info(dataset).images_per_identity.get(identity, 0))


def load_manifest(
    path: Path, cfg: Config, identities: IdentityLookup, max_bytes: int, max_forget_share: float
) -> tuple[Manifest, bytes]:
    """Read and check one manifest file; raises :class:`ManifestError`."""
    data = read_manifest_bytes(path, max_bytes)
    return check_manifest(parse_json(data), cfg, identities, max_forget_share), data
