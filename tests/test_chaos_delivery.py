"""Alert delivery against receivers that answer 500, hang, trickle their answer a byte
at a time, or reset the connection (:mod:`tests.chaos_receivers`): ``alerts test`` and a
real delivery cycle (real SQLite outbox, real loopback HTTP) end at ONE deadline per
delivery, channels are delivered to concurrently, nothing is lost, and nothing is
duplicated beyond what at-least-once allows.

Assertions are on outcomes and on the order of events the receivers saw, never on
wall time; every subprocess has a timeout so that a regression fails instead of
hanging."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainwatch.alerts.escalation import Situation, dedup_key
from chainwatch.alerts.outbox import deliver, evaluate
from chainwatch.config.inventory import AlertsConfig, Secret, WebhookChannel
from chainwatch.errors import DeliveryError
from chainwatch.storage import AlertsRepo, Database
from chainwatch.storage.alerts_repo import OutboxStatus

from .chaos_receivers import Holds, Misbehaving

EXE = Path(sys.executable).with_name("chainwatch")
NOW = dt.datetime(2026, 2, 24, 12, 0, tzinfo=dt.UTC)
KEY = "pay.example.com:443"
DEADLINE = 2.0
"""The channel timeout the in-process delivery cycles run with (seconds)."""


@pytest.fixture
def holds() -> Holds:
    return Holds()


@pytest.fixture
def receivers(holds: Holds) -> Iterator[dict[str, Misbehaving]]:
    """One receiver per misbehaviour, plus a healthy one; all share one hold counter."""
    made = {
        "healthy": Misbehaving("ok", holds=holds),
        "hang1": Misbehaving("hang", holds=holds),
        "hang2": Misbehaving("hang", holds=holds),
        "hang3": Misbehaving("hang", holds=holds),
        "hang4": Misbehaving("hang", holds=holds),
        "trickle": Misbehaving("trickle", holds=holds),
        "reset": Misbehaving("reset", holds=holds),
        "err500": Misbehaving("500", holds=holds),
    }
    for receiver in made.values():
        receiver.start()
    try:
        yield made
    finally:
        for receiver in made.values():
            receiver.stop()


def config_for(receivers: dict[str, Misbehaving]) -> AlertsConfig:
    return AlertsConfig(channels={
        name: WebhookChannel(name=name, url=Secret.inline(r.url(f"/hook/{name}")))
        for name, r in receivers.items()
    })


def page(at: dt.datetime) -> Situation:
    """A target five days from breaking: the 7-day page step fires."""
    return Situation(key=KEY, cycle="c" * 64, breaks_at=at + dt.timedelta(days=5),
                     lifetime=dt.timedelta(days=398), status="critical",
                     summary="the leaf expires in 5 days", findings=("EXPIRES_SOON",))


# -- alerts test ------------------------------------------------------------------------------


def test_alerts_test_ends_at_the_channel_deadline_whatever_the_receiver_does(
    tmp_path: Path,
) -> None:
    """``chainwatch alerts test`` (default deadline, 10 s) against a receiver trickling
    its answer byte by byte, one trickling even the status line, one that never answers,
    one that resets, one answering 500: each run ends with one line saying why and exit
    status 3, and the held receivers saw the client give up. (Before: a trickled answer
    held the command for as long as the receiver liked, then reported success.)"""
    modes = {"trickle": "trickle", "trickle-head": "trickle-head", "hang": "hang",
             "reset": "reset", "err500": "500"}
    made = {name: Misbehaving(mode).start() for name, mode in modes.items()}
    try:
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(
            "endpoints: [app.example.com]\nalerts:\n  channels:\n" + "".join(
                f"    {name}: {{type: webhook, url: '{r.url(f'/hook/s3cret-{name}')}'}}\n"
                for name, r in made.items()))
        procs = {
            name: subprocess.Popen([str(EXE), "alerts", "test", name, str(inventory)],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            for name in made
        }
        results: dict[str, tuple[int, str, str]] = {}
        try:
            for name, proc in procs.items():  # run side by side: one deadline in all
                out, err = proc.communicate(timeout=60)
                results[name] = (proc.returncode, out, err)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
        for name, (code, out, err) in results.items():
            assert (code, out) == (3, ""), (name, err)
            assert err.count("\n") == 1 and err.startswith(f"chainwatch: error: {name}: "), err
            assert "s3cret" not in err and "Traceback" not in err
        for name in ("trickle", "trickle-head", "hang"):
            _, _, err = results[name]
            assert f"{made[name].url('')} timed out after 10s" in err
            # The client hung up on it: the receiver sees it at its next read or write
            # after the process ended (a process that exits at once closes its sockets).
            assert made[name].gave_up.wait(timeout=30), name
        assert "answered HTTP 500" in results["err500"][2]
        assert made["reset"].connections == 1 and made["reset"].arrived == []
    finally:
        for receiver in made.values():
            receiver.stop()


# -- a delivery cycle -------------------------------------------------------------------------


def test_a_delivery_cycle_with_hanging_trickling_resetting_and_failing_channels(
    tmp_path: Path, receivers: dict[str, Misbehaving], holds: Holds
) -> None:
    """One page for eight channels: four that hang, one trickling, one resetting, one
    answering 500, one healthy.

    * One deadline per delivery, all channels at once: the cycle makes one attempt per
      row, the timed-out ones fail as "timed out after 2s", and the four hanging
      receivers were all holding a connection at the same moment (one after another,
      the cycle would have taken four deadlines and never held two at once).
    * The healthy receiver got its page while a hanging one was still held.
    * Once every receiver recovers, the next cycle delivers every row: nothing lost.
      Receivers that never processed the first attempt (500, reset, hang) got the page
      exactly once; the trickling one processed it twice (it acted on the first
      request, whose answer never arrived): at least once, under one ``dedup_key``, the
      same message but for ``sent_at``. A third cycle sends nothing more.
    """
    cfg = config_for(receivers)
    healthy, hangs = receivers["healthy"], [receivers[f"hang{n}"] for n in range(1, 5)]
    seen_while_held: list[bool] = []

    def check_hangs(_: dict[str, Any]) -> None:
        # Bounded wait for the hanging deliveries to start: they run side by side with
        # this one, so they are under way within moments (one after another, never).
        seen_while_held.append(all(h.holding.wait(timeout=DEADLINE / 2) for h in hangs)
                               and any(h.held for h in hangs))

    healthy.on_processed = check_hangs
    with Database(f"sqlite:///{tmp_path / 'alerts.sqlite'}") as db:
        assert [d.event for d in evaluate(db, cfg, [page(NOW)], NOW)] == ["page"]
        first = deliver(db, cfg, NOW, timeout=DEADLINE)
        assert (first.delivered, first.retried, first.dead, first.skipped) == (1, 7, 0, 0)
        assert seen_while_held == [True]
        assert holds.most >= 4
        assert all(h.gave_up.is_set() for h in hangs)
        rows = {row.channel: row for row in AlertsRepo(db).outbox()}
        assert set(rows) == set(receivers)
        for name, row in rows.items():
            if name == "healthy":
                assert (row.status, row.attempts) == (OutboxStatus.DELIVERED, 1)
                continue
            assert (row.status, row.attempts) == (OutboxStatus.PENDING, 1), name
            assert row.last_error is not None
            if name.startswith(("hang", "trickle")):
                assert row.last_error.endswith(f"timed out after {DEADLINE:g}s"), row.last_error
        assert "answered HTTP 500" in (rows["err500"].last_error or "")

        healthy.on_processed = None
        for receiver in receivers.values():
            receiver.mode = "ok"
        later = NOW + dt.timedelta(minutes=1)  # past the first backoff (30 s)
        second = deliver(db, cfg, later, timeout=DEADLINE)
        assert (second.delivered, second.retried, second.dead) == (7, 0, 0)
        assert {row.status for row in AlertsRepo(db).outbox()} == {OutboxStatus.DELIVERED}
        assert deliver(db, cfg, later + dt.timedelta(hours=1), timeout=DEADLINE).attempted == 0

    key = dedup_key(KEY, "c" * 64)
    for name, receiver in receivers.items():
        got = receiver.payloads()
        assert {p["dedup_key"] for p in got} == {key}, name
        assert {p["event"] for p in got} == {"page"}
        expected = 2 if name == "trickle" else 1
        assert len(got) == expected, (name, len(got))
        assert len({p["sent_at"] for p in got}) == expected
        assert {tuple(sorted((k, str(v)) for k, v in p.items() if k != "sent_at"))
                for p in got} == {tuple(sorted((k, str(v)) for k, v in got[0].items()
                                               if k != "sent_at"))}
    assert len(receivers["err500"].arrived) == 2  # tried twice, processed once
    assert receivers["reset"].connections == 2 and len(receivers["reset"].arrived) == 1


def test_one_channel_still_gets_its_messages_in_order_while_another_hangs(
    tmp_path: Path, holds: Holds
) -> None:
    """Concurrency is across channels: within one, a page and the resolve that follows
    it go one after the other, in order, even while another channel hangs."""
    quick, stuck = Misbehaving("ok", holds=holds).start(), Misbehaving("hang", holds=holds).start()
    order: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def note(payload: dict[str, Any]) -> None:
        held = stuck.holding.wait(timeout=DEADLINE / 2) and stuck.held > 0
        with lock:
            order.append((payload["event"], held))

    quick.on_processed = note
    try:
        cfg = AlertsConfig(channels={
            "quick": WebhookChannel(name="quick", url=Secret.inline(quick.url())),
            "stuck": WebhookChannel(name="stuck", url=Secret.inline(stuck.url())),
        })
        with Database(f"sqlite:///{tmp_path / 'order.sqlite'}") as db:
            evaluate(db, cfg, [page(NOW)], NOW)
            renewed = Situation(key=KEY, cycle="d" * 64, breaks_at=NOW + dt.timedelta(days=300),
                                lifetime=dt.timedelta(days=398), status="ok",
                                summary="renewed")
            assert [d.event for d in evaluate(db, cfg, [renewed], NOW)] == ["resolve"]
            stats = deliver(db, cfg, NOW, timeout=DEADLINE)
        assert (stats.delivered, stats.retried) == (2, 1)  # the stuck page; its resolve waits
        assert [event for event, _ in order] == ["page", "resolve"]
        assert all(held for _, held in order)  # while the other channel was held
    finally:
        quick.stop()
        stuck.stop()


# -- response bodies are capped ---------------------------------------------------------------


@pytest.fixture
def flood() -> Iterator[Misbehaving]:
    receiver = Misbehaving("flood").start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def bomb() -> Iterator[Misbehaving]:
    receiver = Misbehaving("gzip-bomb").start()
    try:
        yield receiver
    finally:
        receiver.stop()


def test_a_receiver_answering_half_a_gigabyte_is_read_only_to_the_cap(
        flood: Misbehaving) -> None:
    """A webhook that answers 200 with 512 MiB: the delivery succeeds (the request was
    processed), at most MAX_RESPONSE_BYTES of the body is kept, and the client hangs up
    instead of reading the rest. (Before: httpx read the whole body into memory.)"""
    from chainwatch.alerts.channels import _base

    with _base.Http("flooded", timeout=60) as http:
        response = http.request("POST", flood.url(), doing="deliver", json={"x": 1})
        assert len(response.content) == _base.MAX_RESPONSE_BYTES
        assert response.extensions[_base.TRUNCATED] is True
        with pytest.raises(DeliveryError, match="larger than 1048576 bytes"):
            http.json(response, "search issues")
    assert len(flood.payloads()) == 1
    assert flood.gave_up.wait(30)
    assert flood.sent < 64 << 20  # socket buffers at most; never the 512 MiB


def test_a_gzip_bomb_answer_is_inflated_only_to_the_cap(bomb: Misbehaving) -> None:
    """A ~260 KiB gzip answer inflating to 256 MiB is decoded only to the cap."""
    from chainwatch.alerts.channels import _base

    with _base.Http("bombed", timeout=60) as http:
        response = http.request("POST", bomb.url(), doing="deliver", json={"x": 1})
    assert len(response.content) == _base.MAX_RESPONSE_BYTES
    assert response.extensions[_base.TRUNCATED] is True


def test_the_webhook_channel_delivers_to_a_flooding_receiver(flood: Misbehaving) -> None:
    from chainwatch.alerts.channels import build_channel

    channel = build_channel(WebhookChannel(name="flooded", url=Secret.inline(flood.url())),
                            timeout=60)
    channel.send({"event": "test", "dedup_key": "k", "message": "hello"})
    assert len(flood.payloads()) == 1 and flood.sent < 64 << 20


# -- serve's background delivery --------------------------------------------------------------


def test_serve_probes_and_watches_while_a_delivery_hangs(tmp_path: Path) -> None:
    """``serve``'s cycle (``background=True``) with a channel that never answers: the
    batch that enqueued the page returns while the delivery is still held, and the next
    batch probes and stores, and the watchdog's tick runs, with the receiver still
    holding the connection. (A delivery inside the batch would have returned only once
    the channel's deadline cut the connection, which the receiver would have seen.)"""
    from chainwatch.config.inventory import load_inventory
    from chainwatch.service.cycle import Cycle

    from .servers import closed_port

    hang = Misbehaving("hang").start()
    try:
        with closed_port() as port:
            inv = tmp_path / "inv.yaml"
            inv.write_text(
                "defaults: {timeout: 2s}\n"
                f"endpoints: [{{host: down.lab.test, port: {port}, ip: 127.0.0.1}}]\n"
                f"alerts:\n  channels: {{hook: {{type: webhook, url: '{hang.url()}'}}}}\n")
            inventory = load_inventory(inv)
            with Database(f"sqlite:///{tmp_path / 'cw.sqlite'}") as db, \
                    Cycle(db, background=True) as cycle:
                first = cycle.batch(inventory, sweep=True)
                assert first.recorded and first.result.status.value == "unknown"
                assert hang.holding.wait(30), "the page was never sent"
                second = cycle.batch(inventory, sweep=True)
                cycle.tick(inventory)
                still_held = hang.held == 1 and not hang.gave_up.is_set()
                stored = len(db.history("down.lab.test", port=port))
            assert second.recorded
            assert still_held, "a batch or the tick waited for the hanging delivery"
            assert stored == 2
            assert len(hang.arrived) >= 1
    finally:
        hang.stop()
