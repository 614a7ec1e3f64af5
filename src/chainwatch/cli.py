"""The ``chainwatch`` command line (Typer). Thin: parses flags, calls the rooms, renders.

Exit statuses follow the Nagios/Icinga plugin convention: 0 ok, 1 warning,
2 critical, 3 unknown. Usage errors and bad input are *unknown* (3), never 2, and
never a traceback: the message names the file, field or host at fault.
"""

from __future__ import annotations

import datetime as dt
import gc
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.exceptions import Abort, Exit, TyperException

from chainwatch import __version__
from chainwatch.alerts_cli import alerts_app
from chainwatch.analysis.engine import (
    DEFAULT_CRIT_DAYS,
    DEFAULT_WARN_DAYS,
    analyze,
    key_fingerprint,
)
from chainwatch.errors import EXIT_UNKNOWN, ChainwatchError, InputError
from chainwatch.model import Profile
from chainwatch.parsing import load_bundle_file, load_private_key
from chainwatch.render import dumps, render_text, report_json
from chainwatch.stores import resolve_profile

if TYPE_CHECKING:  # heavy modules are imported by the commands that need them
    from chainwatch.inventory import Inventory
    from chainwatch.monitor import ScanResult
    from chainwatch.policy import Delivery
    from chainwatch.probe.fetch import NetworkInputs
    from chainwatch.storage.repo import Database

app = typer.Typer(
    name="chainwatch",
    help="Make TLS certificate outages impossible to miss.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Format(StrEnum):
    text = "text"
    json = "json"


def parse_when(value: str | None) -> dt.datetime:
    """ISO 8601 date or datetime; no offset means UTC; ``None`` means now."""
    if value is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(
            f"--at {value!r}: expected an ISO 8601 date or datetime, e.g. 2021-09-30 "
            "or 2021-09-30T14:01:15Z"
        ) from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def resolve_profiles(specs: list[str] | None) -> list[Profile]:
    return [resolve_profile(s) for s in (specs or ["mozilla"])]


def _check_days(warn_days: int, crit_days: int) -> None:
    if warn_days < 0 or crit_days < 0:
        raise InputError("--warn-days and --crit-days must not be negative")


AtOpt = Annotated[
    str | None, typer.Option("--at", help="Evaluate at this instant (ISO 8601; default now, UTC).")
]
ProfileOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--profile",
        help="Client profile spec (repeatable): mozilla, mozilla@DATE, system, file:PATH, "
        "legacy:STORE. Default: mozilla.",
    ),
]
WarnOpt = Annotated[int, typer.Option("--warn-days", help="Warning when fewer days are left.")]
CritOpt = Annotated[int, typer.Option("--crit-days", help="Critical when fewer days are left.")]
FormatOpt = Annotated[Format, typer.Option("--format", help="Output format.")]


@app.command("check-bundle")
def check_bundle(
    bundle: Annotated[Path, typer.Argument(help="PEM (leaf first), DER or PKCS#12 file.")],
    host: Annotated[str | None, typer.Option("--host", help="Name the leaf must cover.")] = None,
    key: Annotated[
        Path | None, typer.Option("--key", help="Private key that must match the leaf.")
    ] = None,
    at: AtOpt = None,
    profile: ProfileOpt = None,
    warn_days: WarnOpt = DEFAULT_WARN_DAYS,
    crit_days: CritOpt = DEFAULT_CRIT_DAYS,
    output: FormatOpt = Format.text,
) -> None:
    """Check a certificate bundle against every client profile, before deploying it."""
    _check_days(warn_days, crit_days)
    when = parse_when(at)
    profiles = resolve_profiles(profile)
    chain = load_bundle_file(bundle)
    key_spki = key_fingerprint(load_private_key(key)) if key is not None else None
    report = analyze(
        chain, profiles, at=when, host=host, warn_days=warn_days, crit_days=crit_days,
        key_spki=key_spki,
    )
    if output is Format.json:
        typer.echo(dumps(report_json(report)))
    else:
        render_text(report, Console(), warn_days, crit_days)
    raise typer.Exit(report.status.exit_code)


