"""Distributed mode against real components: ``chainwatch worker`` subprocesses (Celery
prefork workers) per zone, a real broker (a private ``redis-server``, and the local
RabbitMQ in a vhost of the test's own), a throwaway PostgreSQL database, and lab TLS
endpoints on loopback addresses.

The scheduler side runs in the test process (:class:`DistributedCycle`, as ``serve
--distributed`` runs it), so that each step can be waited for; one test runs the real
``chainwatch serve --distributed`` command. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from chainwatch.config.inventory import Inventory, batch_document, load_inventory
from chainwatch.model import FindingCode, Status
from chainwatch.service.distributed import (
    NO_WORKER,
    DistributedCycle,
    broker_url,
    make_app,
    messages,
    visibility_timeout,
)
from chainwatch.storage.batches import BatchesRepo, zone_health
from chainwatch.storage.models import ObservationRow, TargetRow
from chainwatch.storage.repo import Database

from . import servers as srv
from .pki import CA, PKI, Leaf, pem_of
from .servers import ServerLoop, server_context
from .services import PrivateRedis, unavailable

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DEADLINE = 5.0  # --batch-deadline: Redis redelivers a vanished worker's batch after 10 s
WAIT = 60.0  # the longest any single step is waited for
CHAINWATCH = str(Path(sys.executable).with_name("chainwatch"))


# -- lab -------------------------------------------------------------------------------------


class Swappable:
    """A TLS handler whose certificate can be replaced between connections, optionally
    slow (it waits before the handshake)."""

    def __init__(self, ctx: Any, delay: float = 0.0) -> None:
        self.ctx = ctx
        self.delay = delay
        self.connections = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        await srv.tls_handler(self.ctx)(reader, writer)


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    pki = PKI(now=NOW)
    root = pki.root("Dist Lab Root")
    ca = root.intermediate("Dist Lab CA")
    return {"pki": pki, "root": root, "ca": ca}


@pytest.fixture
def servers() -> Iterator[ServerLoop]:
    with ServerLoop() as loop:
        yield loop


def leaf_of(ca: CA, name: str, *, days: int = 60, issued_days_ago: int = 30) -> Leaf:
    return ca.leaf(name, not_before=NOW - dt.timedelta(days=issued_days_ago),
                   expires=NOW + dt.timedelta(days=days))


def serve(servers: ServerLoop, tmp: Path, leaf: Leaf, ca: CA, *, host: str = "127.0.0.1",
          port: int = 0, delay: float = 0.0) -> tuple[Swappable, int]:
    handler = Swappable(server_context(leaf.chain(ca), leaf.key, tmp), delay)
    return handler, servers.serve(handler, host=host, port=port).port


def write_inventory(tmp: Path, world: dict[str, Any], endpoints: list[dict[str, Any]], *,
                    zones: dict[str, Any], interval: str = "1h",
                    extra: str = "") -> Path:
    (tmp / "trust.pem").write_bytes(pem_of(world["root"].cert))
    lines = [
        f"defaults: {{profiles: [lab], interval: {interval}, timeout: 5s}}",
        "profiles:",
        '  lab: {trust: ["file:trust.pem"]}',
        f"zones: {json.dumps(zones)}",
        "endpoints:",
        *[f"  - {json.dumps(e)}" for e in endpoints],
    ]
    path = tmp / "inventory.yaml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


# -- brokers -------------------------------------------------------------------------------


@dataclass
class Broker:
    kind: str
    url: str
    redis: PrivateRedis | None = None


@pytest.fixture(scope="module")
def rabbitmq_url() -> Iterator[str]:
    """A vhost of the test's own on the local RabbitMQ (guest gets its permissions),
    deleted afterwards; without rabbitmqctl rights, the default vhost (the queues are
    unique to each test anyway: zone names carry a random suffix)."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=3):
            pass
    except OSError as exc:
        unavailable(f"RabbitMQ at 127.0.0.1:5672 is not reachable: {exc}")
    ctl = shutil.which("rabbitmqctl")
    vhost = f"chainwatch-test-{secrets.token_hex(4)}"

    def run(*args: str) -> bool:
        if ctl is None:
            return False
        try:
            done = subprocess.run([ctl, *args], capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    if run("add_vhost", vhost) and run("set_permissions", "-p", vhost, "guest", ".*", ".*",
                                       ".*"):
        try:
            yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        finally:
            run("delete_vhost", vhost)
    else:
        yield "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    if request.param == "redis":
        with PrivateRedis.create() as redis:
            yield Broker("redis", redis.url, redis)
    else:
        yield Broker("rabbitmq", request.getfixturevalue("rabbitmq_url"))


@pytest.fixture
def private_redis_broker() -> Iterator[Broker]:
    with PrivateRedis.create() as redis:
        yield Broker("redis", redis.url, redis)


# -- workers and waiting ----------------------------------------------------------------------


class Workers:
    """``chainwatch worker`` subprocesses, each in a session of its own (so that SIGKILL
    reaches the pool's children too), all stopped at the end."""

    def __init__(self, tmp: Path, db_url: str, broker: str) -> None:
        self.tmp = tmp
        self.db_url = db_url
        self.broker = broker
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, zone: str, name: str, *, queue: str | None = None,
              processes: int = 1) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINWATCH_")}
        args = [CHAINWATCH, "worker", "--zone", zone, "--db", self.db_url, "--broker",
                self.broker, "--processes", str(processes), "--name", name,
                "--batch-deadline", str(DEADLINE)]
        if queue is not None:
            args += ["--queue", queue]
        with (self.tmp / f"worker-{name}.log").open("wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"worker-{name}.log").read_text(errors="replace")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in list(self.procs.values()):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in list(self.procs.items()):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            del self.procs[name]


@pytest.fixture
def workers(tmp_path: Path, pg_url: str, broker: Broker) -> Iterator[Workers]:
    w = Workers(tmp_path, pg_url, broker.url)
    try:
        yield w
    finally:
        w.stop_all()


def wait_for(what: str, check: Callable[[], bool], *, timeout: float = WAIT,
             step: float = 0.25, during: Callable[[], None] | None = None) -> None:
    """Poll ``check`` (running ``during`` between polls) until it holds; fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if during is not None:
            during()
        if check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}", pytrace=False)
        time.sleep(step)


def zone_names() -> tuple[str, str]:
    tag = secrets.token_hex(3)
    return f"east-{tag}", f"west-{tag}"


def live_workers(db: Database, zone: str) -> tuple[str, ...]:
    for h in zone_health(db, zones=[zone]):
        if h.name == zone:
            return h.workers
    return ()


def per_target_in_slot(db: Database, slot: str) -> dict[tuple[str, int, str], int]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(TargetRow.host, TargetRow.port, TargetRow.ip, func.count())
            .join(ObservationRow, ObservationRow.target_id == TargetRow.id)
            .where(ObservationRow.slot == slot)
            .group_by(TargetRow.host, TargetRow.port, TargetRow.ip)
        ).all()
    return {(h, p, ip): int(n) for h, p, ip, n in rows}


def dispatch(cycle: DistributedCycle, inv: Inventory, *, sweep: bool = True) -> str:
    """One sweep's batches on the queues (or, not a sweep, a batch of due endpoints, as
    ``serve`` sends between sweeps); returns their slot."""
    before = set(cycle.sent)
    cycle.batch(inv, endpoints=None if sweep else inv.endpoints, sweep=sweep)
    slots = {cycle.sent[k].message["slot"] for k in cycle.sent if k not in before}
    assert len(slots) == 1
    return slots.pop()


def all_done(repo: BatchesRepo) -> Callable[[], bool]:
    return lambda: not repo.pending()


# -- tests -----------------------------------------------------------------------------------


def test_two_zones_one_sweep_stores_every_observation_once(
    servers: ServerLoop, tmp_path: Path, world: dict[str, Any], pg_url: str, broker: Broker,
    workers: Workers,
) -> None:
    east, west = zone_names()
    ca = world["ca"]
    endpoints = []
    for n in range(3):
        _, port_e = serve(servers, tmp_path, leaf_of(ca, f"e{n}.lab.test"), ca)
        endpoints.append({"host": f"e{n}.lab.test", "port": port_e, "ip": "127.0.0.1",
                          "zone": east})
        _, port_w = serve(servers, tmp_path, leaf_of(ca, f"w{n}.lab.test"), ca,
                          host="127.0.0.2")
        endpoints.append({"host": f"w{n}.lab.test", "port": port_w, "ip": "127.0.0.2",
                          "zone": west})
    inv = load_inventory(write_inventory(tmp_path, world, endpoints, zones={
        east: {"concurrency": 8}, west: {"queue": f"q-{west}", "concurrency": 8}}))
    with Database(pg_url) as db:
        workers.start(east, f"{east}-1")
        workers.start(west, f"{west}-1", queue=f"q-{west}")
        with DistributedCycle(db, make_app(broker.url, deadline=DEADLINE),
                              deadline=DEADLINE) as cycle:
            slot = dispatch(cycle, inv)
            sent = {s.id: s for s in cycle.sent.values()}
            assert {s.zone.name for s in sent.values()} == {east, west}
            repo = BatchesRepo(db)
            wait_for("both zones' batches", all_done(repo))
            counts = per_target_in_slot(db, slot)
            assert counts == {(e["host"], e["port"], e["ip"]): 1 for e in endpoints}
            done = {b.zone: b for b in repo.to_evaluate()}
            assert done[east].worker == f"{east}-1" and done[west].worker == f"{west}-1"
            assert done[east].observations == 3 and done[east].status == "ok"
            # The scheduler's evaluation reads them back: every report, from both zones.
            result = cycle.evaluate(inv)
            assert len(result.reports) == 6 and result.status is Status.OK
            assert len(result.situations) == 6

            # The same batches delivered again (a redelivery after a lost ack) store
            # nothing twice: writes are keyed by (target, address, slot).
            for s in sent.values():
                cycle.app.send_task("chainwatch.batch", args=[s.message], queue=s.zone.queue)

            def redone() -> bool:
                return all(workers.log(f"{z}-1").count("succeeded") == 2 for z in (east, west))

            wait_for("the redelivered batches to be done again", redone)
            assert per_target_in_slot(db, slot) == counts
            assert db.count_observations() == 6

            health = {h.name: h for h in zone_health(db, zones=[east, west])}
            assert health[east].workers == (f"{east}-1",)
            assert health[west].queue_depth == 0
            last = health[west].last_result
            assert last is not None and last.observations == 3 and last.status == "ok"


def test_renewal_seen_from_one_zone_is_stale_deployment_in_the_other(
    servers: ServerLoop, tmp_path: Path, world: dict[str, Any], pg_url: str, broker: Broker,
    workers: Workers,
) -> None:
    """The same name behind two addresses, each reachable from one zone only: the renewed
    certificate reached dc-east's address, not dc-west's. Only the scheduler, which sees
    both zones' observations, can tell."""
    east, west = zone_names()
    ca = world["ca"]
    old = leaf_of(ca, "app.lab.test", days=20, issued_days_ago=70)
    h_east, port = serve(servers, tmp_path, old, ca, host="127.0.0.1")
    serve(servers, tmp_path, old, ca, host="127.0.0.2", port=port)
    inv = load_inventory(write_inventory(tmp_path, world, [
        {"host": "app.lab.test", "port": port, "ip": "127.0.0.1", "zone": east},
        {"host": "app.lab.test", "port": port, "ip": "127.0.0.2", "zone": west},
    ], zones={east: None, west: None}))
    with Database(pg_url) as db:
        workers.start(east, f"{east}-1")
        workers.start(west, f"{west}-1")
        with DistributedCycle(db, make_app(broker.url, deadline=DEADLINE),
                              deadline=DEADLINE) as cycle:
            repo = BatchesRepo(db)
            dispatch(cycle, inv)
            wait_for("the first sweep", all_done(repo))
            first = cycle.evaluate(inv)
            assert all(FindingCode.STALE_DEPLOYMENT not in {f.code for f in r.findings}
                       for r in first.reports)
            renewed = leaf_of(ca, "app.lab.test", days=90, issued_days_ago=1)
            h_east.ctx = server_context(renewed.chain(ca), renewed.key, tmp_path)
            dispatch(cycle, inv, sweep=False)
            wait_for("the second batch", all_done(repo))
            evaluations = cycle.evaluations
            cycle.tick(inv)  # evaluates the finished batches: their targets only
            assert cycle.evaluations == evaluations + 1
            latest = {o.target.ip: o for o in db.latest_per_target()}
            assert latest["127.0.0.1"].leaf_sha256 == renewed.cert.sha256
            assert "STALE_DEPLOYMENT" not in latest["127.0.0.1"].findings
            # Stored, for the dashboard and /metrics: west's newest report says it.
            assert "STALE_DEPLOYMENT" in latest["127.0.0.2"].findings
            assert latest["127.0.0.2"].status is Status.WARNING
            stale = [f for f in latest["127.0.0.2"].report["findings"]
                     if f["code"] == "STALE_DEPLOYMENT"]
            assert len(stale) == 1 and "127.0.0.2" in stale[0]["message"]
            # West's worker alone did not see it (its batch held only its own address).
            second = cycle.evaluate(inv)
            (situation,) = second.situations
            assert situation.broken


