"""The escalation state machine, walked through simulated time (pure: no clock, no I/O)."""

from __future__ import annotations

import datetime as dt
from itertools import pairwise

from chainwatch.alerts.config import AlertsConfig
from chainwatch.alerts.escalation import (
    AlertState,
    Situation,
    StepId,
    acknowledge,
    current_step,
    decide,
    plan,
)

from .pki import at

CONFIG = AlertsConfig(channels={})  # DESIGN.md default steps
BREAKS = at("2026-03-01T00:00:00Z")
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def sit(**kw: object) -> Situation:
    base: dict[str, object] = {"key": "app.example.com:443", "cycle": "a" * 64,
                               "breaks_at": BREAKS, "lifetime": dt.timedelta(days=398)}
    base.update(kw)
    return Situation(**base)  # type: ignore[arg-type]


def walk(start: dt.datetime, end: dt.datetime, situation: Situation,
         state: AlertState | None = None, step: dt.timedelta = HOUR,
         ack_at: dt.datetime | None = None) -> list[tuple[dt.datetime, str, str]]:
    state = state or AlertState()
    out = []
    t = start
    for _ in range(24 * 60):  # bounded: at most 60 simulated days hour by hour
        if t > end:
            break
        sent, state = decide(CONFIG, situation, state, t)
        out += [(t, d.event, str(d.step)) for d in sent]
        if ack_at is not None and t == ack_at and state.current:
            state = acknowledge(state, step=state.current, until=t + 3 * DAY, by="ops",
                                why="renewal in progress")
        t += step
    return out


def test_forty_days_to_expiry_escalates_exactly_as_designed() -> None:
    events = walk(BREAKS - 40 * DAY, BREAKS - HOUR, sit())
    kinds = [(e, s) for _, e, s in events]
    assert kinds[0] == ("ticket", "days:30")
    assert kinds[1] == ("notify", "days:14")
    pages7 = [t for t, e, s in events if s == "days:7"]
    pages2 = [t for t, e, s in events if s == "days:2"]
    assert len([k for k in kinds if k[1] == "days:30"]) == 1
    assert len([k for k in kinds if k[1] == "days:14"]) == 1
    # 7 -> 2 days: one page a day (5 pages); last 2 days: every 4 hours (12 pages).
    assert len(pages7) == 5
    assert all(b - a == DAY for a, b in pairwise(pages7))
    assert len(pages2) == 12
    assert all(b - a == 4 * HOUR for a, b in pairwise(pages2))
    assert events[0][0] == BREAKS - 30 * DAY + HOUR  # first hour strictly under 30 days
    assert len(events) == 1 + 1 + 5 + 12


def test_only_the_current_step_fires_when_first_seen_late() -> None:
    events = walk(BREAKS - 5 * DAY, BREAKS - 5 * DAY, sit())
    assert [(e, s) for _, e, s in events] == [("page", "days:7")]


def test_ack_silences_ackable_steps_until_the_next_step() -> None:
    start = BREAKS - 8 * DAY
    events = walk(start, BREAKS - HOUR, sit(), ack_at=BREAKS - 7 * DAY + HOUR)
    pages7 = [t for t, _, s in events if s == "days:7"]
    # Paged once at 7 days, acked for 3 days, then the daily page resumes.
    assert pages7[0] == BREAKS - 7 * DAY + HOUR
    assert pages7[1] >= BREAKS - 4 * DAY + HOUR
    assert len([t for t, _, s in events if s == "days:2"]) == 12


def test_ack_in_the_last_two_days_does_not_silence_pages() -> None:
    events = walk(BREAKS - 3 * DAY, BREAKS - HOUR, sit(), ack_at=BREAKS - 2 * DAY + 2 * HOUR)
    assert len([t for t, _, s in events if s == "days:2"]) == 12


