"""Alert delivery: the I/O around the pure escalation policy (:mod:`chainwatch.alerts.escalation`).

::

    deliveries = evaluate(db, config, situations, at)   # state + outbox, one transaction
    stats = deliver(db, config, now)                     # send what is due, retry, give up
    check_watchdog(db, config, now, interval=inv.defaults.interval)
    ping_deadman(config)                                 # after each completed scan

**Exactly one alert, whatever crashes.** :func:`evaluate` loads each target's
:class:`~chainwatch.alerts.escalation.AlertState`, runs
:func:`~chainwatch.alerts.escalation.decide`, and writes
the new state *and* the outbox rows in one database transaction: a crash before the
commit leaves neither (the next run decides again), a crash after it leaves both (the
next run at the same ``at`` sees the step as fired and decides nothing). Each row also
carries an idempotency key, a digest of (dedup key, event, step, instant fired,
channel), under a UNIQUE constraint, and is inserted only if absent: even two
evaluators racing with the same input enqueue one row.

**At least once, in order, on every channel.** :func:`deliver` sends the pending rows
whose time has come. A row is *claimed* first (its next attempt pushed past a lease),
so two senders never send it at once and a sender that dies mid-send leaves it to be
retried after the lease. Success marks it delivered; a retryable failure reschedules
it with exponential backoff (:data:`BACKOFF_START` doubling, capped at
:data:`BACKOFF_CAP`); a message still failing after ``max_age`` (default 24 h), or
rejected outright, is marked ``dead``. A channel gets one target's messages in the
order they were enqueued: a row waits while an earlier row of its channel and dedup key
is pending. Channels are served concurrently (:data:`MAX_PARALLEL` at a time), each by
one worker sending its rows in that order, and every delivery has ONE deadline for the
whole of it (the channel timeout, :class:`~chainwatch.channels.Http`): a receiver that
hangs or trickles its answer costs one deadline per message of its own channel and
delays no other channel. Receivers dedupe on ``dedup_key`` (PagerDuty incidents, issue
markers). The windows for a duplicate are a crash between a receiver's answer and the
commit that marks the row delivered, and a request that timed out (or lost its
connection) after the receiver had taken it: the row is retried with the same payload
and ``dedup_key`` (only ``sent_at`` differs), which is harmless to them.

**Secrets** are resolved from the inventory only when sending; stored payloads and
errors hold none (errors are redacted against every secret of the channel).

**The monitor of the monitor.** :func:`check_watchdog` raises a ``watchdog`` alert on
every channel when no scan has completed for two intervals, and on the *other* channels
when one channel has been failing persistently; each repeats hourly while it lasts and
resolves when it ends. :func:`ping_deadman` pings an outside dead-man's switch after
each completed scan, for when chainwatch itself is down.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from chainwatch.alerts import escalation as policy
from chainwatch.alerts.config import DELIVERY_TIMEOUT, AlertsConfig, Deadman, Secret
from chainwatch.alerts.config import Channel as ChannelConfig
from chainwatch.alerts.escalation import (
    Ack,
    AlertState,
    Delivery,
    Event,
    Situation,
    StepId,
    StepKind,
)
from chainwatch.errors import AlertError, DeliveryError, InputError
from chainwatch.model.redaction import basic_auth
from chainwatch.model.redaction import redact as redact_text
from chainwatch.model.times import compact, iso_or_none
from chainwatch.model.values import Target
from chainwatch.render import codec
from chainwatch.storage.alerts_repo import (
    AlertsRepo,
    AlertsTransaction,
    NewOutboxRow,
    OutboxItem,
    StateRecord,
)
from chainwatch.storage.repo import Database

if TYPE_CHECKING:
    import httpx

    from chainwatch.alerts.channels import Channel

__all__ = [
    "BACKOFF_CAP",
    "BACKOFF_START",
    "DEFAULT_MAX_AGE",
    "AckResult",
    "AlertError",
    "DeadmanError",
    "DeliveryStats",
    "OpenAlert",
    "acknowledge",
    "check_watchdog",
    "deliver",
    "evaluate",
    "idempotency_key",
    "list_alerts",
    "payload_for",
    "payload_for_test",
    "ping_deadman",
    "send_test",
    "target_json",
]

log = logging.getLogger("chainwatch.alerts.outbox")
UTC = dt.UTC

BACKOFF_START = dt.timedelta(seconds=30)
BACKOFF_CAP = dt.timedelta(hours=1)
DEFAULT_MAX_AGE = dt.timedelta(hours=24)
"""How long a message is retried before it is marked dead."""
LEASE = dt.timedelta(minutes=5)
"""How long a claimed row is left to its sender (far beyond any send's timeouts)."""
MAX_ROUNDS = 100
"""Passes over one channel's rows in one :func:`deliver` call (each pass sends the next
row of every dedup key)."""
MAX_PARALLEL = 8
"""Channels delivered to at once."""

WATCHDOG = StepId.WATCHDOG
SCAN_WATCHDOG = "watchdog:scan"
CHANNEL_WATCHDOG = "watchdog:channel:"
ZONE_WATCHDOG = "watchdog:zone:"
WATCHDOG_REPEAT = dt.timedelta(hours=1)
STALL_AFTER = dt.timedelta(hours=1)
"""A channel whose failing message has waited this long counts as failing."""
MAX_FAILURES = 8
"""...and so does one whose message has failed this many times in a row (with the
backoff, about an hour of failing when deliveries run often)."""


# -- values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryStats:
    """What one :func:`deliver` call did.

    Attributes:
        delivered: rows sent successfully.
        retried: rows that failed and were rescheduled.
        dead: rows given up on (rejected, too old, or their channel is gone).
        skipped: rows another sender had claimed first.
    """

    delivered: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0

    @property
    def attempted(self) -> int:
        return self.delivered + self.retried + self.dead


@dataclass(frozen=True)
class AckResult:
    """An acknowledgement as recorded: ``ackable`` is ``False`` when the step pages
    regardless (``ackable: false``), ``None`` when unknown (no configuration given)."""

    target: str
    ack: Ack
    ackable: bool | None


@dataclass(frozen=True)
class OpenAlert:
    """An alert that fired and is not resolved.

    Attributes:
        id: what ``chainwatch alerts ack`` takes: the target key.
        target: the target key (``host:port``, ``file:PATH``, ``watchdog:...``).
        step: the current step (``None`` when nothing is current now).
        ackable: whether an ack silences the current step (``None``: unknown).
        dedup_key: the key receivers group its messages by.
        fired: (step, when it last fired), this cycle.
        ack: the acknowledgement in force, if any.
        message / breaks_at / status: from the newest message enqueued.
        days_left: from ``breaks_at`` to the ``now`` of :func:`list_alerts` (else as sent).
    """

    id: str
    target: str
    step: StepId | None
    ackable: bool | None
    dedup_key: str
    fired: tuple[tuple[StepId, dt.datetime], ...]
    ack: Ack | None
    updated_at: dt.datetime | None
    message: str = ""
    breaks_at: str | None = None
    days_left: int | None = None
    status: str | None = None

    @property
    def last_fired(self) -> dt.datetime | None:
        return max((when for _, when in self.fired), default=None)

    def to_json(self) -> dict[str, Any]:
        ack = self.ack
        return {
            "id": self.id,
            "target": self.target,
            "step": None if self.step is None else str(self.step),
            "ackable": self.ackable,
            "dedup_key": self.dedup_key,
            "message": self.message,
            "breaks_at": self.breaks_at,
            "days_left": self.days_left,
            "status": self.status,
            "fired": {str(step): _z(when) for step, when in self.fired},
            "last_fired": _z(self.last_fired),
            "ack": None if ack is None else {
                "step": str(ack.step), "until": _z(ack.until), "by": ack.by, "why": ack.why
            },
        }


# -- helpers --------------------------------------------------------------------------------


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware, got {value.isoformat()}")
    return value.astimezone(UTC)


def _z(value: dt.datetime | None) -> str | None:
    return iso_or_none(value)


def _to_state(record: StateRecord) -> AlertState:
    ack = None
    if record.ack_step is not None and record.ack_until is not None:
        ack = Ack(step=record.ack_step, until=record.ack_until, by=record.ack_by or "",
                  why=record.ack_why or "")
    return AlertState(cycle=record.cycle, fired=record.fired, open=record.open, ack=ack,
                      current=record.current)


def _to_record(key: str, state: AlertState) -> StateRecord:
    ack = state.ack
    return StateRecord(
        target_key=key, cycle=state.cycle, fired=state.fired, open=state.open,
        current=state.current,
        ack_step=None if ack is None else ack.step,
        ack_until=None if ack is None else ack.until,
        ack_by=None if ack is None else ack.by,
        ack_why=None if ack is None else ack.why,
    )


def target_json(key: str) -> dict[str, Any]:
    """The ``target`` object of a payload, from a target key: ``key`` always, and the
    endpoint fields of the scan report's ``target`` (``ip`` is null: an alert is about
    every address behind the endpoint) or the file path."""
    target = Target.from_key(key)
    if target is None:
        return {"key": key}
    if target.is_file:
        return {"key": key, "file": target.path}
    return {"key": key, **codec.target_json(target)}


def _days_left(breaks_at: dt.datetime | None, at: dt.datetime) -> int | None:
    if breaks_at is None:
        return None
    return max(0, int((breaks_at - at).total_seconds() // 86400))


def payload_for(delivery: Delivery, at: dt.datetime) -> dict[str, Any]:
    """The stored message for ``delivery`` evaluated at ``at``: DESIGN.md's webhook
    payload without ``sent_at`` (added when sent), plus ``step``. No secrets."""
    return {
        "schema": 1,
        "event": delivery.event.value,
        "dedup_key": delivery.dedup_key,
        "target": target_json(delivery.target),
        "breaks_at": _z(delivery.breaks_at),
        "days_left": _days_left(delivery.breaks_at, at),
        "status": delivery.status,
        "findings": [{"code": code} for code in delivery.findings],
        "message": delivery.message,
        "step": str(delivery.step),
    }


def idempotency_key(
    dedup_key: str, event: Event, step: StepId, fired_at: dt.datetime, channel: str
) -> str:
    """The outbox's UNIQUE key: one row per alert firing per channel (a digest of the
    stored forms, so it is the same for the same firing whichever version computed it)."""
    text = "\x1f".join((dedup_key, event.value, str(step),
                        _aware(fired_at, "fired_at").isoformat(), channel))
    return hashlib.sha256(text.encode()).hexdigest()


def _channels_for(
    tx: AlertsTransaction, config: AlertsConfig, delivery: Delivery, resolves: StepId | None
) -> list[str]:
    """Where ``delivery`` goes. A step's channels (none named: every channel). A resolve
    goes only to the channels that were told about what it resolves: anything under
    its dedup key for a renewal, the ``resolves`` step's messages for the end of an
    episode (a broken spell, a watchdog stall). A chat that never heard of an alert
    gets no "resolved" for it."""
    known = list(config.channels)
    if delivery.event is not Event.RESOLVE:
        names = list(delivery.channels) or known
    else:
        told = tx.channels_told(delivery.dedup_key, step=resolves)
        names = [name for name in known if name in told]
    missing = [n for n in names if n not in config.channels]
    if missing:
        log.warning("alert channels not in the inventory, skipped: %s", ", ".join(missing))
    return [n for n in names if n in config.channels]


def _enqueue(
    tx: AlertsTransaction,
    config: AlertsConfig,
    delivery: Delivery,
    at: dt.datetime,
    *,
    resolves: StepId | None = None,
) -> int:
    payload = payload_for(delivery, at)
    rows = [
        NewOutboxRow(
            created_at=at, target_key=delivery.target, event=delivery.event,
            step=delivery.step, channel=name, dedup_key=delivery.dedup_key,
            idempotency_key=idempotency_key(delivery.dedup_key, delivery.event, delivery.step,
                                            at, name),
            payload=payload,
        )
        for name in _channels_for(tx, config, delivery, resolves)
    ]
    return tx.enqueue(rows)


# -- evaluate -------------------------------------------------------------------------------


def evaluate(
    db: Database, config: AlertsConfig, situations: Sequence[Situation], at: dt.datetime
) -> list[Delivery]:
    """Run the policy for every situation at ``at``; store the new states and enqueue
    the deliveries (one outbox row per delivery per channel) in one transaction.
    Returns the deliveries decided (empty when re-run at the same ``at``)."""
    at = _aware(at, "at")
    by_key: dict[str, Situation] = {}
    for sit in situations:
        by_key.setdefault(sit.key, sit)
    if not by_key:
        return []
    out: list[Delivery] = []
    with AlertsRepo(db).transaction() as tx:
        records = tx.states(list(by_key), at=at)
        for key in sorted(by_key):
            sit = by_key[key]
            state = _to_state(records[key])
            deliveries, new = policy.decide(config, sit, state, at)
            if new != state:
                tx.save_state(_to_record(key, new), at)
            renewed = state.cycle is not None and new.cycle != state.cycle
            for delivery in deliveries:
                # A resolve without a renewal ends a broken episode: it goes where the
                # broken pages went, not to the channels of the countdown (the ticket).
                resolves = (state.current if delivery.event is Event.RESOLVE and not renewed
                            else None)
                _enqueue(tx, config, delivery, at, resolves=resolves)
            out.extend(deliveries)
    for delivery in out:
        log.info("alert event=%s step=%s target=%s dedup_key=%s", delivery.event,
                 delivery.step, delivery.target, delivery.dedup_key)
    return out


# -- deliver --------------------------------------------------------------------------------


def _backoff(attempts: int) -> dt.timedelta:
    """The wait after the ``attempts``-th failure: 30 s, 1 min, 2 min, ... at most 1 h."""
    exponent = min(max(attempts - 1, 0), 20)
    wait: dt.timedelta = BACKOFF_START * (2**exponent)
    return min(wait, BACKOFF_CAP)


def config_secrets(config: AlertsConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret value of the alerts configuration that can be read now: errors are
    redacted against all of them, whichever channel failed (a receiver may echo
    anything)."""
    holders: list[ChannelConfig | Deadman] = list(config.channels.values())
    if config.deadman is not None:
        holders.append(config.deadman)
    out: list[str] = []
    for holder in holders:
        for value in vars(holder).values():
            if isinstance(value, Secret):
                try:
                    revealed = value.reveal(environ)
                except InputError:
                    continue
                out.append(revealed)
                user = getattr(holder, "user", None)
                if isinstance(user, str):  # Jira Cloud: Basic base64(user:token) on the wire
                    out.append(basic_auth(user, revealed))
    return out


def deliver(
    db: Database,
    config: AlertsConfig,
    now: dt.datetime,
    *,
    environ: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    max_age: dt.timedelta = DEFAULT_MAX_AGE,
    limit: int = 500,
    timeout: float = DELIVERY_TIMEOUT,
    parallel: int = MAX_PARALLEL,
) -> DeliveryStats:
    """Send every pending row whose next attempt is due at ``now`` (at most ``limit``
    per look at the outbox), in enqueue order per channel and dedup key. ``environ``
    replaces ``os.environ`` for secrets; ``transport`` replaces httpx's network (tests).

    Each delivery has one deadline, ``timeout`` seconds for the whole of it (see
    :class:`~chainwatch.channels.Http`). Channels are served concurrently, at most
    ``parallel`` at a time, each by one worker that sends its rows one after another:
    a channel that hangs holds up its own messages only, for one deadline per message.
    """
    now = _aware(now, "now")
    repo = AlertsRepo(db)
    secrets = config_secrets(config, environ)
    counts = {"delivered": 0, "retried": 0, "dead": 0, "skipped": 0}

    def serve(channel: str) -> dict[str, int]:
        return _serve_channel(repo, config, channel, now, secrets, environ=environ,
                              transport=transport, max_age=max_age, limit=limit,
                              timeout=timeout)

    def due_channels() -> list[str]:
        return list(dict.fromkeys(item.channel for item in repo.due(now, limit=limit)))

    fresh = due_channels()
    if not fresh:
        return DeliveryStats(**counts)
    # The senders (httpx, apprise) are imported when something is sent, here, before
    # any worker thread needs them.
    importlib.import_module("chainwatch.alerts.channels")

    workers = max(1, parallel) if _threads_share_the_database(db) else 1
    if workers == 1:
        for channel in fresh:
            for outcome, n in serve(channel).items():
                counts[outcome] += n
        return DeliveryStats(**counts)
    served: set[str] = set()  # one worker per channel and call: it sends all it can
    with ThreadPoolExecutor(max_workers=workers,
                            thread_name_prefix="chainwatch-deliver") as pool:
        running: dict[Future[dict[str, int]], str] = {}
        while fresh or running:  # each channel is started once: bounded by the channels
            for channel in fresh:
                if channel not in served:
                    served.add(channel)
                    running[pool.submit(serve, channel)] = channel
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                del running[future]
                for outcome, n in future.result().items():
                    counts[outcome] += n
            # Rows of channels not seen yet may have come within the limit meanwhile.
            fresh = [c for c in due_channels() if c not in served]
    return DeliveryStats(**counts)


def _threads_share_the_database(db: Database) -> bool:
    """Whether worker threads see the caller's database: not so for an in-memory SQLite
    database, which is one per connection (and SQLAlchemy gives each thread its own)."""
    url = db.engine.url
    return not (url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"))


def _serve_channel(
    repo: AlertsRepo,
    config: AlertsConfig,
    channel: str,
    now: dt.datetime,
    secrets: Sequence[str],
    *,
    environ: Mapping[str, str] | None,
    transport: httpx.BaseTransport | None,
    max_age: dt.timedelta,
    limit: int,
    timeout: float,
) -> dict[str, int]:
    """Send the due rows of one channel, oldest first, pass after pass (each pass sends
    the next row of every dedup key; at most :data:`MAX_ROUNDS` passes)."""
    counts = {"delivered": 0, "retried": 0, "dead": 0, "skipped": 0}
    senders: dict[str, Channel] = {}
    seen: set[int] = set()
    for _ in range(MAX_ROUNDS):
        items = [item for item in repo.due(now, limit=limit)
                 if item.channel == channel and item.id not in seen]
        if not items:
            break
        for item in items:
            seen.add(item.id)
            if not repo.claim(item, now + LEASE):
                counts["skipped"] += 1
                continue
            counts[_send_one(repo, config, item, now, senders, secrets, environ=environ,
                             transport=transport, max_age=max_age, timeout=timeout)] += 1
    return counts


def _send_one(
    repo: AlertsRepo,
    config: AlertsConfig,
    item: OutboxItem,
    now: dt.datetime,
    senders: dict[str, Channel],
    secrets: Sequence[str],
    *,
    environ: Mapping[str, str] | None,
    transport: httpx.BaseTransport | None,
    max_age: dt.timedelta,
    timeout: float,
) -> str:
    channel = config.channels.get(item.channel)
    if channel is None:
        repo.mark_failed(item.id, now, f"channel {item.channel!r} is no longer in the inventory",
                         retry_at=None)
        log.warning("alert dead id=%d channel=%s reason=unknown-channel", item.id, item.channel)
        return "dead"
    from chainwatch.alerts.channels import build_channel

    try:
        sender = senders.get(item.channel)
        if sender is None:
            sender = build_channel(channel, environ=environ, transport=transport,
                                   timeout=timeout)
            senders[item.channel] = sender
        sender.send({**item.payload, "sent_at": _z(now)})
    except Exception as exc:
        if isinstance(exc, DeliveryError):
            error, retryable, after = str(exc), exc.retryable, exc.retry_after
        else:  # a bug or an unexpected library error: keep the row, say what it was
            error, retryable, after = f"{item.channel}: {type(exc).__name__}: {exc}", True, None
        error = redact_text(error, secrets)
        wait = _backoff(item.attempts + 1)
        if after is not None:
            wait = min(max(wait, dt.timedelta(seconds=after)), BACKOFF_CAP)
        give_up = not retryable or now - item.created_at >= max_age
        repo.mark_failed(item.id, now, error, retry_at=None if give_up else now + wait)
        log.warning("alert %s id=%d channel=%s event=%s target=%s attempts=%d error=%s",
                    "dead" if give_up else "retry", item.id, item.channel, item.event,
                    item.target_key, item.attempts + 1, error)
        return "dead" if give_up else "retried"
    repo.mark_delivered(item.id, now)
    log.info("alert delivered id=%d channel=%s event=%s target=%s", item.id, item.channel,
             item.event, item.target_key)
    return "delivered"


# -- acknowledgements and listing -----------------------------------------------------------


def step_ackable(config: AlertsConfig, step: StepId) -> bool | None:
    """Whether an acknowledgement silences ``step`` under ``config`` (``None``: no such
    step in it)."""
    if step.kind is StepKind.BROKEN:
        return config.broken.ackable
    if step.kind is StepKind.WATCHDOG:
        return True
    if step.kind is StepKind.DAYS:
        for s in config.steps:
            if s.days == step.days:
                return s.ackable
    if config.short_lived is not None:
        for short in config.short_lived.steps:
            if policy.short_step_id(short) == step:
                return short.ackable
    return None


def acknowledge(
    db: Database,
    target_key: str,
    *,
    for_: dt.timedelta,
    by: str,
    why: str,
    now: dt.datetime,
    config: AlertsConfig | None = None,
) -> AckResult:
    """Acknowledge the target's current step until ``now + for_``; kept in the history
    too. Raises :class:`AlertError` when nothing is current for the target."""
    now = _aware(now, "now")
    if for_ <= dt.timedelta(0):
        raise AlertError("the acknowledgement needs a positive duration (--for 3d)")
    why, by = " ".join(why.split()), " ".join(by.split())
    if not why:
        raise AlertError("say why (--why): the acknowledgement is shown to whoever is paged next")
    if not by:
        raise AlertError("say who acknowledges (--by NAME)")
    with AlertsRepo(db).transaction() as tx:
        record = tx.state(target_key)
        if record is None:
            raise AlertError(f"no alert for {target_key!r}: see `chainwatch alerts list` "
                             "for the ids")
        if record.current is None:
            raise AlertError(f"{target_key}: no alert step is current, nothing to acknowledge")
        state = policy.acknowledge(_to_state(record), step=record.current, until=now + for_,
                                   by=by, why=why)
        tx.save_state(_to_record(target_key, state), now)
        tx.record_ack(target_key, step=record.current, until=now + for_, by=by, why=why, at=now)
    assert state.ack is not None
    ackable = None if config is None else step_ackable(config, record.current)
    log.info("alert acknowledged target=%s step=%s until=%s by=%s", target_key, record.current,
             _z(state.ack.until), by)
    return AckResult(target_key, state.ack, ackable)


def list_alerts(
    db: Database, *, now: dt.datetime | None = None, config: AlertsConfig | None = None
) -> list[OpenAlert]:
    """Every open alert (fired and not resolved), by target key. With ``now``, expired
    acknowledgements are left out; with ``config``, ``ackable`` is filled in."""
    repo = AlertsRepo(db)
    out: list[OpenAlert] = []
    for record in repo.states(only_open=True):
        ack = _to_state(record).ack
        if ack is not None and (ack.step != record.current
                                or (now is not None and _aware(now, "now") >= ack.until)):
            ack = None
        latest = repo.latest_payload(record.target_key) or {}
        breaks_at = latest.get("breaks_at")
        days_left = latest.get("days_left")
        if now is not None and isinstance(breaks_at, str):
            days_left = _days_left(dt.datetime.fromisoformat(breaks_at.replace("Z", "+00:00")),
                                   _aware(now, "now"))
        ackable = None
        if config is not None and record.current is not None:
            ackable = step_ackable(config, record.current)
        out.append(OpenAlert(
            id=record.target_key,
            target=record.target_key,
            step=record.current,
            ackable=ackable,
            dedup_key=policy.dedup_key(record.target_key, record.cycle),
            fired=record.fired,
            ack=ack,
            updated_at=record.updated_at,
            message=str(latest.get("message", "")),
            breaks_at=breaks_at,
            days_left=days_left,
            status=latest.get("status"),
        ))
    return out


# -- watchdog -------------------------------------------------------------------------------


def _ago(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes and hours < 48 else f"{hours} h"


def _watchdog_decide(
    key: str, problem: str | None, channels: tuple[str, ...], state: AlertState,
    now: dt.datetime,
) -> tuple[list[Delivery], AlertState]:
    """The watchdog's own small state machine: fire when a problem starts (a new cycle
    per episode), again every :data:`WATCHDOG_REPEAT` while it lasts (unless
    acknowledged), resolve once when it ends."""
    if problem is None:
        if not state.open:
            return [], state
        done = Delivery(event=Event.RESOLVE, step=StepId.RESOLVE, channels=channels,
                        dedup_key=policy.dedup_key(key, state.cycle),
                        message=f"{key}: resolved", target=key, breaks_at=None, status="ok")
        return [done], replace(state, open=False, current=None, ack=None)
    if not state.open:
        state = AlertState(cycle=compact(now), current=WATCHDOG)
    ack = state.ack
    if ack is not None and now >= ack.until:
        ack = None
    state = replace(state, ack=ack, current=WATCHDOG)
    last = state.last_fired(WATCHDOG)
    if ack is not None or (last is not None and now - last < WATCHDOG_REPEAT):
        return [], state
    fired = Delivery(event=Event.WATCHDOG, step=WATCHDOG, channels=channels,
                     dedup_key=policy.dedup_key(key, state.cycle), message=problem, target=key,
                     breaks_at=None, status="critical")
    return [fired], replace(state, fired=((WATCHDOG, now),), open=True)


def check_watchdog(
    db: Database,
    config: AlertsConfig,
    now: dt.datetime,
    *,
    interval: dt.timedelta,
    stall_after: dt.timedelta = STALL_AFTER,
    max_failures: int = MAX_FAILURES,
    zones: Mapping[str, str | None] | None = None,
) -> list[Delivery]:
    """Watch the watcher; returns the watchdog deliveries enqueued.

    * ``zones`` (distributed mode): each zone's problem (``"zone dc-east has had no worker
      for 2 intervals"``) or ``None``: a ``watchdog`` alert on every channel per zone.

    * No scan completed (heartbeat ``scan``) for more than ``2 * interval``: a
      ``watchdog`` alert on every channel.
    * A channel failing (a message failing for ``stall_after``, or ``max_failures``
      times, or given up on since its last success): a ``watchdog`` alert through the
      *other* channels.

    Each fires once per episode, again hourly while it lasts, and resolves when it ends.
    """
    now = _aware(now, "now")
    problems: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    beat = db.last_beat("scan")
    scan_problem = None
    if beat is not None and now - beat.last_beat > 2 * interval:
        scan_problem = (f"chainwatch watchdog: no scan has completed for "
                        f"{_ago(now - beat.last_beat)} (since {_z(beat.last_beat)}; scans are "
                        f"due every {_ago(interval)}): certificates are not being watched")
    problems[SCAN_WATCHDOG] = (scan_problem, tuple(config.channels))
    for zone, zone_problem in (zones or {}).items():
        problems[f"{ZONE_WATCHDOG}{zone}"] = (
            None if zone_problem is None else f"chainwatch watchdog: {zone_problem}",
            tuple(config.channels))
    health = AlertsRepo(db).channel_health(now, stall_after=stall_after,
                                           max_failures=max_failures)
    for name in config.channels:
        h = health.get(name)
        problem = None
        if h is not None and h.failing:
            problem = f"chainwatch watchdog: alert channel {name!r} is failing: {h.reason}"
        others = tuple(c for c in config.channels if c != name)
        problems[f"{CHANNEL_WATCHDOG}{name}"] = (problem, others)
    out: list[Delivery] = []
    with AlertsRepo(db).transaction() as tx:
        records = tx.states(list(problems), at=now)
        for key in sorted(problems):
            problem, channels = problems[key]
            state = _to_state(records[key])
            deliveries, new = _watchdog_decide(key, problem, channels, state, now)
            if new != state:
                tx.save_state(_to_record(key, new), now)
            for delivery in deliveries:
                _enqueue(tx, config, delivery, now)
            out.extend(deliveries)
    for delivery in out:
        log.warning("watchdog event=%s target=%s message=%s", delivery.event, delivery.target,
                    delivery.message)
    return out


# -- dead-man's switch and tests ------------------------------------------------------------


class DeadmanError(DeliveryError):
    """The dead-man's switch could not be pinged (the message is redacted: no URL path,
    query or token). Not a failed scan: callers report it as a warning and keep the
    scan's own outcome (a Nagios-style caller must still see critical findings)."""


def ping_deadman(
    config: AlertsConfig,
    *,
    summary: str = "",
    environ: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    timeout: float = DELIVERY_TIMEOUT,
) -> bool:
    """Ping the dead-man's switch (``alerts.deadman``) after a completed scan; a POST
    carries ``summary``. Returns ``False`` when none is configured; raises
    :class:`DeadmanError` (redacted) when the ping fails."""
    deadman = config.deadman
    if deadman is None:
        return False
    try:
        url = deadman.url.reveal(environ)
    except InputError as exc:
        raise DeadmanError(True, f"deadman: {exc}") from None
    from chainwatch.alerts.channels import Http

    try:
        with Http("deadman", secrets=[url], timeout=timeout, transport=transport) as http:
            if deadman.method == "post":
                http.request("POST", url, content=summary[:10_000], doing="ping")
            else:
                http.request("GET", url, doing="ping")
    except DeliveryError as exc:
        raise DeadmanError(exc.retryable, str(exc), retry_after=exc.retry_after) from None
    return True


def payload_for_test(channel: str, now: dt.datetime) -> dict[str, Any]:
    """The clearly marked message ``chainwatch alerts test`` sends."""
    return {
        "schema": 1,
        "event": Event.TEST.value,
        "dedup_key": f"chainwatch:test:{channel}:{compact(now)}",
        "target": {"key": "chainwatch-test"},
        "breaks_at": None,
        "days_left": None,
        "status": "ok",
        "findings": [],
        "message": f"TEST from chainwatch: channel {channel!r} works. Nothing is wrong.",
        "step": str(StepId.TEST),
        "sent_at": _z(now),
    }



def send_test(
    config: AlertsConfig,
    channel: str,
    now: dt.datetime,
    *,
    environ: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    timeout: float = DELIVERY_TIMEOUT,
) -> dict[str, Any]:
    """Send a test message (event ``test``) through ``channel`` now, bypassing the
    outbox. Returns the payload sent; raises DeliveryError (redacted) on failure."""
    found = config.channels.get(channel)
    if found is None:
        names = ", ".join(config.channels) or "none defined"
        raise AlertError(f"unknown channel {channel!r} (alerts.channels: {names})")
    from chainwatch.alerts.channels import build_channel

    payload = payload_for_test(channel, _aware(now, "now"))
    secrets = config_secrets(config, environ)
    try:
        build_channel(found, environ=environ, transport=transport, timeout=timeout).send(payload)
    except DeliveryError as exc:
        raise DeliveryError(exc.retryable, redact_text(str(exc), secrets)) from None
    return payload


# -- rehearsals and plans (read-only) ---------------------------------------------------------


def stored_state(db: Database, key: str) -> AlertState:
    """A target's stored escalation state (a fresh one when it has none)."""
    record = AlertsRepo(db).state(key)
    return AlertState() if record is None else _to_state(record)


def rehearse(
    db: Database, config: AlertsConfig, situations: Sequence[Situation], at: dt.datetime
) -> list[Delivery]:
    """What :func:`evaluate` would decide at ``at``, from the stored states, without
    storing or sending anything: ``scan --at`` rehearsals must not disturb the real
    escalation (a future ``at`` would otherwise record firings that have not happened)."""
    at = _aware(at, "at")
    out: list[Delivery] = []
    for sit in {s.key: s for s in situations}.values():
        deliveries, _ = policy.decide(config, sit, stored_state(db, sit.key), at)
        out.extend(deliveries)
    return out


def plan_all(
    db: Database | None, config: AlertsConfig, situations: Sequence[Situation],
    start: dt.datetime, until: dt.datetime,
) -> list[tuple[dt.datetime, Delivery]]:
    """Every delivery that would fire between ``start`` and ``until`` if nothing changed,
    continuing from the stored states (``alerts plan``; sends nothing)."""
    start, until = _aware(start, "start"), _aware(until, "until")
    events: list[tuple[dt.datetime, Delivery]] = []
    for sit in {s.key: s for s in situations}.values():
        state = AlertState() if db is None else stored_state(db, sit.key)
        events.extend(policy.plan(config, sit, state, start, until))
    events.sort(key=lambda e: (e[0], e[1].target))
    return events
