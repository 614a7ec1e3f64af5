"""``/calendar.ics``: the break and renewal events as an iCalendar feed (``icalendar``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from urllib.parse import quote

from icalendar import Alarm, Calendar, Event

from chainwatch.service.web.views import CalendarEvent


def feed(events: Sequence[CalendarEvent], base_url: str, now: dt.datetime) -> bytes:
    """One all-day event per (target, breaking path); UIDs come from the target and the
    fingerprints on the breaking path, so a renewal replaces the event. VALARMs fire
    ``warn_days`` and ``crit_days`` before a break."""
    cal = Calendar()
    cal.add("prodid", "-//chainwatch//certificate breaks//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", "chainwatch: certificate breaks")
    stamp = now.replace(microsecond=0)
    for e in events:
        ev = Event()
        ev.add("uid", e.uid)
        ev.add("dtstamp", stamp)
        day = e.when.date()
        ev.add("dtstart", day)
        ev.add("dtend", day + dt.timedelta(days=1))
        link = f"{base_url}/targets/{quote(e.key, safe=':')}"
        if e.kind == "break":
            who = f" ({e.profile})" if e.profile else ""
            ev.add("summary", f"certificate for {e.host} breaks{who}")
        else:
            ev.add("summary", f"certificate for {e.host} due for renewal")
        where = f" on {e.address}" if e.address else ""
        ev.add("description", f"{e.reason}{where}. At {e.when.isoformat()}.\n{link}")
        ev.add("url", link)
        for days in sorted({d for d in (e.warn_days, e.crit_days) if d > 0}, reverse=True):
            alarm = Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("description", f"certificate for {e.host} breaks in {days} days")
            alarm.add("trigger", dt.timedelta(days=-days))
            ev.add_component(alarm)
        cal.add_component(ev)
    return bytes(cal.to_ical())
