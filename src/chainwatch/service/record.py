"""Record: the one place a collected batch is written.

:func:`record` stores a :class:`~chainwatch.service.collect.ScanResult`'s observations and
reports in one batch, beats the ``scan`` heartbeat (a sweep's full beat, or a partial one
for a batch of due endpoints), adds the batch to the monitor's counters (its duration,
its probe failures by reason: ``chainwatch_scan_duration_seconds`` and
``chainwatch_probe_failures_total``) and, on a sweep, applies retention. Nothing else in the
service layer writes observations: ``scan --at`` (a rehearsal) collects and never records.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import replace

from chainwatch.service.collect import ScanResult
from chainwatch.storage.metrics_repo import MetricsRepo
from chainwatch.storage.repo import Database


def record(db: Database, result: ScanResult, *,
           retention: dt.timedelta | None = None, slot: str | None = None) -> ScanResult:
    """Write ``result``; returns it with the writing time added to its ``store`` and
    ``total`` timings. ``slot``: the scan slot of a distributed batch, which makes the
    writes idempotent (a batch delivered twice stores each observation once)."""
    started = time.perf_counter()
    db.record_many(list(zip(result.observations, result.reports, strict=True)), slot=slot)
    if result.sweep:
        db.beat("scan", {"targets": len(result.reports), "status": result.status.value})
        if retention is not None:
            db.prune(retention)
    else:
        db.beat("scan", {"targets": len(result.reports), "partial": True})
    failures: dict[str, int] = {}
    for observation in result.observations:
        if observation.failure is not None:
            reason = observation.failure.value
            failures[reason] = failures.get(reason, 0) + 1
    spent = time.perf_counter() - started
    MetricsRepo(db).count_scan(result.timings.get("total", 0.0) + spent, failures)
    timings = dict(result.timings)
    timings["store"] = timings.get("store", 0.0) + spent
    timings["total"] = timings.get("total", 0.0) + spent
    return replace(result, timings=timings)
