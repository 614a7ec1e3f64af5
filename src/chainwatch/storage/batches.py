"""Distributed mode's bookkeeping: the batches put on the zones' queues, the workers'
heartbeats, and the per-zone health that ``/metrics`` and the dashboard read.

::

    repo = BatchesRepo(db)
    repo.dispatched(batch_id, zone="dc-east", queue="chainwatch.dc-east", slot=slot,
                    targets=40, at=now)                          # the scheduler, before sending
    repo.done(batch_id, worker="w1@host", observations=40, status="ok", at=now)  # the worker
    for batch in repo.to_evaluate(): ...                         # the scheduler, afterwards
    for zone in zone_health(db, now=now): print(zone.name, zone.workers, zone.queue_depth)

A worker beats the heartbeat ``worker:ZONE:NAME`` (see :func:`worker_component`) while
it runs; a zone's workers are those that beat within :data:`WORKER_ALIVE`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from chainwatch.storage.models import BatchRow, HeartbeatRow, ObservationRow, TargetRow
from chainwatch.storage.repo import Database, StoredObservation

UTC = dt.UTC
WORKER_PREFIX = "worker:"
WORKER_ALIVE = dt.timedelta(seconds=60)
"""A worker that has not beaten for this long is not counted as live (it beats every
:data:`WORKER_BEAT` seconds while it runs)."""
WORKER_BEAT = 10.0
_CHUNK = 500


def worker_component(zone: str, worker: str) -> str:
    """The heartbeat component of one worker of a zone."""
    return f"{WORKER_PREFIX}{zone}:{worker}"


@dataclass(frozen=True)
class Batch:
    """One batch on a zone's queue (see :class:`~chainwatch.storage.models.BatchRow`)."""

    id: str
    zone: str
    queue: str
    slot: str
    targets: int
    dispatched_at: dt.datetime
    done_at: dt.datetime | None
    worker: str | None
    observations: int | None
    status: str | None
    evaluated_at: dt.datetime | None


@dataclass(frozen=True)
class LastResult:
    """The last batch a zone's workers finished."""

    at: dt.datetime
    worker: str | None
    observations: int
    status: str


@dataclass(frozen=True)
class ZoneHealth:
    """The health of one zone, for ``/metrics`` and the dashboard.

    Attributes:
        name: the zone.
        workers: names of the workers that beat within :data:`WORKER_ALIVE` of ``now``.
        last_worker_beat: the newest beat of any worker of the zone (``None``: never).
        queue_depth: batches dispatched to the zone and not finished yet.
        oldest_pending: when the oldest of those was dispatched.
        last_result: the newest finished batch, if any.
    """

    name: str
    workers: tuple[str, ...]
    last_worker_beat: dt.datetime | None
    queue_depth: int
    oldest_pending: dt.datetime | None
    last_result: LastResult | None


def _batch(row: BatchRow) -> Batch:
    return Batch(id=row.id, zone=row.zone, queue=row.queue, slot=row.slot, targets=row.targets,
                 dispatched_at=row.dispatched_at, done_at=row.done_at, worker=row.worker,
                 observations=row.observations, status=row.status,
                 evaluated_at=row.evaluated_at)