@app.command("check")
def check_endpoint(
    endpoint: Annotated[
        str,
        typer.Argument(metavar="HOST[:PORT]", help="Endpoint to probe; IPv6 as [ADDR]:PORT. "
                       "Default port 443, or the STARTTLS protocol's usual port."),
    ],
    sni: Annotated[
        str | None, typer.Option("--sni", help="Server name to send (default: HOST); also "
                                 "the name the leaf must cover.")
    ] = None,
    ip: Annotated[
        str | None, typer.Option("--ip", help="Probe only this address instead of every "
                                 "address HOST resolves to.")
    ] = None,
    starttls: Annotated[
        str | None, typer.Option("--starttls", help="Upgrade with STARTTLS first: smtp, imap, "
                                 "pop3, ftp, ldap, xmpp or postgres.")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds allowed for each of connect, STARTTLS "
                            "and handshake, and for each AIA or revocation fetch.")
    ] = 10.0,
    at: AtOpt = None,
    profile: ProfileOpt = None,
    warn_days: WarnOpt = DEFAULT_WARN_DAYS,
    crit_days: CritOpt = DEFAULT_CRIT_DAYS,
    output: FormatOpt = Format.text,
    revocation: Annotated[
        bool, typer.Option("--revocation", help="Check whether the leaf is revoked: its "
                           "stapled OCSP response, else its OCSP responder, else its CRL.")
    ] = False,
    aia: Annotated[
        bool, typer.Option("--aia", help="Modern profiles complete a chain that lacks an "
                           "intermediate by fetching it from the caIssuers URL, as browsers "
                           "do (legacy profiles model OpenSSL 1.0.x, which never fetches).")
    ] = False,
) -> None:
    """Probe a live endpoint (every address behind it) and check the chain each serves."""
    from dataclasses import replace

    from chainwatch.model import Target
    from chainwatch.observe import address_summary, report_for
    from chainwatch.probe.fetch import NetworkInputs, fetch_inputs
    from chainwatch.probe.tls import Limits, probe_all

    _check_days(warn_days, crit_days)
    when = parse_when(at)
    protocol = _starttls_arg(starttls)
    host, port = _endpoint_arg(endpoint, protocol)
    address = _ip_arg(ip)
    if not timeout > 0:
        raise InputError(f"--timeout {timeout:g}: must be a positive number of seconds")
    profiles = resolve_profiles(profile)
    if aia:
        profiles = [replace(p, aia=True) if not p.legacy else p for p in profiles]
    target = Target(host=host, port=port, ip=address, sni=sni or None, starttls=protocol)
    observations = probe_all([target], limits=Limits(timeout=timeout))
    if revocation or aia:
        inputs = fetch_inputs([(o, profiles) for o in observations], revocation=revocation,
                              timeout=timeout)
    else:
        inputs = [NetworkInputs() for _ in observations]
    name = sni or host
    reports = [
        report_for(o, profiles, at=when, host=name, warn_days=warn_days, crit_days=crit_days,
                   revocation=i.revocation, fetched=i.fetched)
        for o, i in zip(observations, inputs, strict=True)
    ]
    worst_n = max(range(len(reports)), key=lambda n: reports[n].status.rank)
    worst = reports[worst_n]
    if output is Format.json:
        doc = report_json(worst)
        if len(reports) > 1:
            doc["addresses"] = [address_summary(r) for r in reports]
        doc.update(_network_json(inputs[worst_n], revocation=revocation, aia=aia))
        typer.echo(dumps(doc))
    else:
        console = Console()
        if len(reports) > 1:
            from chainwatch.render import summary_line

            console.print(summary_line(worst, warn_days, crit_days), highlight=False,
                          soft_wrap=True)
        for n, (report, obs) in enumerate(zip(reports, observations, strict=True)):
            if len(reports) > 1:
                console.print(f"\n-- address {n + 1} of {len(reports)}: {obs.target.ip}",
                              highlight=False)
            render_text(report, console, warn_days, crit_days)
            if obs.ok:
                staple = "stapled OCSP response" if obs.ocsp_staple else "no OCSP staple"
                console.print(f"{obs.tls_version}, {obs.cipher}, {staple}", highlight=False)
                for line in _network_lines(inputs[n]):
                    console.print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(worst.status.exit_code)


