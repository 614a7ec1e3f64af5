"""Alert delivery end to end, in simulated time, against real loopback receivers: the
escalation a receiver sees, acknowledgements, outages of the receiver, restarts and
crashes of chainwatch, renewals across addresses, issue trackers and PagerDuty through
the outbox, the watchdog, the dead-man's switch, and secrets kept out of every row
and log line."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from chainwatch.alerts import outbox as alerting
from chainwatch.alerts.channels import DeliveryError
from chainwatch.alerts.escalation import Event, Situation, StepId, dedup_key
from chainwatch.alerts.outbox import (
    AlertError,
    acknowledge,
    check_watchdog,
    deliver,
    evaluate,
    list_alerts,
    ping_deadman,
)
from chainwatch.config.inventory import (
    Action,
    AlertsConfig,
    AlertStep,
    BrokenRule,
    Channel,
    Deadman,
    GitHubChannel,
    PagerDutyChannel,
    Secret,
    WebhookChannel,
)
from chainwatch.storage import AlertsRepo, Database
from chainwatch.storage.alerts_repo import AlertsTransaction, NewOutboxRow, OutboxStatus

from .conftest import Receiver
from .pki import at

BREAKS = at("2026-03-01T00:00:00Z")
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
KEY = "app.example.com:443"
LEAF_A, LEAF_B = "a" * 64, "b" * 64
HOOK_SECRET = "wh-S3CRET-path-value"
HOOK_QUERY = "tok3n-in-query"
ROUTING = "PD-R0UT1NG-K3Y"
GH_TOKEN = "ghp_S3CRET-T0KEN"
SECRETS = (HOOK_SECRET, HOOK_QUERY, ROUTING, GH_TOKEN)
ENV = {"PD_KEY": ROUTING, "GH_TOKEN": GH_TOKEN}
DESIGNED = [("ticket", "days:30"), ("notify", "days:14"), *[("page", "days:7")] * 5,
            *[("page", "days:2")] * 12]


# -- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def sqlite_file(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'alerts.sqlite'}"


@pytest.fixture
def db(sqlite_file: str) -> Iterator[Database]:
    with Database(sqlite_file) as database:
        yield database


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest) -> Iterator[Database]:
    name = "sqlite_file" if request.param == "sqlite" else "pg_url"
    with Database(request.getfixturevalue(name)) as database:
        yield database


def hook(receiver: Receiver, name: str = "hook") -> WebhookChannel:
    url = f"{receiver.url}/hook/{name}/{HOOK_SECRET}?token={HOOK_QUERY}"
    return WebhookChannel(name=name, url=Secret.inline(url))


def pagerduty(receiver: Receiver) -> PagerDutyChannel:
    return PagerDutyChannel(name="oncall", routing_key=Secret.env("PD_KEY"),
                            api_url=f"{receiver.url}/v2/enqueue")


def github(receiver: Receiver) -> GitHubChannel:
    return GitHubChannel(name="tickets", repo="acme/ops", token=Secret.env("GH_TOKEN"),
                         api_url=receiver.url)


def config(*channels: Channel, **kw: Any) -> AlertsConfig:
    return AlertsConfig(channels={c.name: c for c in channels}, **kw)


def sit(cycle: str = LEAF_A, breaks_at: dt.datetime = BREAKS, **kw: Any) -> Situation:
    base: dict[str, Any] = {"key": KEY, "cycle": cycle, "breaks_at": breaks_at,
                            "lifetime": dt.timedelta(days=398), "status": "warning",
                            "summary": "the leaf expires", "findings": ("EXPIRES_SOON",)}
    base.update(kw)
    return Situation(**base)


def walk(
    db: Database,
    cfg: AlertsConfig,
    start: dt.datetime,
    end: dt.datetime,
    situations: Callable[[dt.datetime], Sequence[Situation]] = lambda t: [sit()],
    *,
    step: dt.timedelta = HOUR,
    each: Callable[[dt.datetime], None] | None = None,
) -> dt.datetime:
    """Evaluate and deliver every ``step`` from ``start`` to ``end`` (bounded: at most
    2000 ticks); returns the first instant not walked."""
    t = start
    for _ in range(2000):
        if t > end:
            break
        if each is not None:
            each(t)
        evaluate(db, cfg, situations(t), t)
        deliver(db, cfg, t, environ=ENV)
        t += step
    return t


def events(receiver: Receiver, path: str = "/hook") -> list[tuple[str, str]]:
    return [(r.json()["event"], r.json()["step"]) for r in receiver.to(path)]


def dump(db: Database) -> str:
    """Every stored alert row, as text."""
    out = []
    with db.engine.connect() as conn:
        for table in ("alert_state", "outbox", "acks"):
            out += [repr(tuple(row)) for row in conn.execute(text(f"SELECT * FROM {table}"))]
    return "\n".join(out)


def assert_no_secrets(*texts: str) -> None:
    for t in texts:
        for secret in SECRETS:
            assert secret not in t


# -- the escalation a receiver sees ----------------------------------------------------------


def test_forty_days_to_expiry_reach_the_receiver_exactly(
    any_db: Database, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chainwatch")
    cfg = config(hook(receiver))
    walk(any_db, cfg, BREAKS - 40 * DAY, BREAKS - HOUR)
    assert events(receiver) == DESIGNED

    requests = receiver.to("/hook")
    first = requests[0].json()
    assert first == {
        "schema": 1, "event": "ticket", "dedup_key": dedup_key(KEY, LEAF_A),
        "target": {"key": KEY, "host": "app.example.com", "port": 443, "ip": None, "sni": None,
                   "starttls": None},
        "breaks_at": "2026-03-01T00:00:00Z", "days_left": 29, "status": "warning",
        "findings": [{"code": "EXPIRES_SOON"}],
        "message": "app.example.com:443: trust breaks in 29 days (2026-03-01T00:00:00Z): "
                   "the leaf expires",
        "sent_at": "2026-01-30T01:00:00Z", "step": "days:30",
    }
    assert {r.json()["dedup_key"] for r in requests} == {dedup_key(KEY, LEAF_A)}
    sent = [r.json()["sent_at"] for r in requests]
    assert len(set(sent)) == len(sent) == 19  # nothing sent twice
    assert requests[-1].json()["days_left"] == 0

    repo = AlertsRepo(any_db)
    rows = repo.outbox()
    assert len(rows) == 19 and {r.status for r in rows} == {OutboxStatus.DELIVERED}
    assert all(r.attempts == 1 and r.last_error is None for r in rows)
    assert_no_secrets(dump(any_db), caplog.text)


def test_ack_silences_the_daily_page_until_it_expires(db: Database, receiver: Receiver) -> None:
    cfg = config(hook(receiver))
    start = BREAKS - 8 * DAY

    def ack_once(t: dt.datetime) -> None:
        if t == BREAKS - 7 * DAY + 2 * HOUR:
            result = acknowledge(db, KEY, for_=2 * DAY, by="ana", why="renewal ordered", now=t,
                                 config=cfg)
            assert (str(result.ack.step), result.ackable) == ("days:7", True)

    walk(db, cfg, start, BREAKS - 2 * DAY - HOUR, each=ack_once)
    pages = [r.json()["sent_at"] for r in receiver.to("/hook") if r.json()["event"] == "page"]
    # Paged once at 7 days, silent for the 2 days of the ack, then daily again.
    assert pages == ["2026-02-22T01:00:00Z", "2026-02-24T02:00:00Z", "2026-02-25T02:00:00Z",
                     "2026-02-26T02:00:00Z"]
    (ack,) = AlertsRepo(db).acks(KEY)
    assert (ack.by, ack.why, ack.step) == ("ana", "renewal ordered", StepId.for_days(7))


def test_ack_in_the_last_two_days_does_not_silence_pages(
    db: Database, receiver: Receiver
) -> None:
    cfg = config(hook(receiver))
    notes = []

    def ack_once(t: dt.datetime) -> None:
        if t == BREAKS - 2 * DAY + 2 * HOUR:
            notes.append(acknowledge(db, KEY, for_=3 * DAY, by="bo", why="on it", now=t,
                                     config=cfg))

    walk(db, cfg, BREAKS - 3 * DAY, BREAKS - HOUR, each=ack_once)
    assert notes[0].ackable is False  # recorded, but the step pages regardless
    assert events(receiver).count(("page", "days:2")) == 12


def test_acknowledge_needs_a_current_alert(db: Database, receiver: Receiver) -> None:
    cfg = config(hook(receiver))
    now = BREAKS - 60 * DAY
    with pytest.raises(AlertError, match="no alert for 'nope:443'"):
        acknowledge(db, "nope:443", for_=DAY, by="a", why="b", now=now)
    evaluate(db, cfg, [sit()], now)  # known, but nothing is current 60 days out
    with pytest.raises(AlertError, match="no alert step is current"):
        acknowledge(db, KEY, for_=DAY, by="a", why="b", now=now)
    with pytest.raises(AlertError, match="positive duration"):
        acknowledge(db, KEY, for_=dt.timedelta(0), by="a", why="b", now=now)
    with pytest.raises(AlertError, match="say why"):
        acknowledge(db, KEY, for_=DAY, by="a", why="  ", now=now)
    assert AlertsRepo(db).acks() == []


def test_list_alerts(db: Database, receiver: Receiver) -> None:
    cfg = config(hook(receiver))
    assert list_alerts(db) == []
    now = BREAKS - 5 * DAY
    evaluate(db, cfg, [sit(), sit(key="quiet.example.com:443", breaks_at=BREAKS + 90 * DAY)],
             now)
    acknowledge(db, KEY, for_=DAY, by="cy", why="waiting for CA", now=now)
    (alert,) = list_alerts(db, now=now + HOUR, config=cfg)
    assert (alert.id, str(alert.step), alert.ackable, alert.days_left) == (KEY, "days:7", True, 4)
    assert alert.ack is not None and alert.ack.by == "cy"
    assert alert.last_fired == now and alert.dedup_key == dedup_key(KEY, LEAF_A)
    assert alert.to_json()["ack"]["until"] == "2026-02-25T00:00:00Z"
    (later,) = list_alerts(db, now=now + 2 * DAY)
    assert later.ack is None  # expired


# -- outages, crashes and restarts ----------------------------------------------------------


def test_receiver_down_for_an_hour_loses_and_duplicates_nothing(
    any_db: Database, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chainwatch")
    cfg = config(hook(receiver))
    receiver.error_body = f"proxy error for /hook/hook/{HOOK_SECRET}?token={HOOK_QUERY}"
    start = BREAKS - 7 * DAY - 10 * dt.timedelta(minutes=1)

    def outage(t: dt.datetime) -> None:
        receiver.status = 500 if BREAKS - 7 * DAY <= t < BREAKS - 7 * DAY + HOUR else None

    walk(any_db, cfg, start, BREAKS - 5 * DAY, step=dt.timedelta(minutes=5), each=outage)
    tried = [(r.json()["event"], r.json()["sent_at"][11:16]) for r in receiver.to("/hook")]
    # The notify came before the outage. The 7-day page fell due in it: tried at 5-minute
    # ticks as the backoff (30 s, 1, 2, 4, 8, 16, 32 min) allowed, it arrived once, after
    # the receiver was back, and the next daily page came on time.
    assert tried == [("notify", "23:50"), ("page", "00:05"), ("page", "00:10"),
                     ("page", "00:15"), ("page", "00:20"), ("page", "00:25"), ("page", "00:35"),
                     ("page", "00:55"), ("page", "01:30"), ("page", "00:05")]
    assert {r.json()["dedup_key"] for r in receiver.to("/hook")} == {dedup_key(KEY, LEAF_A)}
    _, first, second = AlertsRepo(any_db).outbox()
    assert first.status is OutboxStatus.DELIVERED and first.attempts == 8
    assert first.delivered_at == BREAKS - 7 * DAY + 90 * dt.timedelta(minutes=1)
    assert first.last_error is not None and "HTTP 500" in first.last_error
    assert second.status is OutboxStatus.DELIVERED and second.attempts == 1
    assert_no_secrets(dump(any_db), caplog.text)


def test_messages_die_after_a_day_and_rejections_at_once(db: Database, receiver: Receiver) -> None:
    cfg = config(hook(receiver))
    receiver.status = 503
    now = BREAKS - 20 * DAY
    evaluate(db, cfg, [sit()], now)
    for hour in range(26):
        deliver(db, cfg, now + hour * HOUR)
    (row,) = AlertsRepo(db).outbox()
    assert row.status is OutboxStatus.DEAD and row.attempts == 25
    assert row.last_error is not None and "HTTP 503" in row.last_error
    assert_no_secrets(row.last_error)

    receiver.status = 404
    evaluate(db, cfg, [sit()], BREAKS - 10 * DAY)
    stats = deliver(db, cfg, BREAKS - 10 * DAY)
    assert (stats.dead, stats.retried, stats.delivered) == (1, 0, 0)


def test_restart_mid_sequence_neither_repeats_nor_skips(
    sqlite_file: str, receiver: Receiver
) -> None:
    cfg = config(hook(receiver))
    midway = BREAKS - 7 * DAY + 5 * HOUR
    with Database(sqlite_file) as first:
        walk(first, cfg, BREAKS - 40 * DAY, midway)
    # Crash and restart: a new process re-runs the instant it was at, then goes on.
    with Database(sqlite_file) as second:
        assert evaluate(second, cfg, [sit()], midway) == []
        assert deliver(second, cfg, midway).attempted == 0
        walk(second, cfg, midway, BREAKS - HOUR)
    assert events(receiver) == DESIGNED


def test_crash_inside_evaluate_leaves_nothing_half_done(
    db: Database, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(hook(receiver), hook(receiver, "second"))
    now = BREAKS - 5 * DAY
    real = AlertsTransaction.enqueue
    calls = []

    def crash_after_first(self: AlertsTransaction, rows: Sequence[NewOutboxRow]) -> int:
        calls.append(len(rows))
        real(self, rows)  # the rows are written inside the transaction, then:
        raise RuntimeError("power cut")

    monkeypatch.setattr(AlertsTransaction, "enqueue", crash_after_first)
    with pytest.raises(RuntimeError, match="power cut"):
        evaluate(db, cfg, [sit()], now)
    assert calls == [2]
    repo = AlertsRepo(db)
    assert repo.outbox() == [] and repo.state(KEY) is None  # rolled back whole
    monkeypatch.setattr(AlertsTransaction, "enqueue", real)
    assert len(evaluate(db, cfg, [sit()], now)) == 1
    assert evaluate(db, cfg, [sit()], now) == []
    assert len(repo.outbox()) == 2
    deliver(db, cfg, now)
    assert events(receiver) == [("page", "days:7"), ("page", "days:7")]
    assert {r.path.split("/")[2] for r in receiver.to("/hook")} == {"hook", "second"}


def test_outbox_inserts_each_idempotency_key_once(any_db: Database) -> None:
    now = BREAKS - 5 * DAY
    page, days7 = Event.PAGE, StepId.for_days(7)
    row = NewOutboxRow(created_at=now, target_key=KEY, event=page, step=days7,
                       channel="hook", dedup_key="k",
                       idempotency_key=alerting.idempotency_key("k", page, days7, now, "hook"),
                       payload={"schema": 1})
    repo = AlertsRepo(any_db)
    with repo.transaction() as tx:
        assert tx.enqueue([row, row]) == 1
    with repo.transaction() as tx:
        assert tx.enqueue([row]) == 0
    (item,) = repo.outbox()
    # Two senders race for the row: the claim lets one through.
    assert repo.claim(item, now + HOUR) is True
    assert repo.claim(item, now + HOUR) is False
    assert repo.due(now) == [] and len(repo.due(now + HOUR)) == 1


def test_sender_dying_mid_send_retries_after_the_lease(db: Database, receiver: Receiver) -> None:
    cfg = config(hook(receiver))
    now = BREAKS - 5 * DAY
    evaluate(db, cfg, [sit()], now)
    repo = AlertsRepo(db)
    (item,) = repo.due(now)
    assert repo.claim(item, now + alerting.LEASE)  # ... and the process dies here
    with Database(db.url) as restarted:
        assert deliver(restarted, cfg, now).attempted == 0  # still leased
        assert deliver(restarted, cfg, now + alerting.LEASE).delivered == 1
        assert deliver(restarted, cfg, now + 2 * alerting.LEASE).attempted == 0
    assert len(receiver.to("/hook")) == 1


def test_a_resolve_never_overtakes_the_page_it_resolves(db: Database, receiver: Receiver) -> None:
    cfg = config(hook(receiver))
    now = BREAKS - 5 * DAY
    receiver.status = 502
    evaluate(db, cfg, [sit()], now)
    deliver(db, cfg, now)
    evaluate(db, cfg, [sit(cycle=LEAF_B, breaks_at=BREAKS + 365 * DAY)], now + HOUR)
    receiver.status = None
    stats = deliver(db, cfg, now + 2 * HOUR)
    assert stats.delivered == 2
    assert events(receiver)[1:] == [("page", "days:7"), ("resolve", "resolve")]


# -- renewals, tickets and PagerDuty --------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    sha256: str
    not_before: dt.datetime
    not_after: dt.datetime


OLD = Leaf(LEAF_A, BREAKS - 398 * DAY, BREAKS)
NEW = Leaf(LEAF_B, BREAKS - 10 * DAY, BREAKS + 388 * DAY)


def situation_of(addresses: dict[str, Leaf]) -> Situation:
    """As the monitor builds it: the cycle is the oldest leaf served on any address,
    so it changes only when every address serves the renewed one."""
    oldest = min(addresses.values(), key=lambda leaf: leaf.not_before)
    return sit(cycle=oldest.sha256, breaks_at=min(x.not_after for x in addresses.values()),
               lifetime=oldest.not_after - oldest.not_before)


def test_renewal_resolves_only_when_every_address_serves_it(
    db: Database, receiver: Receiver
) -> None:
    cfg = config(hook(receiver), pagerduty(receiver))
    served = {"192.0.2.1": OLD, "192.0.2.2": OLD}
    renew_one, renew_both = BREAKS - 4 * DAY, BREAKS - 3 * DAY + 2 * HOUR

    def renewals(t: dt.datetime) -> None:
        if t == renew_one:
            served["192.0.2.1"] = NEW
        if t == renew_both:
            served["192.0.2.2"] = NEW

    walk(db, cfg, BREAKS - 6 * DAY, BREAKS - 2 * DAY, lambda t: [situation_of(served)],
         each=renewals)
    # Daily pages go on while one address still serves the old leaf (02-25 and 02-26).
    assert events(receiver) == [("page", "days:7")] * 4 + [("resolve", "resolve")]
    pd = [r.json() for r in receiver.to("/v2/enqueue")]
    assert [e["event_action"] for e in pd] == ["trigger"] * 4 + ["resolve"]
    assert {e["dedup_key"] for e in pd} == {dedup_key(KEY, LEAF_A)}
    assert {e["routing_key"] for e in pd} == {ROUTING}
    resolve = receiver.to("/hook")[-1].json()
    assert resolve["sent_at"] == "2026-02-26T02:00:00Z"
    assert resolve["dedup_key"] == dedup_key(KEY, LEAF_A)
    assert list_alerts(db) == []
    assert_no_secrets(dump(db))


def test_tickets_one_issue_per_cycle_closed_on_renewal(db: Database, receiver: Receiver) -> None:
    steps = (AlertStep(days=30, action=Action.TICKET, channels=("tickets",)),
             AlertStep(days=7, action=Action.PAGE, repeat=DAY, channels=("hook",)))
    cfg = config(hook(receiver), github(receiver), steps=steps,
                 broken=BrokenRule(channels=("hook",)))
    broken_from, broken_until = BREAKS - 60 * DAY, BREAKS - 60 * DAY + 3 * HOUR
    renewed = BREAKS - 6 * DAY

    def situations(t: dt.datetime) -> list[Situation]:
        if t >= renewed:
            return [sit(cycle=LEAF_B, breaks_at=BREAKS + 388 * DAY)]
        if broken_from <= t < broken_until:
            return [sit(broken=True, summary="connection refused", status="unknown")]
        return [sit()]

    walk(db, cfg, BREAKS - 61 * DAY, BREAKS - 5 * DAY, situations)
    assert events(receiver) == [
        ("page", "broken"), ("page", "broken"), ("page", "broken"),
        ("resolve", "resolve"),  # the probe failure ended: told where the pages went
        ("page", "days:7"),
        ("resolve", "resolve"),  # the renewal: told to every channel that heard of it
    ]
    (issue,) = receiver.github.values()
    assert issue["state"] == "closed" and len(issue["comments"]) == 1
    assert "renewed certificate now served on every address" in issue["comments"][0]
    resolves = [(o.channel, o.created_at) for o in AlertsRepo(db).outbox() if o.event == "resolve"]
    assert resolves == [("hook", broken_until), ("hook", renewed), ("tickets", renewed)]
    assert_no_secrets(dump(db))


# -- watchdog and dead-man's switch ---------------------------------------------------------


def test_watchdog_fires_when_scans_stop(db: Database, receiver: Receiver) -> None:
    cfg = config(hook(receiver), hook(receiver, "second"))
    t0 = BREAKS - 50 * DAY
    assert check_watchdog(db, cfg, t0, interval=HOUR) == []  # no scan ever: nothing to judge
    db.beat("scan", at=t0)
    fired: list[list[str]] = []
    for minutes in range(0, 6 * 60, 10):  # every 10 minutes for 6 hours
        now = t0 + dt.timedelta(minutes=minutes)
        if minutes == 4 * 60 + 30:
            db.beat("scan", at=now)  # scans resume
        fired.append([d.event for d in check_watchdog(db, cfg, now, interval=HOUR)])
        deliver(db, cfg, now)
    assert [(i * 10, f) for i, f in enumerate(fired) if f] == [
        (130, ["watchdog"]), (190, ["watchdog"]), (250, ["watchdog"]), (270, ["resolve"])]
    sent = [r.json() for r in receiver.to("/hook")]
    assert [(p["event"], p["target"]["key"]) for p in sent] == [
        ("watchdog", "watchdog:scan")] * 6 + [("resolve", "watchdog:scan")] * 2
    assert len({p["dedup_key"] for p in sent}) == 1
    assert "no scan has completed for 2 h 10 min" in sent[0]["message"]
    assert_no_secrets(dump(db))


def test_watchdog_reports_a_failing_channel_through_the_others(
    db: Database, receiver: Receiver
) -> None:
    cfg = config(hook(receiver, "alpha"), hook(receiver, "beta"))
    receiver.fail["/hook/alpha"] = 500
    now = BREAKS - 5 * DAY
    evaluate(db, cfg, [sit()], now)
    for minutes in range(0, 90, 10):
        t = now + dt.timedelta(minutes=minutes)
        deliver(db, cfg, t)
        notes = check_watchdog(db, cfg, t, interval=HOUR)
        if minutes < 60:
            assert notes == []
    beta = [r.json() for r in receiver.to("/hook/beta")]
    assert [(p["event"], p["target"]["key"]) for p in beta] == [
        ("page", KEY), ("watchdog", "watchdog:channel:alpha")]
    assert "alert channel 'alpha' is failing" in beta[1]["message"]
    assert_no_secrets(beta[1]["message"])

    receiver.fail.clear()  # alpha recovers: its page arrives, the watchdog resolves on beta
    later = now + 2 * HOUR
    deliver(db, cfg, later)
    assert [d.event for d in check_watchdog(db, cfg, later, interval=HOUR)] == ["resolve"]
    deliver(db, cfg, later)
    assert [r.json()["event"] for r in receiver.to("/hook/alpha")][-1:] == ["page"]
    assert receiver.to("/hook/beta")[-1].json()["event"] == "resolve"
    assert [o.channel for o in AlertsRepo(db).outbox(target_key="watchdog:channel:alpha")] == [
        "beta", "beta"]


def test_deadman_ping(receiver: Receiver) -> None:
    url = f"{receiver.url}/ping/5e1f-{HOOK_SECRET}"
    assert ping_deadman(config()) is False
    assert ping_deadman(config(deadman=Deadman(url=Secret.inline(url)))) is True
    assert ping_deadman(config(deadman=Deadman(url=Secret.env("HC"), method="post")),
                        summary="12 targets, worst: warning", environ={"HC": url}) is True
    get, post = receiver.to("/ping")
    assert (get.method, post.method, post.body) == ("GET", "POST", b"12 targets, worst: warning")
    receiver.status = 500
    with pytest.raises(DeliveryError) as caught:
        ping_deadman(config(deadman=Deadman(url=Secret.inline(url))))
    assert HOOK_SECRET not in str(caught.value) and "HTTP 500" in str(caught.value)
    with pytest.raises(DeliveryError, match="HC is not set"):
        ping_deadman(config(deadman=Deadman(url=Secret.env("HC"))), environ={})


def test_payload_targets() -> None:
    assert alerting.target_json("file:/etc/ssl/a.pem") == {"key": "file:/etc/ssl/a.pem",
                                                           "file": "/etc/ssl/a.pem"}
    assert alerting.target_json("mail.example.com:25/smtp#mx.example.com") == {
        "key": "mail.example.com:25/smtp#mx.example.com", "host": "mail.example.com",
        "port": 25, "ip": None, "sni": "mx.example.com", "starttls": "smtp"}
    assert alerting.target_json("::1:8443")["host"] == "::1"
    assert alerting.target_json("watchdog:scan") == {"key": "watchdog:scan"}
    payload = alerting.payload_for_test("hook", BREAKS)
    assert payload["event"] == "test" and "TEST" in payload["message"]
    assert json.loads(json.dumps(payload)) == payload


def test_channels_named_by_steps_only(db: Database, receiver: Receiver) -> None:
    """A step that names channels goes there only; one that names none, everywhere."""
    steps = (AlertStep(days=7, action=Action.PAGE, channels=("oncall",)),
             AlertStep(days=2, action=Action.PAGE))
    cfg = replace(config(hook(receiver), pagerduty(receiver)), steps=steps)
    evaluate(db, cfg, [sit()], BREAKS - 5 * DAY)
    evaluate(db, cfg, [sit()], BREAKS - DAY)
    assert [(str(o.step), o.channel) for o in AlertsRepo(db).outbox()] == [
        ("days:7", "oncall"), ("days:2", "hook"), ("days:2", "oncall")]
    assert deliver(db, cfg, BREAKS - DAY, environ=ENV).delivered == 3
