"""What every command group shares: output format, option types, ``--at`` parsing, profiles."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated

import typer

from chainwatch.errors import InputError
from chainwatch.model import Profile
from chainwatch.model.times import parse_instant
from chainwatch.stores import resolve_profile


class Format(StrEnum):
    text = "text"
    json = "json"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


LogFormatOpt = Annotated[LogFormat, typer.Option(
    "--log-format", help="Log lines as key=value text or one JSON object per line.")]


def parse_when(value: str | None, flag: str = "--at") -> dt.datetime:
    """ISO 8601 date or datetime; no offset means UTC; ``None`` means now."""
    if value is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    try:
        return parse_instant(value)
    except (ValueError, OverflowError):
        raise InputError(
            f"{flag} {value[:80]!r}: expected an ISO 8601 date or datetime, e.g. 2021-09-30 "
            "or 2021-09-30T14:01:15Z"
        ) from None


def resolve_profiles(specs: list[str] | None) -> list[Profile]:
    return [resolve_profile(s) for s in (specs or ["mozilla"])]


def check_days(warn_days: int, crit_days: int) -> None:
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

DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: a SQLite file in the user data dir; "
                 "postgresql+psycopg://... for production)."),
]

