"""``chainwatch scan``, ``serve`` and ``history``: the monitor's commands, over the service."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chainwatch.cli.common import DbOpt, Format, FormatOpt, LogFormat, LogFormatOpt, parse_when
from chainwatch.errors import InputError
from chainwatch.model.names import printable, split_host_port
from chainwatch.model.times import iso
from chainwatch.render.codec import dumps


def scan_command(
    inventory: Annotated[Path, typer.Argument(help="Inventory YAML file.")],
    db: DbOpt = None,
    output: FormatOpt = Format.text,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=10000,
                                             help="Most probes in flight at once.")] = 256,
    at: Annotated[str | None, typer.Option(
        "--at", help="Evaluate (and run the alert policy) as of this instant while probing "
        "now: rehearse an escalation. Nothing is stored or sent.")] = None,
) -> None:
    """Probe every endpoint and file of an inventory, analyse, store, alert and report."""
    _prestart_probes(inventory)
    from chainwatch.config.inventory import load_inventory
    from chainwatch.render.codec import scan_json
    from chainwatch.render.text import scan_text
    from chainwatch.service.cycle import Cycle, CycleResult
    from chainwatch.storage.repo import Database

    inv = load_inventory(inventory)
    when = parse_when(at) if at is not None else None
    console = Console()
    with Database(db) as database, Cycle(database, concurrency=concurrency) as cycle:
        outcome: CycleResult
        if console.is_terminal and output is Format.text:
            from rich.progress import Progress

            with Progress(console=console, transient=True) as bar:
                task = bar.add_task("scanning", total=None)
                outcome = cycle.batch(inv, at=when, progress=lambda n, total: bar.update(
                    task, completed=n, total=total))
        else:
            outcome = cycle.batch(inv, at=when)
    result = outcome.result
    for line in outcome.warnings:
        Console(stderr=True).print(printable(f"chainwatch: warning: {line}"), style="yellow",
                                   highlight=False, soft_wrap=True, markup=False)
    rehearsed = when is not None and inv.alerts is not None
    if output is Format.json:
        data = scan_json(result)
        if rehearsed and inv.alerts is not None:
            data["rehearsal"] = [
                {"event": d.event.value, "step": str(d.step), "target": d.target,
                 "channels": list(d.channels) or list(inv.alerts.channels),
                 "message": d.message}
                for d in outcome.rehearsal
            ]
        typer.echo(dumps(data))
    else:
        scan_text(result, console)
        if when is not None:
            if inv.alerts is None:
                console.print(f"Rehearsal as of {iso(when)}: nothing stored.", highlight=False)
            else:
                console.print(f"Alert rehearsal as of {iso(when)} (nothing sent, "
                              "nothing stored):", highlight=False)
                for d in outcome.rehearsal:
                    console.print(printable(f"  would {d.event} ({d.step}) {d.target}: "
                                            f"{d.message}"),
                                  highlight=False, soft_wrap=True, markup=False)
                if not outcome.rehearsal:
                    console.print("  nothing would fire", highlight=False)
    raise typer.Exit(result.status.exit_code)


PRESTART_BYTES = 8 * 1024
"""An inventory file this large lists a few hundred endpoints or more: enough for the
scan to probe in child processes (``probe_all``'s ``PROCESS_MIN_ADDRESSES``)."""


def _prestart_probes(inventory: Path) -> None:
    """Start the probe processes' forkserver while the inventory is parsed and the
    database opened (on the other core), when the scan will likely use it."""
    try:
        large = inventory.stat().st_size >= PRESTART_BYTES
    except OSError:
        return  # loading the inventory names the problem
    if large:
        from chainwatch.probe.parallel import prestart

        prestart()


def serve_command(
    inventory: Annotated[Path, typer.Argument(help="Inventory YAML file.")],
    db: DbOpt = None,
    max_batches: Annotated[int | None, typer.Option(
        "--max-batches", min=1, help="Stop after this many scan batches (default: run until "
        "SIGTERM).")] = None,
    log_format: LogFormatOpt = LogFormat.text,
) -> None:
    """Keep scanning the inventory on its intervals, storing results and alerting.

    SIGHUP reloads the inventory; SIGTERM or Ctrl-C stops after the current batch.
    """
    from chainwatch.config.inventory import load_inventory
    from chainwatch.service import logs
    from chainwatch.service.cycle import Cycle
    from chainwatch.service.scheduler import Scheduler
    from chainwatch.storage.repo import Database

    redactor = logs.configure(secrets=logs.secrets_of(load_inventory(inventory), db),
                              fmt=log_format.value)
    with Database(db) as database, Cycle(database, background=True) as cycle:
        scheduler = Scheduler(inventory, database, cycle=cycle, on_reload=lambda inv: (
            redactor.add(*logs.secrets_of(inv))))
        scheduler.install_signal_handlers()
        Console(stderr=True).print(
            f"chainwatch serve: watching {len(scheduler.inventory.endpoints)} endpoints and "
            f"{len(scheduler.inventory.files)} file patterns from {inventory}; "
            "SIGHUP reloads, Ctrl-C stops", highlight=False, soft_wrap=True)
        sys.stderr.flush()
        scheduler.run(max_batches=max_batches)


def history_command(
    host: Annotated[str, typer.Argument(help="Host name as in the inventory; HOST:PORT too.")],
    db: DbOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most observations shown.")] = 50,
    output: FormatOpt = Format.text,
) -> None:
    """Show the timeline of what HOST served: certificates, renewals, status changes."""
    from chainwatch.render.codec import history_json
    from chainwatch.render.text import history_text
    from chainwatch.storage.repo import Database

    name, port = _host_port(host)
    with Database(db) as database:
        rows = database.history(name, port, limit=limit)
    if not rows:
        raise InputError(f"no observations of {host[:80]} in the database")
    if output is Format.json:
        typer.echo(dumps(history_json(rows)))
    else:
        history_text(rows, Console())


def _host_port(text: str) -> tuple[str, int | None]:
    try:
        host, port = split_host_port(text)
    except ValueError:
        return text, None
    return host, int(port) if port is not None and port.isdigit() else None
