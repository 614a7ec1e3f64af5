"""Alert step ids and events are values, stored as the strings they always were: what the
database, payloads and output carry does not change, and an unknown stored value is
refused with one line naming the row."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from chainwatch.alerts import outbox as alerting
from chainwatch.alerts.escalation import Event, Situation, StepId, StepKind
from chainwatch.config.inventory import AlertsConfig, Secret, WebhookChannel
from chainwatch.errors import ChainwatchError
from chainwatch.storage import AlertsRepo, Database

from .pki import at

BREAKS = at("2026-03-01T00:00:00Z")
DAY = dt.timedelta(days=1)
KEY = "app.example.com:443"

STORED = ["days:30", "days:7", "days:0", "remaining:10%", "remaining:3%", "remaining:12.5%",
          "remaining:100%", "overdue", "broken", "resolve", "watchdog", "test"]


@pytest.mark.parametrize("stored", STORED)
def test_every_stored_step_reads_back_as_itself(stored: str) -> None:
    step = StepId.parse(stored)
    assert str(step) == stored
    assert StepId.parse(str(step)) == step


def test_step_ids_say_what_they_are() -> None:
    assert StepId.parse("days:7") == StepId.for_days(7)
    assert StepId.parse("days:7").days == 7
    assert StepId.parse("remaining:10%") == StepId.for_remaining(0.10)
    assert StepId.parse("broken") is not StepId.BROKEN and StepId.parse("broken") == StepId.BROKEN
    assert StepId.parse("overdue").kind is StepKind.OVERDUE
    assert {StepId.for_days(7), StepId.parse("days:7")} == {StepId.for_days(7)}


@pytest.mark.parametrize("stored", [
    "", "days", "days:", "days:x", "days:07", "days:-1", "days:7:1", "Days:7", "days: 7",
    "remaining:10", "remaining:0%", "remaining:150%", "remaining:nan%", "remaining:10.0%",
    "remaining:%", "overdue:1", "Broken", "page", "watchdog:scan",
])
def test_unknown_steps_are_refused(stored: str) -> None:
    with pytest.raises(ValueError, match=r"unknown alert step"):
        StepId.parse(stored)


def test_events_are_the_payload_strings() -> None:
    assert [e.value for e in Event] == ["ticket", "notify", "page", "resolve", "watchdog",
                                        "test"]
    assert Event.parse("page") is Event.PAGE and str(Event.PAGE) == "page"
    for bad in ("Page", "alert", "", "watchdog:scan"):
        with pytest.raises(ValueError, match=r"unknown alert event"):
            Event.parse(bad)


@given(st.integers(min_value=0, max_value=10_000))
def test_day_steps_round_trip(days: int) -> None:
    assert StepId.parse(str(StepId.for_days(days))) == StepId.for_days(days)


@given(st.floats(min_value=1e-6, max_value=1.0))
def test_remaining_steps_round_trip(share: float) -> None:
    step = StepId.for_remaining(share)
    assert StepId.parse(str(step)) == step
    assert StepId.for_remaining(step.remaining or 0.0) == step


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with Database(f"sqlite:///{tmp_path / 'ids.sqlite'}") as database:
        yield database


def test_stored_values_stay_the_same_strings(db: Database) -> None:
    hook = WebhookChannel(name="hook", url=Secret.inline("https://hooks.example.net/x"))
    cfg = AlertsConfig(channels={"hook": hook})
    now = BREAKS - 5 * DAY
    sit = Situation(key=KEY, cycle="a" * 64, breaks_at=BREAKS, lifetime=398 * DAY)
    (sent,) = alerting.evaluate(db, cfg, [sit], now)
    assert (sent.event, sent.step) == (Event.PAGE, StepId.for_days(7))
    alerting.acknowledge(db, KEY, for_=DAY, by="ops", why="ordered", now=now)
    with db.engine.connect() as conn:
        state = conn.execute(text("SELECT fired, current, ack_step FROM alert_state")).one()
        outbox = conn.execute(text("SELECT event, step, idempotency_key, payload FROM outbox")
                              ).one()
        ack = conn.execute(text("SELECT step FROM acks")).scalar_one()
    # SQLite hands JSON columns back as text to a plain query.
    assert json.loads(state[0]) == {"days:7": now.isoformat()}
    assert state[1:] == ("days:7", "days:7")
    assert outbox[:2] == ("page", "days:7") and ack == "days:7"
    digest = "\x1f".join((sent.dedup_key, "page", "days:7", now.isoformat(), "hook"))
    assert outbox[2] == hashlib.sha256(digest.encode()).hexdigest()
    payload = json.loads(outbox[3])
    assert (payload["event"], payload["step"]) == ("page", "days:7")
    record = AlertsRepo(db).state(KEY)
    assert record is not None and record.current == StepId.for_days(7)
    assert record.fired == ((StepId.for_days(7), now),)


def test_an_unknown_stored_step_is_one_line_naming_the_row(db: Database) -> None:
    cfg = AlertsConfig(channels={})
    sit = Situation(key=KEY, cycle="a" * 64, breaks_at=BREAKS, lifetime=398 * DAY)
    alerting.evaluate(db, cfg, [sit], BREAKS - 5 * DAY)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alert_state SET current = 'days:seven'"))
    with pytest.raises(ChainwatchError) as caught:
        AlertsRepo(db).state(KEY)
    assert str(caught.value) == (
        f"alert_state {KEY!r}: unknown alert step 'days:seven' (days:N, remaining:P%, "
        "overdue, broken, resolve, watchdog or test)")
