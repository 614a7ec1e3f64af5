"""The one home of timestamp formatting and parsing.

Every time chainwatch writes is UTC as ``YYYY-MM-DDTHH:MM:SSZ`` (:func:`iso`); every time
it reads (``--at``, stored values, ACME answers) goes through :func:`parse_instant`.
"""

from __future__ import annotations

import datetime as dt

UTC = dt.UTC


def iso(t: dt.datetime) -> str:
    """``2026-12-01T10:11:12Z``: the one timestamp format of messages and reports."""
    u = t if t.tzinfo is UTC else t.astimezone(UTC)
    # Formatted by hand: strftime was a sixth of the cost of storing a report.
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}Z"


def iso_or_none(t: dt.datetime | None) -> str | None:
    return None if t is None else iso(t)


def compact(t: dt.datetime) -> str:
    """``20261201T101112Z``: for identifiers (dedup keys, alert cycles)."""
    return t.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def parse_instant(text: str) -> dt.datetime:
    """An ISO 8601 date or datetime as an aware UTC datetime; no offset means UTC.

    Raises :class:`ValueError` (also for years a datetime cannot hold).
    """
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def aware(value: dt.datetime, what: str) -> dt.datetime:
    """``value`` in UTC; a naive datetime is a programming error, named by ``what``."""
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware, got {value.isoformat()}")
    return value.astimezone(UTC)
