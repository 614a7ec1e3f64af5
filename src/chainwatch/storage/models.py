"""The database schema as typed SQLAlchemy ORM classes (the migrations create it).

Timestamps are timezone-aware UTC in Python on every backend: PostgreSQL stores
``timestamptz``; SQLite, which has no time zones, stores naive UTC, converted on the
way in and out by :class:`UTCDateTime`. A naive datetime is refused, never guessed.

``targets`` stores "absent" ``ip``/``sni``/``starttls`` as the empty string, not
NULL: SQL unique constraints treat NULLs as distinct, and a target must be one row.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

UTC = dt.UTC


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out; naive UTC at rest on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: chainwatch stores aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):  # pragma: no cover - drivers return datetimes
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONDocument = JSON().with_variant(JSONB(), "postgresql")
"""JSON text on SQLite, ``jsonb`` on PostgreSQL."""

RowId = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit ids; SQLite only auto-increments a column declared ``INTEGER PRIMARY KEY``."""


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime()}


class CertificateRow(Base):
    """Every certificate ever seen, once, by SHA-256 of its DER. ``subject``, ``issuer``
    and the dates are NULL when a server sent bytes that do not parse."""

    __tablename__ = "certificates"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str | None] = mapped_column(Text)
    issuer: Mapped[str | None] = mapped_column(Text)
    not_before: Mapped[dt.datetime | None]
    not_after: Mapped[dt.datetime | None] = mapped_column(index=True)
    first_seen: Mapped[dt.datetime]
    serial: Mapped[str | None] = mapped_column(String(64))
    """The serial number in lower-case hex (migration ``0003``)."""


class TargetRow(Base):
    """An endpoint as probed: host, port and the address actually connected to."""

    __tablename__ = "targets"
    __table_args__ = (
        UniqueConstraint("host", "port", "ip", "sni", "starttls", name="uq_targets_identity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    ip: Mapped[str] = mapped_column(String(64), default="")
    sni: Mapped[str] = mapped_column(String(255), default="")
    starttls: Mapped[str] = mapped_column(String(16), default="")


class ReportDocumentRow(Base):
    """A report document without its per-scan fields (``evaluated_at``, ``days_left``,
    which stay on the observation), stored once by SHA-256 of its canonical JSON: a
    steady scan refers to the document its target's previous observation stored."""

    __tablename__ = "report_documents"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSONDocument)


class ReportSeriesRow(Base):
    """What ``/metrics`` needs of a report document (:mod:`chainwatch.storage.series`),
    written with it (migration ``0009``). A table of its own, a few dozen bytes a row:
    reading it beside each target's newest observation does not touch the documents'
    pages. Deleted with its document."""

    __tablename__ = "report_series"

    document_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("report_documents.id", ondelete="CASCADE"), primary_key=True)
    series: Mapped[str] = mapped_column(Text)