def test_sigkill_mid_batch_then_a_new_worker_stores_each_target_once(
    servers: ServerLoop, tmp_path: Path, world: dict[str, Any], pg_url: str, broker: Broker,
    workers: Workers,
) -> None:
    east, _ = zone_names()
    ca = world["ca"]
    handlers = []
    endpoints = []
    for n in range(4):
        handler, port = serve(servers, tmp_path, leaf_of(ca, f"slow{n}.lab.test"), ca,
                              delay=3.0)
        handlers.append(handler)
        endpoints.append({"host": f"slow{n}.lab.test", "port": port, "ip": "127.0.0.1",
                          "zone": east})
    inv = load_inventory(write_inventory(tmp_path, world, endpoints, zones={east: None}))
    with Database(pg_url) as db:
        workers.start(east, f"{east}-doomed")
        wait_for("the first worker", lambda: bool(live_workers(db, east)))
        with DistributedCycle(db, make_app(broker.url, deadline=DEADLINE),
                              deadline=DEADLINE) as cycle:
            slot = dispatch(cycle, inv)
            wait_for("the batch to be mid-probe", lambda: all(h.connections for h in handlers))
            workers.kill(f"{east}-doomed")  # SIGKILL to the worker and its pool
            assert per_target_in_slot(db, slot) == {}  # killed before it stored anything
            workers.start(east, f"{east}-heir")
            repo = BatchesRepo(db)
            wait_for("the batch, redelivered to the new worker", all_done(repo),
                     timeout=2 * visibility_timeout(DEADLINE) + WAIT)
            (batch,) = [b for b in repo.to_evaluate() if b.slot == slot]
            assert batch.worker == f"{east}-heir"
            assert per_target_in_slot(db, slot) == {
                (e["host"], e["port"], e["ip"]): 1 for e in endpoints}


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def test_pool_process_killed_mid_batch_is_requeued_by_its_worker(
    servers: ServerLoop, tmp_path: Path, world: dict[str, Any], pg_url: str, broker: Broker,
    workers: Workers,
) -> None:
    """``reject_on_worker_lost``: the pool process running the batch dies (SIGKILL, as
    the OOM killer does); the worker's main process puts the task back at once and a
    fresh pool process does it: each target once."""
    if not Path("/proc/self/task").is_dir():
        unavailable("needs /proc to find the worker's pool process")
    east, _ = zone_names()
    ca = world["ca"]
    handlers, endpoints = [], []
    for n in range(3):
        handler, port = serve(servers, tmp_path, leaf_of(ca, f"oom{n}.lab.test"), ca,
                              delay=2.0)
        handlers.append(handler)
        endpoints.append({"host": f"oom{n}.lab.test", "port": port, "ip": "127.0.0.1",
                          "zone": east})
    inv = load_inventory(write_inventory(tmp_path, world, endpoints, zones={east: None}))
    with Database(pg_url) as db:
        proc = workers.start(east, f"{east}-1")
        wait_for("the worker", lambda: bool(live_workers(db, east)))
        with DistributedCycle(db, make_app(broker.url, deadline=DEADLINE),
                              deadline=DEADLINE) as cycle:
            slot = dispatch(cycle, inv)
            wait_for("the batch to be mid-probe", lambda: all(h.connections for h in handlers))
            (child,) = _children(proc.pid)
            os.kill(child, signal.SIGKILL)
            repo = BatchesRepo(db)
            wait_for("the requeued batch", all_done(repo))
            assert proc.poll() is None  # the worker itself lives on
            assert per_target_in_slot(db, slot) == {
                (e["host"], e["port"], e["ip"]): 1 for e in endpoints}
            assert all(h.connections >= 2 for h in handlers)  # probed again
            assert "WorkerLostError" in workers.log(f"{east}-1")


