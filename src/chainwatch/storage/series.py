"""What ``/metrics`` needs of a report document, kept beside it (migration ``0009``).

::

    text = series_of(body)        # written once with the document (report_documents.series)
    summary = read_series(text)   # what the render reads instead of the whole body

A report document is the whole schema-1 report (the served chain, every profile's paths
and reasons, every finding's message); the per-address series need a few numbers of it:
each profile's spec, whether it trusts now and when it breaks, the (code, severity)
counts of the findings and each served certificate's ``not_after``. Those are computed
once, when the document is first stored (a steady scan stores no document, so it adds
nothing), as compact JSON text::

    {"p": [["file:/r.pem", true, 1798761600.0], ["legacy:...", false, null]],
     "f": [["CHAIN_ORDER", "warning", 1]], "n": [1798761600.0, 1893456000.0]}

``p``: (spec, trusted, breaks_at epoch s or null: an untrusted profile, or a trusted one
with no ``breaks_at``, breaks at the instant of evaluation, which is per scan and read
from the observation). ``f``: findings counted by (code, severity), in first-seen order.
``n``: the ``not_after`` (epoch s) of each served certificate whose date parses. Values
are read exactly as the straightforward render reads the document (``str()`` of the
spec, only ``trusted is True`` trusts, entries that are not objects skipped).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def epoch(text: object) -> float | None:
    """Epoch seconds of an ISO-8601 text; ``None`` for anything else."""
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Series:
    """A document's summary (see the module docstring).

    Attributes:
        profiles: (spec, trusted now, breaks_at epoch s or ``None``: at evaluation).
        findings: ((code, severity), count), in first-seen order.
        not_after: each served certificate's ``not_after`` (epoch s), in served order.
    """

    profiles: tuple[tuple[str, bool, float | None], ...]
    findings: tuple[tuple[tuple[str, str], int], ...]
    not_after: tuple[float, ...]


def summarize(report: Mapping[str, Any]) -> Series:
    """The :class:`Series` of a schema-1 report or report document."""
    profiles = []
    for p in report.get("profiles") or ():
        if not isinstance(p, Mapping):
            continue
        trusted = p.get("trusted") is True
        profiles.append((str(p.get("profile")), trusted,
                         epoch(p.get("breaks_at")) if trusted else None))
    counts: dict[tuple[str, str], int] = {}
    for f in report.get("findings") or ():
        if isinstance(f, Mapping):
            key = (str(f.get("code")), str(f.get("severity")))
            counts[key] = counts.get(key, 0) + 1
    not_after = tuple(
        e for c in report.get("chain") or () if isinstance(c, Mapping)
        if (e := epoch(c.get("not_after"))) is not None
    )
    return Series(profiles=tuple(profiles), findings=tuple(counts.items()),
                  not_after=not_after)


def series_of(report: Mapping[str, Any]) -> str:
    """The compact JSON text stored in ``report_documents.series`` for ``report``."""
    s = summarize(report)
    return json.dumps({
        "p": [list(p) for p in s.profiles],
        "f": [[code, severity, n] for (code, severity), n in s.findings],
        "n": list(s.not_after),
    }, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def read_series(text: str) -> Series:
    """The :class:`Series` that :func:`series_of` wrote."""
    data = json.loads(text)
    return Series(
        profiles=tuple((str(spec), trusted is True, None if at is None else float(at))
                       for spec, trusted, at in data["p"]),
        findings=tuple(((str(code), str(sev)), int(n)) for code, sev, n in data["f"]),
        not_after=tuple(float(e) for e in data["n"]),
    )


__all__ = ["Series", "epoch", "read_series", "series_of", "summarize"]
