"""What every command group shares: output format, option types, ``--at`` parsing, profiles.

The plain halves (no Typer) are in :mod:`.inputs`, re-exported here."""

from __future__ import annotations

from typing import Annotated

import typer

from chainwatch.cli.inputs import (
    STORE_PASSWORD_ENV,
    Format,
    LogFormat,
    check_days,
    endpoint_arg,
    ip_arg,
    parse_when,
    resolve_profiles,
    starttls_arg,
)

__all__ = [
    "STORE_PASSWORD_ENV", "AtOpt", "CritOpt", "DbOpt", "Format", "FormatOpt", "LogFormat",
    "LogFormatOpt", "ProfileOpt", "WarnOpt", "check_days", "endpoint_arg", "ip_arg",
    "parse_when", "resolve_profiles", "starttls_arg",
]

LogFormatOpt = Annotated[LogFormat, typer.Option(
    "--log-format", help="Log lines as key=value text or one JSON object per line.")]

AtOpt = Annotated[
    str | None, typer.Option("--at", help="Evaluate at this instant (ISO 8601; default now, UTC).")
]
ProfileOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--profile",
        help="Client profile spec (repeatable): mozilla, mozilla@DATE, android@VERSION, "
        "system, file:PATH, jks:PATH, pkcs12:PATH, dir:PATH, BEHAVIOUR:STORE, a preset "
        "(chainwatch stores). Default: mozilla. Keystore password: $CHAINWATCH_STORE_PASSWORD "
        "(default changeit).",
    ),
]
WarnOpt = Annotated[int, typer.Option("--warn-days", help="Warning when fewer days are left.")]
CritOpt = Annotated[int, typer.Option("--crit-days", help="Critical when fewer days are left.")]
FormatOpt = Annotated[Format, typer.Option("--format", help="Output format.")]

DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: a SQLite file in the user data dir; "
                 "postgresql+psycopg://... for production)."),
]