def test_broker_restart_with_batches_queued_loses_nothing(
    servers: ServerLoop, tmp_path: Path, world: dict[str, Any], pg_url: str,
    private_redis_broker: Broker,
) -> None:
    """A private redis-server (never the shared one) without persistence is stopped with
    a batch queued and started again: the scheduler sends the batch that the broker lost
    again, the running worker reconnects, every target is stored once per slot."""
    redis = private_redis_broker.redis
    assert redis is not None
    east, west = zone_names()
    ca = world["ca"]
    endpoints = []
    for n, (zone, ip) in enumerate([(east, "127.0.0.1"), (west, "127.0.0.2")] * 2):
        _, port = serve(servers, tmp_path, leaf_of(ca, f"r{n}.lab.test"), ca, host=ip)
        endpoints.append({"host": f"r{n}.lab.test", "port": port, "ip": ip, "zone": zone})
    inv = load_inventory(write_inventory(tmp_path, world, endpoints,
                                         zones={east: None, west: None}))
    pool = Workers(tmp_path, pg_url, private_redis_broker.url)
    try:
        with Database(pg_url) as db:
            pool.start(east, f"{east}-1")
            wait_for("east's worker", lambda: bool(live_workers(db, east)))
            with DistributedCycle(db, make_app(private_redis_broker.url, deadline=DEADLINE),
                                  deadline=DEADLINE) as cycle:
                repo = BatchesRepo(db)
                first = dispatch(cycle, inv)  # west's batch waits in the queue: no worker
                wait_for("east's batch", lambda: len(repo.pending()) == 1)
                redis.stop()
                second = dispatch(cycle, inv)  # sent while the broker is down
                redis.start()
                pool.start(west, f"{west}-1")
                wait_for("every batch, sent again after the restart", all_done(repo),
                         timeout=2 * visibility_timeout(DEADLINE) + WAIT,
                         during=lambda: cycle.tick(inv), step=1.0)
                expected = {(e["host"], e["port"], e["ip"]): 1 for e in endpoints}
                assert per_target_in_slot(db, first) == expected
                assert per_target_in_slot(db, second) == expected
                # East's worker outlived the restart and reconnected: it did its zone's
                # batch of the second sweep.
                assert pool.procs[f"{east}-1"].poll() is None
                done = {(b.slot, b.zone): b.worker for b in repo.to_evaluate()}
                done.update({(b.slot, b.zone): b.worker
                             for b in _all_batches(db) if b.slot == second})
                assert done[(second, east)] == f"{east}-1"
    finally:
        pool.stop_all()


