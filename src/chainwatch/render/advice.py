"""``chainwatch advise`` output: the advised chain's schema-1 report with an ``advice``
object (JSON), or a plugin summary line, the diff and the populations (text).

JSON (``--format json``): the schema-1 report of the *advised* chain, exactly what
``check-bundle`` prints for it (so ``status``, ``breaks_at``, ``chain``, ``profiles`` and
``findings`` are the advised chain's, and the exit status is its status), extended with::

    "advice": {
      "changed": true, "order_changed": false,
      "served":  {"chain": ["<sha256>", ...], "bytes": 4321, "status": "critical",
                  "breaks_at": "...Z", "days_left": 0},
      "advised": {"chain": ["<sha256>", ...], "bytes": 2100, "status": "ok",
                  "breaks_at": "...Z", "days_left": 144},
      "diff": [{"change": "kept|moved|added|removed", "sha256": "...", "subject": "...",
                "issuer": "...", "not_after": "...Z", "served_index": 2,
                "advised_index": null, "source": "served|store:SPEC|aia|file:PATH"}],
      "profiles": [{"profile": "legacy:mozilla@2020-05-01",
                    "before": {"trusted": false, "error": "expired", "reason": "...",
                               "breaks_at": null},
                    "after":  {"trusted": true, "error": null, "reason": null,
                               "breaks_at": "...Z"},
                    "satisfiable": true, "best_breaks_at": "...Z", "why": null}],
      "unsatisfied": [{"profile": "...", "error": "no_path", "reason": "..."}],
      "search": {"pool": 198, "candidates": 5, "chains": 25, "limit": 2000,
                 "max_depth": 6, "exhausted": false}
    }

plus ``"aia": [notes]`` when caIssuers URLs were fetched.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from chainwatch.model import ProfileResult, Report, Severity
from chainwatch.model.advice import Advice, Change, ProfileAdvice
from chainwatch.model.times import iso_or_none as iso
from chainwatch.render.blocks import STYLE as _STYLE
from chainwatch.render.blocks import short_name as _short
from chainwatch.render.codec import report_json


def _verdict_json(r: ProfileResult) -> dict[str, Any]:
    return {
        "trusted": r.trusted,
        "error": None if r.error is None else r.error.value,
        "reason": r.reason,
        "breaks_at": iso(r.breaks_at),
    }


def _side(report: Report, nbytes: int) -> dict[str, Any]:
    return {
        "chain": [c.sha256 for c in report.chain],
        "bytes": nbytes,
        "status": report.status.value,
        "breaks_at": iso(report.breaks_at),
        "days_left": report.days_left,
    }


def _profile_json(p: ProfileAdvice) -> dict[str, Any]:
    return {
        "profile": p.profile,
        "before": _verdict_json(p.before),
        "after": _verdict_json(p.after),
        "satisfiable": p.satisfiable,
        "best_breaks_at": iso(p.best.breaks_at),
        "why": p.why,
    }


def advice_json(advice: Advice, notes: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The advised chain's report with the ``advice`` object (module docstring)."""
    doc = report_json(advice.advised_report)
    search = advice.search
    body: dict[str, Any] = {
        "changed": advice.changed,
        "order_changed": advice.order_changed,
        "served": _side(advice.served_report, advice.served_bytes),
        "advised": _side(advice.advised_report, advice.advised_bytes),
        "diff": [
            {
                "change": c.change.value,
                "sha256": c.cert.sha256,
                "subject": c.cert.subject,
                "issuer": c.cert.issuer,
                "not_after": iso(c.cert.not_after),
                "served_index": c.served_index,
                "advised_index": c.advised_index,
                "source": c.source,
            }
            for c in advice.changes
        ],
        "profiles": [_profile_json(p) for p in advice.profiles],
        "unsatisfied": [
            {"profile": p.profile,
             "error": None if p.after.error is None else p.after.error.value,
             "reason": p.why}
            for p in advice.unsatisfied
        ],
        "search": {
            "pool": search.pool,
            "candidates": search.candidates,
            "chains": search.chains,
            "limit": search.limit,
            "max_depth": search.max_depth,
            "exhausted": search.exhausted,
        },
    }
    if notes is not None:
        body["aia"] = list(notes)
    doc["advice"] = body
    return doc


def _when(report: Report) -> str:
    if report.breaks_at is None:
        return "no verdict"
    if report.breaks_at <= report.evaluated_at:
        return "broken now"
    return f"trust until {iso(report.breaks_at)}"


