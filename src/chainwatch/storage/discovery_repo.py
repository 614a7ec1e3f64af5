"""Certificate Transparency import results (table ``ct_names``, migration ``0008``).

::

    repo = DiscoveryRepo(db)
    repo.record_ct(["app.example.com", "*.example.com"], source="crtsh.json", at=now)
    repo.ct_import()        # the last import: when, from which export, how many names
    repo.ct_names()         # every name imported, with when first and last seen
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, insert, select, update

from chainwatch.storage.models import CtNameRow
from chainwatch.storage.repo import Database

_CHUNK = 500
MAX_NAME = 253  # a DNS name's longest text form


@dataclass(frozen=True)
class CtName:
    name: str
    source: str
    first_seen: dt.datetime
    last_seen: dt.datetime


@dataclass(frozen=True)
class CtImport:
    """The newest import: when, from which export, and the names it held."""

    at: dt.datetime
    source: str
    names: int


class DiscoveryRepo:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.engine = database.engine

    def record_ct(self, names: Iterable[str], *, source: str, at: dt.datetime) -> int:
        """Store the names one import found (a name seen before keeps its first
        sighting); returns how many were stored. Names longer than a DNS name can be
        are left out. One transaction."""
        unique = sorted({n for n in names if 0 < len(n) <= MAX_NAME})
        with self.database._write() as conn:
            for i in range(0, len(unique), _CHUNK):
                chunk = unique[i : i + _CHUNK]
                known = set(conn.execute(
                    select(CtNameRow.name).where(CtNameRow.name.in_(chunk))).scalars())
                if known:
                    conn.execute(update(CtNameRow).where(CtNameRow.name.in_(sorted(known)))
                                 .values(source=source, last_seen=at))
                fresh = [{"name": n, "source": source, "first_seen": at, "last_seen": at}
                         for n in chunk if n not in known]
                if fresh:
                    conn.execute(insert(CtNameRow), fresh)
        return len(unique)

    def ct_import(self) -> CtImport | None:
        """The newest import, or ``None`` when nothing was ever imported."""
        with self.engine.connect() as conn:
            last = conn.execute(select(func.max(CtNameRow.last_seen))).scalar_one()
            if last is None:
                return None
            source, n = conn.execute(
                select(func.min(CtNameRow.source), func.count())
                .where(CtNameRow.last_seen == last)).one()
        return CtImport(at=last, source=str(source), names=int(n))

    def ct_names(self) -> list[CtName]:
        """Every name imported, by name."""
        with self.engine.connect() as conn:
            return [CtName(name=name, source=source, first_seen=first, last_seen=last)
                    for name, source, first, last in conn.execute(
                        select(CtNameRow.name, CtNameRow.source, CtNameRow.first_seen,
                               CtNameRow.last_seen).order_by(CtNameRow.name))]


__all__ = ["CtImport", "CtName", "DiscoveryRepo"]