def _all_batches(db: Database) -> list[Any]:
    from chainwatch.storage.models import BatchRow

    with db.engine.connect() as conn:
        return list(conn.execute(select(BatchRow.slot, BatchRow.zone, BatchRow.worker)).all())


def test_zone_without_worker_is_reported_and_its_targets_probe_failed(
    servers: ServerLoop, tmp_path: Path, world: dict[str, Any], pg_url: str,
    private_redis_broker: Broker,
) -> None:
    east, _ = zone_names()
    ca = world["ca"]
    _, port = serve(servers, tmp_path, leaf_of(ca, "lonely.lab.test"), ca)
    sink = tmp_path / "deliveries.jsonl"
    inv = load_inventory(write_inventory(
        tmp_path, world, [{"host": "lonely.lab.test", "port": port, "ip": "127.0.0.1",
                           "zone": east}],
        zones={east: None}, interval="1s",
        extra=f"alerts:\n  channels:\n    log: {{type: file, path: {json.dumps(str(sink))}}}\n",
    ))
    clock = [dt.datetime.now(dt.UTC)]
    with Database(pg_url) as db, DistributedCycle(
        db, make_app(private_redis_broker.url, deadline=DEADLINE), deadline=DEADLINE,
        clock=lambda: clock[0],
    ) as cycle:
        dispatch(cycle, inv)
        cycle.tick(inv)  # within 2 intervals: nothing to say yet
        assert db.count_observations() == 0
        clock[0] += dt.timedelta(seconds=3)  # no worker has beaten for 2 intervals
        cycle.tick(inv)
        (row,) = db.latest_per_target()
        assert row.failure == "no_worker" and "PROBE_FAILED" in row.findings
        assert NO_WORKER in (row.message or "") and east in (row.message or "")
        assert BatchesRepo(db).pending(east) == []  # given up: not counted as queued
        events = [json.loads(line) for line in sink.read_text().splitlines()]
        watchdog = [e for e in events if e["event"] == "watchdog"]
        assert any(f"zone {east} has had no worker for 2 intervals" in e["message"]
                   for e in watchdog)
        # The target pages through the `broken` rule, as any PROBE_FAILED does.
        broken = [e for e in events if e["event"] == "page"]
        assert broken and NO_WORKER in broken[0]["message"]


