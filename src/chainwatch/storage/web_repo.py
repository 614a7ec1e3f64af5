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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, and_, case, cast, func, or_, select, tuple_

from chainwatch.model import Target
from chainwatch.storage.models import ObservationRow, TargetRow
from chainwatch.storage.repo import Database

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
class Page:
    rows: tuple[WebRow, ...]
    total: int


def _latest() -> Any:
    return ObservationRow.id.in_(Database._latest_ids())


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
            where.append(cast(ObservationRow.report, String).like(f'%"profile": "{spec}"%'))
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

    def page(self, q: Query) -> Page:
        """One page of newest rows matching ``q``, by ``breaks_at`` (unknown first), then
        host, port and address; with the number of rows matching in all."""
        limit = max(1, min(q.limit, MAX_LIMIT))
        where = self._where(q)
        stmt = (
            select(ObservationRow.id, TargetRow.host, TargetRow.port, TargetRow.ip,
                   TargetRow.sni, TargetRow.starttls, ObservationRow.observed_at,
                   ObservationRow.status, ObservationRow.breaks_at, ObservationRow.days_left,
                   ObservationRow.leaf_sha256, ObservationRow.findings, ObservationRow.report)
            .join(TargetRow, ObservationRow.target_id == TargetRow.id)
            .where(and_(*where))
            .order_by(case((ObservationRow.breaks_at.is_(None), 0), else_=1),
                      ObservationRow.breaks_at, TargetRow.host, TargetRow.port, TargetRow.ip)
            .limit(limit)
            .offset(max(0, q.offset))
        )
        count = (select(func.count()).select_from(ObservationRow)
                 .join(TargetRow, ObservationRow.target_id == TargetRow.id)
                 .where(and_(*where)))
        with self.engine.connect() as conn:
            rows = tuple(
                WebRow(
                    observation_id=oid,
                    target=Target(host=host, port=port, ip=ip or None, sni=sni or None,
                                  starttls=starttls or None),
                    observed_at=observed_at, status=status, breaks_at=breaks_at,
                    days_left=days_left, leaf_sha256=leaf,
                    findings=tuple(findings or ()), report=report or {},
                )
                for (oid, host, port, ip, sni, starttls, observed_at, status, breaks_at,
                     days_left, leaf, findings, report) in conn.execute(stmt)
            )
            total = int(conn.execute(count).scalar_one())
        return Page(rows=rows, total=total)

    def counts(self, keys: Sequence[tuple[str, int]] | None = None) -> dict[str, int]:
        """Targets by the status of their newest observation."""
        where = self._where(Query(keys=None if keys is None else tuple(keys)))
        stmt = (select(ObservationRow.status, func.count())
                .join(TargetRow, ObservationRow.target_id == TargetRow.id)
                .where(and_(*where)).group_by(ObservationRow.status))
        with self.engine.connect() as conn:
            return {status: int(n) for status, n in conn.execute(stmt)}

    def last_observed(self) -> dt.datetime | None:
        """When the newest observation was made."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(ObservationRow.observed_at))).scalar_one()


__all__ = ["MAX_LIMIT", "Page", "Query", "WebRepo", "WebRow"]
