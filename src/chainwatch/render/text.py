"""Reports, scans and history as text: the plugin summary line and readable tables (Rich).

A report's output is built as values by :mod:`chainwatch.render.blocks` and printed here
with Rich (:func:`print_blocks`); :mod:`chainwatch.render.plain` writes the same
characters without Rich where the output is not a terminal."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chainwatch.model import Report, Severity, Status
from chainwatch.model.names import printable
from chainwatch.model.times import iso_or_none as iso
from chainwatch.render import blocks
from chainwatch.render.blocks import STYLE as _STYLE
from chainwatch.render.blocks import report_blocks, summary_line
from chainwatch.render.codec import target_text

__all__ = ["cell", "history_text", "print_blocks", "render_text", "scan_text", "summary_line"]

# -- text ------------------------------------------------------------------------------
#
# Names and messages come from certificates and servers: a subject, an issuer or a SAN
# may hold line breaks, terminal escapes or Rich markup (``[/]`` used to crash the
# render). Every such string goes through :func:`cell` into a table, and whole lines are
# printed with ``markup=False`` after :func:`printable`.


def cell(text: str) -> str:
    """``text`` for a Rich table cell: non-printable characters escaped, markup inert."""
    return escape(printable(text))


def _markup(piece: blocks.Cell) -> str:
    """A cell of :mod:`.blocks` (plain text) as Rich markup."""
    text = escape(piece.text)
    return f"[{piece.style}]{text}[/{piece.style}]" if piece.style else text


def print_blocks(output: Iterable[blocks.Block], console: Console) -> None:
    """Print lines and tables of :mod:`.blocks` on ``console``."""
    for block in output:
        if isinstance(block, blocks.Line):
            console.print(block.text, style=block.style, highlight=False,
                          soft_wrap=not block.wrap, markup=block.markup)
            continue
        table = Table(title=block.title, title_justify="left")
        for header in block.headers:
            table.add_column(header, overflow="fold")
        for row in block.rows:
            table.add_row(*(_markup(piece) for piece in row))
        console.print(table)


def render_text(report: Report, console: Console, warn_days: int, crit_days: int) -> None:
    print_blocks(report_blocks(report, warn_days, crit_days), console)


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