def test_a_batch_carries_endpoint_settings_and_no_alerts(tmp_path: Path,
                                                         world: dict[str, Any]) -> None:
    east, _ = zone_names()
    inv = load_inventory(write_inventory(
        tmp_path, world, [{"host": "a.lab.test", "ip": "127.0.0.1", "zone": east,
                           "warn_days": 20}],
        zones={east: {"concurrency": 3}},
        extra=("alerts:\n  channels:\n    oncall: {type: pagerduty, routing_key_env: "
               "PD_SECRET_KEY}\n    tickets: {type: github, repo: acme/ops, token_env: "
               "GH_SECRET_TOKEN}\n"),
    ))
    assert inv.alerts is not None
    (sent,) = messages(inv, inv.endpoints, "20261202T000000Z")
    text = json.dumps(sent.message)
    assert "alerts" not in sent.message["document"]
    for word in ("PD_SECRET_KEY", "GH_SECRET_TOKEN", "pagerduty", "oncall", "tickets"):
        assert word not in text
    assert sent.message["concurrency"] == 3 and sent.zone.queue == f"chainwatch.{east}"
    # What the worker builds from it: the same endpoint, and no alerts section at all.
    from chainwatch.config.inventory import parse_inventory

    seen = parse_inventory(json.dumps(sent.message["document"]), path=inv.path)
    assert seen.alerts is None
    assert seen.endpoints == inv.endpoints
    assert batch_document(inv, ()) == {**sent.message["document"], "endpoints": []}


