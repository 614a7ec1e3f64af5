"""What the dashboard and the JSON API read: pages of targets, filtered and sorted in SQL.

::

    repo = WebRepo(db)
    page = repo.page(Query(status=("critical",), limit=100))   # newest row per target
    page.total, [row.target for row in page.rows]
    repo.counts()                                               # {"ok": 12, "critical": 3}

Every query is over each target's newest observation only, sorted by ``breaks_at`` (a
target that cannot be probed, with no ``breaks_at``, sorts first: it is broken now) and
paginated by ``LIMIT``/``OFFSET`` in the database: 100,000 stored targets cost one
page's rows in Python, not 100,000.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import String, and_, cast, exists, func, or_, select, tuple_, type_coerce
from sqlalchemy.orm import aliased

from chainwatch.model import Target
from chainwatch.storage.alerts_repo import OutboxRow
from chainwatch.storage.models import (
    JSONDocument,
    ObservationRow,
    ReportDocumentRow,
    TargetRow,
)
from chainwatch.storage.repo import REPORT_COLUMNS, Database, stored_report

_DOCUMENT = (ReportDocumentRow, ReportDocumentRow.id == ObservationRow.document_id)
"""The outer join that brings an observation's report document (see REPORT_COLUMNS)."""

MAX_LIMIT = 1000
_KEYS_CHUNK = 500


@dataclass(frozen=True)
class Query:
    """A filter over the targets' newest observations.

    Attributes:
        status: keep these statuses only (empty: all).
        codes: keep rows that have at least one of these finding codes.
        profile: keep rows evaluated for this profile spec.
        search: a case-insensitive substring of the host or address.
        keys: keep only these (host, port) pairs (``None``: every target); the web
            layer turns the inventory's tag/owner/zone filters into this list.
        limit / offset: the page.
    """

    status: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    profile: str | None = None
    search: str | None = None
    keys: tuple[tuple[str, int], ...] | None = None
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True)
class WebRow:
    """One target's newest observation, as the overview lists it."""

    observation_id: int
    target: Target
    observed_at: dt.datetime
    status: str
    breaks_at: dt.datetime | None
    days_left: int | None
    leaf_sha256: str | None
    findings: tuple[str, ...]
    report: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class CalendarRow:
    """What the calendar reads of a target's newest observation that breaks.

    ``report`` holds only the parts of the schema-1 report that place its events:
    ``breaks_at``, ``profiles``, ``findings`` and ``chain`` with the leaf alone
    (:meth:`Database.reports_of` has the whole report)."""

    observation_id: int
    target: Target
    breaks_at: dt.datetime
    report: Mapping[str, Any] = field(repr=False, compare=False)


_PARTS = ("breaks_at", "profiles", "findings")


def _report_parts(column: Any, dialect: str) -> Any:
    """The JSON paths the calendar reads of a report (the document's body, or the row's
    own report where it has no document) as one JSON array ``[breaks_at, profiles,
    findings, chain[0]]``, extracted by the database: the rest of the document is
    neither sent nor decoded, and each row is decoded once."""
    if dialect == "sqlite":
        paths = [f'$."{name}"' for name in _PARTS] + ['$."chain"[0]']
        return type_coerce(func.json_extract(column, *paths), JSONDocument)
    return type_coerce(func.jsonb_build_array(
        *(column[name] for name in _PARTS), column[("chain", 0)]), JSONDocument)


@dataclass(frozen=True)
class SentAlert:
    """One outbox row of a target, without its payload: what was sent (``event``, the
    step's action or ``resolve``), for which step, to which channel (its name: the
    credentials stay in the inventory), when, and how the delivery went. ``last_error``
    is stored redacted by the sender."""

    id: int
    created_at: dt.datetime
    event: str
    step: str
    channel: str
    status: str
    attempts: int
    last_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    last_error: str | None


@dataclass(frozen=True)
class Page:
    rows: tuple[WebRow, ...]
    total: int


_newer = aliased(ObservationRow)
_CACHE_MAX = 256
_totals: dict[tuple[str, int | None, Any], Any] = {}