def _network_json(inputs: NetworkInputs, *, revocation: bool, aia: bool) -> dict[str, Any]:
    """``check``'s additions to the report (schema 1 extended): ``revocation`` with
    ``--revocation``, ``aia_fetched`` (certificates fetched, never presented) with ``--aia``."""
    from chainwatch.render import iso

    doc: dict[str, Any] = {}
    rev = inputs.revocation
    if revocation:
        doc["revocation"] = None if rev is None else {
            "status": rev.status.value,
            "source": None if rev.source is None else rev.source.value,
            "url": rev.url,
            "revoked_at": iso(rev.revoked_at),
            "reason": rev.reason,
            "detail": rev.detail,
        }
    if aia:
        doc["aia_fetched"] = [
            {"sha256": c.sha256, "subject": c.subject, "issuer": c.issuer,
             "not_after": iso(c.not_after)}
            for c in inputs.fetched
        ]
    return doc


def _network_lines(inputs: NetworkInputs) -> list[str]:
    """Text lines about what was fetched: each AIA fetch, and a good revocation answer
    (revoked and unknown ones are findings already)."""
    from chainwatch.analysis.revocation import RevocationStatus

    lines = [f"AIA: {note}" for note in inputs.notes]
    rev = inputs.revocation
    if rev is not None and rev.status is RevocationStatus.GOOD:
        lines.append(f"revocation: good, according to {rev.where}")
    return lines


def _starttls_arg(value: str | None) -> str | None:
    from chainwatch.probe.starttls import PROTOCOLS

    if value is None:
        return None
    protocol = value.strip().lower()
    if protocol not in PROTOCOLS:
        raise InputError(f"--starttls {value!r}: expected one of {', '.join(PROTOCOLS)}")
    return protocol