def test_broker_url_from_option_or_environment() -> None:
    assert broker_url(None, {"CHAINWATCH_BROKER": "amqp://guest:guest@127.0.0.1//"}).startswith(
        "amqp://")
    assert broker_url("redis://127.0.0.1:6379/0", {}) == "redis://127.0.0.1:6379/0"
    from chainwatch.errors import InputError

    with pytest.raises(InputError, match="needs a broker"):
        broker_url(None, {})
    with pytest.raises(InputError, match="scheme 'http'"):
        broker_url("http://127.0.0.1/", {})
    assert visibility_timeout(120.0) == 240.0 and visibility_timeout(600.0) == 300.0


def test_serve_distributed_command_runs_the_scheduler(
    servers: ServerLoop, tmp_path: Path, world: dict[str, Any], pg_url: str,
    private_redis_broker: Broker,
) -> None:
    """The real commands: ``chainwatch serve --distributed`` and a ``chainwatch worker``."""
    east, _ = zone_names()
    ca = world["ca"]
    _, port = serve(servers, tmp_path, leaf_of(ca, "cmd.lab.test"), ca)
    path = write_inventory(tmp_path, world, [{"host": "cmd.lab.test", "port": port,
                                              "ip": "127.0.0.1", "zone": east}],
                           zones={east: None})
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINWATCH_")}
    env["CHAINWATCH_BROKER"] = private_redis_broker.url
    pool = Workers(tmp_path, pg_url, private_redis_broker.url)
    with (tmp_path / "serve.log").open("wb") as log:
        scheduler = subprocess.Popen(
            [CHAINWATCH, "serve", str(path), "--distributed", "--no-web", "--db", pg_url,
             "--batch-deadline", str(DEADLINE)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
    try:
        pool.start(east, f"{east}-1")
        with Database(pg_url) as db:
            wait_for("the worker's observation", lambda: db.count_observations() == 1)
            repo = BatchesRepo(db)
            wait_for("the scheduler's evaluation", lambda: not repo.to_evaluate()
                     and not repo.pending())
            (row,) = db.latest_per_target()
            assert row.status is Status.OK and row.target.host == "cmd.lab.test"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(scheduler.pid, signal.SIGTERM)
        try:
            scheduler.wait(timeout=30)
        finally:
            pool.stop_all()
    assert scheduler.returncode == 0, (tmp_path / "serve.log").read_text()
    assert "distributed over zones" in (tmp_path / "serve.log").read_text()


def test_batches_are_split_by_zone_and_bounded(tmp_path: Path, world: dict[str, Any]) -> None:
    east, west = zone_names()
    endpoints = [{"host": f"h{n}.lab.test", "ip": "127.0.0.1", "zone": east if n % 3 else west}
                 for n in range(1300)]
    inv = load_inventory(write_inventory(tmp_path, world, endpoints, zones={
        east: {"concurrency": 1000}, west: {"concurrency": 2}}))
    sent = messages(inv, inv.endpoints, "20261202T000000Z", deadline=20.0)
    by_zone: dict[str, list[int]] = {}
    for s in sent:
        by_zone.setdefault(s.zone.name, []).append(len(s.endpoints))
        assert {e.zone for e in s.endpoints} == {s.zone.name}
        assert len(s.message["document"]["endpoints"]) == len(s.endpoints)
    # east: 866 endpoints, at most 500 a batch; west (2 probes in flight, 5 s timeout, a
    # 20 s deadline: 2 rounds): 4 endpoints a batch.
    assert by_zone[east] == [500, 366]
    assert set(by_zone[west][:-1]) == {4} and sum(by_zone[west]) == 434
    assert len({s.id for s in sent}) == len(sent)
