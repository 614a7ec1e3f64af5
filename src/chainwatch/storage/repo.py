"""The repository: what the monitor writes and reads, in whole transactions.

::

    db = Database("postgresql+psycopg://chainwatch@db/chainwatch")   # or None: SQLite
    oid = db.record(observation, report)          # certs + target + observation, atomically
    for row in db.latest_per_target(): ...
    db.prune(older_than=timedelta(days=400))       # keeps every target's latest row
    db.close()

An observation is written with its certificates (inserted once, ever, by SHA-256),
its target (created on first sight), its served chain and its report document (each
stored once, then referred to) in ONE transaction: a crash
at any instant leaves either the whole observation or none of it. Values returned
are frozen dataclasses; timestamps are aware UTC.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, Select, and_, delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from chainwatch.model import Cert, Report, Status, Target, sha256_hex
from chainwatch.model.times import iso_or_none
from chainwatch.probe import Observation
from chainwatch.render.codec import report_json
from chainwatch.storage.db import (
    BEGIN_OPTION,
    make_engine,
    normalize_url,
    redacted,
    storage_error,
    upgrade,
)
from chainwatch.storage.models import (
    CertificateRow,
    ChainCertRow,
    ChainRow,
    HeartbeatRow,
    ObservationRow,
    ReportDocumentRow,
    ReportSeriesRow,
    TargetRow,
)
from chainwatch.storage.series import series_of

UTC = dt.UTC
DEFAULT_BATCH = 500
_IN_CHUNK = 500  # ids per IN (...) list: far below every backend's parameter limit
_PARSED_MAX = 50_000  # parsed certificates a Database keeps (a few KiB each)


@dataclass(frozen=True)
class StoredCertificate:
    """A certificate as stored. ``subject``/``issuer``/dates are ``None`` when the
    served bytes did not parse."""

    sha256: str
    der: bytes = field(repr=False)
    subject: str | None
    issuer: str | None
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    first_seen: dt.datetime

    def cert(self) -> Cert:
        """The parsed certificate (raises ``ValueError`` for unparsable DER)."""
        return Cert.from_der(self.der)


@dataclass(frozen=True)
class StoredObservation:
    """One stored probe result.

    Attributes:
        id: the row id (increasing in write order).
        target: the endpoint probed (``ip`` is the address connected to, if known).
        observed_at / status / breaks_at / days_left: as in the report.
        leaf_sha256: the served leaf, ``None`` when the probe failed.
        chain: SHA-256 of each served certificate, in served order.
        tls_version / cipher / ocsp_staple / failure / message / elapsed: the probe's facts.
        findings: the finding codes of the report, in report order.
        report: the schema-1 report JSON, with its ``target``.
    """

    id: int
    target: Target
    observed_at: dt.datetime
    status: Status
    breaks_at: dt.datetime | None
    days_left: int | None
    leaf_sha256: str | None
    chain: tuple[str, ...]
    tls_version: str | None
    cipher: str | None
    failure: str | None
    message: str | None
    elapsed: float
    findings: tuple[str, ...]
    report: Mapping[str, Any] = field(repr=False, compare=False)
    ocsp_staple: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Heartbeat:
    """The last sign of life of a component."""

    component: str
    last_beat: dt.datetime
    info: Mapping[str, Any]


@dataclass(frozen=True)
class LatestLeaf:
    """A target's newest observation that served a certificate (see
    :meth:`Database.latest_leaves`); its report is :meth:`Database.reports_of` its
    ``observation_id``."""

    target: Target
    leaf_sha256: str
    observed_at: dt.datetime
    observation_id: int


TargetKey = tuple[str, int, str, str, str]


def _target_key(t: Target) -> TargetKey:
    """A :class:`Target` as the ``targets`` table's unique columns hold it (host in
    lower case, absent fields as empty strings); :func:`_target` reads a row back."""
    return (t.host.lower(), t.port, t.ip or "", t.sni or "", t.starttls or "")


def _target(row: TargetRow) -> Target:
    return Target(
        host=row.host,
        port=row.port,
        ip=row.ip or None,
        sni=row.sni or None,
        starttls=row.starttls or None,
    )


_PER_SCAN = ("evaluated_at", "days_left")
"""The report fields that change from scan to scan with nothing served changing: kept on
the observation row, not in the stored document."""
_KNOWN_DOCS_MAX = 200_000  # document ids a Database remembers (one per target and change)


def _document(report: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(SHA-256 of its canonical JSON, body): the report without its per-scan fields."""
    body = {k: v for k, v in report.items() if k not in _PER_SCAN}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest(), body


