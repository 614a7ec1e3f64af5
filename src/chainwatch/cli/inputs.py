"""The plain (Typer-free) halves of the shared options: output format, ``--at``, profiles,
endpoints. ``chainwatch check`` parses its arguments without Typer (see
:mod:`chainwatch.cli.endpoint`), so what it needs lives here; :mod:`.common` adds the Typer
option types over them."""

from __future__ import annotations

import datetime as dt
import os
from enum import StrEnum

from chainwatch.errors import InputError
from chainwatch.model import Profile
from chainwatch.model.names import StartTLS, parse_endpoint, parse_ip
from chainwatch.model.times import parse_instant
from chainwatch.stores import resolve_profile


class Format(StrEnum):
    text = "text"
    json = "json"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


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


STORE_PASSWORD_ENV = "CHAINWATCH_STORE_PASSWORD"
"""The environment variable whose value opens ``jks:``/``pkcs12:`` stores of ``--profile``
(unset: ``changeit``; an inventory profile says ``password_env``/``password_file``)."""


def resolve_profiles(specs: list[str] | None) -> list[Profile]:
    password = os.environ.get(STORE_PASSWORD_ENV) or None
    return [resolve_profile(s, password=password) for s in (specs or ["mozilla"])]


def check_days(warn_days: int, crit_days: int) -> None:
    if warn_days < 0 or crit_days < 0:
        raise InputError("--warn-days and --crit-days must not be negative")


def starttls_arg(value: str | None) -> str | None:
    """``--starttls PROTO``, checked and in lower case."""
    if value is None:
        return None
    protocol = value.strip().lower()
    if protocol not in {p.value for p in StartTLS}:
        raise InputError(f"--starttls {value[:40]!r}: expected one of "
                         f"{', '.join(p.value for p in StartTLS)}")
    return protocol


def endpoint_arg(text: str, starttls: str | None) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]``, ``[V6]:PORT`` or a bare IPv6 address; a name in
    its A-label form (IDNA 2008)."""
    default = StartTLS(starttls).default_port if starttls is not None else 443
    try:
        return parse_endpoint(text, default)
    except ValueError as exc:
        raise InputError(f"{text[:80]!r}: {exc}") from None


def ip_arg(value: str | None) -> str | None:
    """``--ip ADDR``, in its canonical text form."""
    if value is None:
        return None
    address = parse_ip(value)
    if address is None:
        raise InputError(f"--ip {value[:80]!r}: not an IPv4 or IPv6 address")
    return str(address)

