"""A report's text output as values, before any rendering: lines and tables of plain text
with the style each piece is shown in on a terminal.

:mod:`chainwatch.render.text` prints them with Rich; :mod:`chainwatch.render.plain`
writes the same characters without Rich for output that is not a terminal (a monitoring
plugin's pipe). Nothing here imports Rich.

Names and messages come from certificates and servers: a subject, an issuer or a SAN may
hold line breaks, terminal escapes or Rich markup. Every such string is made
:func:`~chainwatch.model.names.printable` here; a :class:`Cell` holds plain text (Rich
markup in it is inert: the Rich printer escapes it).
"""

from __future__ import annotations

from typing import NamedTuple

from chainwatch.model import Report, Severity, Status
from chainwatch.model.names import printable
from chainwatch.model.times import iso_or_none as iso

STYLE = {
    Status.OK: "green",
    Status.WARNING: "yellow",
    Status.CRITICAL: "bold red",
    Status.UNKNOWN: "magenta",
    Severity.INFO: "cyan",
    Severity.WARNING: "yellow",
    Severity.CRITICAL: "bold red",
}
"""The terminal style of each status and severity."""


class Line(NamedTuple):
    """One printed line (or more, where ``text`` has line breaks or ``wrap`` wraps it).

    Attributes:
        text: what is printed; Rich markup when ``markup`` (only chainwatch's own fixed
            texts are printed as markup), else plain text.
        style: the terminal style of the whole line, or ``None``.
        markup: ``text`` is Rich markup.
        wrap: wrapped at the width of the output (``False``: one line however long, as
            Rich's ``soft_wrap``).
    """

    text: str
    style: str | None = None
    markup: bool = False
    wrap: bool = False


class Cell(NamedTuple):
    """A table cell: plain text and its terminal style (``None``: the table's)."""

    text: str
    style: str | None = None


class Table(NamedTuple):
    """A table with a title over it; every column folds words longer than its width."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


Block = Line | Table


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


def short_name(dn: str) -> str:
    """A distinguished name's first CN, else the whole name."""
    first = dn.split(",", 1)[0]
    return first[3:] if first.startswith("CN=") else dn


def report_blocks(report: Report, warn_days: int, crit_days: int) -> list[Block]:
    """The summary line, then the served chain, the client profiles and the findings
    (each table only when it has rows)."""
    blocks: list[Block] = [Line(summary_line(report, warn_days, crit_days),
                                style=STYLE[report.status])]
    if report.chain:
        blocks.append(Table("Served chain", ("#", "subject", "issuer", "not after", "sha256"),
                            tuple(
            (Cell(str(i)), Cell(printable(c.short_name)), Cell(printable(short_name(c.issuer))),
             Cell(str(iso(c.not_after)), "red" if report.evaluated_at > c.not_after else None),
             Cell(c.sha256[:16]))
            for i, c in enumerate(report.chain))))
    if report.profiles:
        rows = []
        for r in report.profiles:
            error = r.error.value if r.error else "?"
            verdict = Cell("yes", "green") if r.trusted else Cell(f"no ({error})", "red")
            detail = r.reason or " → ".join(p[:8] for p in r.path)
            rows.append((Cell(printable(r.profile)), verdict, Cell(iso(r.breaks_at) or "-"),
                         Cell(printable(detail))))
        blocks.append(Table("Client profiles", ("profile", "trusted", "breaks at",
                                                "why / path"), tuple(rows)))
    if report.findings:
        blocks.append(Table("Findings", ("severity", "code", "message"), tuple(
            (Cell(f.severity.value, STYLE[f.severity]), Cell(f.code.value),
             Cell(printable(f.message)))
            for f in sorted(report.findings, key=lambda f: -f.severity.rank))))
    return blocks