def _endpoint_arg(text: str, starttls: str | None) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]``, ``[V6]:PORT`` or a bare IPv6 address."""
    from chainwatch.probe.starttls import DEFAULT_PORTS

    default = DEFAULT_PORTS[starttls] if starttls is not None else 443
    raw = text.strip()
    port_text: str | None = None
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise InputError(f"{text!r}: expected [IPV6]:PORT")
        port_text = rest[1:] if rest else None
    elif raw.count(":") == 1:
        host, _, port_text = raw.partition(":")
    else:
        host = raw  # a name, or a bare IPv6 address (several colons)
    if not host or any(c.isspace() or c in "/[]" for c in host):
        raise InputError(f"{text!r}: expected HOST[:PORT]")
    if port_text is None:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InputError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def _ip_arg(value: str | None) -> str | None:
    import ipaddress

    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value.strip().strip("[]")))
    except ValueError:
        raise InputError(f"--ip {value!r}: not an IPv4 or IPv6 address") from None


@app.command("stores")
def stores(
    root: Annotated[
        str | None,
        typer.Option("--root", help="Show when a root (name substring or SHA-256 prefix) "
                     "entered and left Mozilla's store."),
    ] = None,
    behaviours: Annotated[bool, typer.Option(
        "--behaviours", help="List the client behaviours (BEHAVIOUR:STORE) with their sources.",
    )] = False,
    output: FormatOpt = Format.text,
) -> None:
    """List the trust-store snapshots and presets chainwatch ships, or one root's history."""
    from chainwatch.stores import history
    from chainwatch.stores.presets import PRESETS

    if behaviours:
        from chainwatch.analysis import behaviours as registry

        if output is Format.json:
            typer.echo(dumps({"behaviours": registry.describe()}))
        else:
            typer.echo("\n".join(registry.text_lines()))
        return

    snaps = history.snapshots()
    if root is not None:
        found = history.find_roots(root)
        if not found:
            raise InputError(f"--root {root!r}: no root in Mozilla's history matches")
        rows: list[dict[str, Any]] = [
            {
                "sha256": r.sha256,
                "subject": r.subject,
                "not_after": r.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "in_store": [
                    {
                        "from": first.date.isoformat(),
                        "from_release": first.version,
                        "until": None if gone is None else gone.date.isoformat(),
                        "removed_in_release": None if gone is None else gone.version,
                    }
                    for first, gone in r.ranges
                ],
            }
            for r in found
        ]
        if output is Format.json:
            typer.echo(dumps({"roots": rows}))
            return
        for row in rows:
            typer.echo(f"{row['subject']}\n  sha256 {row['sha256']}  expires {row['not_after']}")
            for span in row["in_store"]:
                until = span["until"] or "still present"
                removed = (
                    f" (removed in certifi {span['removed_in_release']})" if span["until"] else ""
                )
                since = span["from"]
                if span["from_release"] == snaps[0].version:
                    since = f"at least {since} (the first snapshot)"
                typer.echo(
                    f"  in Mozilla's store from {since} (certifi {span['from_release']})"
                    f" until {until}{removed}"
                )
        return
    if output is Format.json:
        typer.echo(dumps({
            "snapshots": [
                {"version": s.version, "date": s.date.isoformat(), "count": s.count} for s in snaps
            ],
            "presets": [
                {"name": p.name, "spec": p.spec, "description": p.description}
                for p in PRESETS.values()
            ],
        }))
        return
    typer.echo("Mozilla root store snapshots (certifi releases), use as mozilla@YYYY-MM-DD:")
    for s in snaps:
        typer.echo(f"  {s.date.isoformat()}  certifi {s.version:<12} {s.count:>4} roots")
    typer.echo("\nPresets:")
    for p in PRESETS.values():
        typer.echo(f"  {p.name:<14} = {p.spec:<28} {p.description}")


DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: a SQLite file in the user data dir; "
                 "postgresql+psycopg://... for production)."),
]


@app.command("scan")
def scan_command(
    inventory: Annotated[Path, typer.Argument(help="Inventory YAML file.")],
    db: DbOpt = None,
    output: FormatOpt = Format.text,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=10000,
                                             help="Most probes in flight at once.")] = 256,
    at: Annotated[str | None, typer.Option(
        "--at", help="Evaluate (and run the alert policy) as of this instant while probing "
        "now: rehearse an escalation.")] = None,
) -> None:
    """Probe every endpoint and file of an inventory, analyse, store, and report."""
    from chainwatch.inventory import load_inventory
    from chainwatch.monitor import scan
    from chainwatch.render import scan_json, scan_text
    from chainwatch.storage.repo import Database

    inv = load_inventory(inventory)
    when = parse_when(at) if at is not None else None
    console = Console()
    with Database(db) as database:
        if console.is_terminal and output is Format.text:
            from rich.progress import Progress

            with Progress(console=console, transient=True) as bar:
                task = bar.add_task("scanning", total=None)
                result = scan(inv, database, at=when, concurrency=concurrency,
                              progress=lambda n, total: bar.update(task, completed=n,
                                                                   total=total))
        else:
            result = scan(inv, database, at=when, concurrency=concurrency)
        rehearsal = _alerts_after_scan(inv, database, result, when)
    if output is Format.json:
        data = scan_json(result)
        if when is not None and inv.alerts is not None:
            data["rehearsal"] = [
                {"event": d.event, "step": d.step, "target": d.target,
                 "channels": list(d.channels) or list(inv.alerts.channels),
                 "message": d.message}
                for d in rehearsal
            ]
        typer.echo(dumps(data))
    else:
        scan_text(result, console)
        if when is not None and inv.alerts is not None:
            console.print(f"Alert rehearsal as of {when:%Y-%m-%dT%H:%M:%SZ} (nothing sent, "
                          "nothing stored):", highlight=False)
            for d in rehearsal:
                console.print(f"  would {d.event} ({d.step}) {d.target}: {d.message}",
                              highlight=False, soft_wrap=True)
            if not rehearsal:
                console.print("  nothing would fire", highlight=False)
    raise typer.Exit(result.status.exit_code)


