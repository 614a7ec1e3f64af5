"""Schema-1 JSON codecs of reports, scans and history (DESIGN.md "JSON report").

No Rich here: storage imports these to keep the stored report document.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from chainwatch.model import (
    Cert,
    Finding,
    FindingCode,
    Handshake,
    PathError,
    ProfileResult,
    Report,
    Severity,
    Status,
    Target,
)
from chainwatch.model.times import iso_or_none as iso
from chainwatch.model.times import parse_instant

SCHEMA = 1


class RenewalLike(Protocol):
    @property
    def target(self) -> Target: ...
    @property
    def old_leaf(self) -> str: ...
    @property
    def new_leaf(self) -> str: ...
    @property
    def observed_at(self) -> dt.datetime: ...


class HistoryRow(Protocol):
    """What :func:`history_json` reads of a stored observation (storage's
    ``StoredObservation``)."""

    @property
    def id(self) -> int: ...
    @property
    def target(self) -> Target: ...
    @property
    def observed_at(self) -> dt.datetime: ...
    @property
    def status(self) -> Status: ...
    @property
    def leaf_sha256(self) -> str | None: ...
    @property
    def chain(self) -> Sequence[str]: ...
    @property
    def breaks_at(self) -> dt.datetime | None: ...
    @property
    def days_left(self) -> int | None: ...
    @property
    def findings(self) -> Sequence[str]: ...
    @property
    def failure(self) -> str | None: ...
    @property
    def message(self) -> str | None: ...


class ScanLike(Protocol):
    """What :func:`scan_json` reads of a finished scan (the service's ``ScanResult``)."""

    @property
    def reports(self) -> Sequence[Report]: ...
    @property
    def uncovered(self) -> Sequence[str]: ...
    @property
    def notes(self) -> Sequence[str]: ...
    @property
    def renewals(self) -> Sequence[RenewalLike]: ...
    @property
    def status(self) -> Status: ...


def cert_json(index: int, cert: Cert) -> dict[str, Any]:
    return {
        "index": index,
        "subject": cert.subject,
        "issuer": cert.issuer,
        "sha256": cert.sha256,
        "not_before": iso(cert.not_before),
        "not_after": iso(cert.not_after),
        "is_ca": cert.is_ca,
        "self_signed": cert.self_signed,
    }


def profile_json(r: ProfileResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "profile": r.profile,
        "trusted": r.trusted,
        "error": None if r.error is None else r.error.value,
        "path": list(r.path),
        "breaks_at": iso(r.breaks_at),
        "reason": r.reason,
    }
    if r.leaf is not None:  # judged on its own handshake's chain (an extension)
        out["leaf"] = r.leaf
    return out


def handshake_json(h: Handshake) -> dict[str, Any]:
    return {
        "client_hello": None if h.client_hello is None else h.client_hello.as_dict(),
        "chain": list(h.chain),
        "profiles": list(h.profiles),
        "error": h.error,
    }


def finding_json(f: Finding) -> dict[str, Any]:
    return {
        "code": f.code.value,
        "severity": f.severity.value,
        "message": f.message,
        "profile": f.profile,
        "cert": f.cert,
    }


def target_json(t: Target) -> dict[str, Any]:
    return {"host": t.host, "port": t.port, "ip": t.ip, "sni": t.sni, "starttls": t.starttls}


def report_json(report: Report) -> dict[str, Any]:
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "status": report.status.value,
        "evaluated_at": iso(report.evaluated_at),
        "host": report.host,
        "breaks_at": iso(report.breaks_at),
        "days_left": report.days_left,
        "chain": [cert_json(i, c) for i, c in enumerate(report.chain)],
        "profiles": [profile_json(r) for r in report.profiles],
        "findings": [finding_json(f) for f in report.findings],
    }
    if report.target is not None:
        out["target"] = target_json(report.target)
    if report.handshakes:  # probed with more than one ClientHello (an extension)
        out["handshakes"] = [handshake_json(h) for h in report.handshakes]
    return out


def _instant(value: Any) -> dt.datetime | None:
    return None if value is None else parse_instant(str(value))