class ObservationRow(Base):
    """One probe of one target and its analysis: the raw facts, the verdict columns
    that queries need, and the whole schema-1 report as JSON."""

    __tablename__ = "observations"
    __table_args__ = (
        Index("ix_observations_target_time", "target_id", "observed_at", "id"),
        Index("ix_observations_observed_at", "observed_at"),
        Index("uq_observations_target_slot", "target_id", "slot", unique=True,
              sqlite_where=text("slot IS NOT NULL"),
              postgresql_where=text("slot IS NOT NULL")),  # partial: migration 0010
        Index("ix_observations_breaks_at", "breaks_at", "id"),  # migration 0005
        Index("ix_observations_document", "document_id"),  # migration 0007
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"))
    observed_at: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(16))
    breaks_at: Mapped[dt.datetime | None]
    days_left: Mapped[int | None] = mapped_column(Integer)
    leaf_sha256: Mapped[str | None] = mapped_column(ForeignKey("certificates.sha256"))
    tls_version: Mapped[str | None] = mapped_column(String(32))
    cipher: Mapped[str | None] = mapped_column(String(128))
    ocsp_staple: Mapped[bytes | None] = mapped_column(LargeBinary)
    failure: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)
    elapsed: Mapped[float] = mapped_column(Float, default=0.0)
    findings: Mapped[list[str]] = mapped_column(JSONDocument)
    report: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    """The whole schema-1 report for rows written before revision 0006; ``{}`` when
    ``document_id`` refers to it."""
    slot: Mapped[str | None] = mapped_column(String(32), default=None)
    """The scan slot of a distributed batch (``None`` otherwise): (target, slot) is unique,
    so a batch delivered twice stores each observation once."""
    document_id: Mapped[int | None] = mapped_column(RowId, ForeignKey("report_documents.id"))
    evaluated_at: Mapped[dt.datetime | None]
    chain_id: Mapped[int | None] = mapped_column(RowId, ForeignKey("chains.id"))
    """The served chain (migration 0010); ``None`` when nothing was served."""

    target: Mapped[TargetRow] = relationship(lazy="joined", innerjoin=True)
    document: Mapped[ReportDocumentRow | None] = relationship(lazy="selectin")
    chain: Mapped[ChainRow | None] = relationship(lazy="selectin")


class ChainRow(Base):
    """A served chain, stored once (migration 0010) by the SHA-256 of its certificates'
    SHA-256s in served order (:func:`chainwatch.storage.repo.chain_key`): a steady scan's
    observation refers to the chain its target served before. Like certificates, chains
    are never deleted."""

    __tablename__ = "chains"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)

    certs: Mapped[list[ChainCertRow]] = relationship(
        order_by="ChainCertRow.position", lazy="selectin"
    )


class ChainCertRow(Base):
    """The certificates of a chain, in served order (``position`` 0 = leaf)."""

    __tablename__ = "chain_certs"
    __table_args__ = (Index("ix_chain_certs_sha256", "sha256"),)

    chain_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("chains.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("certificates.sha256"))


class HeartbeatRow(Base):
    """The last sign of life of each component (scheduler, worker@zone, web...)."""

    __tablename__ = "heartbeats"

    component: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_beat: Mapped[dt.datetime]
    info: Mapped[dict[str, Any]] = mapped_column(JSONDocument)


class MonitorCounterRow(Base):
    """A counter of the monitor itself (migration ``0003``), only ever increased:
    ``scan_duration_seconds`` buckets, sum and count, ``probe_failures`` by reason.
    ``labels`` is the series' label text (``le=5``, ``reason=timeout``; empty for none)."""

    __tablename__ = "monitor_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    labels: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
class BatchRow(Base):
    """A batch of endpoints the distributed scheduler put on a zone's queue: dispatched,
    then done (by which worker, how many observations, worst status), then evaluated
    (cross-zone tracking and alerts, in the scheduler)."""

    __tablename__ = "batches"
    __table_args__ = (
        Index("ix_batches_zone_done", "zone", "done_at"),
        Index("ix_batches_evaluated", "evaluated_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    zone: Mapped[str] = mapped_column(String(64))
    queue: Mapped[str] = mapped_column(String(128))
    slot: Mapped[str] = mapped_column(String(32))
    targets: Mapped[int] = mapped_column(Integer)
    dispatched_at: Mapped[dt.datetime]
    done_at: Mapped[dt.datetime | None]
    worker: Mapped[str | None] = mapped_column(String(255))
    observations: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(16))
    evaluated_at: Mapped[dt.datetime | None]


class CtNameRow(Base):
    """A name a Certificate Transparency import (``discover ct``) found (migration
    ``0008``): from which export it was last imported, and when first and last. Whether
    an endpoint covers it is decided when read, against the inventory in force."""

    __tablename__ = "ct_names"
    __table_args__ = (Index("ix_ct_names_last_seen", "last_seen"),)

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    first_seen: Mapped[dt.datetime]
    last_seen: Mapped[dt.datetime]