def _alerts_after_scan(inv: Inventory, database: Database, result: ScanResult,
                       at: dt.datetime | None) -> list[Delivery]:
    """Run the alert policy on the scan's situations and deliver (when alerts are set).

    With ``at`` (a rehearsal, ``scan --at``) the policy runs as of ``at`` from the stored
    states but nothing is stored or sent; the deliveries it would make are returned.
    """
    if inv.alerts is None:
        return []
    from chainwatch import alerting

    if at is not None:
        return alerting.rehearse(database, inv.alerts, result.situations, at)
    now = dt.datetime.now(dt.UTC)
    alerting.evaluate(database, inv.alerts, result.situations, now)
    alerting.deliver(database, inv.alerts, now)
    alerting.ping_deadman(inv.alerts, summary=f"{len(result.reports)} targets, "
                          f"{result.status.value}")
    return []


def _after_batch(inv: Inventory, database: Database, result: ScanResult) -> None:
    _alerts_after_scan(inv, database, result, None)


def _watchdog(inv: Inventory, database: Database) -> None:
    """Every scheduler tick, not only after scans: watch the watcher, deliver retries."""
    if inv.alerts is None:
        return
    from chainwatch import alerting

    now = dt.datetime.now(dt.UTC)
    alerting.check_watchdog(database, inv.alerts, now, interval=inv.defaults.interval)
    alerting.deliver(database, inv.alerts, now)


@app.command("serve")
def serve_command(
    inventory: Annotated[Path, typer.Argument(help="Inventory YAML file.")],
    db: DbOpt = None,
    max_batches: Annotated[int | None, typer.Option(
        "--max-batches", min=1, help="Stop after this many scan batches (default: run until "
        "SIGTERM).")] = None,
) -> None:
    """Keep scanning the inventory on its intervals, storing results and alerting.

    SIGHUP reloads the inventory; SIGTERM or Ctrl-C stops after the current batch.
    """
    import logging

    from chainwatch.scheduler import Scheduler
    from chainwatch.storage.repo import Database

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with Database(db) as database:
        scheduler = Scheduler(
            inventory, database,
            after_batch=lambda inv, result: _after_batch(inv, database, result),
            on_tick=lambda inv: _watchdog(inv, database),
        )
        scheduler.install_signal_handlers()
        Console(stderr=True).print(
            f"chainwatch serve: watching {len(scheduler.inventory.endpoints)} endpoints and "
            f"{len(scheduler.inventory.files)} file patterns from {inventory}; "
            "SIGHUP reloads, Ctrl-C stops", highlight=False, soft_wrap=True)
        scheduler.run(max_batches=max_batches)


@app.command("history")
def history_command(
    host: Annotated[str, typer.Argument(help="Host name as in the inventory; HOST:PORT too.")],
    db: DbOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most observations shown.")] = 50,
    output: FormatOpt = Format.text,
) -> None:
    """Show the timeline of what HOST served: certificates, renewals, status changes."""
    from chainwatch.render import history_json, history_text
    from chainwatch.storage.repo import Database

    name, port = _split_host_port(host)
    with Database(db) as database:
        rows = database.history(name, port, limit=limit)
    if not rows:
        raise InputError(f"no observations of {host} in the database")
    if output is Format.json:
        typer.echo(dumps(history_json(rows)))
    else:
        history_text(rows, Console())


def _split_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        if port.isdigit():
            return host, int(port)
    return text, None


discover_app = typer.Typer(help="Find names that have certificates but no endpoint.",
                           no_args_is_help=True)
app.add_typer(discover_app, name="discover")
app.add_typer(alerts_app, name="alerts")


