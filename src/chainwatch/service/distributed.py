"""Distributed mode: batches of due endpoints on Celery queues, one per vantage zone.

``chainwatch serve --distributed`` runs :class:`DistributedCycle` under the ordinary
:class:`~chainwatch.service.scheduler.Scheduler`: instead of probing, a batch of due
endpoints is split by zone and put on each zone's queue (:func:`dispatch`); a
``chainwatch worker --zone Z`` (a Celery prefork worker, :func:`run_worker`) runs the
service's own :func:`~chainwatch.service.collect.collect` on each batch it takes and
:func:`~chainwatch.service.record.record` s it into the shared PostgreSQL. Between
batches the scheduler's tick reads back what the workers finished and runs, once and
from the database, what needs every zone's view: tracking across zones
(``STALE_DEPLOYMENT`` between an address seen from dc-east and one seen from dc-west),
the alert policy and delivery (:meth:`DistributedCycle.evaluate`).

Guarantees (README, Deployment):

* a task is acknowledged only after its batch is stored (``acks_late``) and is put back
  when the worker process running it dies (``reject_on_worker_lost``); a worker takes
  one batch at a time (prefetch 1);
* Redis' visibility timeout is twice the batch deadline (at most 5 minutes): a batch
  taken by a worker that vanished is redelivered within minutes;
* every write of a batch is keyed by (target, address, scan slot): a batch done twice
  stores each observation once;
* a batch not finished within the visibility timeout plus the deadline is sent again by
  the scheduler (same id and slot, so harmless): a broker that lost its queue loses nothing;
* a zone whose workers have all been silent for two intervals is reported by the
  watchdog, and its targets are recorded ``PROBE_FAILED`` (``no worker in zone``).

A batch carries the endpoint settings (the inventory without its ``alerts`` and
``files`` sections, :func:`~chainwatch.config.build.batch_document`): workers hold no
channel secret. Profiles given as ``file:`` paths must exist at the same path on workers.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from celery import Celery, signals

from chainwatch.alerts import outbox
from chainwatch.analysis.tracking import LeafIndex, name_of, stale_deployment, with_findings
from chainwatch.config.inventory import (
    Endpoint,
    Inventory,
    Zone,
    batch_document,
    parse_inventory,
)
from chainwatch.errors import InputError
from chainwatch.model import Cert, FindingCode, Report, Target
from chainwatch.model.times import compact
from chainwatch.probe import FailureReason, Observation
from chainwatch.probe.parallel import HeadStart
from chainwatch.render.codec import report_from_json, report_json, worst
from chainwatch.service.collect import Item, ScanResult, collect, situations
from chainwatch.service.cycle import Clock, Cycle, CycleResult, _utcnow
from chainwatch.service.observe import report_for
from chainwatch.service.record import record
from chainwatch.storage.batches import (
    WORKER_BEAT,
    BatchesRepo,
    ZoneHealth,
    worker_component,
    zone_health,
)
from chainwatch.storage.repo import Database, StoredObservation

log = logging.getLogger("chainwatch.distributed")

TASK = "chainwatch.batch"
BROKER_ENV = "CHAINWATCH_BROKER"
BATCH_DEADLINE = 120.0
"""Seconds a batch may take on a worker (its hard time limit); batches are sized to it."""
MAX_VISIBILITY = 300.0
MAX_BATCH = 500
EVALUATE_EVERY = 30.0
"""Seconds between two evaluations across zones while batches are still pending."""
NO_WORKER = "no worker in zone"
"""The reason a target of a zone without a live worker is ``PROBE_FAILED``."""
SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")


def visibility_timeout(deadline: float) -> float:
    """Redis' visibility timeout: twice the batch deadline, at most 5 minutes."""
    return min(MAX_VISIBILITY, 2 * deadline)


def broker_url(value: str | None, environ: Mapping[str, str] | None = None) -> str:
    """``--broker`` or ``CHAINWATCH_BROKER``: a ``redis://`` or ``amqp://`` URL."""
    url = value or (os.environ if environ is None else environ).get(BROKER_ENV)
    if not url:
        raise InputError(f"distributed mode needs a broker: --broker URL or {BROKER_ENV} "
                         "(redis://HOST:6379/0 or amqp://USER:PASSWORD@HOST:5672/VHOST)")
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise InputError(f"broker URL scheme {scheme or '(none)'!r}: expected one of "
                         f"{', '.join(SCHEMES)}")
    return url