def test_renewal_resolves_once_and_starts_a_new_cycle() -> None:
    state = AlertState()
    sent, state = decide(CONFIG, sit(), state, BREAKS - 10 * DAY)
    assert [d.event for d in sent] == ["notify"]
    old_key = sent[0].dedup_key
    renewed = sit(cycle="b" * 64, breaks_at=BREAKS + 90 * DAY)
    sent, state = decide(CONFIG, renewed, state, BREAKS - 9 * DAY)
    assert [d.event for d in sent] == ["resolve"]
    assert sent[0].dedup_key == old_key
    sent, state = decide(CONFIG, renewed, state, BREAKS - 8 * DAY)
    assert sent == ()
    assert state.open is False


def test_broken_pages_hourly_and_resolves_when_fixed() -> None:
    broken = sit(broken=True, summary="mozilla trusts no path now")
    events = walk(BREAKS - 60 * DAY, BREAKS - 60 * DAY + 3 * HOUR, broken,
                  step=dt.timedelta(minutes=30))
    assert [e for _, e, _ in events] == ["page"] * 4
    state = AlertState()
    _, state = decide(CONFIG, broken, state, BREAKS - 60 * DAY)
    sent, state = decide(CONFIG, sit(), state, BREAKS - 59 * DAY)
    assert [d.event for d in sent] == ["resolve"]