class BatchesRepo:
    """Reads and writes of the ``batches`` table, over one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def dispatched(self, batch_id: str, *, zone: str, queue: str, slot: str, targets: int,
                   at: dt.datetime) -> None:
        """Note a batch about to be sent (before sending: a batch finished by a fast
        worker finds its row)."""
        with self.db.engine.begin() as conn:
            conn.execute(self.db._insert(BatchRow).values(
                id=batch_id, zone=zone, queue=queue, slot=slot, targets=targets,
                dispatched_at=at,
            ).on_conflict_do_nothing(index_elements=["id"]))

    def done(self, batch_id: str, *, worker: str, observations: int, status: str,
             at: dt.datetime) -> None:
        """Note a batch finished (a redelivered batch finishing again keeps the first)."""
        with self.db.engine.begin() as conn:
            conn.execute(update(BatchRow).where(BatchRow.id == batch_id,
                                                BatchRow.done_at.is_(None))
                         .values(done_at=at, worker=worker, observations=observations,
                                 status=status))

    def to_evaluate(self) -> list[Batch]:
        """Finished batches the scheduler has not evaluated yet, oldest first."""
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(BatchRow).where(BatchRow.done_at.is_not(None),
                                                       BatchRow.evaluated_at.is_(None))
                                .order_by(BatchRow.done_at)).all()
        return [_batch(BatchRow(**r._mapping)) for r in rows]

    def evaluated(self, batch_ids: Iterable[str], at: dt.datetime) -> None:
        ids = sorted(set(batch_ids))
        if not ids:
            return
        with self.db.engine.begin() as conn:
            conn.execute(update(BatchRow).where(BatchRow.id.in_(ids)).values(evaluated_at=at))

    def pending(self, zone: str | None = None) -> list[Batch]:
        """Batches dispatched and not finished (of ``zone``, or of every zone)."""
        stmt = select(BatchRow).where(BatchRow.done_at.is_(None))
        if zone is not None:
            stmt = stmt.where(BatchRow.zone == zone)
        with self.db.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(BatchRow.dispatched_at)).all()
        return [_batch(BatchRow(**r._mapping)) for r in rows]

    def give_up(self, batch_ids: Sequence[str], at: dt.datetime, status: str) -> None:
        """Close batches that no worker will do (their zone has none): they stop
        counting in the queue depth. A worker that does one later still stores its
        observations (idempotently); its ``done`` then changes nothing."""
        if not batch_ids:
            return
        with self.db.engine.begin() as conn:
            conn.execute(update(BatchRow).where(BatchRow.id.in_(sorted(batch_ids)),
                                                BatchRow.done_at.is_(None))
                         .values(done_at=at, worker=None, observations=0, status=status,
                                 evaluated_at=at))

    def slot_observations(self, slot: str) -> int:
        """Observations stored for one scan slot."""
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ObservationRow)
                                    .where(ObservationRow.slot == slot)).scalar_one())

    def latest_of_hosts(self, hosts: Iterable[str]) -> list[StoredObservation]:
        """The newest observation of every target whose host is one of ``hosts`` (one
        indexed query per 500 hosts: an evaluation of a finished batch reads its own
        targets, not the fleet's)."""
        names = sorted(set(hosts))
        out: list[StoredObservation] = []
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            ids = Database._latest_ids().where(TargetRow.host.in_(chunk))
            out.extend(self.db._observations(
                select(ObservationRow).join(ObservationRow.target)
                .where(ObservationRow.id.in_(ids))
            ))
        return out

    def rewrite_report(self, observation_id: int, *, status: str,
                       findings: Sequence[str], report: Mapping[str, Any]) -> None:
        """Replace an observation's verdict columns and report (the scheduler adds the
        findings that only the view across zones gives, e.g. ``STALE_DEPLOYMENT``). The
        row then holds its whole report and no longer refers to a shared report document
        (which other observations may refer to unchanged)."""
        with self.db.engine.begin() as conn:
            conn.execute(update(ObservationRow).where(ObservationRow.id == observation_id)
                         .values(status=status, findings=list(findings), report=dict(report),
                                 document_id=None))


def zone_health(db: Database, *, now: dt.datetime | None = None,
                zones: Iterable[str] = ()) -> list[ZoneHealth]:
    """Per zone: live workers, queue depth (batches dispatched and not finished) and the
    last result, read from the database (the scheduler and the web process share it).
    ``zones`` adds zones that have no batch and no worker yet (an inventory's zones)."""
    when = dt.datetime.now(UTC) if now is None else now
    names: dict[str, None] = dict.fromkeys(zones)
    beats: dict[str, list[tuple[str, dt.datetime]]] = {}
    with db.engine.connect() as conn:
        for component, last in conn.execute(
            select(HeartbeatRow.component, HeartbeatRow.last_beat)
            .where(HeartbeatRow.component.startswith(WORKER_PREFIX))
        ):
            zone, _, worker = component[len(WORKER_PREFIX):].partition(":")
            last = last if last.tzinfo is not None else last.replace(tzinfo=UTC)
            beats.setdefault(zone, []).append((worker, last))
            names.setdefault(zone)
        depth: dict[str, tuple[int, dt.datetime | None]] = {}
        for zone, count, oldest in conn.execute(
            select(BatchRow.zone, func.count(), func.min(BatchRow.dispatched_at))
            .where(BatchRow.done_at.is_(None)).group_by(BatchRow.zone)
        ):
            depth[zone] = (int(count), oldest)
            names.setdefault(zone)
        last_done: dict[str, LastResult] = {}
        newest = (select(BatchRow.zone, func.max(BatchRow.done_at).label("done"))
                  .where(BatchRow.done_at.is_not(None), BatchRow.worker.is_not(None))
                  .group_by(BatchRow.zone).subquery())
        for zone, done_at, by, observations, status in conn.execute(
            select(BatchRow.zone, BatchRow.done_at, BatchRow.worker, BatchRow.observations,
                   BatchRow.status)
            .join(newest, (BatchRow.zone == newest.c.zone) & (BatchRow.done_at == newest.c.done))
        ):
            if done_at is None:  # pragma: no cover - the subquery picks finished batches
                continue
            last_done[zone] = LastResult(at=done_at, worker=by,
                                         observations=int(observations or 0),
                                         status=status or "unknown")
            names.setdefault(zone)
    out = []
    for name in sorted(names):
        seen = beats.get(name, [])
        count, pending_since = depth.get(name, (0, None))
        out.append(ZoneHealth(
            name=name,
            workers=tuple(sorted(w for w, last in seen if when - last <= WORKER_ALIVE)),
            last_worker_beat=max((last for _, last in seen), default=None),
            queue_depth=count,
            oldest_pending=_utc(pending_since),
            last_result=last_done.get(name),
        ))
    return out


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