def report_from_json(doc: Mapping[str, Any], certs: Mapping[str, Cert]) -> Report:
    """The :class:`Report` a stored schema-1 document describes, its chain taken from
    ``certs`` (by SHA-256). Raises ``KeyError``/``ValueError`` on a document that is not
    one :func:`report_json` wrote (or a chain certificate missing from ``certs``)."""
    target = doc.get("target")
    evaluated = _instant(doc["evaluated_at"])
    if evaluated is None:
        raise ValueError("a report without evaluated_at")
    return Report(
        status=Status(doc["status"]),
        evaluated_at=evaluated,
        host=doc.get("host"),
        breaks_at=_instant(doc.get("breaks_at")),
        days_left=doc.get("days_left"),
        chain=tuple(certs[c["sha256"]] for c in doc.get("chain", ())),
        profiles=tuple(
            ProfileResult(profile=p["profile"], trusted=bool(p["trusted"]),
                          error=None if p.get("error") is None else PathError(p["error"]),
                          reason=p.get("reason"), path=tuple(p.get("path", ())),
                          breaks_at=_instant(p.get("breaks_at")))
            for p in doc.get("profiles", ())
        ),
        findings=tuple(
            Finding(FindingCode(f["code"]), Severity(f["severity"]), f["message"],
                    profile=f.get("profile"), cert=f.get("cert"))
            for f in doc.get("findings", ())
        ),
        target=None if target is None else Target(
            host=target["host"], port=int(target["port"]), ip=target.get("ip"),
            sni=target.get("sni"), starttls=target.get("starttls")),
    )


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False)


def worst(statuses: Sequence[Status]) -> Status:
    return max(statuses, key=lambda s: s.rank, default=Status.OK)



def target_text(report: Report) -> str:
    """The target of a report as people read it: ``host:port (starttls) [ip]``."""
    t = report.target
    if t is None:
        return report.host or "-"
    if t.is_file:
        return t.host
    text = f"{t.host}:{t.port}"
    if t.starttls:
        text += f" ({t.starttls})"
    if t.ip and t.ip != t.host:
        text += f" [{t.ip}]"
    return text


def scan_json(result: ScanLike) -> dict[str, Any]:
    """``{"schema": 1, "reports": [...]}`` (DESIGN.md), reports sorted by ``breaks_at``,
    plus ``uncovered_names`` and ``renewals`` (additions to the contract)."""
    return {
        "schema": SCHEMA,
        "reports": [report_json(r) for r in _scan_order(result)],
        **_scan_tail(result),
    }


def scan_json_chunks(result: ScanLike, extra: Mapping[str, Any] | None = None
                     ) -> Iterator[str]:
    """The text of ``dumps(scan_json(result) | extra)``, in pieces: one report's JSON is
    built and encoded at a time, so writing a scan of 100,000 targets never holds every
    report's document (nor ``json``'s list of every piece of text) at once."""
    yield f'{{\n  "schema": {json.dumps(SCHEMA)},\n  "reports": '
    reports = _scan_order(result)
    if not reports:
        yield "[]"
    else:
        yield "["
        for n, report in enumerate(reports):
            # A value's own indented text, moved two levels in: JSON strings hold no raw
            # newline, so every newline of the text is a line break of the layout.
            yield ("\n    " if n == 0 else ",\n    ") + dumps(report_json(report)).replace(
                "\n", "\n    ")
        yield "\n  ]"
    for key, value in {**_scan_tail(result), **(extra or {})}.items():
        yield f",\n  {json.dumps(key)}: " + dumps(value).replace("\n", "\n  ")
    yield "\n}"


def _scan_order(result: ScanLike) -> list[Report]:
    return sorted(result.reports, key=lambda r: (iso(r.breaks_at) or "~", target_text(r)))


def _scan_tail(result: ScanLike) -> dict[str, Any]:
    return {
        "uncovered_names": list(result.uncovered),
        "notes": list(result.notes),
        "renewals": [
            {"target": target_json(r.target), "old_leaf": r.old_leaf, "new_leaf": r.new_leaf,
             "observed_at": iso(r.observed_at)}
            for r in result.renewals
        ],
    }


def history_json(rows: Sequence[HistoryRow]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "observations": [
            {
                "observed_at": iso(r.observed_at),
                "target": target_json(r.target),
                "status": r.status.value,
                "leaf_sha256": r.leaf_sha256,
                "chain": list(r.chain),
                "breaks_at": iso(r.breaks_at),
                "days_left": r.days_left,
                "findings": list(r.findings),
                "failure": r.failure,
                "message": r.message,
            }
            for r in rows
        ],
    }


