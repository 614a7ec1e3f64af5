"""When does a profile stop trusting a chain?

A path is valid at ``t`` when every certificate on it (anchor included) has
``not_before <= t <= not_after``: a closed interval ``[max not_before, min not_after]``.
A profile trusts the chain at ``t`` when at least one acceptable path is valid at ``t``.
``breaks_at`` is the first instant >= ``at`` at which that stops being true; the
candidates are each ``not_after`` on any path plus one second (DESIGN.md, Time).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from chainwatch.model import ONE_SECOND, Cert

Interval = tuple[dt.datetime, dt.datetime]


def interval(certs: Sequence[Cert]) -> Interval:
    """The validity window of a path: when all of its certificates are valid at once."""
    return (max(c.not_before for c in certs), min(c.not_after for c in certs))


def trusted_at(intervals: Iterable[Interval], t: dt.datetime) -> bool:
    return any(start <= t <= end for start, end in intervals)


def breaks_at(intervals: Sequence[Interval], at: dt.datetime) -> dt.datetime | None:
    """First instant >= ``at`` not covered by any interval; ``None`` if ``at`` isn't covered.

    Overlapping or back-to-back windows (a cross-signed root taking over from an expiring
    one) carry trust across; a gap of even one second is a break.
    """
    if not trusted_at(intervals, at):
        return None
    t = at
    for _ in range(len(intervals) + 1):
        end = max(e for s, e in intervals if s <= t <= e)
        t = end + ONE_SECOND
        if not trusted_at(intervals, t):
            return t
    return t  # unreachable: each step strictly extends coverage by a distinct interval
