"""``chainwatch scan``, ``serve`` and ``history``: the monitor's commands, over the service."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from chainwatch.cli.common import DbOpt, Format, FormatOpt, LogFormat, LogFormatOpt, parse_when
from chainwatch.errors import InputError
from chainwatch.model.names import printable, split_host_port
from chainwatch.model.times import iso
from chainwatch.render.codec import dumps

if TYPE_CHECKING:
    from chainwatch.config.values import Inventory
    from chainwatch.service.web import WebServer
    from chainwatch.storage.repo import Database


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
    from chainwatch.config.values import by_timeout
    from chainwatch.probe.handshake import Limits
    from chainwatch.probe.parallel import HeadStart

    when = parse_when(at) if at is not None else None
    inv = load_inventory(inventory)
    with HeadStart() as head:
        # A large sweep's probe processes start now and probe while the storage is
        # imported and the database opened; the batch takes them over. Only the first
        # group (by timeout) begins: the groups are probed one after another, so that
        # ``concurrency`` and the per-address limit hold for the whole sweep.
        for timeout, targets in list(by_timeout(inv.endpoints).items())[:1]:
            head.begin(targets, concurrency=concurrency, limits=Limits(timeout=timeout))
        from chainwatch.render.codec import scan_document, write_json
        from chainwatch.render.text import scan_text
        from chainwatch.service.cycle import Cycle, CycleResult
        from chainwatch.storage.repo import Database

        console = Console()
        with Database(db) as database, Cycle(database, concurrency=concurrency) as cycle:
            outcome: CycleResult
            if console.is_terminal and output is Format.text:
                from rich.progress import Progress

                with Progress(console=console, transient=True) as bar:
                    task = bar.add_task("scanning", total=None)
                    outcome = cycle.batch(
                        inv, at=when, begun=head,
                        progress=lambda n, total: bar.update(task, completed=n, total=total))
            else:
                outcome = cycle.batch(inv, at=when, begun=head)
    result = outcome.result
    for line in outcome.warnings:
        Console(stderr=True).print(printable(f"chainwatch: warning: {line}"), style="yellow",
                                   highlight=False, soft_wrap=True, markup=False)
    rehearsed = when is not None and inv.alerts is not None
    if output is Format.json:
        data = scan_document(result)
        if rehearsed and inv.alerts is not None:
            data["rehearsal"] = [
                {"event": d.event.value, "step": str(d.step), "target": d.target,
                 "channels": list(d.channels) or list(inv.alerts.channels),
                 "message": d.message}
                for d in outcome.rehearsal
            ]
        write_json(data, sys.stdout.write)
        sys.stdout.flush()
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
    distributed: Annotated[bool, typer.Option(
        "--distributed", help="Schedule only: put due batches on each zone's queue for "
        "`chainwatch worker`s; track, alert and deliver here, from the database.")] = False,
    broker: BrokerOpt = None,
    batch_deadline: DeadlineOpt = 120.0,
    listen: ListenOpt = "127.0.0.1:8080",
    no_web: Annotated[bool, typer.Option("--no-web", help="Do not serve the dashboard and "
                                         "API.")] = False,
    token_file: TokenFileOpt = None,
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
    cycle: Cycle
    if distributed:
        from chainwatch.service.distributed import DistributedCycle, broker_url, make_app

        url = broker_url(broker)
        redactor.add(*_url_secrets(url))
        if db is None or not db.startswith("postgresql"):
            Console(stderr=True).print(
                "chainwatch: warning: distributed mode shares one database between the "
                "scheduler and every worker: use PostgreSQL (--db postgresql+psycopg://...)",
                style="yellow", highlight=False, soft_wrap=True)
    elif broker is not None:
        raise InputError("--broker needs --distributed")
    sock = None if no_web else _bind_web(listen, token_file)
    with Database(db) as database:
        if distributed:
            cycle = DistributedCycle(database, make_app(url, deadline=batch_deadline),
                                     background=True, deadline=batch_deadline)
        else:
            cycle = Cycle(database, background=True)
        with cycle:
            scheduler = Scheduler(inventory, database, cycle=cycle, on_reload=lambda inv: (
                redactor.add(*logs.secrets_of(inv))))
            scheduler.install_signal_handlers()
            if sock is not None:
                web = _start_web(database, lambda: scheduler.inventory, sock, token_file)
                Console(stderr=True).print(f"chainwatch serve: dashboard and API at {web.url}",
                                           highlight=False, soft_wrap=True)
            zones = ", ".join(z.name for z in scheduler.inventory.used_zones())
            Console(stderr=True).print(
                f"chainwatch serve: watching {len(scheduler.inventory.endpoints)} endpoints and "
                f"{len(scheduler.inventory.files)} file patterns from {inventory}; "
                + (f"distributed over zones {zones}; " if distributed else "")
                + "SIGHUP reloads, Ctrl-C stops", highlight=False, soft_wrap=True)
            sys.stderr.flush()
            # Distributed: the tick (results of the workers, zone watch) runs every few
            # seconds, not only when the next endpoint is due.
            scheduler.run(max_batches=max_batches, max_sleep=2.0 if distributed else 60.0)


BrokerOpt = Annotated[str | None, typer.Option(
    "--broker", help="Celery broker URL (redis://HOST:6379/0 or amqp://USER:PASS@HOST/VHOST); "
    "default: $CHAINWATCH_BROKER.", show_default=False)]
DeadlineOpt = Annotated[float, typer.Option(
    "--batch-deadline", min=5.0, max=150.0,
    help="Seconds a batch may run on a worker; Redis redelivers a batch of a vanished "
    "worker after twice this. Give the scheduler and its workers the same value.")]


def _url_secrets(url: str) -> list[str]:
    from urllib.parse import urlsplit

    password = urlsplit(url).password
    return [password] if password else []


def worker_command(
    zone: Annotated[str, typer.Option("--zone", help="The zone whose batches to take.")],
    db: Annotated[str, typer.Option("--db", help="The shared database "
                                    "(postgresql+psycopg://...).")],
    broker: BrokerOpt = None,
    queue: Annotated[str | None, typer.Option(
        "--queue", help="The zone's queue when the inventory's zones section names one "
        "(default chainwatch.ZONE).")] = None,
    processes: Annotated[int, typer.Option(
        "--processes", min=1, max=256, help="Prefork pool size: batches done at once.")] = 2,
    name: Annotated[str | None, typer.Option(
        "--name", help="Worker name (default ZONE@HOST-PID).")] = None,
    batch_deadline: DeadlineOpt = 120.0,
    log_format: LogFormatOpt = LogFormat.text,
) -> None:
    """Take the batches of one zone and probe, analyse and store them (a Celery worker).

    Needs only outbound access to the broker and the database; holds no alert channel
    secrets. SIGTERM finishes the running batch, then stops.
    """
    from chainwatch.config.inventory import Zone
    from chainwatch.config.schema import ZONE_NAME
    from chainwatch.service import logs
    from chainwatch.service.distributed import broker_url, run_worker

    for flag, value in (("--zone", zone), ("--queue", queue)):
        if value is not None and not ZONE_NAME.fullmatch(value):
            raise InputError(f"{flag} {value[:80]!r}: letters, digits, '.', '_' and '-' "
                             "(at most 64)")
    url = broker_url(broker)
    redactor = logs.configure(secrets=logs.secrets_of(None, db), fmt=log_format.value)
    redactor.add(*_url_secrets(url))
    chosen = Zone.named(zone) if queue is None else Zone(name=zone, queue=queue)
    Console(stderr=True).print(f"chainwatch worker: zone {zone}, queue {chosen.queue}, "
                               f"{processes} processes", highlight=False)
    sys.stderr.flush()
    run_worker(zone=chosen, db_url=db, broker=url, processes=processes, name=name,
               deadline=batch_deadline)


ListenOpt = Annotated[str, typer.Option(
    "--listen", help="Dashboard and API address HOST:PORT (non-loopback needs a token).")]
TokenFileOpt = Annotated[Path | None, typer.Option(
    "--token-file", help="File whose first line is the token writes (ack) need "
    "(default: $CHAINWATCH_WEB_TOKEN).")]


def _bind_web(listen: str, token_file: Path | None) -> socket.socket:
    from chainwatch.service.web import bind, read_token

    return bind(listen, token=read_token(token_file))


def _start_web(database: Database, inventory: Callable[[], Inventory | None],
               sock: socket.socket, token_file: Path | None) -> WebServer:
    import os

    from chainwatch.service.web import FEED_TOKEN_ENV, WebServer, WebSettings, read_token

    settings = WebSettings(db=database, inventory=inventory, token=read_token(token_file),
                           feed_token=os.environ.get(FEED_TOKEN_ENV) or None)
    return WebServer(settings, sock).start()


def web_command(
    db: DbOpt = None,
    inventory: Annotated[Path | None, typer.Option(
        "--inventory", help="Inventory YAML: owners, tags, zones, thresholds, alert rules.")]
    = None,
    listen: ListenOpt = "127.0.0.1:8080",
    token_file: TokenFileOpt = None,
) -> None:
    """Serve the dashboard, JSON API and calendar feed from the database alone."""
    import signal
    import threading

    from chainwatch.config.inventory import load_inventory
    from chainwatch.storage.repo import Database

    inv = load_inventory(inventory) if inventory is not None else None
    sock = _bind_web(listen, token_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Database(db) as database:
        web = _start_web(database, lambda: inv, sock, token_file)
        Console(stderr=True).print(f"chainwatch web: dashboard and API at {web.url}; "
                                   "Ctrl-C stops", highlight=False, soft_wrap=True)
        sys.stderr.flush()
        while not stop.wait(1.0) and web.thread.is_alive():
            pass
        web.stop()


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
