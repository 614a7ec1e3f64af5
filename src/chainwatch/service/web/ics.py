"""``/calendar.ics``: the break and renewal events as an iCalendar feed (``icalendar``).

Every value is encoded by ``icalendar``'s property types and every line folded as its
``Contentline`` folds it; what a feed of 10,000 targets cannot afford is a
``Component`` per event (about 0.3 ms each to build and serialise). So the lines whose
value repeats across events (dates, ``DTSTAMP``, ``TRIGGER``, ``ACTION``) are generated
by an ``icalendar`` component once per value, the text lines (``UID``, ``SUMMARY``,
``DESCRIPTION``, ``URL``) by ``vText``/``vUri`` per event, in ``Event``'s and
``Alarm``'s canonical property order. A text value with no character that TEXT escaping
(RFC 5545, 3.3.11) or a URI's line rule touches (``\\ ; , CR LF``) is its own encoding
and skips the property object (most UIDs, summaries and alarm texts; about 5 µs each).
:func:`component` builds the same event as an ``icalendar.Event``: the tests hold the
two to the same bytes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from urllib.parse import quote

from icalendar import Alarm, Calendar, Event
from icalendar.caselessdict import canonsort_keys
from icalendar.parser import Contentline

from chainwatch.service.web.views import CalendarEvent

_MEMO_MAX = 200_000
_memo: dict[tuple[CalendarEvent, str], bytes] = {}
_END = b"END:VCALENDAR\r\n"
_EVENT_ORDER = tuple(canonsort_keys(
    ["UID", "DTSTAMP", "DTSTART", "DTEND", "SUMMARY", "DESCRIPTION", "URL"],
    Event.canonical_order))
_ALARM_ORDER = tuple(canonsort_keys(["ACTION", "DESCRIPTION", "TRIGGER"],
                                    Alarm.canonical_order))
_TEXT = {name: Event.types_factory.for_property(name)
         for name in ("UID", "SUMMARY", "DESCRIPTION", "URL")}
_ESCAPED = re.compile(r"[\\;,\r\n]")
"""What ``vText`` escapes (and ``vUri`` refuses): a value without it encodes as itself."""
_FOLD_AT = 75  # octets: icalendar folds a line before it reaches this length


def feed(events: Sequence[CalendarEvent], base_url: str, now: dt.datetime) -> bytes:
    """One all-day event per (target, breaking path); UIDs come from the target and the
    fingerprints on the breaking path, so a renewal replaces the event. VALARMs fire
    ``warn_days`` and ``crit_days`` before a break."""
    cal = Calendar()
    cal.add("prodid", "-//chainwatch//certificate breaks//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", "chainwatch: certificate breaks")
    stamp = now.replace(microsecond=0)
    if len(_memo) > _MEMO_MAX:
        _memo.clear()
    parts = []
    for e in events:
        # Each VEVENT's text is kept once generated: a feed polled every few minutes
        # generates only the events that changed since (renewals, new breaks).
        body = _memo.get((e, base_url))
        if body is None:
            body = _memo[(e, base_url)] = event_bytes(e, base_url, stamp)
        parts.append(body)
    head = bytes(cal.to_ical())
    assert head.endswith(_END)
    return head[: -len(_END)] + b"".join(parts) + _END


def _values(e: CalendarEvent, base_url: str, stamp: dt.datetime) -> dict[str, object]:
    day = e.when.date()
    link = f"{base_url}/targets/{quote(e.key, safe=':')}"
    if e.kind == "break":
        who = f" ({e.profile})" if e.profile else ""
        summary = f"certificate for {e.host} breaks{who}"
    else:
        summary = f"certificate for {e.host} due for renewal"
    where = f" on {e.address}" if e.address else ""
    return {"UID": e.uid, "DTSTAMP": stamp, "DTSTART": day,
            "DTEND": day + dt.timedelta(days=1), "SUMMARY": summary,
            "DESCRIPTION": f"{e.reason}{where}. At {e.when.isoformat()}.\n{link}",
            "URL": link}


def _alarms(e: CalendarEvent) -> list[dict[str, object]]:
    return [{"ACTION": "DISPLAY",
             "DESCRIPTION": f"certificate for {e.host} breaks in {days} days",
             "TRIGGER": dt.timedelta(days=-days)}
            for days in sorted({d for d in (e.warn_days, e.crit_days) if d > 0},
                               reverse=True)]


def component(e: CalendarEvent, base_url: str, stamp: dt.datetime) -> Event:
    """The event as an ``icalendar.Event`` (what :func:`event_bytes` serialises)."""
    ev = Event()
    for name, value in _values(e, base_url, stamp).items():
        ev.add(name, value)
    for values in _alarms(e):
        alarm = Alarm()
        for name, value in values.items():
            alarm.add(name, value)
        ev.add_component(alarm)
    return ev


def event_bytes(e: CalendarEvent, base_url: str, stamp: dt.datetime) -> bytes:
    """``component(e, base_url, stamp).to_ical()``, without building the component."""
    values = _values(e, base_url, stamp)
    lines = [b"BEGIN:VEVENT", *(_line(name, values[name]) for name in _EVENT_ORDER)]
    for alarm in _alarms(e):
        lines.append(b"BEGIN:VALARM")
        lines.extend(_line(name, alarm[name]) for name in _ALARM_ORDER)
        lines.append(b"END:VALARM")
    lines.append(b"END:VEVENT\r\n")
    return b"\r\n".join(lines)


def _line(name: str, value: object) -> bytes:
    encode: Callable[[object], object] | None = _TEXT.get(name)
    if encode is None:
        return _repeated(name, value)
    if isinstance(value, str) and _ESCAPED.search(value) is None:
        return fold(f"{name}:{value}")
    text = encode(value).to_ical()  # type: ignore[attr-defined]
    return fold(f"{name}:{text.decode('utf-8')}")


@lru_cache(maxsize=8192)
def _repeated(name: str, value: object) -> bytes:
    """A content line whose value many events share, generated by an ``icalendar``
    component once."""
    comp = Event() if name != "TRIGGER" else Alarm()
    comp.add(name, value)
    return bytes(comp.content_lines()[1].to_ical())


def fold(line: str) -> bytes:
    """``Contentline(line).to_ical()``: an ASCII line (every line of this feed but those
    with a non-ASCII host or reason) is cut in slices of 74 characters, not walked
    character by character; like icalendar, a slice does not end inside an escape."""
    if not line.isascii():
        return bytes(Contentline(line).to_ical())  # type: ignore[no-untyped-call]
    if len(line) < _FOLD_AT:
        return line.encode("ascii")
    chunks = []
    start, n = 0, len(line)
    while n - start >= _FOLD_AT:
        end = start + _FOLD_AT - 1
        if line[end - 1] in "\\^" and end - 1 > start:
            end -= 1
        chunks.append(line[start:end])
        start = end
    chunks.append(line[start:])
    return "\r\n ".join(chunks).encode("ascii")