def _whole_report(body: Mapping[str, Any], evaluated_at: dt.datetime | None,
                  days_left: int | None) -> dict[str, Any]:
    """The schema-1 report a document and its observation's per-scan fields make, in the
    order :func:`~chainwatch.render.codec.report_json` gives."""
    whole = {**body, "evaluated_at": iso_or_none(evaluated_at), "days_left": days_left}
    # PostgreSQL's jsonb keeps keys in its own order: the report's is restored.
    out = {key: whole.pop(key) for key in _REPORT_KEYS if key in whole}
    out.update(whole)
    return out


_REPORT_KEYS = ("schema", "status", "evaluated_at", "host", "breaks_at", "days_left", "chain",
                "profiles", "findings", "target")


REPORT_COLUMNS = (ObservationRow.report, ReportDocumentRow.body, ObservationRow.evaluated_at,
                  ObservationRow.days_left)
"""What a query selects to read an observation's report back (with
``.outerjoin(ReportDocumentRow, ReportDocumentRow.id == ObservationRow.document_id)``);
:func:`stored_report` makes the report of those four values."""


def stored_report(report: Mapping[str, Any] | None, body: Mapping[str, Any] | None,
                  evaluated_at: dt.datetime | None, days_left: int | None) -> Mapping[str, Any]:
    """The schema-1 report of an observation from its :data:`REPORT_COLUMNS`: its own
    ``report`` (rows written before report documents) or its document with the per-scan
    fields."""
    if body is None:
        return report or {}
    return _whole_report(body, evaluated_at, days_left)


def chain_key(shas: Sequence[str]) -> str:
    """The key a served chain is stored under (``chains.sha256``): the SHA-256 of its
    certificates' SHA-256s in served order. Migration 0010 keys existing chains alike."""
    return hashlib.sha256(",".join(shas).encode("ascii")).hexdigest()


def _report_of(row: ObservationRow) -> Mapping[str, Any]:
    if row.document_id is None or row.document is None:
        return row.report
    return _whole_report(row.document.body, row.evaluated_at, row.days_left)


def _stored(row: ObservationRow) -> StoredObservation:
    return StoredObservation(
        id=row.id,
        target=_target(row.target),
        observed_at=row.observed_at,
        status=Status(row.status),
        breaks_at=row.breaks_at,
        days_left=row.days_left,
        leaf_sha256=row.leaf_sha256,
        chain=() if row.chain is None else tuple(c.sha256 for c in row.chain.certs),
        tls_version=row.tls_version,
        cipher=row.cipher,
        failure=row.failure,
        message=row.message,
        elapsed=row.elapsed,
        findings=tuple(row.findings),
        report=_report_of(row),
        ocsp_staple=row.ocsp_staple,
    )


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware, got {value.isoformat()}")
    return value.astimezone(UTC)


def _cert_row(der: bytes, sha256: str, seen: dt.datetime, cert: Cert | None = None
              ) -> dict[str, Any]:
    """A certificate's row; ``cert``: the certificate already parsed (a report's chain),
    else it is parsed here."""
    try:
        cert = cert if cert is not None else Cert.from_der(der)
    except ValueError:
        return {"sha256": sha256, "der": der, "subject": None, "issuer": None,
                "not_before": None, "not_after": None, "first_seen": seen, "serial": None}
    return {"sha256": sha256, "der": der, "subject": cert.subject, "issuer": cert.issuer,
            "not_before": cert.not_before, "not_after": cert.not_after, "first_seen": seen,
            "serial": format(cert.parsed.serial_number, "x")}