def test_short_lived_routine_renewals_are_silent() -> None:
    """A 24-hour certificate renewed every 16 hours for a week: no alert at all."""
    state = AlertState()
    lifetime = DAY
    t0 = at("2026-01-01T00:00:00Z")
    deliveries = []
    for i in range(7 * 24):  # hourly for a week
        t = t0 + i * HOUR
        issued = t0 + (i // 16) * 16 * HOUR
        s = sit(cycle=f"leaf-{i // 16}", breaks_at=issued + lifetime, lifetime=lifetime)
        sent, state = decide(CONFIG, s, state, t)
        deliveries += sent
    assert deliveries == []


def test_short_lived_steps_replace_day_steps() -> None:
    lifetime = 90 * DAY
    s = sit(lifetime=lifetime, breaks_at=BREAKS)
    assert current_step(CONFIG, s, BREAKS - 29 * DAY) is None  # no day-30 ticket
    assert current_step(CONFIG, sit(lifetime=lifetime, overdue=True),
                        BREAKS - 20 * DAY).id == StepId.OVERDUE  # type: ignore[union-attr]
    assert current_step(CONFIG, s, BREAKS - 8 * DAY).id == StepId.for_remaining(0.1)  # type: ignore[union-attr]
    step = current_step(CONFIG, s, BREAKS - 2 * DAY)
    assert step is not None and str(step.id) == "remaining:3%" and not step.ackable


def test_plan_matches_the_walk() -> None:
    events = plan(CONFIG, sit(), AlertState(), BREAKS - 40 * DAY, BREAKS)
    kinds = [str(d.step) for _, d in events]
    assert kinds.count("days:30") == 1
    assert kinds.count("days:14") == 1
    assert kinds.count("days:7") == 5
    assert kinds.count("days:2") == 12
    assert events[0][0] > BREAKS - 30 * DAY


def test_routing_by_tag_and_owner() -> None:
    from chainwatch.config.inventory import Action, AlertStep, Route

    config = AlertsConfig(
        channels={},
        steps=(AlertStep(days=30, action=Action.TICKET, channels=("tickets",)),
               AlertStep(days=7, action=Action.PAGE, channels=("oncall",))),
        routes=(Route(channels=("oncall-api",), owner="team-api", actions=(Action.PAGE,)),
                Route(channels=("chat-db",), tags=("db",))),
    )
    api = sit(owner="team-api")
    sent, _ = decide(config, api, AlertState(), BREAKS - 5 * DAY)
    assert sent[0].channels == ("oncall-api",)  # the team's pager, not the default one
    sent, _ = decide(config, api, AlertState(), BREAKS - 20 * DAY)
    assert sent[0].channels == ("tickets",)  # the route covers pages only
    sent, _ = decide(config, sit(tags=("web", "db")), AlertState(), BREAKS - 20 * DAY)
    assert sent[0].channels == ("chat-db",)
    sent, _ = decide(config, sit(), AlertState(), BREAKS - 5 * DAY)
    assert sent[0].channels == ("oncall",)


def test_routes_in_the_inventory(tmp_path: object) -> None:
    from pathlib import Path

    import pytest

    from chainwatch.config.inventory import parse_inventory
    from chainwatch.errors import InventoryError

    assert isinstance(tmp_path, Path)
    text = (
        "endpoints: [{host: api.example.com, owner: team-api, tags: [api]}]\n"
        "alerts:\n"
        "  channels:\n"
        "    hook: {type: webhook, url: 'https://hooks.example.net/a'}\n"
        "    api: {type: webhook, url: 'https://hooks.example.net/b'}\n"
        "  routes:\n"
        "    - {owner: team-api, channels: [api], actions: [page]}\n"
    )
    inv = parse_inventory(text, path=tmp_path / "inv.yaml")
    assert inv.alerts is not None
    (route,) = inv.alerts.routes
    assert route.owner == "team-api" and route.channels == ("api",)
    with pytest.raises(InventoryError, match=r"inv.yaml:7: alerts.routes\[0\].channels\[0\]"):
        parse_inventory(text.replace("channels: [api]", "channels: [nope]"),
                        path=tmp_path / "inv.yaml")


def test_plan_after_an_ack_resumes_when_it_expires() -> None:
    """Paged 5 d 18 h before expiry and acknowledged for 3 days: the plan shows the 7-day
    page again when the acknowledgement expires, the 4-hourly last-days pages (not
    ackable), then the hourly broken pages."""
    t0 = BREAKS - 5 * DAY - 18 * HOUR
    sent, state = decide(CONFIG, sit(), AlertState(), t0)
    assert [d.step for d in sent] == [StepId.for_days(7)]
    state = acknowledge(state, step=StepId.for_days(7), until=t0 + 3 * DAY, by="ops",
                        why="CA order")
    events = plan(CONFIG, sit(), state, t0, BREAKS + DAY)
    rows = [(when, d.event, str(d.step)) for when, d in events]
    assert rows[0] == (t0 + 3 * DAY, "page", "days:7")
    last_days = [when for when, _, step in rows if step == "days:2"]
    assert last_days == [BREAKS - 2 * DAY + dt.timedelta(microseconds=1) + n * 4 * HOUR
                         for n in range(12)]
    broken = [when for when, _, step in rows if step == "broken"]
    assert broken == [BREAKS + n * HOUR for n in range(25)]
    assert len(rows) == 1 + 12 + 25



def test_plan_shows_the_coming_overdue_notify_of_a_short_lived_certificate() -> None:
    issued = BREAKS - 90 * DAY - dt.timedelta(seconds=1)
    ninety = sit(lifetime=90 * DAY, overdue_at=issued + 69 * DAY)
    events = plan(CONFIG, ninety, AlertState(), issued + 68 * DAY, BREAKS)
    assert [(when, d.event, str(d.step)) for when, d in events][:1] == [
        (issued + 69 * DAY, "notify", "overdue")]
    assert [d.step for _, d in events].count(StepId.OVERDUE) == 1
    # A 24-hour certificate at 18 h: overdue at 18.4 h (16 h + 10% of 24 h).
    start = BREAKS - DAY - dt.timedelta(seconds=1)
    day = sit(lifetime=DAY, overdue_at=start + 18.4 * HOUR)
    events = plan(CONFIG, day, AlertState(), start + 18 * HOUR, BREAKS)
    assert [(when, str(d.step)) for when, d in events] == [
        (start + 18.4 * HOUR, "overdue"),
        (BREAKS - 2.4 * HOUR + dt.timedelta(microseconds=1), "remaining:10%"),
        (BREAKS - 0.72 * HOUR + dt.timedelta(microseconds=1), "remaining:3%"),
        (BREAKS, "broken"),
    ]
