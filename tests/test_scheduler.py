"""The scheduler (``chainwatch serve``): backoff after failures, jitter after successes,
inventory reloads (good and broken), heartbeats, and the real process under SIGHUP and
SIGTERM. Real loopback TLS servers, refused loopback ports and SQLite files; the
in-process tests drive a fake clock through ``run_once``/``run``."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from chainwatch.config.inventory import Inventory
from chainwatch.service.collect import ScanResult
from chainwatch.service.scheduler import Scheduler
from chainwatch.storage.repo import Database

from . import servers as srv
from .pki import CA, PKI, Leaf, pem_of
from .servers import ServerLoop, server_context

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
MIN = dt.timedelta(minutes=1)


class FakeClock:
    """The scheduler's clock: stands still until the test moves it."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


class Toggle:
    """Serves TLS, or while ``failing`` answers the ClientHello with a fatal alert (a
    probe failure that the prober does not retry)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.failing = False

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.failing:
            await srv.raw_alert()(reader, writer)
        else:
            await srv.serve_tls(reader, writer, self.ctx)


@pytest.fixture(scope="module")
def ca() -> CA:
    return PKI(now=NOW).root("Scheduler Root").intermediate("Scheduler CA")


@pytest.fixture
def servers() -> Iterator[ServerLoop]:
    with ServerLoop() as loop:
        yield loop


@pytest.fixture
def leaf(ca: CA) -> Leaf:
    return ca.leaf("www.lab.test", not_before=NOW - dt.timedelta(days=1),
                   expires=NOW + dt.timedelta(days=90))


@pytest.fixture
def toggle(servers: ServerLoop, tmp_path: Path, ca: CA, leaf: Leaf) -> tuple[Toggle, int]:
    """One loopback TLS server (every endpoint of a test may share it) and its port."""
    handler = Toggle(server_context(leaf.chain(ca), leaf.key, tmp_path))
    return handler, servers.serve(handler).port


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with Database(f"sqlite:///{tmp_path / 'scheduler.sqlite'}") as database:
        yield database


def endpoint_line(host: str, port: int, interval: str) -> str:
    return f"  - {{host: {host}, port: {port}, ip: 127.0.0.1, interval: {interval}}}\n"


def write_inventory(path: Path, ca: CA, endpoints: list[tuple[str, int, str]], *,
                    interval: str = "1d") -> Path:
    """An inventory trusting ``ca``'s root; ``interval`` is the default one, which also
    sets the full-sweep period (1d by default: no sweep in the minutes a test covers)."""
    assert ca.issuer is not None
    (path.parent / "trust.pem").write_bytes(pem_of(ca.issuer.cert))
    path.write_text(
        f"defaults: {{profiles: ['file:trust.pem'], interval: {interval}, timeout: 5s}}\n"
        "endpoints:\n" + "".join(endpoint_line(*e) for e in endpoints)
    )
    return path


def key_of(scheduler: Scheduler, host: str) -> str:
    (endpoint,) = [e for e in scheduler.inventory.endpoints if e.host == host]
    return endpoint.target.key


def stop_after(ticks: int) -> Callable[[Scheduler], Callable[[Inventory], None]]:
    """An ``on_tick`` that stops ``run`` after ``ticks`` ticks: with a clock that stands
    still, a ``run`` that found nothing due would otherwise never return."""

    def make(scheduler: Scheduler) -> Callable[[Inventory], None]:
        seen = [0]

        def tick(_: Inventory) -> None:
            seen[0] += 1
            if seen[0] >= ticks:
                scheduler.stop()

        return tick

    return make


def scheduler_for(path: Path, db: Database, clock: FakeClock, *, ticks: int = 20,
                  **kwargs: Any) -> Scheduler:
    scheduler = Scheduler(path, db, clock=clock, **kwargs)
    scheduler.on_tick = stop_after(ticks)(scheduler)
    return scheduler


# -- backoff ----------------------------------------------------------------------------------


def test_failing_endpoint_backs_off_1_2_4_8_minutes_capped_at_its_interval(
    tmp_path: Path, ca: CA, toggle: tuple[Toggle, int], db: Database
) -> None:
    _, port = toggle
    clock = FakeClock(NOW)
    with srv.closed_port() as dead:
        path = write_inventory(tmp_path / "inventory.yaml", ca, [
            ("dead.lab.test", dead, "10m"),
            ("ok.lab.test", port, "1d"),
        ])
        scheduler = scheduler_for(path, db, clock, rng=random.Random(1))
        dead_key, ok_key = key_of(scheduler, "dead.lab.test"), key_of(scheduler, "ok.lab.test")

        first = scheduler.run_once()  # the first call is a full sweep
        assert first is not None
        assert [o.ok for o in first.observations] == [False, True]
        assert scheduler.next_sweep - NOW >= dt.timedelta(days=0.9)
        assert scheduler.slots[dead_key].due == NOW + MIN
        assert scheduler.slots[dead_key].failures == 1
        ok_due = scheduler.slots[ok_key].due

        for failures, minutes in enumerate([2, 4, 8, 10, 10, 10], start=2):
            clock.now = scheduler.slots[dead_key].due
            result = scheduler.run_once()
            assert result is not None
            assert result.keys == (dead_key,)  # only the due endpoint is probed
            assert not result.observations[0].ok
            slot = scheduler.slots[dead_key]
            assert (slot.failures, slot.due - clock.now) == (failures, minutes * MIN)
            assert scheduler.slots[ok_key].due == ok_due  # the healthy one is untouched

        clock.now += MIN  # between retries nothing is due: no scan at all
        assert scheduler.run_once() is None
        assert scheduler.seconds_to_next() == pytest.approx(9 * 60)


def test_a_long_outage_keeps_retrying_at_the_interval(
    tmp_path: Path, ca: CA, db: Database
) -> None:
    """Beyond 41 failures in a row 1 min * 2**(n-1) no longer fits a timedelta; the
    scheduler must neither crash nor stop retrying at the interval."""
    clock = FakeClock(NOW)
    with srv.closed_port() as dead:
        path = write_inventory(tmp_path / "inventory.yaml", ca, [("dead.lab.test", dead, "1m")])
        scheduler = scheduler_for(path, db, clock)
        key = key_of(scheduler, "dead.lab.test")
        for failures in range(1, 46):  # 45 minutes of outage
            assert scheduler.run_once() is not None
            slot = scheduler.slots[key]
            assert (slot.failures, slot.due - clock.now) == (failures, MIN)
            clock.now = slot.due


def test_addresses_of_one_name_share_a_slot_and_fail_once_per_batch(
    tmp_path: Path, ca: CA, db: Database
) -> None:
    """Two endpoints for one name pinned to two addresses (DNS round-robin) have one
    ``Target.key``, so one slot; a batch in which both fail is one failure, not two."""
    clock = FakeClock(NOW)
    with srv.closed_port() as dead:
        path = tmp_path / "inventory.yaml"
        write_inventory(path, ca, [])
        path.write_text(path.read_text() + "".join(
            f"  - {{host: rr.lab.test, port: {dead}, ip: {ip}, interval: 1h}}\n"
            for ip in ("127.0.0.1", "127.0.0.2")))
        scheduler = scheduler_for(path, db, clock)
        for failures, minutes in enumerate([1, 2, 4], start=1):
            result = scheduler.run_once()
            assert result is not None
            assert sorted(o.target.ip or "" for o in result.observations) == [
                "127.0.0.1", "127.0.0.2"]
            (slot,) = scheduler.slots.values()
            assert (slot.failures, slot.due - clock.now) == (failures, minutes * MIN)
            clock.now = slot.due


def test_success_returns_to_the_jittered_interval_and_resets_the_backoff(
    tmp_path: Path, ca: CA, toggle: tuple[Toggle, int], db: Database
) -> None:
    handler, port = toggle
    handler.failing = True
    clock = FakeClock(NOW)
    path = write_inventory(tmp_path / "inventory.yaml", ca, [("flap.lab.test", port, "10m")])
    scheduler = scheduler_for(path, db, clock, rng=random.Random(2))
    key = key_of(scheduler, "flap.lab.test")

    assert scheduler.run_once() is not None
    assert (scheduler.slots[key].failures, scheduler.slots[key].due - clock.now) == (1, MIN)
    clock.now = scheduler.slots[key].due
    scheduler.run_once()
    assert (scheduler.slots[key].failures, scheduler.slots[key].due - clock.now) == (2, 2 * MIN)

    handler.failing = False  # the endpoint recovers
    clock.now = scheduler.slots[key].due
    result = scheduler.run_once()
    assert result is not None and result.observations[0].ok
    recovered = scheduler.slots[key]
    assert recovered.failures == 0
    assert 9 * MIN <= recovered.due - clock.now <= 11 * MIN
    assert recovered.due - clock.now != 10 * MIN  # jittered, not exactly the interval

    handler.failing = True  # and fails again: the backoff starts over at 1 minute
    clock.now = recovered.due
    scheduler.run_once()
    assert (scheduler.slots[key].failures, scheduler.slots[key].due - clock.now) == (1, MIN)


# -- jitter -----------------------------------------------------------------------------------


def test_jitter_spreads_successful_endpoints_within_ten_percent(
    tmp_path: Path, ca: CA, toggle: tuple[Toggle, int], db: Database,
    tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, port = toggle
    hosts = [f"h{n}.lab.test" for n in range(20)]
    path = write_inventory(tmp_path / "inventory.yaml", ca,
                           [(h, port, "10m") for h in hosts], interval="1h")

    def offsets(seed: int, jitter: float, database: Database) -> list[dt.timedelta]:
        scheduler = scheduler_for(path, database, FakeClock(NOW), jitter=jitter,
                                  rng=random.Random(seed))
        result = scheduler.run_once()
        assert result is not None and all(o.ok for o in result.observations)
        assert 54 * MIN <= scheduler.next_sweep - NOW <= 66 * MIN  # the sweep is jittered too
        return [scheduler.slots[key_of(scheduler, h)].due - NOW for h in hosts]

    spread = offsets(7, 0.1, db)
    assert all(9 * MIN <= o <= 11 * MIN for o in spread)
    assert len(set(spread)) == len(hosts)  # no two endpoints come due together
    assert min(spread) < 10 * MIN < max(spread)
    with Database(f"sqlite:///{tmp_path_factory.mktemp('again') / 'db.sqlite'}") as again:
        assert offsets(7, 0.1, again) == spread  # the same seed, the same schedule
        assert set(offsets(7, 0.0, again)) == {10 * MIN}  # jitter 0: exactly the interval


def test_sweeps_keep_each_endpoints_own_interval(
    tmp_path: Path, ca: CA, toggle: tuple[Toggle, int], db: Database
) -> None:
    """A sweep every 10 minutes (the default interval) reads files and beats, but an
    endpoint that asked for a daily probe is probed once a day, not on every sweep."""
    _, port = toggle
    clock = FakeClock(NOW)
    path = write_inventory(tmp_path / "inventory.yaml", ca, [
        ("daily.lab.test", port, "1d"), ("often.lab.test", port, "10m"),
    ], interval="10m")
    probed: dict[str, int] = {"daily.lab.test": 0, "often.lab.test": 0}
    sweeps = 0
    scheduler = scheduler_for(path, db, clock, jitter=0.0)
    for _ in range(36):  # six hours in 10-minute steps
        before = scheduler.next_sweep
        result = scheduler.run_once()
        assert result is not None
        sweeps += scheduler.next_sweep != before
        for observation in result.observations:
            probed[observation.target.host] += 1
        clock.now += 10 * MIN
    assert sweeps == 36
    assert probed == {"daily.lab.test": 1, "often.lab.test": 36}


def test_endpoints_due_within_half_a_minute_share_a_batch(
    tmp_path: Path, ca: CA, toggle: tuple[Toggle, int], db: Database
) -> None:
    """Jitter spreads due times thinly; the scheduler takes what is due within 30 s
    (at most a tenth of an endpoint's interval) in one batch instead of one batch each."""
    _, port = toggle
    clock = FakeClock(NOW)
    hosts = ["a.lab.test", "b.lab.test", "c.lab.test", "d.lab.test"]
    path = write_inventory(tmp_path / "inventory.yaml", ca,
                           [(h, port, "1h") for h in hosts[:3]] + [(hosts[3], port, "2m")])
    scheduler = scheduler_for(path, db, clock)
    assert scheduler.run_once() is not None  # the first sweep
    start = clock.now + 30 * MIN
    offsets = {"a.lab.test": 0, "b.lab.test": 25, "c.lab.test": 40, "d.lab.test": 13}
    for host, seconds in offsets.items():
        scheduler.slots[key_of(scheduler, host)].due = start + dt.timedelta(seconds=seconds)
    clock.now = start
    batch = scheduler.run_once()
    assert batch is not None
    # a and b (within 30 s); not c (40 s away); not d: 13 s is more than a tenth of 2 min.
    assert sorted(o.target.host for o in batch.observations) == ["a.lab.test", "b.lab.test"]


def test_stale_deployment_across_batches_of_different_intervals(
    tmp_path: Path, ca: CA, servers: ServerLoop, db: Database
) -> None:
    """Two endpoints for one name with different intervals (10 and 61 minutes) are not
    in the same batch after the first sweep: the renewal seen on one still makes the
    other, probed alone later, STALE_DEPLOYMENT (its batch compares with what the first
    one last served)."""
    old = ca.leaf("www.lab.test", not_before=NOW - dt.timedelta(days=60),
                  expires=NOW + dt.timedelta(days=30))
    new = ca.leaf("www.lab.test", not_before=NOW - dt.timedelta(days=1),
                  expires=NOW + dt.timedelta(days=89))
    fast = Toggle(server_context(old.chain(ca), old.key))
    slow = Toggle(server_context(old.chain(ca), old.key))
    fast_port, slow_port = servers.serve(fast).port, servers.serve(slow).port
    clock = FakeClock(NOW)
    path = write_inventory(tmp_path / "inventory.yaml", ca, [
        ("www.lab.test", fast_port, "10m"), ("www.lab.test", slow_port, "61m"),
    ])
    scheduler = scheduler_for(path, db, clock, jitter=0.0)
    first = scheduler.run_once()  # the sweep: both serve the old certificate
    assert first is not None and len(first.reports) == 2
    assert not any(f.code.value == "STALE_DEPLOYMENT" for r in first.reports for f in r.findings)

    fast.ctx = server_context(new.chain(ca), new.key)
    clock.now += 10 * MIN
    renewed = scheduler.run_once()  # only the fast endpoint is due
    assert renewed is not None and [r.target.port for r in renewed.reports
                                    if r.target is not None] == [fast_port]
    assert renewed.reports[0].chain[0].sha256 == new.cert.sha256

    later = None
    for _ in range(10):  # the fast one at 20, 30 ... 60 min, then the slow one alone at 61
        clock.now = min(slot.due for slot in scheduler.slots.values())
        batch = scheduler.run_once()
        assert batch is not None
        ports = [r.target.port for r in batch.reports if r.target is not None]
        if slow_port in ports:
            later = batch
            break
        assert not any(f.code.value == "STALE_DEPLOYMENT" for f in batch.reports[0].findings)
    assert later is not None and clock.now == NOW + 61 * MIN
    assert [r.target.port for r in later.reports if r.target is not None] == [slow_port]
    assert later.reports[0].chain[0].sha256 == old.cert.sha256
    codes = [f.code.value for f in later.reports[0].findings]
    assert "STALE_DEPLOYMENT" in codes


def key_of_port(scheduler: Scheduler, port: int) -> str:
    (endpoint,) = [e for e in scheduler.inventory.endpoints if e.port == port]
    return endpoint.target.key


# -- reload -----------------------------------------------------------------------------------


def test_reload_picks_up_added_and_removed_endpoints(
    tmp_path: Path, ca: CA, toggle: tuple[Toggle, int], db: Database,
    caplog: pytest.LogCaptureFixture
) -> None:
    _, port = toggle
    clock = FakeClock(NOW)
    path = tmp_path / "inventory.yaml"
    write_inventory(path, ca, [("a.lab.test", port, "1h"), ("b.lab.test", port, "1h")])
    batches: list[ScanResult] = []
    scheduler = scheduler_for(path, db, clock, after_batch=lambda _, r: batches.append(r))
    assert scheduler.run(max_batches=1, max_sleep=0) == 1
    key_a, key_b = key_of(scheduler, "a.lab.test"), key_of(scheduler, "b.lab.test")
    assert set(scheduler.slots) == {key_a, key_b}
    due_a = scheduler.slots[key_a].due

    write_inventory(path, ca, [("a.lab.test", port, "1h"), ("c.lab.test", port, "1h")])
    clock.now += 5 * MIN
    assert scheduler.run(max_batches=1, max_sleep=0) == 0  # not reloaded without a request
    assert [e.host for e in scheduler.inventory.endpoints] == ["a.lab.test", "b.lab.test"]

    scheduler.stop_event.clear()
    scheduler.request_reload()
    with caplog.at_level(logging.INFO, logger="chainwatch.service.scheduler"):
        assert scheduler.run(max_batches=1, max_sleep=0) == 1
    assert "inventory reloaded: 2 endpoints" in caplog.text
    assert [e.host for e in scheduler.inventory.endpoints] == ["a.lab.test", "c.lab.test"]
    key_c = key_of(scheduler, "c.lab.test")
    assert set(scheduler.slots) == {key_a, key_c}  # b's slot is dropped
    # A reload starts a sweep: the new endpoint is probed at once; the others keep their
    # own schedule (a reload is not a reason to probe everything again).
    assert set(batches[-1].keys) == {key_c}
    assert scheduler.slots[key_a].due == due_a
    assert {o.target.host for o in db.latest_per_target()} == {
        "a.lab.test", "b.lab.test", "c.lab.test"}


@pytest.mark.parametrize("broken", [
    "endpoints: [{host: a.lab.test\n",  # invalid YAML
    "endpoints:\n  - {host: a.lab.test, port: 70000}\n",  # an invalid field
], ids=["yaml", "field"])
def test_broken_inventory_on_reload_is_logged_and_the_previous_one_kept(
    broken: str, tmp_path: Path, ca: CA, toggle: tuple[Toggle, int], db: Database,
    caplog: pytest.LogCaptureFixture
) -> None:
    _, port = toggle
    clock = FakeClock(NOW)
    path = write_inventory(tmp_path / "inventory.yaml", ca,
                           [("a.lab.test", port, "10m"), ("b.lab.test", port, "10m")])
    batches: list[ScanResult] = []
    scheduler = scheduler_for(path, db, clock, after_batch=lambda _, r: batches.append(r))
    assert scheduler.run(max_batches=1, max_sleep=0) == 1
    before = scheduler.inventory
    slots = set(scheduler.slots)

    path.write_text(broken)
    scheduler.request_reload()
    clock.now += 12 * MIN  # both endpoints are due again
    with caplog.at_level(logging.INFO, logger="chainwatch.service.scheduler"):
        assert scheduler.run(max_batches=1, max_sleep=0) == 1  # and still scanned
    failed = [r for r in caplog.records
              if r.name == "chainwatch.service.scheduler"
              and "inventory reload failed" in r.message]
    assert len(failed) == 1
    assert failed[0].levelno == logging.ERROR
    assert str(path) in failed[0].message  # names the file
    assert "inventory reloaded" not in caplog.text
    assert scheduler.inventory is before
    assert set(scheduler.slots) == slots
    assert len(batches) == 2 and set(batches[-1].keys) == slots
    assert all(o.ok for o in batches[-1].observations)


# -- heartbeats -------------------------------------------------------------------------------


def test_heartbeats_after_full_and_partial_batches(
    tmp_path: Path, ca: CA, toggle: tuple[Toggle, int], db: Database
) -> None:
    _, port = toggle
    clock = FakeClock(NOW)
    with srv.closed_port() as dead:
        path = write_inventory(tmp_path / "inventory.yaml", ca,
                               [("ok.lab.test", port, "1h"), ("dead.lab.test", dead, "1h")])
        scheduler = scheduler_for(path, db, clock)
        started = dt.datetime.now(dt.UTC)
        assert db.last_beat("scan") is None and db.last_beat("scheduler") is None

        assert scheduler.run_once() is not None  # the full sweep: scan() beats itself
        scan_beat = db.last_beat("scan")
        assert scan_beat is not None
        assert scan_beat.info == {"targets": 2, "status": "unknown"}  # a probe failed
        assert scan_beat.last_beat >= started
        assert db.last_beat("scheduler") is None  # only run() beats for the scheduler

        clock.now += MIN  # the retry of the dead endpoint: a partial batch
        assert scheduler.run(max_batches=1, max_sleep=0) == 1
        partial = db.last_beat("scan")
        assert partial is not None
        assert partial.info == {"targets": 1, "partial": True}
        assert partial.last_beat >= scan_beat.last_beat
        beat = db.last_beat("scheduler")
        assert beat is not None
        assert beat.last_beat >= partial.last_beat
    assert db.count_observations() == 3


# -- the real process -------------------------------------------------------------------------


def wait_for(what: str, check: Callable[[], bool], log: Path, timeout: float = 20.0) -> None:
    """Poll ``check`` (bounded) until it holds; fail with the process's log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}; serve log:\n{log.read_text()}")


def observations_of(db_path: Path, host: str) -> int:
    if not db_path.exists():  # connecting would create it
        return 0
    try:
        with closing(sqlite3.connect(db_path, timeout=1)) as conn:
            row = conn.execute(
                "SELECT count(*) FROM observations o JOIN targets t ON t.id = o.target_id "
                "WHERE t.host = ?", (host,)).fetchone()
    except sqlite3.Error:
        return 0  # not created yet, or locked by the writer
    return int(row[0])


def has_beat(db_path: Path, component: str) -> bool:
    if not db_path.exists():
        return False
    try:
        with closing(sqlite3.connect(db_path, timeout=1)) as conn:
            row = conn.execute("SELECT count(*) FROM heartbeats WHERE component = ?",
                               (component,)).fetchone()
    except sqlite3.Error:
        return False
    return bool(row[0])


def test_serve_process_reloads_on_sighup_and_exits_cleanly_on_sigterm(
    tmp_path: Path, ca: CA, toggle: tuple[Toggle, int]
) -> None:
    _, port = toggle
    path = write_inventory(tmp_path / "inventory.yaml", ca, [("a.lab.test", port, "1s")],
                           interval="1s")
    db_path = tmp_path / "serve.sqlite"
    log = tmp_path / "serve.log"
    exe = Path(sys.executable).with_name("chainwatch")
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(exe), "serve", str(path), "--no-web", "--db", f"sqlite:///{db_path}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        wait_for("the first scan", lambda: observations_of(db_path, "a.lab.test") > 0
                 and has_beat(db_path, "scan") and has_beat(db_path, "scheduler"), log)

        write_inventory(path, ca, [("a.lab.test", port, "1s"), ("b.lab.test", port, "1s")],
                        interval="1s")
        os.kill(proc.pid, signal.SIGHUP)
        wait_for("the reload", lambda: "inventory reloaded: 2 endpoints" in log.read_text(),
                 log)
        wait_for("a scan of the added endpoint",
                 lambda: observations_of(db_path, "b.lab.test") > 0, log)

        path.write_text("endpoints: [{host: a.lab.test\n")
        os.kill(proc.pid, signal.SIGHUP)
        wait_for("the failed reload", lambda: "inventory reload failed" in log.read_text(), log)
        seen = observations_of(db_path, "b.lab.test")
        wait_for("scans to continue with the previous inventory",
                 lambda: observations_of(db_path, "b.lab.test") > seen, log)
        assert proc.poll() is None

        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = log.read_text()
    assert "chainwatch serve: watching 1 endpoints" in text
    assert "Traceback" not in text
    assert text.count("inventory reload failed") == 1


# -- stopping and failing batches ---------------------------------------------------------------


class RecordingEvent(threading.Event):
    """The scheduler's sleeper, recording how long each sleep was asked to last."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return super().wait(0)


def test_a_stop_during_a_reload_is_not_lost(
    tmp_path: Path, ca: CA, toggle: tuple[Toggle, int], db: Database
) -> None:
    """SIGHUP and SIGTERM arriving together: the inventory is reloaded and the loop
    still stops, before scanning anything."""
    _, port = toggle
    path = write_inventory(tmp_path / "inventory.yaml", ca, [("a.lab.test", port, "1h")])
    scheduler = scheduler_for(path, db, FakeClock(NOW))
    write_inventory(path, ca, [("a.lab.test", port, "1h"), ("b.lab.test", port, "1h")])
    scheduler.request_reload()
    scheduler.stop()
    assert scheduler.run(max_batches=5) == 0
    assert [e.host for e in scheduler.inventory.endpoints] == ["a.lab.test", "b.lab.test"]
    assert db.count_observations() == 0
    # The stop is consumed by the run it ended: the next run scans again.
    assert scheduler.run(max_batches=1, max_sleep=0) == 1
    assert db.count_observations() == 2


def test_a_database_error_is_logged_and_retried_without_spinning(
    tmp_path: Path, ca: CA, toggle: tuple[Toggle, int], caplog: pytest.LogCaptureFixture
) -> None:
    """The database loses a table under a running monitor (any SQL error will do):
    serve logs it, keeps looping and waits at least a minute before the next try,
    rather than crashing or retrying in a tight loop."""
    _, port = toggle
    db_path = tmp_path / "broken.sqlite"
    path = write_inventory(tmp_path / "inventory.yaml", ca, [("a.lab.test", port, "1h")])
    with Database(f"sqlite:///{db_path}") as database:
        scheduler = scheduler_for(path, database, FakeClock(NOW), ticks=3)
        with closing(sqlite3.connect(db_path)) as conn:
            conn.execute("DROP TABLE chain_certs")
            conn.commit()
        sleeper = RecordingEvent()
        scheduler.stop_event = sleeper
        with caplog.at_level(logging.ERROR, logger="chainwatch.service.scheduler"):
            assert scheduler.run(max_batches=5, max_sleep=3600) == 0
    failures = [r.getMessage() for r in caplog.records if "scan failed" in r.getMessage()]
    assert len(failures) == 3
    assert all("database error: OperationalError" in m for m in failures)
    assert "chain_certs" in failures[0]
    assert "INSERT" not in caplog.text  # the driver's message, not the SQL and its data
    assert len(sleeper.waits) == 2 and all(w is not None and w >= 60 for w in sleeper.waits)


def test_an_internal_error_in_a_batch_is_logged_counted_and_the_next_batch_runs(
    tmp_path: Path, ca: CA, toggle: tuple[Toggle, int], db: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not a database or input error but a bug (here an observer of the batch raising):
    the loop logs it with its traceback, counts it, and the next batch runs."""
    _, port = toggle
    clock = FakeClock(NOW)
    path = write_inventory(tmp_path / "inventory.yaml", ca, [("a.lab.test", port, "1h")])
    seen: list[int] = []

    def after(_: Inventory, result: ScanResult) -> None:
        seen.append(len(result.reports))
        if len(seen) == 1:
            raise RuntimeError("a bug in the batch")

    scheduler = Scheduler(path, db, clock=clock, after_batch=after)
    ticks = [0]

    def tick(_: Inventory) -> None:  # time moves on between passes; stop after a few
        ticks[0] += 1
        clock.now += dt.timedelta(hours=2)
        if ticks[0] >= 4:
            scheduler.stop()

    scheduler.on_tick = tick
    with caplog.at_level(logging.ERROR, logger="chainwatch.service.scheduler"):
        assert scheduler.run(max_batches=1, max_sleep=0) == 1
    assert seen == [1, 1] and scheduler.failures == 1
    (record,) = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert "scan failed with an internal error: RuntimeError: a bug in the batch" in \
        record.getMessage()
    assert record.exc_info is not None
    assert db.count_observations() == 2