class Database:
    """chainwatch's store: SQLite (default, a file in the user's data directory) or
    PostgreSQL (``postgresql+psycopg://...``). Opening migrates the schema to head.

    Thread-safe: every method checks a connection out of the engine's pool for the
    duration of one transaction. Use one ``Database`` per process.
    """

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        self.url = normalize_url(url)
        self.engine: Engine = make_engine(self.url)
        self._insert = postgresql.insert if self.engine.dialect.name == "postgresql" else (
            sqlite.insert
        )
        if migrate:
            try:
                upgrade(self.engine)
            except (SQLAlchemyError, OSError, ImportError) as exc:
                self.engine.dispose()
                raise storage_error(self.url, exc) from None
        # Only facts that a rollback cannot undo are cached: rows known to be committed.
        # Certificates, chains and targets are never deleted: those caches never go stale.
        self._known_certs: set[str] = set()
        self._known_docs: dict[str, int] = {}  # document sha256 -> id, committed ones only
        self._known_chains: dict[str, int] = {}  # chain key -> id, committed ones only
        self._target_ids: dict[TargetKey, int] = {}
        self._parsed: dict[str, Cert] = {}  # certificates never change: safe to keep

    def __repr__(self) -> str:
        return f"Database({redacted(self.url)!r})"

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close; a database failure inside the block leaves it as a one-line
        :class:`StorageError` naming the (redacted) URL."""
        self.close()
        if isinstance(exc, SQLAlchemyError):
            raise storage_error(self.url, exc) from exc

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                yield conn

    # -- writing ----------------------------------------------------------------------------

    def record(self, observation: Observation, report: Report) -> int:
        """Store one observation and its report in one transaction; returns its id."""
        return self.record_many([(observation, report)])[0]

    def record_many(
        self,
        items: Iterable[tuple[Observation, Report]],
        *,
        batch_size: int = DEFAULT_BATCH,
        slot: str | None = None,
    ) -> list[int]:
        """Store many observations, one transaction per ``batch_size`` of them; returns
        their ids in input order. A failure rolls back the batch it happened in only.

        With ``slot`` (a distributed batch's scan slot) the writes are idempotent: an
        observation of a target that already has one for that slot is not inserted
        (insert-or-ignore on the unique (target, slot) index; the id returned is the
        stored one), so a batch redelivered after a worker died duplicates nothing."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        ids: list[int] = []
        iterator = iter(items)
        while batch := list(itertools.islice(iterator, batch_size)):
            try:
                ids.extend(self._write_batch(batch, slot))
            except IntegrityError:
                # A document id remembered from an earlier batch may have been pruned since
                # (by this or another process): forget them all and look them up again.
                self._known_docs.clear()
                self._known_chains.clear()
                ids.extend(self._write_batch(batch, slot))
        return ids

    def _write_batch(self, batch: Sequence[tuple[Observation, Report]],
                     slot: str | None = None) -> list[int]:
        rows: list[dict[str, Any]] = []
        chain_keys: list[str | None] = []
        chains: dict[str, list[str]] = {}  # chain key -> certificate SHA-256s, served order
        unknown: dict[str, tuple[bytes, dt.datetime]] = {}  # not yet known to be stored
        # The reports' chains, parsed already: a new certificate's row is made from them,
        # not from its DER parsed again (a large scan's leaves have long left the parse
        # table by the time they are stored).
        parsed: dict[str, Cert] = {}
        doc_shas: list[str] = []
        doc_bodies: dict[str, dict[str, Any]] = {}
        for observation, report in batch:
            observed_at = _aware(observation.observed_at, "observed_at")
            shas: list[str] = []
            for der in observation.chain:
                sha = sha256_hex(der)
                shas.append(sha)
                if sha not in self._known_certs and sha not in unknown:
                    unknown[sha] = (der, observed_at)
                    parsed.update((c.sha256, c) for c in report.chain if c.sha256 == sha)
            served = chain_key(shas) if shas else None
            chain_keys.append(served)
            if served is not None:
                chains.setdefault(served, shas)
            if report.target is None:
                report = report.with_target(observation.target)
            rows.append({
                "target_id": 0,  # filled in below
                "observed_at": observed_at,
                "status": report.status.value,
                "breaks_at": report.breaks_at,
                "days_left": report.days_left,
                "leaf_sha256": shas[0] if shas else None,
                "tls_version": observation.tls_version,
                "cipher": observation.cipher,
                "ocsp_staple": observation.ocsp_staple,
                "failure": None if observation.failure is None else observation.failure.value,
                "message": observation.message,
                "elapsed": float(observation.elapsed),
                "findings": [f.code.value for f in report.findings],
                "report": {},
                "evaluated_at": report.evaluated_at,
                "slot": slot,
            })
            sha, body = _document(report_json(report))
            doc_shas.append(sha)
            doc_bodies.setdefault(sha, body)
        keys = [_target_key(observation.target) for observation, _ in batch]
        with self._write() as conn:
            # Certificates already stored (by another process, or before this one started)
            # are not parsed again just to be ignored by the insert.
            stored = self._stored_certs(conn, sorted(unknown))
            new_certs = {
                sha: _cert_row(der, sha, seen, parsed.get(sha))
                for sha, (der, seen) in unknown.items() if sha not in stored
            }
            # Rows are inserted in key order, so that concurrent writers on PostgreSQL
            # take their row locks in one order and cannot deadlock.
            if new_certs:
                conn.execute(
                    self._insert(CertificateRow).on_conflict_do_nothing(
                        index_elements=["sha256"]
                    ),
                    [new_certs[sha] for sha in sorted(new_certs)],
                )
            target_ids = self._target_ids_for(conn, keys)
            doc_ids = self._document_ids_for(conn, doc_bodies)
            chain_ids = self._chain_ids_for(conn, chains)
            for row, key, sha, chain in zip(rows, keys, doc_shas, chain_keys, strict=True):
                row["target_id"] = target_ids[key]
                row["document_id"] = doc_ids[sha]
                row["chain_id"] = None if chain is None else chain_ids[chain]
            if slot is None:
                ids = self._insert_observations(conn, rows)
            else:
                ids = self._insert_slotted(conn, rows)
        self._known_certs.update(unknown)
        self._target_ids.update(target_ids)
        self._known_chains.update(chain_ids)
        if len(self._known_docs) + len(doc_ids) > _KNOWN_DOCS_MAX:
            self._known_docs.clear()
        self._known_docs.update(doc_ids)
        return ids

    def _document_ids_for(self, conn: Connection, bodies: Mapping[str, dict[str, Any]]
                          ) -> dict[str, int]:
        """The id of each document (by sha256), stored now if it was not: a steady scan
        reads its documents' ids back (one indexed look-up per 500) and writes none."""
        ids = {sha: self._known_docs[sha] for sha in bodies if sha in self._known_docs}
        missing = sorted(sha for sha in bodies if sha not in ids)
        ids.update(self._stored_keys(conn, ReportDocumentRow, missing))
        new = [sha for sha in missing if sha not in ids]
        if new:
            conn.execute(
                self._insert(ReportDocumentRow).on_conflict_do_nothing(
                    index_elements=["sha256"]),
                [{"sha256": sha, "body": bodies[sha]} for sha in new],
            )
            stored = self._stored_keys(conn, ReportDocumentRow, new)
            ids.update(stored)
            # What /metrics reads of them (chainwatch.storage.series), once per document.
            conn.execute(
                self._insert(ReportSeriesRow).on_conflict_do_nothing(
                    index_elements=["document_id"]),
                [{"document_id": stored[sha], "series": series_of(bodies[sha])}
                 for sha in sorted(stored)])
        return ids

    def _chain_ids_for(self, conn: Connection, chains: Mapping[str, Sequence[str]]
                       ) -> dict[str, int]:
        """The id of each served chain (by :func:`chain_key`), stored now with its
        certificates if it was not: a steady scan reads back at most one indexed look-up
        per 500 chains (none in a process that stored or met them before) and writes
        none. A chain row and its ``chain_certs`` are inserted in one transaction; a
        concurrent writer of the same chain inserts nothing (both are insert-or-ignore,
        and the key fixes the content)."""
        ids = {key: self._known_chains[key] for key in chains if key in self._known_chains}
        missing = sorted(key for key in chains if key not in ids)
        ids.update(self._stored_keys(conn, ChainRow, missing))
        new = [key for key in missing if key not in ids]
        if new:
            conn.execute(self._insert(ChainRow).on_conflict_do_nothing(
                index_elements=["sha256"]), [{"sha256": key} for key in new])
            created = self._stored_keys(conn, ChainRow, new)
            conn.execute(
                self._insert(ChainCertRow).on_conflict_do_nothing(
                    index_elements=["chain_id", "position"]),
                [{"chain_id": created[key], "position": pos, "sha256": sha}
                 for key in sorted(new, key=created.__getitem__)
                 for pos, sha in enumerate(chains[key])],
            )
            ids.update(created)
        return ids

    @staticmethod
    def _stored_keys(conn: Connection, table: type[ChainRow] | type[ReportDocumentRow],
                     shas: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(shas), _IN_CHUNK):
            found.update((sha, int(oid)) for sha, oid in conn.execute(
                select(table.sha256, table.id)
                .where(table.sha256.in_(shas[start : start + _IN_CHUNK]))))
        return found

    @staticmethod
    def _stored_certs(conn: Connection, shas: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(shas), _IN_CHUNK):
            found.update(conn.execute(
                select(CertificateRow.sha256)
                .where(CertificateRow.sha256.in_(shas[start : start + _IN_CHUNK]))
            ).scalars())
        return found

    def _insert_observations(self, conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
        """Insert observation rows; their ids in input order."""
        if self.engine.dialect.name == "sqlite":
            # RETURNING in parameter order makes SQLAlchemy insert SQLite rows one
            # statement at a time. The batch's transaction holds SQLite's write lock
            # (BEGIN IMMEDIATE), so the next ids are ours to assign: one executemany.
            last = conn.execute(select(func.max(ObservationRow.id))).scalar_one()
            first = (last or 0) + 1
            ids = list(range(first, first + len(rows)))
            conn.execute(self._insert(ObservationRow),
                         [{**row, "id": oid} for row, oid in zip(rows, ids, strict=True)])
            return ids
        # PostgreSQL: ids drawn from the column's own sequence (safe with concurrent
        # writers), then a plain executemany. INSERT ... RETURNING would send one huge
        # multi-row statement per page that the driver re-parses every time.
        drawn = conn.execute(
            text("SELECT nextval(pg_get_serial_sequence('observations', 'id')) "
                 "FROM generate_series(1, :n)"),
            {"n": len(rows)},
        ).scalars().all()
        ids = sorted(int(i) for i in drawn)
        conn.execute(self._insert(ObservationRow),
                     [{**row, "id": oid} for row, oid in zip(rows, ids, strict=True)])
        return ids

    def _insert_slotted(self, conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
        """Insert-or-ignore on (target, slot), one row per statement: the ids of the rows
        (stored before, or now). On PostgreSQL a second writer of the same (target, slot)
        waits on the unique index for the first one's transaction, then inserts nothing."""
        ids: list[int] = []
        for row in rows:
            stmt = (self._insert(ObservationRow).values(row)
                    .on_conflict_do_nothing(index_elements=["target_id", "slot"],
                                            index_where=ObservationRow.slot.is_not(None))
                    .returning(ObservationRow.id))
            new = conn.execute(stmt).scalar_one_or_none()
            if new is None:
                new = conn.execute(
                    select(ObservationRow.id).where(ObservationRow.target_id == row["target_id"],
                                                    ObservationRow.slot == row["slot"])
                ).scalar_one()
            ids.append(int(new))
        return ids

    def _target_ids_for(self, conn: Connection, keys: Sequence[TargetKey]) -> dict[TargetKey, int]:
        """The id of each target, created now if it was not stored. Those stored already
        (a new process's first batch meets thousands) are read first, so a steady scan
        inserts no target row and takes no row lock for one."""
        found = {k: self._target_ids[k] for k in keys if k in self._target_ids}
        missing = sorted(k for k in set(keys) if k not in found)
        if missing:
            found.update(self._stored_targets(conn, missing))
            new = [k for k in missing if k not in found]
            if new:
                conn.execute(
                    self._insert(TargetRow).on_conflict_do_nothing(
                        index_elements=["host", "port", "ip", "sni", "starttls"]
                    ),
                    [{"host": h, "port": p, "ip": ip, "sni": sni, "starttls": st}
                     for h, p, ip, sni, st in new],
                )
                found.update(self._stored_targets(conn, new))
            lost = set(missing) - found.keys()
            if lost:  # pragma: no cover - the insert above guarantees every row exists
                raise RuntimeError(f"targets vanished while being recorded: {sorted(lost)[:3]}")
        return found

    @staticmethod
    def _stored_targets(conn: Connection, keys: Sequence[TargetKey]) -> dict[TargetKey, int]:
        """One query per chunk of host names (the unique index leads with host), not one
        per target."""
        wanted = set(keys)
        hosts = sorted({key[0] for key in keys})
        found: dict[TargetKey, int] = {}
        for start in range(0, len(hosts), _IN_CHUNK):
            rows = conn.execute(
                select(TargetRow.id, TargetRow.host, TargetRow.port, TargetRow.ip,
                       TargetRow.sni, TargetRow.starttls)
                .where(TargetRow.host.in_(hosts[start : start + _IN_CHUNK]))
            )
            for target_id, *identity in rows:
                key = (identity[0], identity[1], identity[2], identity[3], identity[4])
                if key in wanted:
                    found[key] = int(target_id)
        return found

    def beat(
        self,
        component: str,
        info: Mapping[str, Any] | None = None,
        *,
        at: dt.datetime | None = None,
    ) -> None:
        """Record that ``component`` is alive (``at`` defaults to now)."""
        when = dt.datetime.now(UTC) if at is None else _aware(at, "at")
        values = {"component": component, "last_beat": when, "info": dict(info or {})}
        stmt = self._insert(HeartbeatRow).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["component"],
            set_={"last_beat": stmt.excluded.last_beat, "info": stmt.excluded.info},
        )
        with self._write() as conn:
            conn.execute(stmt)

    def prune(self, older_than: dt.timedelta, *, now: dt.datetime | None = None) -> int:
        """Delete observations older than ``older_than`` (before ``now``), except each
        target's latest one, and the report documents only they referred to.
        Certificates and targets are kept. Returns the observations deleted."""
        if older_than < dt.timedelta(0):
            raise ValueError("older_than must not be negative")
        cutoff = (dt.datetime.now(UTC) if now is None else _aware(now, "now")) - older_than
        stmt = delete(ObservationRow).where(
            ObservationRow.observed_at < cutoff,
            ObservationRow.id.not_in(self._latest_ids()),
        )
        referred = select(ObservationRow.id).where(
            ObservationRow.document_id == ReportDocumentRow.id).exists()
        with self._write() as conn:
            result = conn.execute(stmt)
            # Report documents no observation refers to any more go with them (the
            # observations kept, each target's latest among them, keep theirs).
            conn.execute(delete(ReportDocumentRow).where(~referred))
        self._known_docs.clear()
        return int(result.rowcount)

    # -- reading ----------------------------------------------------------------------------

    @staticmethod
    def _latest_ids() -> Select[int]:
        """The id of every target's newest observation (one index seek per target)."""
        newer = (
            select(ObservationRow.id)
            .where(ObservationRow.target_id == TargetRow.id)
            .order_by(ObservationRow.observed_at.desc(), ObservationRow.id.desc())
            .limit(1)
            .correlate(TargetRow)
            .scalar_subquery()
        )
        return select(newer).select_from(TargetRow)

    def _observations(self, stmt: Select[ObservationRow]) -> list[StoredObservation]:
        with Session(self.engine) as session:
            return [_stored(row) for row in session.scalars(stmt).unique()]

    def latest_per_target(self) -> list[StoredObservation]:
        """Every target's newest observation, ordered by host, port, ip, sni, starttls."""
        stmt = (
            select(ObservationRow)
            .join(ObservationRow.target)
            .where(ObservationRow.id.in_(self._latest_ids()))
            .order_by(TargetRow.host, TargetRow.port, TargetRow.ip, TargetRow.sni,
                      TargetRow.starttls)
        )
        return self._observations(stmt)

    def latest_leaves(self) -> list[LatestLeaf]:
        """Every target's newest observation that served a certificate, reduced to what
        change tracking compares first (leaf, time). One Core query: no ORM objects, no
        chain rows and no report documents (a scan needs the report only where the leaf
        changed: :meth:`reports_of`), so reading back 10,000 targets before each scan
        stays cheap."""
        newest = (
            select(ObservationRow.id)
            .where(ObservationRow.target_id == TargetRow.id,
                   ObservationRow.leaf_sha256.is_not(None))
            .order_by(ObservationRow.observed_at.desc(), ObservationRow.id.desc())
            .limit(1)
            .correlate(TargetRow)
            .scalar_subquery()
        )
        # "id IN (one newest id per target)": computed once, then one primary-key lookup
        # each. (A join ON id = the correlated subquery let SQLite walk every observation.)
        stmt = (
            select(TargetRow.host, TargetRow.port, TargetRow.ip, TargetRow.sni,
                   TargetRow.starttls, ObservationRow.leaf_sha256,
                   ObservationRow.observed_at, ObservationRow.id)
            .join(ObservationRow, ObservationRow.target_id == TargetRow.id)
            .where(ObservationRow.id.in_(select(newest).select_from(TargetRow)))
        )
        with self.engine.connect() as conn:
            return [
                LatestLeaf(
                    target=Target(host=host, port=port, ip=ip or None, sni=sni or None,
                                  starttls=starttls or None),
                    leaf_sha256=leaf, observed_at=observed_at, observation_id=oid,
                )
                for host, port, ip, sni, starttls, leaf, observed_at, oid in conn.execute(stmt)
                if leaf is not None  # the subquery only picks observations with a leaf
            ]

    def reports_of(self, observation_ids: Iterable[int]) -> dict[int, Mapping[str, Any]]:
        """The stored schema-1 report of each observation id (ids not stored are left out)."""
        ids = sorted(set(observation_ids))
        out: dict[int, Mapping[str, Any]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                for oid, *columns in conn.execute(
                    select(ObservationRow.id, *REPORT_COLUMNS)
                    .outerjoin(ReportDocumentRow,
                               ReportDocumentRow.id == ObservationRow.document_id)
                    .where(ObservationRow.id.in_(chunk))
                ):
                    out[oid] = stored_report(*columns)
        return out

    def history(
        self, host: str, port: int | None = None, *, limit: int | None = 100
    ) -> list[StoredObservation]:
        """Observations of every target with this host (and port), newest first."""
        where = [TargetRow.host == host.lower()]
        if port is not None:
            where.append(TargetRow.port == port)
        stmt = (
            select(ObservationRow)
            .join(ObservationRow.target)
            .where(and_(*where))
            .order_by(ObservationRow.observed_at.desc(), ObservationRow.id.desc())
            .limit(limit)
        )
        return self._observations(stmt)

    def observations_for(
        self, target: Target, *, limit: int | None = None
    ) -> list[StoredObservation]:
        """Observations of exactly ``target``, newest first."""
        host, port, ip, sni, starttls = _target_key(target)
        stmt = (
            select(ObservationRow)
            .join(ObservationRow.target)
            .where(
                TargetRow.host == host,
                TargetRow.port == port,
                TargetRow.ip == ip,
                TargetRow.sni == sni,
                TargetRow.starttls == starttls,
            )
            .order_by(ObservationRow.observed_at.desc(), ObservationRow.id.desc())
            .limit(limit)
        )
        return self._observations(stmt)

    def targets(self) -> list[Target]:
        """Every target ever observed."""
        with Session(self.engine) as session:
            rows = session.scalars(
                select(TargetRow).order_by(TargetRow.host, TargetRow.port, TargetRow.id)
            )
            return [_target(row) for row in rows]

    def parsed_certificates(self, shas: Iterable[str]) -> dict[str, Cert]:
        """The stored certificates among ``shas``, parsed (those that do not parse are left
        out). Parsed ones are kept in this process, up to :data:`_PARSED_MAX`."""
        wanted = sorted(set(shas))
        out = {sha: self._parsed[sha] for sha in wanted if sha in self._parsed}
        missing = [sha for sha in wanted if sha not in out]
        if missing:
            if len(self._parsed) + len(missing) > _PARSED_MAX:
                self._parsed.clear()
            with self.engine.connect() as conn:
                for start in range(0, len(missing), _IN_CHUNK):
                    rows = conn.execute(
                        select(CertificateRow.sha256, CertificateRow.der)
                        .where(CertificateRow.sha256.in_(missing[start : start + _IN_CHUNK]))
                    )
                    for sha, der in rows:
                        try:
                            cert = Cert.from_der(der)
                        except ValueError:
                            continue
                        self._parsed[sha] = out[sha] = cert
        return out

    def certificate(self, sha256: str) -> StoredCertificate | None:
        with Session(self.engine) as session:
            row = session.get(CertificateRow, sha256.lower())
            if row is None:
                return None
            return StoredCertificate(
                sha256=row.sha256,
                der=row.der,
                subject=row.subject,
                issuer=row.issuer,
                not_before=row.not_before,
                not_after=row.not_after,
                first_seen=row.first_seen,
            )

    def last_beat(self, component: str) -> Heartbeat | None:
        with Session(self.engine) as session:
            row = session.get(HeartbeatRow, component)
            if row is None:
                return None
            return Heartbeat(row.component, row.last_beat, dict(row.info))

    def count_observations(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ObservationRow)).scalar_one())
