"""Alert persistence: each target's escalation state, the delivery outbox and the
acknowledgement history (tables of migration ``0002``).

::

    repo = AlertsRepo(db)
    with repo.transaction() as tx:              # one write transaction
        states = tx.states(["www.example.com:443"], at=at)  # locked until commit
        tx.save_state(new_record, at)
        tx.enqueue([NewOutboxRow(...)])         # insert-if-absent by idempotency key
    for item in repo.due(now): ...              # pending rows whose time has come
    if repo.claim(item, lease_until): ...       # one sender per row at a time
    repo.mark_delivered(item.id, now)

Nothing stored here holds a secret: outbox payloads are the channel-neutral message,
and channel credentials are resolved from the inventory only when sending. Errors
are stored as the caller hands them over, already redacted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from chainwatch.errors import ChainwatchError
from chainwatch.model.alerts import Event, StepId
from chainwatch.storage.models import Base, JSONDocument, RowId
from chainwatch.storage.repo import Database

UTC = dt.UTC
_IN_CHUNK = 500


class OutboxStatus(StrEnum):
    """Where an outbox row is: waiting (and perhaps retrying), sent, or given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


# -- ORM ------------------------------------------------------------------------------------


class AlertStateRow(Base):
    """One target's :class:`~chainwatch.alerts.escalation.AlertState`. ``fired`` maps step id to
    the ISO instant it last fired in the current cycle."""

    __tablename__ = "alert_state"

    target_key: Mapped[str] = mapped_column(String(512), primary_key=True)
    cycle: Mapped[str | None] = mapped_column(String(128))
    fired: Mapped[dict[str, str]] = mapped_column(JSONDocument)
    open: Mapped[bool] = mapped_column(Boolean)
    current: Mapped[str | None] = mapped_column(String(64))
    ack_step: Mapped[str | None] = mapped_column(String(64))
    ack_until: Mapped[dt.datetime | None]
    ack_by: Mapped[str | None] = mapped_column(String(255))
    ack_why: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime]