def _latest() -> Any:
    """The row is its target's newest observation: no newer one exists (one seek on
    ``ix_observations_target_time`` per candidate row, so a walk of
    ``ix_observations_breaks_at`` stops after a page)."""
    return ~exists().where(
        _newer.target_id == ObservationRow.target_id,
        or_(_newer.observed_at > ObservationRow.observed_at,
            and_(_newer.observed_at == ObservationRow.observed_at,
                 _newer.id > ObservationRow.id)),
    )


class WebRepo:
    """Read queries of the web read side over a :class:`~chainwatch.storage.Database`."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.engine = database.engine

    def _where(self, q: Query) -> list[Any]:
        where: list[Any] = [_latest()]
        if q.status:
            where.append(ObservationRow.status.in_(q.status))
        if q.codes:
            text = cast(ObservationRow.findings, String)
            where.append(or_(*(text.like(f'%"{code}"%') for code in q.codes)))
        if q.profile:
            spec = q.profile.replace("\\", "").replace('"', "")
            needle = f'%"profile": "{spec}"%'
            where.append(or_(cast(ObservationRow.report, String).like(needle),
                             cast(ReportDocumentRow.body, String).like(needle)))
        if q.search:
            needle = "%" + q.search.lower().replace("%", "").replace("_", "") + "%"
            where.append(or_(TargetRow.host.like(needle), TargetRow.ip.like(needle)))
        if q.keys is not None:
            keys = sorted({(h.lower(), p) for h, p in q.keys})
            if not keys:
                where.append(TargetRow.id.is_(None))
            else:
                where.append(or_(*(
                    tuple_(TargetRow.host, TargetRow.port).in_(keys[i : i + _KEYS_CHUNK])
                    for i in range(0, len(keys), _KEYS_CHUNK)
                )))
        return where

    def _version(self) -> int | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(ObservationRow.id))).scalar_one()
        return None if value is None else int(value)

    def _cached(self, what: str, key: Any, compute: Any) -> Any:
        """Totals over every newest row change only when an observation is written:
        kept per (database, newest observation id, filter)."""
        version = self._version()
        full = (f"{self.database.url}|{what}", version, key)
        if full not in _totals:
            if len(_totals) > _CACHE_MAX:
                _totals.clear()
            _totals[full] = compute()
        return _totals[full]

    def page(self, q: Query) -> Page:
        """One page of newest rows matching ``q``, by ``breaks_at`` (rows without one,
        broken now, first), then row id; with the number of rows matching in all.

        Two index walks: the rows without ``breaks_at``, then those with it in order,
        each with ``LIMIT``/``OFFSET`` in the database."""
        limit = max(1, min(q.limit, MAX_LIMIT))
        offset = max(0, q.offset)
        where = self._where(q)
        columns = (ObservationRow.id, TargetRow.host, TargetRow.port, TargetRow.ip,
                   TargetRow.sni, TargetRow.starttls, ObservationRow.observed_at,
                   ObservationRow.status, ObservationRow.breaks_at, ObservationRow.days_left,
                   ObservationRow.leaf_sha256, ObservationRow.findings, *REPORT_COLUMNS)

        def rows_of(extra: Any, order: Sequence[Any], lim: int, off: int) -> list[Any]:
            stmt = (select(*columns).join(TargetRow, ObservationRow.target_id == TargetRow.id)
                    .outerjoin(*_DOCUMENT).where(and_(*where, extra)).order_by(*order)
                    .limit(lim).offset(off))
            with self.engine.connect() as conn:
                return list(conn.execute(stmt))

        def count(extra: Any) -> int:
            stmt = (select(func.count()).select_from(ObservationRow)
                    .join(TargetRow, ObservationRow.target_id == TargetRow.id)
                    .outerjoin(*_DOCUMENT)
                    .where(and_(*where, extra)))
            with self.engine.connect() as conn:
                return int(conn.execute(stmt).scalar_one())

        filt = replace(q, limit=0, offset=0)
        unknown = self._cached("unknown", filt,
                               lambda: count(ObservationRow.breaks_at.is_(None)))
        total = self._cached("total", filt, lambda: count(True))
        raw: list[Any] = []
        if offset < unknown:
            raw = rows_of(ObservationRow.breaks_at.is_(None), [ObservationRow.id], limit,
                          offset)
        if len(raw) < limit:
            raw += rows_of(ObservationRow.breaks_at.is_not(None),
                           [ObservationRow.breaks_at, ObservationRow.id], limit - len(raw),
                           max(0, offset - unknown))
        rows = tuple(
            WebRow(
                observation_id=oid,
                target=Target(host=host, port=port, ip=ip or None, sni=sni or None,
                              starttls=starttls or None),
                observed_at=observed_at, status=status, breaks_at=breaks_at,
                days_left=days_left, leaf_sha256=leaf,
                findings=tuple(findings or ()), report=stored_report(*document),
            )
            for (oid, host, port, ip, sni, starttls, observed_at, status, breaks_at,
                 days_left, leaf, findings, *document) in raw
        )
        return Page(rows=rows, total=total)

    def calendar_rows(self, q: Query) -> Iterator[CalendarRow]:
        """Every newest row matching ``q`` that has a ``breaks_at``, in ``breaks_at``
        order: one query (no pages), reading the report parts :class:`CalendarRow`
        names, streamed from the database."""
        where = self._where(q)
        stmt = (select(ObservationRow.id, TargetRow.host, TargetRow.port, TargetRow.ip,
                       TargetRow.sni, TargetRow.starttls, ObservationRow.breaks_at,
                       _report_parts(type_coerce(func.coalesce(
                           ReportDocumentRow.body, ObservationRow.report), JSONDocument),
                           self.engine.dialect.name))
                .join(TargetRow, ObservationRow.target_id == TargetRow.id)
                .outerjoin(*_DOCUMENT)
                .where(and_(*where, ObservationRow.breaks_at.is_not(None)))
                .order_by(ObservationRow.breaks_at, ObservationRow.id))
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=MAX_LIMIT).execute(stmt)
            for oid, host, port, ip, sni, starttls, breaks_at, parts in result:
                report: dict[str, Any] = dict(zip(_PARTS, parts[:-1], strict=True))
                report["chain"] = [] if parts[-1] is None else [parts[-1]]
                yield CalendarRow(
                    observation_id=oid,
                    target=Target(host=host, port=port, ip=ip or None, sni=sni or None,
                                  starttls=starttls or None),
                    breaks_at=breaks_at, report=report)

    def alerts_sent(self, target_key: str, *, limit: int = 50) -> list[SentAlert]:
        """The newest ``limit`` outbox rows of ``target_key``, newest first (one walk of
        ``ix_outbox_target``)."""
        stmt = (select(OutboxRow.id, OutboxRow.created_at, OutboxRow.event, OutboxRow.step,
                       OutboxRow.channel, OutboxRow.status, OutboxRow.attempts,
                       OutboxRow.last_attempt_at, OutboxRow.delivered_at,
                       OutboxRow.last_error)
                .where(OutboxRow.target_key == target_key)
                .order_by(OutboxRow.id.desc()).limit(max(1, min(limit, MAX_LIMIT))))
        with self.engine.connect() as conn:
            return [SentAlert(id=i, created_at=at, event=event, step=step, channel=channel,
                              status=status, attempts=attempts, last_attempt_at=tried,
                              delivered_at=done, last_error=error)
                    for i, at, event, step, channel, status, attempts, tried, done, error
                    in conn.execute(stmt)]

    def counts(self, keys: Sequence[tuple[str, int]] | None = None) -> dict[str, int]:
        """Targets by the status of their newest observation."""
        where = self._where(Query(keys=None if keys is None else tuple(keys)))
        stmt = (select(ObservationRow.status, func.count())
                .join(TargetRow, ObservationRow.target_id == TargetRow.id)
                .outerjoin(*_DOCUMENT)
                .where(and_(*where)).group_by(ObservationRow.status))

        def compute() -> dict[str, int]:
            with self.engine.connect() as conn:
                return {status: int(n) for status, n in conn.execute(stmt)}

        return dict(self._cached("counts", None if keys is None else tuple(keys), compute))

    def last_observed(self) -> dt.datetime | None:
        """When the newest observation was made."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(ObservationRow.observed_at))).scalar_one()


__all__ = ["MAX_LIMIT", "CalendarRow", "Page", "Query", "SentAlert", "WebRepo", "WebRow"]
