"""Reports, scans and history as text: the plugin summary line and readable tables (Rich)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chainwatch.model import Report, Severity, Status
from chainwatch.model.names import printable
from chainwatch.model.times import iso_or_none as iso
from chainwatch.render.codec import target_text

# -- text ------------------------------------------------------------------------------
#
# Names and messages come from certificates and servers: a subject, an issuer or a SAN
# may hold line breaks, terminal escapes or Rich markup (``[/]`` used to crash the
# render). Every such string goes through :func:`cell` into a table, and whole lines are
# printed with ``markup=False`` after :func:`printable`.


def cell(text: str) -> str:
    """``text`` for a Rich table cell: non-printable characters escaped, markup inert."""
    return escape(printable(text))

_STYLE = {
    Status.OK: "green",
    Status.WARNING: "yellow",
    Status.CRITICAL: "bold red",
    Status.UNKNOWN: "magenta",
    Severity.INFO: "cyan",
    Severity.WARNING: "yellow",
    Severity.CRITICAL: "bold red",
}


def summary_line(report: Report, warn_days: int, crit_days: int) -> str:
    """One plugin-style line: ``CHAINWATCH STATUS - what | perfdata``."""
    subject = report.host or (report.chain[0].subject if report.chain else "bundle")
    if report.target is not None:
        t = report.target
        subject = f"{t.host}:{t.port}" + (f" [{t.ip}]" if t.ip and t.ip != t.host else "")
    worst_findings = [
        f for f in report.findings if f.severity is not Severity.INFO
    ]
    worst_findings.sort(key=lambda f: -f.severity.rank)
    if report.breaks_at is not None and report.days_left is not None and report.chain:
        if report.breaks_at <= report.evaluated_at:
            what = "broken now"
        else:
            what = f"trust breaks in {report.days_left} days ({iso(report.breaks_at)})"
    else:
        what = "no verdict"
    codes = ", ".join(dict.fromkeys(f.code.value for f in worst_findings))
    text = f"CHAINWATCH {report.status.value.upper()} - {subject}: {what}"
    if codes:
        text += f"; {codes}"
    if report.status is Status.UNKNOWN and report.findings:
        text += f": {report.findings[0].message}"
    if report.days_left is not None:
        text += f" | days_left={report.days_left};{warn_days};{crit_days}"
    return printable(text)


def _short(dn: str) -> str:
    first = dn.split(",", 1)[0]
    return first[3:] if first.startswith("CN=") else dn


def render_text(report: Report, console: Console, warn_days: int, crit_days: int) -> None:
    console.print(summary_line(report, warn_days, crit_days), style=_STYLE[report.status],
                  highlight=False, soft_wrap=True, markup=False)
    if report.chain:
        chain = Table(title="Served chain", title_justify="left", expand=False)
        for col in ("#", "subject", "issuer", "not after", "sha256"):
            chain.add_column(col, overflow="fold")
        for i, c in enumerate(report.chain):
            expired = report.evaluated_at > c.not_after
            chain.add_row(
                str(i), cell(c.short_name), cell(_short(c.issuer)),
                f"[red]{iso(c.not_after)}[/red]" if expired else str(iso(c.not_after)),
                c.sha256[:16],
            )
        console.print(chain)
    if report.profiles:
        prof = Table(title="Client profiles", title_justify="left")
        for col in ("profile", "trusted", "breaks at", "why / path"):
            prof.add_column(col, overflow="fold")
        for r in report.profiles:
            error = r.error.value if r.error else "?"
            verdict = "[green]yes[/green]" if r.trusted else f"[red]no ({error})[/red]"
            detail = r.reason or " → ".join(p[:8] for p in r.path)
            prof.add_row(cell(r.profile), verdict, iso(r.breaks_at) or "-", cell(detail))
        console.print(prof)
    if report.findings:
        fnd = Table(title="Findings", title_justify="left")
        for col in ("severity", "code", "message"):
            fnd.add_column(col, overflow="fold")
        for f in sorted(report.findings, key=lambda f: -f.severity.rank):
            style = _STYLE[f.severity]
            fnd.add_row(f"[{style}]{f.severity.value}[/{style}]", f.code.value, cell(f.message))
        console.print(fnd)


# -- scans and history -------------------------------------------------------------------

if TYPE_CHECKING:
    from chainwatch.render.codec import HistoryRow, ScanLike


def _sort_key(report: Report) -> tuple[int, str, str]:
    far = "9999-12-31T23:59:59Z"
    return (-report.status.rank, iso(report.breaks_at) or far, target_text(report))


def scan_text(result: ScanLike, console: Console) -> None:
    counts: dict[Status, int] = {}
    for r in result.reports:
        counts[r.status] = counts.get(r.status, 0) + 1
    soonest = min((r.breaks_at for r in result.reports if r.breaks_at is not None), default=None)
    parts = ", ".join(f"{n} {s.value}" for s, n in sorted(counts.items(), key=lambda i: -i[0].rank))
    line = f"CHAINWATCH {result.status.value.upper()} - {len(result.reports)} targets: {parts}"
    if soonest is not None:
        line += f"; first break {iso(soonest)}"
    console.print(line, style=_STYLE[result.status], highlight=False, soft_wrap=True,
                  markup=False)
    table = Table(title="Targets by urgency", title_justify="left")
    for col in ("status", "target", "breaks at", "days", "findings"):
        table.add_column(col, overflow="fold")
    for r in sorted(result.reports, key=_sort_key):
        style = _STYLE[r.status]
        codes = ", ".join(dict.fromkeys(
            f.code.value for f in r.findings if f.severity is not Severity.INFO
        ))
        if r.status is Status.UNKNOWN and r.findings:
            codes = r.findings[0].message
        table.add_row(f"[{style}]{r.status.value}[/{style}]", cell(target_text(r)),
                      iso(r.breaks_at) or "-", "-" if r.days_left is None else str(r.days_left),
                      cell(codes or "-"))
    console.print(table)
    if result.renewals:
        console.print(printable("Renewals seen: " + ", ".join(
            f"{r.target.host}:{r.target.port} [{r.target.ip}] {r.old_leaf[:12]} → "
            f"{r.new_leaf[:12]}" for r in result.renewals)), highlight=False, soft_wrap=True,
            markup=False)
    for note in result.notes:
        console.print(printable(f"note: {note}"), style="cyan", highlight=False,
                      soft_wrap=True, markup=False)
    if result.uncovered:
        console.print(printable("Names on served certificates that no endpoint watches: "
                                + ", ".join(result.uncovered)), style="yellow",
                      highlight=False, soft_wrap=True, markup=False)


def history_text(rows: Sequence[HistoryRow], console: Console) -> None:
    """The timeline, oldest first, marking each change of served leaf per address."""
    table = Table(title="History", title_justify="left")
    for col in ("observed", "address", "status", "leaf", "breaks at", "event"):
        table.add_column(col, overflow="fold")
    last_leaf: dict[tuple[str, int, str | None], str | None] = {}
    for r in sorted(rows, key=lambda r: (r.observed_at, r.id)):
        addr = (r.target.host, r.target.port, r.target.ip)
        event = ""
        if addr in last_leaf and last_leaf[addr] != r.leaf_sha256 and r.leaf_sha256:
            event = "new certificate"
        if r.failure:
            event = f"probe failed: {r.failure}"
        last_leaf[addr] = r.leaf_sha256 or last_leaf.get(addr)
        style = _STYLE[r.status]
        table.add_row(iso(r.observed_at) or "-", cell(f"{r.target.ip or r.target.host}"),
                      f"[{style}]{r.status.value}[/{style}]", (r.leaf_sha256 or "-")[:16],
                      iso(r.breaks_at) or "-", cell(event))
    console.print(table)
