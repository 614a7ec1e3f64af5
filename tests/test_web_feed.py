"""The calendar feed's serialiser: the bytes an ``icalendar.Event`` makes, faster."""

from __future__ import annotations

import datetime as dt
import random

from icalendar import Calendar
from icalendar.parser import Contentline

from chainwatch.service.web import ics
from chainwatch.service.web.views import CalendarEvent

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 3, 10, 0, 7, tzinfo=UTC)


def _events(n: int, seed: int) -> list[CalendarEvent]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        reason = "".join(rnd.choice("abcdefgh \\;,^:\n\"é") for _ in range(rnd.randrange(200)))
        host = f"h{i}.example" * rnd.randrange(1, 7) + rnd.choice(["", ".bücher.example"])
        out.append(CalendarEvent(
            uid=f"{i:032x}@chainwatch", kind=rnd.choice(["break", "renew"]),
            key=f"{host}:443", address=rnd.choice([None, "127.0.0.1", "::1"]), host=host,
            when=NOW + dt.timedelta(days=rnd.randrange(-10, 900),
                                    seconds=rnd.randrange(86400)),
            profile=rnd.choice([None, "legacy:mozilla", "file:/etc/ssl/a b;c.pem"]),
            reason=reason, warn_days=rnd.choice([0, 30, 7]), crit_days=rnd.choice([0, 7, 1])))
    return out


def test_each_event_is_the_bytes_of_its_icalendar_event() -> None:
    for e in _events(400, seed=15):
        assert ics.event_bytes(e, "http://127.0.0.1:8080", NOW) == bytes(
            ics.component(e, "http://127.0.0.1:8080", NOW).to_ical()), e


def test_lines_fold_as_icalendar_folds_them() -> None:
    rnd = random.Random(3)
    for _ in range(2000):
        line = "".join(rnd.choice("ab\\^é,") for _ in range(rnd.randrange(300)))
        assert ics.fold(line) == bytes(Contentline(line).to_ical()), line


def test_the_feed_parses_back_to_the_events_given() -> None:
    events = _events(60, seed=4)
    cal = Calendar.from_ical(ics.feed(events, "http://127.0.0.1:8080", NOW))
    parsed = cal.walk("VEVENT")
    assert [str(p["uid"]) for p in parsed] == [e.uid for e in events]
    for p, e in zip(parsed, events, strict=True):
        assert p["dtstart"].dt == e.when.date()
        assert e.reason in str(p["description"])
        days = sorted({d for d in (e.warn_days, e.crit_days) if d > 0})
        assert sorted(-a["trigger"].dt.days for a in p.walk("VALARM")) == days