class OutboxRow(Base):
    """One message for one channel. ``idempotency_key`` (unique) is a digest of
    dedup key, event, step, the instant it fired and the channel: enqueueing the same
    alert twice inserts it once."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_channel_dedup", "channel", "dedup_key", "id"),
        Index("ix_outbox_target", "target_key", "id"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime]
    target_key: Mapped[str] = mapped_column(String(512))
    event: Mapped[str] = mapped_column(String(16))
    step: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(128))
    dedup_key: Mapped[str] = mapped_column(String(600))
    idempotency_key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[dt.datetime]
    last_attempt_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[dt.datetime | None]


class AckRow(Base):
    """Every acknowledgement ever made (the state keeps only the one in force)."""

    __tablename__ = "acks"
    __table_args__ = (Index("ix_acks_target", "target_key", "created_at"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    target_key: Mapped[str] = mapped_column(String(512))
    step: Mapped[str] = mapped_column(String(64))
    until: Mapped[dt.datetime]
    acked_by: Mapped[str] = mapped_column(String(255))
    why: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime]


# -- values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewOutboxRow:
    """A message to enqueue (see :class:`OutboxRow` for the fields)."""

    created_at: dt.datetime
    target_key: str
    event: Event
    step: StepId
    channel: str
    dedup_key: str
    idempotency_key: str
    payload: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class OutboxItem:
    """A stored outbox row.

    Attributes:
        id: increasing in enqueue order; rows of one channel and dedup key are sent in it.
        payload: the channel-neutral message (DESIGN.md webhook payload without ``sent_at``).
        status / attempts / next_attempt_at / last_attempt_at / last_error / delivered_at:
            the delivery history; ``last_error`` is redacted.
    """

    id: int
    created_at: dt.datetime
    target_key: str
    event: Event
    step: StepId
    channel: str
    dedup_key: str
    idempotency_key: str
    payload: Mapping[str, Any] = field(repr=False)
    status: OutboxStatus
    attempts: int
    next_attempt_at: dt.datetime
    last_attempt_at: dt.datetime | None
    last_error: str | None
    delivered_at: dt.datetime | None


@dataclass(frozen=True)
class StoredAck:
    """One acknowledgement from the history."""

    id: int
    target_key: str
    step: StepId
    until: dt.datetime
    by: str
    why: str
    created_at: dt.datetime


@dataclass(frozen=True)
class StateRecord:
    """A target's escalation state as stored (the service layer maps it to and from
    :class:`chainwatch.alerts.escalation.AlertState`).

    Attributes:
        target_key: the target's alerting identity.
        cycle: the renewal cycle being counted down.
        fired: (step id, when it last fired in this cycle), sorted by step id.
        open: something fired that is not resolved yet.
        current: the step current at the last evaluation.
        ack_step / ack_until / ack_by / ack_why: the acknowledgement in force, if any.
        updated_at: when the row was last written (``None`` before it is stored).
    """

    target_key: str
    cycle: str | None = None
    fired: tuple[tuple[StepId, dt.datetime], ...] = ()
    open: bool = False
    current: StepId | None = None
    ack_step: StepId | None = None
    ack_until: dt.datetime | None = None
    ack_by: str | None = None
    ack_why: str | None = None
    updated_at: dt.datetime | None = None


@dataclass(frozen=True)
class ChannelHealth:
    """How a channel's deliveries are going.

    Attributes:
        channel: the channel name.
        last_delivered_at: the last successful delivery, if any.
        failing_since: when the oldest unresolved failure began (``None``: healthy).
        reason: one line saying why the channel counts as failing (empty when healthy).
    """

    channel: str
    last_delivered_at: dt.datetime | None
    failing_since: dt.datetime | None
    reason: str = ""

    @property
    def failing(self) -> bool:
        return self.failing_since is not None


# -- conversions ----------------------------------------------------------------------------


def _iso(value: dt.datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _step(text: str, where: str) -> StepId:
    """A stored step id, read back; one line naming the row when it is none."""
    try:
        return StepId.parse(text)
    except ValueError as exc:
        raise ChainwatchError(f"{where}: {exc}") from None


def _event(text: str, where: str) -> Event:
    try:
        return Event.parse(text)
    except ValueError as exc:
        raise ChainwatchError(f"{where}: {exc}") from None


def _opt_step(text: str | None, where: str) -> StepId | None:
    return None if text is None else _step(text, where)


def _state(row: AlertStateRow) -> StateRecord:
    where = f"alert_state {row.target_key!r}"
    fired = tuple(sorted(
        ((_step(step, where), dt.datetime.fromisoformat(when).astimezone(UTC))
         for step, when in (row.fired or {}).items()),
        key=lambda item: item[0].sort_key(),
    ))
    return StateRecord(
        target_key=row.target_key, cycle=row.cycle, fired=fired, open=bool(row.open),
        current=_opt_step(row.current, where), ack_step=_opt_step(row.ack_step, where),
        ack_until=row.ack_until, ack_by=row.ack_by, ack_why=row.ack_why,
        updated_at=row.updated_at,
    )


def _state_values(state: StateRecord) -> dict[str, Any]:
    return {
        "cycle": state.cycle,
        "fired": {str(step): _iso(when) for step, when in state.fired},
        "open": state.open,
        "current": None if state.current is None else str(state.current),
        "ack_step": None if state.ack_step is None else str(state.ack_step),
        "ack_until": state.ack_until,
        "ack_by": state.ack_by,
        "ack_why": state.ack_why,
    }


def _item(row: OutboxRow) -> OutboxItem:
    where = f"outbox row {row.id}"
    return OutboxItem(
        id=row.id, created_at=row.created_at, target_key=row.target_key,
        event=_event(row.event, where), step=_step(row.step, where), channel=row.channel,
        dedup_key=row.dedup_key,
        idempotency_key=row.idempotency_key, payload=dict(row.payload),
        status=OutboxStatus(row.status), attempts=row.attempts,
        next_attempt_at=row.next_attempt_at, last_attempt_at=row.last_attempt_at,
        last_error=row.last_error, delivered_at=row.delivered_at,
    )


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]


# -- the transaction and the repository -----------------------------------------------------


class AlertsTransaction:
    """What one write transaction can do; obtained from :meth:`AlertsRepo.transaction`."""

    def __init__(self, conn: Connection, database: Database) -> None:
        self._conn = conn
        self._session = Session(conn)  # ORM reads inside this same transaction
        self._insert = database._insert  # the backend's INSERT ... ON CONFLICT

    def states(self, keys: Sequence[str], *, at: dt.datetime) -> dict[str, StateRecord]:
        """The state of each key (a fresh one for keys never seen), locked for the rest
        of the transaction on PostgreSQL (SQLite's ``BEGIN IMMEDIATE`` already holds
        the database's write lock). Rows are created and locked in key order, so
        concurrent evaluators cannot deadlock."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        for chunk in _chunks(wanted):
            self._conn.execute(
                self._insert(AlertStateRow).on_conflict_do_nothing(index_elements=["target_key"]),
                [{"target_key": k, **_state_values(StateRecord(k)), "updated_at": at}
                 for k in chunk],
            )
        found: dict[str, StateRecord] = {}
        for chunk in _chunks(wanted):
            rows = self._session.scalars(
                select(AlertStateRow)
                .where(AlertStateRow.target_key.in_(chunk))
                .order_by(AlertStateRow.target_key)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            for row in rows:
                found[row.target_key] = _state(row)
        return found

    def save_state(self, state: StateRecord, at: dt.datetime) -> None:
        """Write ``state`` (its row exists: :meth:`states` created it)."""
        self._conn.execute(
            update(AlertStateRow)
            .where(AlertStateRow.target_key == state.target_key)
            .values(**_state_values(state), updated_at=at)
        )

    def enqueue(self, rows: Sequence[NewOutboxRow]) -> int:
        """Insert the rows whose idempotency key is new; returns how many were."""
        inserted = 0
        for row in rows:
            result = self._conn.execute(
                self._insert(OutboxRow)
                .values(
                    created_at=row.created_at, target_key=row.target_key,
                    event=row.event.value, step=str(row.step), channel=row.channel,
                    dedup_key=row.dedup_key,
                    idempotency_key=row.idempotency_key, payload=dict(row.payload),
                    status=OutboxStatus.PENDING.value, attempts=0,
                    next_attempt_at=row.created_at,
                )
                .on_conflict_do_nothing(index_elements=["idempotency_key"])
                .returning(OutboxRow.id)
            )
            inserted += len(result.all())  # rowcount is not portable for ON CONFLICT
        return inserted

    def state(self, key: str) -> StateRecord | None:
        """The stored state of ``key`` (locked on PostgreSQL), ``None`` if there is none."""
        row = self._session.scalars(
            select(AlertStateRow)
            .where(AlertStateRow.target_key == key)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).first()
        return None if row is None else _state(row)

    def channels_told(self, dedup_key: str, *, step: StepId | None = None) -> set[str]:
        """The channels that have (or had) a message under ``dedup_key`` (of ``step``)."""
        stmt = select(OutboxRow.channel).where(OutboxRow.dedup_key == dedup_key)
        if step is not None:
            stmt = stmt.where(OutboxRow.step == str(step))
        return set(self._conn.execute(stmt.distinct()).scalars())

    def record_ack(
        self, key: str, *, step: StepId, until: dt.datetime, by: str, why: str,
        at: dt.datetime,
    ) -> int:
        """Add an acknowledgement to the history; returns its id."""
        result = self._conn.execute(
            self._insert(AckRow).values(
                target_key=key, step=str(step), until=until, acked_by=by, why=why, created_at=at,
            ).returning(AckRow.id)
        )
        return int(result.scalar_one())


class AlertsRepo:
    """Alert tables of a :class:`~chainwatch.storage.Database` (same engine, same
    transaction discipline: every write is one ``BEGIN IMMEDIATE`` transaction on SQLite)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.engine = database.engine

    @contextmanager
    def transaction(self) -> Iterator[AlertsTransaction]:
        """One write transaction: committed when the block ends, rolled back on error."""
        with self.database._write() as conn:
            tx = AlertsTransaction(conn, self.database)
            try:
                yield tx
            finally:
                tx._session.close()

    # -- state ------------------------------------------------------------------------------

    def state(self, key: str) -> StateRecord | None:
        with Session(self.engine) as session:
            row = session.get(AlertStateRow, key)
            return None if row is None else _state(row)

    def states(self, *, only_open: bool = False, prefix: str | None = None) -> list[StateRecord]:
        """Stored states in key order (only those with something unresolved if asked)."""
        stmt = select(AlertStateRow).order_by(AlertStateRow.target_key)
        if only_open:
            stmt = stmt.where(AlertStateRow.open.is_(True))
        if prefix is not None:
            stmt = stmt.where(AlertStateRow.target_key.startswith(prefix, autoescape=True))
        with Session(self.engine) as session:
            return [_state(r) for r in session.scalars(stmt)]

    # -- outbox -----------------------------------------------------------------------------

    def due(self, now: dt.datetime, *, limit: int = 500) -> list[OutboxItem]:
        """Pending rows whose ``next_attempt_at`` has come, oldest first, leaving out any
        row behind an earlier pending row of the same channel and dedup key: a channel
        sees one target's messages in the order they were enqueued (a resolve never
        overtakes the page it resolves)."""
        earlier = aliased(OutboxRow)
        blocked = exists().where(
            earlier.channel == OutboxRow.channel,
            earlier.dedup_key == OutboxRow.dedup_key,
            earlier.status == OutboxStatus.PENDING.value,
            earlier.id < OutboxRow.id,
        )
        stmt = (
            select(OutboxRow)
            .where(
                OutboxRow.status == OutboxStatus.PENDING.value,
                OutboxRow.next_attempt_at <= now,
                ~blocked,
            )
            .order_by(OutboxRow.id)
            .limit(limit)
        )
        with Session(self.engine) as session:
            return [_item(r) for r in session.scalars(stmt)]

    def outbox(
        self,
        *,
        status: OutboxStatus | None = None,
        channel: str | None = None,
        target_key: str | None = None,
    ) -> list[OutboxItem]:
        """Outbox rows in enqueue order, optionally filtered."""
        where = []
        if status is not None:
            where.append(OutboxRow.status == status.value)
        if channel is not None:
            where.append(OutboxRow.channel == channel)
        if target_key is not None:
            where.append(OutboxRow.target_key == target_key)
        stmt = select(OutboxRow).where(and_(True, *where)).order_by(OutboxRow.id)
        with Session(self.engine) as session:
            return [_item(r) for r in session.scalars(stmt)]

    def latest_payload(self, target_key: str) -> Mapping[str, Any] | None:
        """The payload of the newest row enqueued for ``target_key``."""
        with self.engine.connect() as conn:
            payload = conn.execute(
                select(OutboxRow.payload)
                .where(OutboxRow.target_key == target_key)
                .order_by(OutboxRow.id.desc())
                .limit(1)
            ).scalar_one_or_none()
        return None if payload is None else dict(payload)

    def claim(self, item: OutboxItem, lease_until: dt.datetime) -> bool:
        """Take ``item`` for sending: pushes its ``next_attempt_at`` to ``lease_until``
        if nobody else moved it first. A sender that dies mid-send leaves the row to be
        retried when the lease ends; two senders never send the same row at once."""
        with self.database._write() as conn:
            result = conn.execute(
                update(OutboxRow)
                .where(
                    OutboxRow.id == item.id,
                    OutboxRow.status == OutboxStatus.PENDING.value,
                    OutboxRow.next_attempt_at == item.next_attempt_at,
                )
                .values(next_attempt_at=lease_until)
            )
        return int(result.rowcount or 0) == 1

    def mark_delivered(self, row_id: int, at: dt.datetime) -> None:
        with self.database._write() as conn:
            conn.execute(
                update(OutboxRow)
                .where(OutboxRow.id == row_id)
                .values(status=OutboxStatus.DELIVERED.value, delivered_at=at,
                        last_attempt_at=at, attempts=OutboxRow.attempts + 1)
            )

    def mark_failed(
        self, row_id: int, at: dt.datetime, error: str, *, retry_at: dt.datetime | None
    ) -> None:
        """Record a failed attempt: retry at ``retry_at``, or give up (``None``: dead)."""
        values: dict[str, Any] = {
            "last_attempt_at": at,
            "last_error": error,
            "attempts": OutboxRow.attempts + 1,
        }
        if retry_at is None:
            values["status"] = OutboxStatus.DEAD.value
        else:
            values["next_attempt_at"] = retry_at
        with self.database._write() as conn:
            conn.execute(update(OutboxRow).where(OutboxRow.id == row_id).values(**values))

    def channel_health(
        self,
        now: dt.datetime,
        *,
        stall_after: dt.timedelta,
        max_failures: int,
        recent: dt.timedelta = dt.timedelta(hours=24),
    ) -> dict[str, ChannelHealth]:
        """Health of every channel that has outbox rows. A channel is failing when a
        message to it has failed and waited ``stall_after`` or more, has failed
        ``max_failures`` times, or was given up on (within ``recent``) after the
        channel's last success."""
        pending = OutboxStatus.PENDING.value
        with self.engine.connect() as conn:
            last_ok: dict[str, dt.datetime | None] = {}
            for channel, when in conn.execute(
                select(OutboxRow.channel, func.max(OutboxRow.delivered_at))
                .where(OutboxRow.status == OutboxStatus.DELIVERED.value)
                .group_by(OutboxRow.channel)
            ):
                last_ok[channel] = when
            stuck = conn.execute(
                select(OutboxRow.channel, OutboxRow.created_at, OutboxRow.attempts)
                .where(OutboxRow.status == pending, OutboxRow.attempts > 0)
                .order_by(OutboxRow.id)
            ).all()
            dead = conn.execute(
                select(OutboxRow.channel, func.max(OutboxRow.last_attempt_at))
                .where(OutboxRow.status == OutboxStatus.DEAD.value)
                .group_by(OutboxRow.channel)
            ).all()
            channels = conn.execute(select(OutboxRow.channel).distinct()).scalars().all()
        out = {c: ChannelHealth(c, last_ok.get(c), None) for c in channels}
        for channel, created, attempts in stuck:
            if out[channel].failing:
                continue
            if now - created >= stall_after:
                out[channel] = ChannelHealth(
                    channel, last_ok.get(channel), created,
                    f"a message has been failing for {_ago(now - created)} "
                    f"({attempts} attempts)",
                )
            elif attempts >= max_failures:
                out[channel] = ChannelHealth(
                    channel, last_ok.get(channel), created,
                    f"a message failed {attempts} times in a row",
                )
        for channel, when in dead:
            ok = last_ok.get(channel)
            if (when is not None and (ok is None or when > ok) and now - when < recent
                    and not out[channel].failing):
                out[channel] = ChannelHealth(
                    channel, ok, when,
                    "a message was given up on and nothing has been delivered since",
                )
        return out

    # -- acknowledgements -------------------------------------------------------------------

    def acks(self, target_key: str | None = None) -> list[StoredAck]:
        stmt = select(AckRow).order_by(AckRow.created_at, AckRow.id)
        if target_key is not None:
            stmt = stmt.where(AckRow.target_key == target_key)
        with Session(self.engine) as session:
            return [
                StoredAck(r.id, r.target_key, _step(r.step, f"acks row {r.id}"), r.until,
                          r.acked_by, r.why, r.created_at)
                for r in session.scalars(stmt)
            ]


def _ago(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h"
