"""``plan()`` agrees, instant by instant, with a sequence of ``decide()`` calls over the same
period: every row of the plan fires when decided at its instant, and nothing fires in
between, with the state carried forward from each decision to the next as a run of
real scans carries it; before and after an acknowledgement, for day-based and
short-lived certificates of any lifetime (hours to years)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from chainwatch.alerts.escalation import AlertState, Delivery, Situation, acknowledge, decide, plan
from chainwatch.config.inventory import (
    Action,
    AlertsConfig,
    AlertStep,
    BrokenRule,
    ShortLivedPolicy,
    ShortLivedStep,
)
from chainwatch.model import RenewalPolicy

from .pki import at

NB = at("2026-01-01T00:00:00Z")
SECOND = dt.timedelta(seconds=1)
MICRO = dt.timedelta(microseconds=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)

DEFAULTS = AlertsConfig(channels={})  # DESIGN.md's steps
REPEATING = AlertsConfig(  # every step repeats, so that acknowledgements matter everywhere
    channels={},
    steps=(
        AlertStep(days=30, action=Action.TICKET, repeat=3 * DAY),
        AlertStep(days=14, action=Action.NOTIFY, repeat=DAY, channels=("chat",)),
        AlertStep(days=7, action=Action.PAGE, repeat=12 * HOUR, channels=("oncall",)),
        AlertStep(days=2, action=Action.PAGE, repeat=4 * HOUR, ackable=False),
    ),
    broken=BrokenRule(action=Action.PAGE, repeat=30 * dt.timedelta(minutes=1)),
    short_lived=ShortLivedPolicy(
        max_lifetime=100 * DAY,
        steps=(
            ShortLivedStep(action=Action.NOTIFY, overdue=True, repeat=6 * HOUR),
            ShortLivedStep(action=Action.PAGE, remaining=0.10, repeat=8 * HOUR),
            ShortLivedStep(action=Action.PAGE, remaining=0.03, repeat=HOUR, ackable=False),
        ),
    ),
)
CONFIGS = {"defaults": DEFAULTS, "repeating": REPEATING}


class Certificate:
    """A served leaf nobody renews, and the situation a scan would build from it at
    any instant (written out here, not taken from the plan's own projection)."""

    def __init__(self, lifetime: dt.timedelta) -> None:
        self.lifetime = lifetime  # a Cert's lifetime: not_after - not_before + 1 s
        self.not_after = NB + lifetime - SECOND
        self.breaks_at = self.not_after + SECOND  # the first second it is expired
        renewal = RenewalPolicy()
        self.overdue_at = (NB + lifetime * renewal.fraction) + lifetime * renewal.grace

    def at(self, t: dt.datetime) -> Situation:
        return Situation(
            key="app.example.com:443", cycle="c" * 64, breaks_at=self.breaks_at,
            lifetime=self.lifetime, broken=t >= self.breaks_at,
            overdue=self.overdue_at <= t <= self.not_after, overdue_at=self.overdue_at,
        )


Row = tuple[dt.datetime, str, str, tuple[str, ...], str, str]


def rows(events: Iterable[tuple[dt.datetime, Delivery]]) -> list[Row]:
    return [(t, d.event.value, str(d.step), d.channels, d.dedup_key, d.target)
            for t, d in events]


def scans(config: AlertsConfig, cert: Certificate, state: AlertState,
          instants: Iterable[dt.datetime]) -> tuple[list[Row], AlertState]:
    """``decide()`` at each instant in order, the state carried from one to the next."""
    fired: list[tuple[dt.datetime, Delivery]] = []
    for t in sorted(set(instants)):
        sent, state = decide(config, cert.at(t), state, t)
        fired += [(t, d) for d in sent]
    return rows(fired), state


def probes(start: dt.datetime, end: dt.datetime, marks: Iterable[dt.datetime],
           fractions: Sequence[float]) -> list[dt.datetime]:
    """The instants to decide at: the period's ends, each mark and a microsecond either
    side of it, and random instants in between."""
    out = [start, end]
    for m in marks:
        out += [m - MICRO, m, m + MICRO]
    out += [start + (end - start) * f for f in fractions]
    return [t for t in out if start <= t <= end]


def boundaries(config: AlertsConfig, cert: Certificate) -> list[dt.datetime]:
    """Where steps begin (a microsecond after ``breaks_at - threshold``), trust breaks,
    and the renewal becomes overdue."""
    out = [cert.breaks_at, cert.overdue_at]
    out += [cert.breaks_at - dt.timedelta(days=s.days) for s in config.steps]
    if config.short_lived is not None:
        out += [cert.breaks_at - cert.lifetime * s.remaining
                for s in config.short_lived.steps if s.remaining]
    return out


def check_period(config: AlertsConfig, cert: Certificate, state: AlertState,
                 start: dt.datetime, end: dt.datetime, fractions: Sequence[float],
                 extra_marks: Sequence[dt.datetime] = ()) -> AlertState:
    planned = plan(config, cert.at(start), state, start, end)
    assert len(planned) < 1000  # not cut off by the plan's bound
    marks = [t for t, _ in planned] + boundaries(config, cert) + list(extra_marks)
    seen, state = scans(config, cert, state, probes(start, end, marks, fractions))
    assert seen == rows(planned)
    return state


lifetimes = st.one_of(
    st.integers(min_value=3600, max_value=100 * 86400),  # short-lived: hours to 100 days
    st.integers(min_value=100 * 86400 + 1, max_value=3 * 366 * 86400),  # day steps
).map(lambda s: dt.timedelta(seconds=s))
unit = st.floats(min_value=0.0, max_value=1.0)


@settings(max_examples=200, deadline=None)
@given(
    config=st.sampled_from(sorted(CONFIGS)),
    lifetime=lifetimes,
    start=unit,
    length=unit,
    ack_at=unit.map(lambda u: u * u),  # rather early: before the break, mostly
    ack_for=st.integers(min_value=60, max_value=10 * 86400).map(
        lambda s: dt.timedelta(seconds=s)),
    between=st.lists(unit, max_size=40),
)
@example(config="defaults", lifetime=398 * DAY, start=6.75 / 46, length=0.02,
         ack_at=0.0, ack_for=3 * DAY, between=[])  # paged 5 d 18 h before expiry, acked 3 d
@example(config="defaults", lifetime=90 * DAY + SECOND, start=23 / 46, length=0.3,
         ack_at=0.5, ack_for=DAY, between=[])  # a 90-day certificate at day 68
@example(config="defaults", lifetime=DAY + SECOND, start=8.4 / 26.4, length=0.3,
         ack_at=0.2, ack_for=HOUR, between=[])  # a 24-hour certificate at 18 h
def test_plan_is_what_a_run_of_scans_would_fire(
    config: str, lifetime: dt.timedelta, start: float, length: float, ack_at: float,
    ack_for: dt.timedelta, between: list[float],
) -> None:
    cfg = CONFIGS[config]
    cert = Certificate(lifetime)
    assert cfg.short_lived is not None
    event("short-lived" if lifetime <= cfg.short_lived.max_lifetime else "day steps")
    # Anywhere in the last 45 days of its life (where every step is), or a little after
    # it broke: ``start`` is how far back from then.
    after = min(DAY, lifetime / 10)
    t0 = cert.breaks_at + after - (min(lifetime, 45 * DAY) + after) * start
    # Up to 1.2 lifetimes, but not long past the break (hourly broken pages).
    end = min(t0 + HOUR + lifetime * 1.2 * length,
              cert.breaks_at + min(2 * DAY, lifetime + 2 * HOUR))
    end = max(end, t0 + HOUR)
    ta = t0 + (end - t0) * ack_at

    # A first scan at t0, then scans until the acknowledgement: no acknowledgement yet.
    state = check_period(cfg, cert, AlertState(), t0, ta, between)
    if state.current is not None:  # `alerts ack` acknowledges the current step
        event(f"acknowledged {state.current.kind.value}")
        state = acknowledge(state, step=state.current, until=ta + ack_for, by="ops",
                            why="renewal ordered")
    # From the acknowledgement on: what the plan says then is what the scans fire.
    check_period(cfg, cert, state, ta, end, between, extra_marks=[ta + ack_for])