def advice_summary(advice: Advice, subject: str, warn_days: int, crit_days: int) -> str:
    """One plugin-style line: what to serve, and what it changes."""
    after = advice.advised_report
    n_served, n_advised = len(advice.served), len(advice.advised)
    if not advice.changed:
        what = f"keep serving the {n_served} certificate(s) served now ({_when(after)})"
    else:
        added = sum(1 for c in advice.changes if c.change is Change.ADDED)
        removed = sum(1 for c in advice.changes if c.change is Change.REMOVED)
        parts = [f"add {added}"] if added else []
        if removed:
            parts.append(f"drop {removed}")
        if advice.order_changed:
            parts.append("reorder")
        what = (f"serve {n_advised} certificate(s) instead of {n_served} "
                f"({', '.join(parts)}): {_when(after)}, served now: "
                f"{_when(advice.served_report)}")
    text = f"CHAINWATCH {after.status.value.upper()} - {subject}: {what}"
    if advice.unsatisfied:
        text += "; still untrusted: " + ", ".join(p.profile for p in advice.unsatisfied)
    if after.days_left is not None:
        text += f" | days_left={after.days_left};{warn_days};{crit_days}"
    return text


_MARK = {Change.KEPT: " ", Change.MOVED: "~", Change.ADDED: "+", Change.REMOVED: "-"}
_CHANGE_STYLE = {Change.KEPT: "", Change.MOVED: "yellow", Change.ADDED: "green",
                 Change.REMOVED: "red"}


def _cell(r: ProfileResult) -> str:
    if r.trusted:
        return f"until {iso(r.breaks_at)}"
    return f"[red]untrusted ({r.error.value if r.error else '?'})[/red]"


def render_advice(advice: Advice, console: Console, subject: str, warn_days: int,
                  crit_days: int, notes: tuple[str, ...] | None = None) -> None:
    """The summary line, the diff, each population before and after, the advised
    chain's findings and how much was searched."""
    status = advice.advised_report.status
    console.print(advice_summary(advice, subject, warn_days, crit_days),
                  style=_STYLE[status], highlight=False, soft_wrap=True)
    diff = Table(title="Chain to serve (diff against what is served now)",
                 title_justify="left")
    for col in ("", "served #", "advised #", "subject", "issuer", "not after", "source"):
        diff.add_column(col, overflow="fold")
    at = advice.at
    for c in advice.changes:
        style = _CHANGE_STYLE[c.change]
        expired = at > c.cert.not_after
        not_after = str(iso(c.cert.not_after))
        diff.add_row(
            f"{_MARK[c.change]} {c.change.value}",
            "-" if c.served_index is None else str(c.served_index),
            "-" if c.advised_index is None else str(c.advised_index),
            c.cert.short_name, _short(c.cert.issuer),
            f"[red]{not_after} (expired)[/red]" if expired else not_after,
            c.source, style=style or None,
        )
    console.print(diff)
    prof = Table(title="Client profiles: breaks_at before and after", title_justify="left")
    for col in ("profile", "served now", "advised", "note"):
        prof.add_column(col, overflow="fold")
    for p in advice.profiles:
        note = p.why or ""
        if p.after.trusted and p.conflict:
            note = (f"alone it could last until {iso(p.best.breaks_at)}; shortened for the "
                    "other required profiles")
        prof.add_row(p.profile, _cell(p.before), _cell(p.after), note)
    console.print(prof)
    findings = [f for f in advice.advised_report.findings if f.severity is not Severity.INFO]
    if findings:
        fnd = Table(title="Findings on the advised chain", title_justify="left")
        for col in ("severity", "code", "message"):
            fnd.add_column(col, overflow="fold")
        for f in sorted(findings, key=lambda f: -f.severity.rank):
            style = _STYLE[f.severity]
            fnd.add_row(f"[{style}]{f.severity.value}[/{style}]", f.code.value, f.message)
        console.print(fnd)
    s = advice.search
    line = (f"searched {s.chains} chain(s) of at most {s.max_depth} certificates over "
            f"{s.candidates} candidate issuer(s) (pool of {s.pool})")
    if s.exhausted:
        line += f"; the cap of {s.limit} chains was reached: a better chain may exist"
    console.print(line, highlight=False, soft_wrap=True)
    for note in notes or ():
        console.print(f"AIA: {note}", highlight=False, soft_wrap=True)


__all__ = ["advice_json", "advice_summary", "render_advice"]
