"""What ``/metrics`` reads, and the monitor's own counters (tables of migration ``0003``).

::

    repo = MetricsRepo(db)
    for row in repo.latest():          # every target's newest observation, streamed
        ...
    state = repo.monitor()             # last scan, counters, alerts, outbox, watchdog
    repo.count_scan(12.5, {"timeout": 3})   # what record() adds after each batch

Everything here is read from stored rows, so a process that only reads the database
(``chainwatch web``) serves the same numbers as the one that scans. The counters only
ever grow (Prometheus counter semantics); the outbox is never pruned, so delivery
counts are derived from its rows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sqlalchemy import String, and_, case, func, select, true, type_coerce
from sqlalchemy.orm import aliased

from chainwatch.model import Target
from chainwatch.storage.alerts_repo import AlertStateRow, OutboxRow, OutboxStatus
from chainwatch.storage.models import (
    BatchRow,
    CertificateRow,
    HeartbeatRow,
    MonitorCounterRow,
    ObservationRow,
    ReportDocumentRow,
    ReportSeriesRow,
    TargetRow,
)
from chainwatch.storage.repo import REPORT_COLUMNS, Database, stored_report

SCAN_BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
"""Upper bounds (seconds) of the ``chainwatch_scan_duration_seconds`` histogram."""

SCAN_DURATION = "scan_duration_seconds"
PROBE_FAILURES = "probe_failures_total"
WATCHDOG_PREFIX = "watchdog:"
_STREAM_PAGE = 2000
_IN_CHUNK = 500  # bound parameters per IN list


@dataclass(frozen=True)
class LatestRow:
    """A target's newest observation as ``/metrics`` needs it.

    Attributes:
        target: the endpoint (``ip`` the address connected to, if known).
        observed_at / status / breaks_at / failure: the observation's columns.
        report: the stored schema-1 report (``profiles``, ``findings``, ``chain``...).
        leaf_sha256 / leaf_serial / leaf_subject / leaf_issuer / leaf_not_before /
            leaf_not_after: the served leaf, ``None`` when nothing (parsable) was served.
    """

    target: Target
    observed_at: dt.datetime
    status: str
    breaks_at: dt.datetime | None
    failure: str | None
    report: Mapping[str, Any] = field(repr=False)
    leaf_sha256: str | None = None
    leaf_serial: str | None = None
    leaf_subject: str | None = None
    leaf_issuer: str | None = None
    leaf_not_before: dt.datetime | None = None
    leaf_not_after: dt.datetime | None = None


def _raw(column: Any) -> Any:
    """``column`` without its result processing: a time or JSON as the driver returns
    it (text on SQLite; a datetime, a decoded document on PostgreSQL), converted where
    needed (:func:`instant`; SQLAlchemy's conversion of every time of every row was a
    third of a render)."""
    return type_coerce(column, String()).label(column.key)


def _json(raw: Any) -> Any:
    """A JSON column read raw: text on SQLite, already decoded by psycopg."""
    return json.loads(raw) if isinstance(raw, str) else raw


def instant(raw: Any) -> dt.datetime | None:
    """A stored time read raw (:meth:`MetricsRepo.latest_series`) as an aware UTC
    datetime: what the mapped column (:class:`~chainwatch.storage.models.UTCDateTime`)
    gives."""
    if raw is None:
        return None
    value = dt.datetime.fromisoformat(raw) if isinstance(raw, str) else raw
    if not isinstance(value, dt.datetime):
        raise TypeError(f"expected a stored time, got {type(raw).__name__}")
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


SeriesRow = tuple[Any, ...]
"""One row of :meth:`MetricsRepo.latest_series` (its docstring names the fields)."""
_SERIES = itemgetter(9)
_LEAF = itemgetter(12)

LeafColumns = tuple[str | None, str | None, str | None, Any, Any]
"""A served leaf as :meth:`MetricsRepo.latest_series` reads it: ``(serial, subject,
issuer, not_before, not_after)``, the times raw (:func:`instant`)."""


def _decoded(row: SeriesRow) -> SeriesRow:
    """A :meth:`MetricsRepo.latest_series` row without a summary, its whole report
    decoded in the ``report`` field."""
    fields = list(row)
    fields[10] = stored_report(_json(row[10]), _json(row[11]), instant(row[7]), None)
    fields[11] = None
    return tuple(fields)


@dataclass(frozen=True)
class MonitorState:
    """The monitor's own health, from stored rows.

    Attributes:
        last_scan: the last ``scan`` heartbeat (a whole sweep or a batch of due endpoints).
        counters: ``(name, labels) -> value`` of every stored counter.
        alerts_open: open alerts by the action they last fired (``ticket``, ``notify``,
            ``page``, ``watchdog``; ``unknown`` when no message was enqueued).
        deliveries: ``(channel, result) -> count``; ``delivered`` messages, ``failed``
            attempts, ``dead`` messages given up on.
        outbox_pending: messages waiting to be (re)sent.
        watchdog_firing: watchdog alerts open now (a stalled scan, a failing channel).
    """

    last_scan: dt.datetime | None
    counters: Mapping[tuple[str, str], float]
    alerts_open: Mapping[str, int]
    deliveries: Mapping[tuple[str, str], int]
    outbox_pending: int
    watchdog_firing: int


def _wanted(targets: Sequence[Target] | None) -> set[tuple[str, int, str, str]] | None:
    """The (host, port, sni, starttls) of ``targets`` as stored rows spell them."""
    if targets is None:
        return None
    return {(t.host.lower(), t.port, t.sni or "", t.starttls or "") for t in targets}


def scan_counters(duration: float, failures: Mapping[str, int]) -> dict[tuple[str, str], float]:
    """The counter increments of one recorded batch that took ``duration`` seconds."""
    out: dict[tuple[str, str], float] = {}
    for bound in SCAN_BUCKETS:
        if duration <= bound:
            out[(SCAN_DURATION, f"le={bound:g}")] = 1.0
    out[(SCAN_DURATION, "le=+Inf")] = 1.0
    out[(SCAN_DURATION, "sum")] = max(0.0, float(duration))
    out[(SCAN_DURATION, "count")] = 1.0
    for reason, n in failures.items():
        if n:
            out[(PROBE_FAILURES, f"reason={reason}")] = float(n)
    return out


class MetricsRepo:
    """The read side of ``/metrics`` over a :class:`~chainwatch.storage.Database`."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.engine = database.engine

    def count_scan(self, duration: float, failures: Mapping[str, int]) -> None:
        """Add one recorded batch to the counters (one transaction)."""
        self.add(scan_counters(duration, failures))

    def add(self, increments: Mapping[tuple[str, str], float]) -> None:
        if not increments:
            return
        insert = self.database._insert
        rows = [{"name": n, "labels": labels, "value": v}
                for (n, labels), v in sorted(increments.items())]
        stmt = insert(MonitorCounterRow)
        stmt = stmt.on_conflict_do_update(
            index_elements=["name", "labels"],
            set_={"value": MonitorCounterRow.value + stmt.excluded.value},
        )
        with self.database._write() as conn:
            conn.execute(stmt, rows)

    def latest(self, targets: Sequence[Target] | None = None) -> Iterator[LatestRow]:
        """Every target's newest observation (streamed, in target order); with
        ``targets``, only rows whose (host, port, sni, starttls) is one of them."""
        stmt = (
            select(TargetRow.host, TargetRow.port, TargetRow.ip, TargetRow.sni,
                   TargetRow.starttls, ObservationRow.observed_at, ObservationRow.status,
                   ObservationRow.breaks_at, ObservationRow.failure,
                   ObservationRow.leaf_sha256, CertificateRow.serial, CertificateRow.subject,
                   CertificateRow.issuer, CertificateRow.not_before, CertificateRow.not_after,
                   *REPORT_COLUMNS)
            .join(ObservationRow, ObservationRow.target_id == TargetRow.id)
            .outerjoin(ReportDocumentRow, ReportDocumentRow.id == ObservationRow.document_id)
            .outerjoin(CertificateRow, CertificateRow.sha256 == ObservationRow.leaf_sha256)
            .where(ObservationRow.id.in_(Database._latest_ids()))
            .order_by(TargetRow.host, TargetRow.port, TargetRow.ip, TargetRow.sni,
                      TargetRow.starttls)
        )
        for (host, port, ip, sni, starttls, observed_at, status, breaks_at, failure,
             leaf, serial, subject, issuer, not_before, not_after,
             *document) in self._stream(stmt, targets):
            yield LatestRow(
                target=Target(host=host, port=port, ip=ip or None, sni=sni or None,
                              starttls=starttls or None),
                observed_at=observed_at, status=status, breaks_at=breaks_at,
                failure=failure, report=stored_report(*document), leaf_sha256=leaf,
                leaf_serial=serial, leaf_subject=subject, leaf_issuer=issuer,
                leaf_not_before=not_before, leaf_not_after=not_after,
            )

    def _stream(self, stmt: Any, targets: Sequence[Target] | None) -> Iterator[Any]:
        """The rows of ``stmt`` (its first five columns a target's host, port, ip, sni
        and starttls), streamed a page at a time; with ``targets``, only theirs."""
        with self.engine.connect() as conn:
            for page in self._pages(conn, stmt, targets):
                yield from page

    @staticmethod
    def _pages(conn: Any, stmt: Any, targets: Sequence[Target] | None) -> Iterator[list[Any]]:
        """:meth:`_stream`'s pages, on ``conn``."""
        wanted = _wanted(targets)
        result = conn.execution_options(stream_results=True,
                                        yield_per=_STREAM_PAGE).execute(stmt)
        for page in result.partitions():
            if wanted is None:
                yield page
            else:
                yield [row for row in page if (row[0], row[1], row[3], row[4]) in wanted]

    def latest_series(self, targets: Sequence[Target] | None = None
                      ) -> Iterator[tuple[list[SeriesRow], Mapping[str, LeafColumns]]]:
        """What :meth:`latest` gives, lean: one Core query, no ORM object, no report body
        decoded (the document's stored :mod:`~chainwatch.storage.series` summary
        instead), times as the driver returns them (:func:`instant` reads one).
        Streamed in target order, a page of rows at a time; ``targets`` filters as in
        :meth:`latest`.

        Each row is ``(host, port, ip, sni, starttls, status, breaks_at, evaluated_at,
        observed_at, series, report, _, leaf_sha256)``: ``series`` is the document's
        summary text, or ``None`` when there is none, and ``report`` is then the whole
        stored report (an observation written before report documents, or a document
        without a summary), else ``None``. Each page comes with the served leaves'
        :data:`LeafColumns` by SHA-256 (one mapping, every leaf of the pages so far):
        a fleet serves far fewer leaves than it has targets, so each leaf's columns are
        read once, by one query per page for the leaves it is the first to serve,
        instead of being joined to every row (a quarter of the query's time)."""
        stmt = select(
            TargetRow.host, TargetRow.port, TargetRow.ip, TargetRow.sni, TargetRow.starttls,
            ObservationRow.status, _raw(ObservationRow.breaks_at),
            _raw(ObservationRow.evaluated_at), _raw(ObservationRow.observed_at),
            ReportSeriesRow.series,
            # The whole report only where there is no summary to read.
            _raw(case((ObservationRow.document_id.is_(None), ObservationRow.report),
                      else_=None).label("report")),
            _raw(case((and_(ObservationRow.document_id.is_not(None),
                            ReportSeriesRow.series.is_(None)),
                       select(ReportDocumentRow.body)
                       .where(ReportDocumentRow.id == ObservationRow.document_id)
                       .scalar_subquery()), else_=None).label("body")),
            ObservationRow.leaf_sha256)
        if self.engine.dialect.name == "postgresql":
            # Each target's newest observation by one backward index scan (LATERAL): no
            # pass over the whole history, and a plan that streams from the first row.
            past = aliased(ObservationRow)
            newest = (
                select(past.id.label("id"))
                .where(past.target_id == TargetRow.id)
                .order_by(past.observed_at.desc(), past.id.desc())
                .limit(1).lateral("newest")
            )
            stmt = (stmt.select_from(TargetRow).join(newest, true())
                    .join(ObservationRow, ObservationRow.id == newest.c.id))
        else:
            # SQLite: targets in index order, each joined to its newest observation by one
            # index seek: no list of ids, no sort (a third of the query's time).
            newest_id = (
                select(ObservationRow.id)
                .where(ObservationRow.target_id == TargetRow.id)
                .order_by(ObservationRow.observed_at.desc(), ObservationRow.id.desc())
                .limit(1).correlate(TargetRow).scalar_subquery()
            )
            stmt = stmt.join(ObservationRow, ObservationRow.id == newest_id)
        stmt = (
            stmt.outerjoin(ReportSeriesRow,
                           ReportSeriesRow.document_id == ObservationRow.document_id)
            .order_by(TargetRow.host, TargetRow.port, TargetRow.ip, TargetRow.sni,
                      TargetRow.starttls)
        )
        leaves: dict[str, LeafColumns] = {}
        with self.engine.connect() as conn:
            for page in self._pages(conn, stmt, targets):
                new = set(map(_LEAF, page)) - leaves.keys()
                new.discard(None)
                if new:
                    leaves.update(self._leaves(conn, sorted(new)))
                if None in map(_SERIES, page):
                    page = [row if row[9] is not None else _decoded(row) for row in page]
                yield page, leaves

    @staticmethod
    def _leaves(conn: Any, shas: Sequence[str]) -> dict[str, LeafColumns]:
        """The :data:`LeafColumns` of the certificates ``shas`` (stored ones only)."""
        out: dict[str, LeafColumns] = {}
        for start in range(0, len(shas), _IN_CHUNK):
            out.update(
                (sha, (serial, subject, issuer, not_before, not_after))
                for sha, serial, subject, issuer, not_before, not_after in conn.execute(
                    select(CertificateRow.sha256, CertificateRow.serial,
                           CertificateRow.subject, CertificateRow.issuer,
                           _raw(CertificateRow.not_before), _raw(CertificateRow.not_after))
                    .where(CertificateRow.sha256.in_(shas[start:start + _IN_CHUNK]))))
        return out

    def version(self) -> tuple[Any, ...]:
        """A cheap fingerprint of everything :meth:`latest` and :meth:`monitor` read: it
        changes whenever an observation, heartbeat, counter, alert state, outbox row or
        distributed batch is written (one query of aggregates over indexed or small tables)."""
        def one(*columns: Any) -> Any:
            return select(*columns).scalar_subquery()

        stmt = select(
            one(func.max(ObservationRow.id)),
            one(func.max(HeartbeatRow.last_beat)),
            one(func.count(HeartbeatRow.component)),
            one(func.count(MonitorCounterRow.name)),
            one(func.sum(MonitorCounterRow.value)),
            one(func.count(AlertStateRow.target_key)),
            one(func.max(AlertStateRow.updated_at)),
            one(func.count(OutboxRow.id)),
            one(func.max(OutboxRow.id)),
            one(func.sum(OutboxRow.attempts)),
            one(func.max(OutboxRow.last_attempt_at)),
            one(func.max(OutboxRow.delivered_at)),
            one(func.sum(case((OutboxRow.status == OutboxStatus.PENDING.value, 1), else_=0))),
            one(func.count(BatchRow.id)),  # distributed mode's zones
            one(func.max(BatchRow.done_at)),
            one(func.count(BatchRow.done_at)),
        )
        with self.engine.connect() as conn:
            return tuple(conn.execute(stmt).one())

    def monitor(self) -> MonitorState:
        newest = (
            select(OutboxRow.target_key, func.max(OutboxRow.id).label("id"))
            .where(OutboxRow.event != "resolve")
            .group_by(OutboxRow.target_key)
            .subquery()
        )
        last_row = aliased(OutboxRow)
        with self.engine.connect() as conn:
            beat = conn.execute(
                select(HeartbeatRow.last_beat).where(HeartbeatRow.component == "scan")
            ).scalar_one_or_none()
            counters = {(n, labels): float(v) for n, labels, v in conn.execute(
                select(MonitorCounterRow.name, MonitorCounterRow.labels,
                       MonitorCounterRow.value))}
            opened: dict[str, int] = {}
            for key, event in conn.execute(
                select(AlertStateRow.target_key, last_row.event)
                .outerjoin(newest, newest.c.target_key == AlertStateRow.target_key)
                .outerjoin(last_row, last_row.id == newest.c.id)
                .where(AlertStateRow.open.is_(True))
            ):
                action = "watchdog" if key.startswith(WATCHDOG_PREFIX) else (event or "unknown")
                opened[action] = opened.get(action, 0) + 1
            deliveries: dict[tuple[str, str], int] = {}
            pending = 0
            delivered = OutboxStatus.DELIVERED.value
            for channel, status, n, attempts in conn.execute(
                select(OutboxRow.channel, OutboxRow.status, func.count(),
                       func.coalesce(func.sum(OutboxRow.attempts), 0))
                .group_by(OutboxRow.channel, OutboxRow.status)
            ):
                failed = int(attempts) - (int(n) if status == delivered else 0)
                deliveries[(channel, "failed")] = deliveries.get((channel, "failed"), 0) + failed
                deliveries.setdefault((channel, "delivered"), 0)
                deliveries.setdefault((channel, "dead"), 0)
                if status == delivered:
                    deliveries[(channel, "delivered")] += int(n)
                elif status == OutboxStatus.DEAD.value:
                    deliveries[(channel, "dead")] += int(n)
                else:
                    pending += int(n)
            watchdog = conn.execute(
                select(func.coalesce(func.sum(case((AlertStateRow.open.is_(True), 1), else_=0)),
                                     0))
                .where(AlertStateRow.target_key.startswith(WATCHDOG_PREFIX))
            ).scalar_one()
        return MonitorState(
            last_scan=beat, counters=counters, alerts_open=opened, deliveries=deliveries,
            outbox_pending=pending, watchdog_firing=int(watchdog),
        )