def make_app(broker: str, *, deadline: float = BATCH_DEADLINE) -> Celery:
    """The Celery application of the scheduler and of the workers (same settings both
    sides: the Redis transport's visibility timeout is applied by its consumers)."""
    app = Celery("chainwatch", broker=broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_create_missing_queues=True,
        task_default_queue="chainwatch.default",
        # Redis: a task taken by a worker that vanished is put back once it has been
        # unacknowledged for the visibility timeout; consumers look for such tasks every
        # few seconds (kombu's default looks every 100 s).
        broker_transport_options={
            "visibility_timeout": visibility_timeout(deadline),
            "unacked_restore_interval": min(10.0, max(1.0, visibility_timeout(deadline) / 5)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.5,
                                   "interval_step": 0.5, "interval_max": 1.0},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    app.task(name=TASK, acks_late=True, reject_on_worker_lost=True,
             time_limit=deadline, soft_time_limit=max(1.0, deadline * 0.9))(run_batch)
    return app


# -- the scheduler's side ---------------------------------------------------------------------


@dataclass
class Sent:
    """A batch the scheduler sent and has not seen finished."""

    id: str
    zone: Zone
    endpoints: tuple[Endpoint, ...]
    message: dict[str, Any]
    sent_at: dt.datetime


def batch_size(zone: Zone, timeout: dt.timedelta, deadline: float) -> int:
    """Endpoints per batch: as many as the zone's concurrency can probe within the
    deadline with every probe taking twice its timeout (at most :data:`MAX_BATCH`)."""
    rounds = max(1, int(deadline // max(1.0, 2 * timeout.total_seconds())))
    return max(1, min(MAX_BATCH, zone.concurrency * rounds))


def messages(inventory: Inventory, endpoints: Sequence[Endpoint], slot: str,
             deadline: float = BATCH_DEADLINE) -> list[Sent]:
    """The batches for ``endpoints`` (grouped by zone, sized by :func:`batch_size`)."""
    by_zone: dict[str, list[Endpoint]] = {}
    for e in endpoints:
        by_zone.setdefault(e.zone, []).append(e)
    out: list[Sent] = []
    now = _utcnow()
    for name, group in by_zone.items():
        zone = inventory.zone(name)
        size = batch_size(zone, max(e.timeout for e in group), deadline)
        for start in range(0, len(group), size):
            chunk = tuple(group[start : start + size])
            batch_id = uuid.uuid4().hex
            out.append(Sent(id=batch_id, zone=zone, endpoints=chunk, sent_at=now, message={
                "v": 1, "id": batch_id, "zone": name, "slot": slot,
                "inventory": str(inventory.path), "concurrency": zone.concurrency,
                "document": batch_document(inventory, chunk),
            }))
    return out


@dataclass
class _ZoneWatch:
    since: dt.datetime
    reported: bool = False


class DistributedCycle(Cycle):
    """The scheduler's cycle in distributed mode: :meth:`batch` dispatches, :meth:`tick`
    evaluates what the workers stored, watches the zones and delivers."""

    def __init__(self, db: Database, app: Celery, *, clock: Clock = _utcnow,
                 background: bool = False, deadline: float = BATCH_DEADLINE) -> None:
        super().__init__(db, clock=clock, background=background)
        self.app = app
        self.deadline = deadline
        self.repo = BatchesRepo(db)
        self.sent: dict[str, Sent] = {}
        self.started = clock()
        self._watch: dict[str, _ZoneWatch] = {}
        self.dispatched = 0
        self.evaluations = 0
        self._evaluated_at: dt.datetime | None = None
        self._touched: dict[Target, Endpoint] = {}  # stored since the last evaluation
        self._full = False  # evaluate every target next time (a sweep, a restart)

    def close(self) -> None:
        super().close()
        self.app.close()

    # -- dispatch -------------------------------------------------------------------------

    def batch(self, inventory: Inventory, *, endpoints: Sequence[Endpoint] | None = None,
              sweep: bool | None = None, at: dt.datetime | None = None,
              progress: Any = None, begun: HeadStart | None = None) -> CycleResult:
        # ``begun`` is for a batch probed here: the workers probe a distributed one.
        chosen = tuple(inventory.endpoints if endpoints is None else endpoints)
        now = self.clock()
        slot = compact(now)
        for sent in messages(inventory, chosen, slot, self.deadline):
            try:
                self._send(sent, now)
            except Exception as exc:  # the broker away: the tick sends it again
                log.error("batch %s: sending to zone %s failed, will send again: %s",
                          sent.id, sent.zone.name, exc)
        full = endpoints is None if sweep is None else sweep
        if full:
            self._full = True  # each sweep's evaluation looks at every target
        if full and inventory.files:  # the files are the scheduler's own to read
            local = replace_endpoints(inventory, ())
            super().batch(local, endpoints=(), sweep=True)
        return CycleResult(ScanResult(reports=(), observations=(), situations=(),
                                      sweep=full), recorded=False)

    def _send(self, sent: Sent, now: dt.datetime) -> None:
        self.repo.dispatched(sent.id, zone=sent.zone.name, queue=sent.zone.queue,
                             slot=sent.message["slot"], targets=len(sent.endpoints), at=now)
        try:
            self.app.send_task(TASK, args=[sent.message], queue=sent.zone.queue)
        except Exception:
            # Not sent: the row stays pending and the next tick sends it again.
            self.sent[sent.id] = Sent(sent.id, sent.zone, sent.endpoints, sent.message,
                                      sent_at=now - dt.timedelta(days=1))
            raise
        self.sent[sent.id] = Sent(sent.id, sent.zone, sent.endpoints, sent.message, now)
        self.dispatched += 1
        log.info("batch %s: %d endpoints to zone %s (queue %s, slot %s)", sent.id,
                 len(sent.endpoints), sent.zone.name, sent.zone.queue, sent.message["slot"])

    @property
    def resend_after(self) -> float:
        """Seconds after which an unfinished batch is sent again: the visibility timeout
        (when Redis would have redelivered it) plus the deadline (for that redelivery to
        finish)."""
        return visibility_timeout(self.deadline) + self.deadline

    def resend_overdue(self, now: dt.datetime) -> int:
        """Send again the batches not finished within :attr:`resend_after` (a broker
        restarted without its queue, a send that failed). Same id and slot: a batch done
        twice stores nothing twice."""
        overdue = now - dt.timedelta(seconds=self.resend_after)
        pending = {b.id for b in self.repo.pending()}
        for batch_id in [k for k in self.sent if k not in pending]:
            del self.sent[batch_id]
        count = 0
        for sent in list(self.sent.values()):
            if sent.sent_at > overdue:
                continue
            try:
                self.app.send_task(TASK, args=[sent.message], queue=sent.zone.queue)
            except Exception as exc:
                log.error("batch %s: sending again to zone %s failed: %s", sent.id,
                          sent.zone.name, exc)
                return count
            sent.sent_at = now
            count += 1
            log.warning("batch %s: not finished in %.0f s, sent again to zone %s", sent.id,
                        self.resend_after, sent.zone.name)
        return count

    # -- between batches ------------------------------------------------------------------

    def tick(self, inventory: Inventory) -> None:
        now = self.clock()
        done = self.repo.to_evaluate()
        for b in done:  # before resending forgets the finished batches
            sent = self.sent.get(b.id)
            if sent is None:  # sent by an earlier scheduler process: look at everything
                self._full = True
            else:
                self._touched.update({e.target: e for e in sent.endpoints})
        self.resend_overdue(now)
        problems = self.watch_zones(inventory, now)
        # Once the queues are drained, or every EVALUATE_EVERY while batches keep
        # finishing (a large fleet never drains).
        due = (self._evaluated_at is None
               or now - self._evaluated_at >= dt.timedelta(seconds=EVALUATE_EVERY)
               or not self.repo.pending())
        if (self._touched or self._full) and due:
            wanted = {e.target for e in inventory.endpoints}
            touched = [e for t, e in self._touched.items() if t in wanted]
            self.evaluate(inventory, None if self._full else touched)
            self._touched.clear()
            self._full = False
            self._evaluated_at = now
        if done:
            self.repo.evaluated([b.id for b in done], self.clock())
        alerts = inventory.alerts
        if alerts is None:
            return
        outbox.check_watchdog(self.db, alerts, self.clock(), interval=inventory.defaults.interval,
                              zones=problems)
        self.deliver(alerts)

    def watch_zones(self, inventory: Inventory, now: dt.datetime) -> dict[str, str | None]:
        """Each zone's problem: no live worker for two intervals (``None``: fine). The
        batches such a zone has pending are given up and their targets recorded
        ``PROBE_FAILED`` with the reason :data:`NO_WORKER`."""
        health = {h.name: h for h in zone_health(self.db, now=now,
                                                 zones=[z.name for z in inventory.used_zones()])}
        problems: dict[str, str | None] = {}
        probed = {e.zone for e in inventory.endpoints}
        for zone in inventory.used_zones():
            if zone.name not in probed:  # listed but empty: nothing to watch for
                continue
            h = health.get(zone.name)
            interval = min((e.interval for e in inventory.endpoints if e.zone == zone.name),
                           default=inventory.defaults.interval)
            last = h.last_worker_beat if h is not None else None
            if h is not None and h.workers:
                problems[zone.name] = None
                self._watch.pop(zone.name, None)
                continue
            silent_since = max(last, self.started) if last is not None else self.started
            if now - silent_since < 2 * interval:
                problems[zone.name] = None
                continue
            problems[zone.name] = f"zone {zone.name} has had no worker for 2 intervals"
            watch = self._watch.setdefault(zone.name, _ZoneWatch(since=silent_since))
            if not watch.reported:
                log.error("zone %s has had no worker for 2 intervals (last worker seen: %s)",
                          zone.name, "never" if last is None else last.isoformat())
                watch.reported = True
            self._fail_zone(zone, now)
        return problems

    def _fail_zone(self, zone: Zone, now: dt.datetime) -> None:
        stuck = self.repo.pending(zone.name)
        if not stuck:
            return
        endpoints: dict[Target, Endpoint] = {}
        for b in stuck:
            sent = self.sent.get(b.id)
            if sent is not None:
                endpoints.update({e.target: e for e in sent.endpoints})
        self.repo.give_up([b.id for b in stuck], now, status="no_worker")
        for b in stuck:
            self.sent.pop(b.id, None)
        if not endpoints:
            return
        observations = [Observation(
            target=t, observed_at=now, failure=FailureReason.NO_WORKER,
            message=f"{t.host}:{t.port}: {NO_WORKER} {zone.name} (queue {zone.queue}): "
                    "not probed",
        ) for t in endpoints]
        reports = [report_for(o, endpoints[o.target].profiles, at=now,
                              host=endpoints[o.target].server_name) for o in observations]
        record(self.db, ScanResult(reports=tuple(reports), observations=tuple(observations),
                                   situations=(), sweep=False))
        self._touched.update(endpoints)
        log.warning("zone %s: %d targets recorded PROBE_FAILED (%s)", zone.name,
                    len(observations), NO_WORKER)

    def evaluate(self, inventory: Inventory,
                 endpoints: Sequence[Endpoint] | None = None) -> ScanResult:
        """Tracking across zones and the alert policy, from the database: the newest
        stored reports of ``endpoints`` (default: every endpoint of the inventory) get the
        findings only the view across zones gives (``STALE_DEPLOYMENT``), stored back;
        then one situation per target for the alert policy.

        With ``endpoints`` (the ones the finished batches probed) the cost follows the
        batches, not the fleet: they are compared with the newest leaves stored for the
        same names and their siblings (``*.example.com`` served as ``www.example.com``);
        a leaf covering a name served under an unrelated one is compared at the next
        sweep's evaluation, which looks at every target."""
        items, reports, rows = current_reports(self.db, inventory, endpoints)
        leaves = [r.chain[0] for r in reports if r.chain]
        if endpoints is not None:
            leaves += leaves_near(self.db, inventory, {name_of(i.target) for i in items})
        index = LeafIndex(leaves)
        tracked: list[Report] = []
        for item, report, row in zip(items, reports, rows, strict=True):
            codes = {f.code for f in report.findings}
            if isinstance(item.source, Endpoint) and FindingCode.STALE_DEPLOYMENT not in codes:
                stale = stale_deployment(report, item.target, index, item.source.crit_days)
                if stale is not None:
                    # Newer elsewhere: not overdue (tracking says so within one zone too).
                    kept = tuple(f for f in report.findings
                                 if f.code is not FindingCode.RENEWAL_OVERDUE)
                    report = with_findings(replace(report, findings=kept), [stale])
                    self.repo.rewrite_report(row.id, status=report.status.value,
                                             findings=[f.code.value for f in report.findings],
                                             report=report_json(report))
            tracked.append(report)
        result = ScanResult(
            reports=tuple(tracked), observations=(),
            situations=situations(items, tracked,
                                  [i.source.renewal if isinstance(i.source, Endpoint) else
                                   inventory.defaults.renewal for i in items]),
            keys=tuple(i.key for i in items), sweep=False,
        )
        self.evaluations += 1
        alerts = inventory.alerts
        if alerts is not None:
            warnings: list[str] = []
            self._alert(alerts, result, warnings)
        log.info("evaluated %d targets across zones: %s", len(tracked),
                 worst([r.status for r in tracked]).value if tracked else "ok")
        return result

    def health(self, inventory: Inventory) -> list[ZoneHealth]:
        return zone_health(self.db, now=self.clock(),
                           zones=[z.name for z in inventory.used_zones()])


def replace_endpoints(inventory: Inventory, endpoints: Sequence[Endpoint]) -> Inventory:
    return replace(inventory, endpoints=tuple(endpoints))


def leaves_near(db: Database, inventory: Inventory, names: set[str]) -> list[Cert]:
    """The newest stored leaf of every inventory target named one of ``names`` or a
    sibling of one (same parent domain: where a wildcard covering it may be served)."""
    parents = {n.split(".", 1)[1] for n in names if "." in n}
    wanted = {e.target: e for e in inventory.endpoints}
    rows = []
    for row in db.latest_leaves():
        if (wanted.get(row.target) or wanted.get(row.target.endpoint)) is None:
            continue
        name = name_of(row.target)
        if name in names or (name.split(".", 1)[1] if "." in name else "") in parents:
            rows.append(row)
    parsed = db.parsed_certificates(row.leaf_sha256 for row in rows)
    return [parsed[row.leaf_sha256] for row in rows if row.leaf_sha256 in parsed]


def current_reports(db: Database, inventory: Inventory,
                    endpoints: Sequence[Endpoint] | None = None,
                    ) -> tuple[list[Item], list[Report], list[StoredObservation]]:
    """The newest stored report per address (the addresses of its newest probe) of every
    inventory endpoint, or of ``endpoints``, decoded, with the rows they come from."""
    chosen = inventory.endpoints if endpoints is None else endpoints
    wanted = {e.target: e for e in chosen}
    latest = (db.latest_per_target() if endpoints is None
              else BatchesRepo(db).latest_of_hosts({e.host for e in chosen}))
    per_endpoint: dict[Target, list[StoredObservation]] = {}
    for row in latest:
        t = row.target
        ep = wanted.get(t) or wanted.get(t.endpoint)
        if ep is not None:
            per_endpoint.setdefault(ep.target, []).append(row)
    shas = {sha for rows in per_endpoint.values() for r in rows for sha in r.chain}
    certs: Mapping[str, Cert] = db.parsed_certificates(shas)
    items: list[Item] = []
    reports: list[Report] = []
    rows_out: list[StoredObservation] = []
    for key, rows in per_endpoint.items():
        ep = wanted[key]
        newest = max(r.observed_at for r in rows)
        window = min(ep.interval / 2, dt.timedelta(minutes=5))
        for row in rows:
            if row.observed_at < newest - window:
                continue  # an address this endpoint's newest probe did not reach
            try:
                report = report_from_json(row.report, certs)
            except (KeyError, ValueError, TypeError) as exc:
                log.error("stored report %d of %s unreadable: %s", row.id, row.target.key, exc)
                continue
            items.append(Item(row.target, ep.target.key, ep.server_name or ep.host, ep))
            reports.append(report)
            rows_out.append(row)
    return items, reports, rows_out


# -- the worker's side ------------------------------------------------------------------------


@dataclass
class WorkerSettings:
    """What a worker process needs besides the batch: set by :func:`run_worker` before the
    pool forks (every child reads it; each opens its own :class:`Database`)."""

    db_url: str
    zone: str
    name: str
    _db: Database | None = field(default=None, repr=False)
    _pid: int = 0

    def database(self) -> Database:
        if self._db is None or self._pid != os.getpid():
            self._db = Database(self.db_url, migrate=False)  # migrated by run_worker
            self._pid = os.getpid()
        return self._db


_settings: WorkerSettings | None = None


def run_batch(message: dict[str, Any]) -> dict[str, Any]:
    """The task: collect one batch with the service's own code and record it with its
    slot (idempotent), then mark the batch done."""
    if _settings is None:
        raise RuntimeError("chainwatch batch run outside a chainwatch worker")
    settings = _settings
    db = settings.database()
    batch_id = str(message["id"])
    source = f"batch {batch_id}"
    inventory = parse_inventory(json.dumps(message["document"]),
                                path=Path(str(message["inventory"])), source=source)
    if message.get("zone") != settings.zone:
        log.warning("batch %s is for zone %s, this worker is in zone %s", batch_id,
                    message.get("zone"), settings.zone)
    result = collect(inventory, db, endpoints=inventory.endpoints, sweep=False,
                     concurrency=int(message.get("concurrency", 64)))
    record(db, result, slot=str(message["slot"]))
    now = _utcnow()
    BatchesRepo(db).done(batch_id, worker=settings.name, observations=len(result.reports),
                         status=result.status.value, at=now)
    db.beat(worker_component(settings.zone, settings.name),
            {"zone": settings.zone, "last_batch": batch_id, "status": result.status.value,
             "observations": len(result.reports)}, at=now)
    log.info("batch %s: %d observations, %s", batch_id, len(result.reports),
             result.status.value)
    return {"observations": len(result.reports), "status": result.status.value}


class _Beat:
    """The worker's heartbeat (``worker:ZONE:NAME``), every :data:`WORKER_BEAT` seconds
    from its main process while it runs."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chainwatch-worker-beat",
                                       daemon=True)

    def _run(self) -> None:
        db = Database(self.settings.db_url, migrate=False)
        try:
            while True:
                try:
                    db.beat(worker_component(self.settings.zone, self.settings.name),
                            {"zone": self.settings.zone, "pid": os.getpid()})
                except Exception as exc:  # the database away: try again at the next beat
                    log.error("worker heartbeat failed: %s", exc)
                if self.stop.wait(WORKER_BEAT):
                    return
        finally:
            db.close()


def run_worker(*, zone: Zone, db_url: str, broker: str, processes: int = 2,
               name: str | None = None, deadline: float = BATCH_DEADLINE,
               loglevel: str = "INFO") -> None:
    """Run a Celery prefork worker for ``zone`` until it is stopped (SIGTERM: warm
    shutdown, the running batch finishes first)."""
    global _settings
    worker_name = name or f"{zone.name}@{socket.gethostname()}-{os.getpid()}"
    Database(db_url).close()  # migrated (and reachable) before any batch is taken
    _settings = WorkerSettings(db_url=db_url, zone=zone.name, name=worker_name)
    app = make_app(broker, deadline=deadline)
    beat = _Beat(_settings)

    def ready(**_: object) -> None:
        beat.thread.start()

    def shutdown(**_: object) -> None:
        beat.stop.set()

    signals.worker_ready.connect(ready, weak=False)
    signals.worker_shutdown.connect(shutdown, weak=False)
    app.worker_main(argv=[
        "worker", "--queues", zone.queue, "--concurrency", str(processes), "--pool", "prefork",
        "--hostname", worker_name, "--loglevel", loglevel, "--without-gossip",
        "--without-mingle", "--prefetch-multiplier", "1",
    ])


__all__ = [
    "BATCH_DEADLINE",
    "BROKER_ENV",
    "NO_WORKER",
    "TASK",
    "DistributedCycle",
    "Sent",
    "batch_size",
    "broker_url",
    "current_reports",
    "make_app",
    "messages",
    "run_batch",
    "run_worker",
    "visibility_timeout",
]
