"""``chainwatch alerts ...``: list open alerts, acknowledge one, test a channel.

Thin like the rest of the CLI: it parses flags and calls :mod:`chainwatch.alerts.outbox`.
Errors (an unknown alert or channel, a failed test delivery) raise
:class:`~chainwatch.errors.ChainwatchError` subclasses, which ``chainwatch.cli.run``
prints as one line and maps to exit status 3.
"""

from __future__ import annotations

import datetime as dt
import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chainwatch.model.names import printable
from chainwatch.model.times import iso

if TYPE_CHECKING:
    from chainwatch.config.inventory import AlertsConfig

alerts_app = typer.Typer(
    help="Open alerts: list, acknowledge, test a channel, plan the schedule.",
    no_args_is_help=True,
)


class AlertsFormat(StrEnum):
    text = "text"
    json = "json"


InventoryArg = Annotated[Path, typer.Argument(help="Inventory YAML file.")]
DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: a SQLite file in the user data dir; "
                 "postgresql+psycopg://... for production)."),
]
FormatOption = Annotated[
    AlertsFormat, typer.Option("--format", help="Output format.", case_sensitive=False)
]


def _alerts_config(inventory: Path) -> AlertsConfig:
    from chainwatch.config.inventory import load_inventory
    from chainwatch.errors import InputError

    inv = load_inventory(inventory)
    if inv.alerts is None:
        raise InputError(f"{inventory}: the inventory has no alerts section")
    return inv.alerts


def _z(value: dt.datetime | None) -> str:
    return "-" if value is None else iso(value)


def _up_to_second(value: dt.datetime) -> dt.datetime:
    """The first whole second at or after ``value``: a step begins, or an acknowledgement
    ends, a fraction of a second into the second the plan would otherwise print, and
    ``scan --at`` that second would not fire it yet."""
    whole = value.replace(microsecond=0)
    return whole if whole == value else whole + dt.timedelta(seconds=1)


@alerts_app.command("list")
def list_command(
    inventory: InventoryArg,
    db: DbOption = None,
    output: FormatOption = AlertsFormat.text,
) -> None:
    """Show every open alert with the id that `alerts ack` takes."""
    from chainwatch.alerts import outbox as alerting
    from chainwatch.render.codec import dumps
    from chainwatch.storage.repo import Database

    config = _alerts_config(inventory)
    now = dt.datetime.now(dt.UTC)
    with Database(db) as database:
        alerts = alerting.list_alerts(database, now=now, config=config)
    if output is AlertsFormat.json:
        typer.echo(dumps({"schema": 1, "alerts": [a.to_json() for a in alerts]}))
        return
    if not alerts:
        typer.echo("no open alerts")
        return
    typer.echo(f"{len(alerts)} open alert{'s' if len(alerts) != 1 else ''}")
    for a in alerts:
        step = "(none now)" if a.step is None else str(a.step)
        if a.ackable is False:
            step += ", not ackable"
        typer.echo(f"\nid: {a.id}\n  step: {step}   last fired: {_z(a.last_fired)}")
        if a.breaks_at:
            typer.echo(f"  trust breaks: {a.breaks_at} ({a.days_left} days left)")
        if a.message:
            typer.echo(f"  {printable(a.message)}")
        if a.ack is not None:
            typer.echo(f"  acknowledged by {a.ack.by} until {_z(a.ack.until)}: {a.ack.why}")


@alerts_app.command("ack")
def ack_command(
    alert_id: Annotated[str, typer.Argument(metavar="ID",
                                            help="The alert's id, as `alerts list` shows it.")],
    inventory: InventoryArg,
    for_: Annotated[str, typer.Option("--for", help="How long, e.g. 4h, 3d, 1w.")],
    why: Annotated[str, typer.Option("--why", help="Why (shown to whoever looks next).")],
    by: Annotated[str | None, typer.Option("--by", help="Who acknowledges (default: $USER).")]
    = None,
    db: DbOption = None,
) -> None:
    """Acknowledge an alert's current step until --for has passed.

    Its pages stop until the acknowledgement expires or the step changes; steps with
    ackable: false page regardless.
    """
    from chainwatch.alerts import outbox as alerting
    from chainwatch.config.inventory import parse_duration
    from chainwatch.errors import InputError
    from chainwatch.storage.repo import Database

    try:
        duration = parse_duration(for_)
    except ValueError as exc:
        raise InputError(f"--for: {exc}") from None
    who = by or os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"
    config = _alerts_config(inventory)
    with Database(db) as database:
        result = alerting.acknowledge(database, alert_id, for_=duration, by=who, why=why,
                                      now=dt.datetime.now(dt.UTC), config=config)
    typer.echo(f"acknowledged {result.target} step {result.ack.step} until "
               f"{_z(result.ack.until)} (by {result.ack.by})")
    if result.ackable is False:
        typer.echo(f"note: step {result.ack.step} is not ackable: it keeps paging until the "
                   "certificate is renewed")


@alerts_app.command("test")
def test_command(
    channel: Annotated[str, typer.Argument(help="A channel name from alerts.channels.")],
    inventory: InventoryArg,
) -> None:
    """Send a clearly marked test message (event `test`) through CHANNEL now."""
    from chainwatch.alerts import outbox as alerting

    config = _alerts_config(inventory)
    alerting.send_test(config, channel, dt.datetime.now(dt.UTC))
    kind = config.channels[channel].type
    typer.echo(f"test message sent through {channel} ({kind})")


@alerts_app.command("plan")
def plan_command(
    inventory: InventoryArg,
    db: DbOption = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="Plan up to this instant (ISO 8601; default: 60 days from now).")] = None,
    output: FormatOption = AlertsFormat.text,
) -> None:
    """Print the schedule of alerts that would fire if nothing changed; sends nothing.

    Probes the inventory's endpoints now (storing nothing) and continues from each
    target's stored escalation state: an acknowledgement in force silences its step
    until it expires. Each row's instant is the first whole second at which it fires
    (what `scan --at` rehearses).
    """
    from chainwatch.alerts.outbox import plan_all
    from chainwatch.cli.common import parse_when
    from chainwatch.config.inventory import load_inventory
    from chainwatch.errors import InputError
    from chainwatch.render.codec import dumps
    from chainwatch.service.collect import collect
    from chainwatch.storage.repo import Database

    inv = load_inventory(inventory)
    if inv.alerts is None:
        raise InputError(f"{inventory}: the inventory has no alerts section")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    end = parse_when(until) if until is not None else now + dt.timedelta(days=60)
    if end <= now:
        raise InputError(f"--until {until!r}: must be in the future")
    with Database(db) as database:
        result = collect(inv, database)
        events = plan_all(database, inv.alerts, result.situations, now, end)
    channels = list(inv.alerts.channels)
    rows = [
        {"at": _z(_up_to_second(when)), "event": d.event.value, "step": str(d.step),
         "target": d.target, "channels": list(d.channels) or channels, "dedup_key": d.dedup_key,
         "message": d.message}
        for when, d in events
    ]
    if output is AlertsFormat.json:
        typer.echo(dumps({"schema": 1, "from": _z(now), "until": _z(end), "plan": rows}))
        return
    typer.echo(f"Alert plan from {_z(now)} until {_z(end)} (nothing is sent):")
    if not rows:
        typer.echo("  nothing would fire")
    for row in rows:
        typer.echo(f"  {row['at']}  {row['event']:<7} {row['target']}  -> "
                   f"{', '.join(row['channels'])}: {row['message']}")
