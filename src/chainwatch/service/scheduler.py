"""``chainwatch serve``: the long-running scheduler.

Each endpoint is probed every ``interval`` (with jitter, so a thousand endpoints with
the same interval do not stampede), sooner after a failure with exponential backoff
(a flapping endpoint is retried at 1, 2, 4 ... minutes, never later than its interval).
Every ``defaults.interval`` a sweep also re-reads the files, records the ``scan``
heartbeat (so a stalled monitor is visible), applies retention and lists uncovered
names; it probes only the endpoints that are due, so each keeps its own interval.

The scheduler only schedules: each batch is one :meth:`~chainwatch.service.cycle.Cycle.batch`
(collect, record, alert policy, delivery, dead-man ping) and every tick, not only after
scans, runs :meth:`~chainwatch.service.cycle.Cycle.tick` (the watchdog and the delivery of
retries). ``SIGHUP`` reloads the inventory (a broken file is reported and the previous one
kept; new endpoints are probed at once); ``SIGTERM``/``SIGINT`` stop it after the current
batch. No exception in a batch, a tick or a reload ends the loop: it is logged, counted
in :attr:`Scheduler.failures`, and the loop goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from sqlalchemy.exc import SQLAlchemyError

from chainwatch.config.inventory import Endpoint, Inventory, load_inventory
from chainwatch.errors import ChainwatchError
from chainwatch.service.collect import ScanResult
from chainwatch.service.cycle import Cycle
from chainwatch.storage.db import first_line
from chainwatch.storage.repo import Database

log = logging.getLogger("chainwatch.service.scheduler")

RETRY_BASE = dt.timedelta(minutes=1)
BATCH_WINDOW = dt.timedelta(seconds=30)


@dataclass
class Slot:
    """When an endpoint is next due, and how many probes in a row have failed."""

    due: dt.datetime
    failures: int = 0


class Scheduler:
    """Runs scans forever (or for ``max_batches``), one batch of due endpoints at a time."""

    def __init__(
        self,
        inventory_path: str | Path,
        db: Database,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        jitter: float = 0.1,
        rng: random.Random | None = None,
        cycle: Cycle | None = None,
        after_batch: Callable[[Inventory, ScanResult], None] | None = None,
        on_tick: Callable[[Inventory], None] | None = None,
        on_reload: Callable[[Inventory], None] | None = None,
    ) -> None:
        """``cycle`` runs the batches and ticks (default: a :class:`Cycle` on ``db``);
        ``after_batch`` and ``on_tick`` are observers called after each (the lab shows
        the first sweep; tests stop the loop); ``on_reload`` sees each inventory loaded
        by a reload (the log redaction learns its secrets)."""
        self.path = Path(inventory_path)
        self.db = db
        self.cycle = cycle if cycle is not None else Cycle(db, clock=clock)
        self.failures = 0
        self.clock = clock
        self.jitter = jitter
        self.rng = rng or random.Random()
        self.after_batch = after_batch
        self.on_tick = on_tick
        self.on_reload = on_reload
        self.inventory = load_inventory(self.path)
        self.slots: dict[str, Slot] = {}
        self.next_sweep = self.clock()
        self.stop_event = threading.Event()  # wakes the sleeper (stop or reload)
        self._stopping = threading.Event()  # a stop was asked for (a reload never clears it)
        self._reload = threading.Event()

    # -- signals -----------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._reload.set()
        self.stop_event.set()  # wake the sleeper; run() clears it again

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop after the current batch (what SIGTERM and Ctrl-C do)."""
        self._stopping.set()
        self.stop_event.set()

    def request_reload(self) -> None:
        self._reload.set()
        self.stop_event.set()

    def reload(self) -> bool:
        """Re-read the inventory; on error keep the current one. True if it was loaded."""
        try:
            fresh = load_inventory(self.path)
        except ChainwatchError as exc:
            log.error("inventory reload failed, keeping the previous one: %s", exc)
            return False
        except Exception as exc:  # a bug must not end serve: keep the previous inventory
            self.failures += 1
            log.exception("inventory reload failed with an internal error, keeping the "
                          "previous one: %s: %s", type(exc).__name__, exc)
            return False
        if self.on_reload is not None:
            self.on_reload(fresh)
        self.inventory = fresh
        keys = {e.target.key for e in fresh.endpoints}
        self.slots = {k: v for k, v in self.slots.items() if k in keys}
        self.next_sweep = self.clock()
        log.info("inventory reloaded: %d endpoints", len(fresh.endpoints))
        return True

    # -- scheduling --------------------------------------------------------------------

    def due(self, now: dt.datetime) -> list[Endpoint]:
        """Endpoints due now, or due within :data:`BATCH_WINDOW` (at most a tenth of
        their interval): jitter spreads due times thinly, and one batch of a minute's
        endpoints costs far less than one batch each."""
        out = []
        for e in self.inventory.endpoints:
            slot = self.slots.setdefault(e.target.key, Slot(due=now))
            if slot.due <= now + min(BATCH_WINDOW, e.interval / 10):
                out.append(e)
        return out

    def _spread(self, interval: dt.timedelta) -> dt.timedelta:
        return interval * (1 + self.rng.uniform(-self.jitter, self.jitter))

    def _reschedule(self, result: ScanResult, batch: list[Endpoint], now: dt.datetime) -> None:
        failed_keys = {
            key for key, obs in zip(result.keys, result.observations, strict=False)
            if not obs.ok
        }
        done: set[str] = set()
        for e in batch:
            key = e.target.key
            if key in done:  # endpoints pinned to other addresses of one name share a slot:
                continue  # count its failure once per batch
            done.add(key)
            slot = self.slots.setdefault(key, Slot(due=now))
            if key in failed_keys:
                slot.failures += 1
                # The exponent is capped: 2**41 minutes overflows timedelta, and 2**32
                # minutes (8,000 years) is longer than any interval a datetime can add.
                backoff = min(e.interval, RETRY_BASE * 2 ** min(slot.failures - 1, 32))
                slot.due = now + backoff
            else:
                slot.failures = 0
                slot.due = now + self._spread(e.interval)

    def run_once(self) -> ScanResult | None:
        """Scan the endpoints due now (and the files, on a sweep)."""
        now = self.clock()
        full = now >= self.next_sweep
        batch = self.due(now)
        if not batch and not full:
            return None
        # Endpoints keep their own intervals, sweeps included: a sweep adds the files,
        # the heartbeat, retention and uncovered names, and collect() compares each leaf
        # with what the endpoints not probed now last served.
        outcome = self.cycle.batch(self.inventory, endpoints=batch, sweep=full)
        result = outcome.result
        t = result.timings
        log.info(
            "%s of %d targets: %s in %.1f s (probing %.1f s, analysis %.1f s, tracking "
            "%.1f s, storage %.1f s)", "sweep" if full else "batch", len(result.reports),
            result.status.value, t.get("total", 0.0), t.get("probe", 0.0),
            t.get("analysis", 0.0), t.get("track", 0.0), t.get("store", 0.0),
        )
        if full:
            self.next_sweep = now + self._spread(self.inventory.defaults.interval)
        self._reschedule(result, batch, now)
        if self.after_batch is not None:
            self.after_batch(self.inventory, result)
        return result

    def _failed(self, what: str, exc: Exception) -> None:
        """Log a failure of one step of the loop; nothing ends the loop but a stop."""
        self.failures += 1
        if isinstance(exc, ChainwatchError):
            log.error("%s: %s", what, exc)
        elif isinstance(exc, SQLAlchemyError):
            log.error("%s: database error: %s", what, first_line(exc))
        else:  # a bug: the traceback goes to the log, the monitor goes on
            log.exception("%s with an internal error: %s: %s", what, type(exc).__name__, exc)

    def seconds_to_next(self) -> float:
        now = self.clock()
        dues = [s.due for s in self.slots.values()] + [self.next_sweep]
        return max(0.0, min((d - now).total_seconds() for d in dues))

    def run(self, *, max_batches: int | None = None, max_sleep: float = 60.0) -> int:
        """Loop until stopped (or ``max_batches`` scans ran). Returns batches run.

        A batch that fails (a database that went away or is locked, an alert channel
        configuration error) is logged and retried after :meth:`retry_wait` at the
        soonest; it never ends the loop, and the heartbeats it did not write show it.

        After a database error the loop first checks that the database answers (and
        only waits while it does not), then runs ``on_tick`` *before* the next scan:
        the watchdog then sees the ``scan`` heartbeat as the outage left it, and reports
        the gap, before the first scan after it writes a fresh one."""
        batches = 0
        db_failed = False  # the last pass met a database error
        # The watchdog looks once before the first batch: a monitor restarted after an
        # outage reports how long no scan completed (and resolves after the sweep).
        self._tick(observe=False)
        while max_batches is None or batches < max_batches:
            if self._reload.is_set():
                self._reload.clear()
                self.stop_event.clear()
                self.reload()
            if self._stopping.is_set():
                self._stopping.clear()  # consumed by the run it stops
                self.stop_event.clear()
                break
            trouble = False
            if db_failed and not self._database_answers():
                trouble = True
            else:
                # After a database error the watchdog looks before the next scan writes
                # a fresh heartbeat: the gap is reported, not hidden.
                recovering, db_failed = db_failed, False
                if recovering:
                    db_failed |= self._tick()
                try:
                    if self.run_once() is not None:
                        batches += 1
                except Exception as exc:
                    self._failed("scan failed", exc)
                    trouble = True
                    db_failed |= isinstance(exc, SQLAlchemyError)
                if not recovering:
                    db_failed |= self._tick()
                try:
                    self.db.beat("scheduler")
                except Exception as exc:
                    self._failed("heartbeat failed", exc)
                    trouble = True
                    db_failed |= isinstance(exc, SQLAlchemyError)
            if max_batches is not None and batches >= max_batches:
                break
            wait = self.seconds_to_next()
            if trouble:  # what failed is due again at once: do not spin on it
                wait = max(wait, self.retry_wait())
            if not self._stopping.is_set():
                self.stop_event.wait(min(max_sleep, wait))
        return batches

    def _tick(self, *, observe: bool = True) -> bool:
        """The cycle's tick (watchdog, retries) and ``on_tick``; True if it met a
        database error (logged either way)."""
        try:
            self.cycle.tick(self.inventory)
            if observe and self.on_tick is not None:
                self.on_tick(self.inventory)
        except Exception as exc:
            self._failed("alert housekeeping failed", exc)
            return isinstance(exc, SQLAlchemyError)
        return False

    def _database_answers(self) -> bool:
        try:
            with self.db.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            log.error("database still unreachable: %s", first_line(exc))
            return False
        log.info("database reachable again")
        return True

    def retry_wait(self) -> float:
        """Seconds to wait after a failed pass: :data:`RETRY_BASE`, or the shortest
        interval of the inventory when that is shorter (an endpoint probed every 10 s
        is not left unwatched for a minute after a database hiccup of one second)."""
        intervals = [e.interval for e in self.inventory.endpoints]
        shortest = min([self.inventory.defaults.interval, *intervals])
        return max(1.0, min(RETRY_BASE, shortest).total_seconds())

