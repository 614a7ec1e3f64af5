"""One alert cycle, shared by ``scan``, ``serve`` and ``lab --serve``.

:meth:`Cycle.batch` is one batch: collect (probe, analyse, track), record, evaluate the
alert policy, deliver, ping the dead-man's switch. With ``at`` (``scan --at``) it is a
rehearsal: it collects and decides what *would* fire as of ``at`` from the stored alert
states, and writes nothing at all (no observation, no heartbeat, no alert state).
:meth:`Cycle.tick` runs between batches: the watchdog (has a scan completed lately? is a
channel failing?) and the delivery of retries.

Failures after the batch is recorded (a channel misconfigured, a dead-man ping refused)
are warnings of the cycle: the scan's result and its exit status stand.

``serve`` delivers in the background (``background=True``): a hanging receiver then
holds only the delivery thread, never the probe schedule or the watchdog.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from chainwatch.alerts import outbox
from chainwatch.alerts.config import AlertsConfig
from chainwatch.alerts.escalation import Delivery
from chainwatch.config.values import Endpoint, Inventory
from chainwatch.errors import ChainwatchError
from chainwatch.probe.fetchpolicy import IPNetwork
from chainwatch.probe.parallel import HeadStart
from chainwatch.service.collect import Progress, ScanResult, collect
from chainwatch.service.record import record
from chainwatch.storage.db import first_line
from chainwatch.storage.repo import Database

log = logging.getLogger("chainwatch.cycle")

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class CycleResult:
    """What one batch did.

    Attributes:
        result: the collected (and, unless rehearsed, recorded) scan.
        recorded: whether it was written (``False`` for a rehearsal).
        rehearsal: with ``at``, the deliveries that would fire as of ``at``.
        warnings: one line each for what failed after the scan was stored.
    """

    result: ScanResult
    recorded: bool
    rehearsal: tuple[Delivery, ...] = ()
    warnings: tuple[str, ...] = ()


class Cycle:
    """Collect, record, alert: the service's batch, over one database."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = _utcnow,
        concurrency: int = 256,
        background: bool = False,
    ) -> None:
        self.db = db
        self.clock = clock
        self.concurrency = concurrency
        self._deliverer = _Deliverer(db, clock) if background else None

    def close(self) -> None:
        if self._deliverer is not None:
            self._deliverer.stop()

    def __enter__(self) -> Cycle:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def batch(
        self,
        inventory: Inventory,
        *,
        endpoints: Sequence[Endpoint] | None = None,
        sweep: bool | None = None,
        at: dt.datetime | None = None,
        progress: Progress | None = None,
        begun: HeadStart | None = None,
    ) -> CycleResult:
        result = collect(inventory, self.db, at=at, now=self.clock,
                         concurrency=self.concurrency, progress=progress,
                         endpoints=endpoints, sweep=sweep, begun=begun)
        alerts = inventory.alerts
        if at is not None:  # a rehearsal: decide from the stored states, write nothing
            rehearsal = () if alerts is None else tuple(
                outbox.rehearse(self.db, alerts, result.situations, at))
            return CycleResult(result, recorded=False, rehearsal=rehearsal)
        result = record(self.db, result,
                        retention=inventory.defaults.retention if result.sweep else None)
        warnings: list[str] = []
        if alerts is not None:
            self._alert(alerts, result, warnings)
        return CycleResult(result, recorded=True, warnings=tuple(warnings))

    def _alert(self, alerts: AlertsConfig, result: ScanResult, warnings: list[str]) -> None:
        try:
            outbox.evaluate(self.db, alerts, result.situations, self.clock())
        except (ChainwatchError, SQLAlchemyError) as exc:
            warnings.append(f"alert policy failed: {_why(exc)}")
        else:
            self.deliver(alerts, warnings)
        try:
            outbox.ping_deadman(alerts, summary=f"{len(result.reports)} targets, "
                                f"{result.status.value}")
        except ChainwatchError as exc:
            warnings.append(f"dead-man ping failed: {exc}")
        for line in warnings:
            log.warning("%s", line)

    def deliver(self, alerts: AlertsConfig, warnings: list[str] | None = None) -> None:
        """Send what is due: now, or (``background``) by waking the delivery thread."""
        if self._deliverer is not None:
            self._deliverer.poke(alerts)
            return
        try:
            outbox.deliver(self.db, alerts, self.clock())
        except (ChainwatchError, SQLAlchemyError) as exc:
            if warnings is not None:
                warnings.append(f"alert delivery failed: {_why(exc)}")
            log.error("alert delivery failed: %s", _why(exc))

    def tick(self, inventory: Inventory) -> None:
        """Between batches: watch the watcher, deliver retries."""
        alerts = inventory.alerts
        if alerts is None:
            return
        outbox.check_watchdog(self.db, alerts, self.clock(), interval=inventory.defaults.interval)
        self.deliver(alerts)


def _why(exc: BaseException) -> str:
    return f"database error: {first_line(exc)}" if isinstance(exc, SQLAlchemyError) else str(exc)


class _Deliverer:
    """A daemon thread that delivers the outbox whenever poked (and every
    :attr:`PERIOD` seconds for retries), so that slow receivers never hold the batch."""

    PERIOD = 30.0

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._alerts: AlertsConfig | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chainwatch-deliver",
                                        daemon=True)
        self._thread.start()

    def poke(self, alerts: AlertsConfig) -> None:
        self._alerts = alerts
        self._wake.set()

    def stop(self, timeout: float = 60.0) -> None:
        """One last delivery pass (what the final batch enqueued), then stop. Each
        delivery has its own deadline, so ``timeout`` is only a backstop."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.PERIOD)
            self._wake.clear()
            alerts = self._alerts
            if alerts is not None:
                try:
                    outbox.deliver(self.db, alerts, self.clock())
                except (ChainwatchError, SQLAlchemyError) as exc:
                    log.error("alert delivery failed: %s", _why(exc))
                except Exception:  # a bug must not end deliveries for the life of serve
                    log.exception("alert delivery failed with an internal error")
            # Stopping: return once a pass ran after the stop. A stop (or a poke) that
            # came during this pass set the wake again: what the last batch enqueued
            # while this pass was delivering gets its pass too.
            if self._stopping.is_set() and not self._wake.is_set():
                return


def scan(
    inventory: Inventory,
    db: Database,
    *,
    endpoints: Sequence[Endpoint] | None = None,
    sweep: bool | None = None,
    concurrency: int = 256,
    progress: Progress | None = None,
    now: Clock = _utcnow,
    at: dt.datetime | None = None,
    allow_private: Sequence[IPNetwork] = (),
) -> ScanResult:
    """Collect and record one batch without alerting (the Python API's one-call scan).
    ``at`` evaluates as of that instant (the stored reports then say so)."""
    result = collect(inventory, db, now=now, concurrency=concurrency, progress=progress,
                     endpoints=endpoints, sweep=sweep, at=at, allow_private=allow_private)
    return record(db, result, retention=inventory.defaults.retention if result.sweep else None)