@discover_app.command("ct")
def discover_ct(
    export: Annotated[Path, typer.Argument(help="crt.sh-style JSON export (a list of entries "
                                           "whose name_value holds newline-separated names).")],
    inventory: Annotated[Path, typer.Option("--inventory", help="Inventory YAML file.")],
    output: FormatOpt = Format.text,
) -> None:
    """Names in Certificate Transparency results that no inventory endpoint covers."""
    from chainwatch.discovery import load_ct_export, uncovered_ct_names
    from chainwatch.inventory import load_inventory

    inv = load_inventory(inventory)
    names = uncovered_ct_names(load_ct_export(export), inv)
    if output is Format.json:
        typer.echo(dumps(names))
    else:
        for name in names:
            typer.echo(name)


@app.command("lab")
def lab_command(
    listen: Annotated[str, typer.Option("--listen", help="Loopback address to serve on "
                                        "(127.0.0.0/8 or ::1).")] = "127.0.0.1",
    port_base: Annotated[int, typer.Option("--port-base", help="Scenario i listens on "
                                           "PORT_BASE+i; 0: ephemeral ports.")] = 9440,
    directory: Annotated[Path, typer.Option("--dir", help="Where the inventory, trust "
                                            "bundles and README go.")] = Path("chainwatch-lab"),
    serve: Annotated[bool, typer.Option("--serve", help="Also run `chainwatch serve` on the "
                                        "lab's inventory (what `make run` does).")] = False,
    db: DbOpt = None,
    max_batches: Annotated[int | None, typer.Option(
        "--max-batches", min=1, help="With --serve: stop after this many scan batches.")] = None,
) -> None:
    """Serve real incidents' certificate failures on loopback until Ctrl-C, with an
    inventory to try chainwatch and your alert routing on."""
    from chainwatch.lab import run_foreground, serve_foreground

    def echo(text: str) -> None:
        typer.echo(text)
        sys.stdout.flush()

    if serve:
        from chainwatch.render import scan_text

        def show(result: ScanResult) -> None:
            scan_text(result, Console())
            sys.stdout.flush()

        raise typer.Exit(serve_foreground(directory, listen, port_base, db_url=db,
                                          max_batches=max_batches, echo=echo, show=show))
    raise typer.Exit(run_foreground(directory, listen, port_base, echo=echo))


@app.command("version")
def version() -> None:
    """Print the chainwatch version."""
    typer.echo(__version__)


def _fail(message: str) -> int:
    Console(stderr=True).print(f"chainwatch: error: {message}", style="red", highlight=False,
                               soft_wrap=True)
    return EXIT_UNKNOWN


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (for tests and ``main``)."""
    try:
        # With standalone_mode=False the command's Exit code is returned, not raised.
        result = app(args=argv, prog_name="chainwatch", standalone_mode=False)
    except Exit as exc:
        return exc.exit_code
    except TyperException as exc:
        # Usage errors are "unknown" for a monitoring plugin, not "critical" (click's 2).
        if type(exc).__name__ == "NoArgsIsHelpError":
            return EXIT_UNKNOWN
        return _fail(exc.format_message())
    except Abort:
        return _fail("aborted")
    except ChainwatchError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted")
    except Exception as exc:  # last resort: an internal error is UNKNOWN, one line, no traceback
        return _fail(f"internal error: {type(exc).__name__}: {exc}")
    return result if isinstance(result, int) else 0


def tune_gc() -> None:
    """The collector settings of the ``chainwatch`` command (benchmarks use them too).

    Analysing thousands of distinct chains allocates many short-lived objects while the
    trust stores and caches hold many long-lived ones: with the default thresholds the
    cyclic collector spent a quarter of the analysis time re-walking the latter. What
    importing built is frozen out of its sight, and the young generation is collected
    less often. A process's choice, not the library's: :func:`run` and the Python API
    leave the collector alone.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def main() -> None:
    tune_gc()
    sys.exit(run(sys.argv[1:]))
