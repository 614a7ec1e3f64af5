"""``/metrics``: the ``chainwatch_`` series (DESIGN.md, "Read side") from the stored state.

::

    body, content_type = exposition(db, inventory)    # what GET /metrics answers

Everything is read from the database (:class:`~chainwatch.storage.metrics_repo.MetricsRepo`):
each target's newest observation, the monitor's counters, alert states and the outbox.
A process that only reads the database (``chainwatch web``) therefore answers exactly what
the scanning process would. Each render builds a fresh
:class:`~prometheus_client.CollectorRegistry` around one custom collector: there is no
process-global registry and no state between scrapes.

Labels: ``target`` is ``host:port`` (``[v6]:port``; a certificate file is ``file:PATH``),
``address`` the IP connected to (empty when unknown). Labels stay the same across
renewals: fingerprints, serials and names appear on ``chainwatch_leaf_info`` only. Two
stored targets with the same ``host:port`` and address (another SNI or STARTTLS
flavour) would be the same series: the first in target order is shown.

With an inventory, only its endpoints and files are shown (a target removed from it is
not reported forever), renewal points use each endpoint's ``renew_at``, and
``metrics: {per_cert: true}`` adds ``chainwatch_cert_not_after_timestamp_seconds``.

:func:`states_of_reports` and :func:`target_families` are shared with the exporter, which
answers the same series for a target it has just probed.
"""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from chainwatch.config.values import Inventory
from chainwatch.model import FindingCode, RenewalPolicy, Report, Target
from chainwatch.storage.batches import ZoneHealth, zone_health
from chainwatch.storage.metrics_repo import (
    PROBE_FAILURES,
    SCAN_BUCKETS,
    SCAN_DURATION,
    LatestRow,
    MetricsRepo,
    MonitorState,
)
from chainwatch.storage.repo import Database

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The Prometheus text format, version 0.0.4 (what every Prometheus reads)."""

STATUS_VALUE = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}
"""``chainwatch_target_status``: the monitoring-plugin convention."""

_TA = ("target", "address")


@dataclass(frozen=True)
class AddressState:
    """One target address as the series show it (from a stored row or a fresh report).

    Attributes:
        target / address: the label values.
        status: ``ok``, ``warning``, ``critical`` or ``unknown``.
        breaks_at: the report's ``breaks_at`` (earliest over required profiles), epoch s.
        profiles: (spec, trusted now, breaks_at epoch s); an untrusted profile's
            breaks_at is the instant of evaluation (it is broken already).
        findings: (code, severity) of each finding.
        not_after: each served certificate's ``not_after`` in served order, epoch s.
        leaf: (sha256, serial hex, issuer, subject) of the served leaf.
        renew_at: when the leaf is expected to be renewed, epoch s.
        overdue: whether ``RENEWAL_OVERDUE`` was found.
    """

    target: str
    address: str
    status: str
    breaks_at: float | None
    profiles: tuple[tuple[str, bool, float], ...]
    findings: tuple[tuple[str, str], ...]
    not_after: tuple[float, ...]
    leaf: tuple[str, str, str, str] | None
    renew_at: float | None
    overdue: bool


def target_label(target: Target) -> str:
    """``host:port`` (``[v6]:port``), or ``file:PATH`` for a certificate file."""
    if target.is_file:
        return target.host
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}"


def _epoch(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _state_of_row(row: LatestRow, policy: RenewalPolicy) -> AddressState:
    report = row.report
    evaluated = _epoch(report.get("evaluated_at")) or row.observed_at.timestamp()
    profiles = []
    for p in report.get("profiles") or ():
        if not isinstance(p, Mapping):
            continue
        trusted = p.get("trusted") is True
        breaks = _epoch(p.get("breaks_at")) if trusted else evaluated
        profiles.append((str(p.get("profile")), trusted, breaks if breaks is not None
                         else evaluated))
    findings = tuple(
        (str(f.get("code")), str(f.get("severity")))
        for f in report.get("findings") or () if isinstance(f, Mapping)
    )
    not_after = tuple(
        e for c in report.get("chain") or () if isinstance(c, Mapping)
        if (e := _epoch(c.get("not_after"))) is not None
    )
    leaf = None
    renew_at = None
    if row.leaf_sha256 is not None and row.leaf_not_before is not None \
            and row.leaf_not_after is not None:
        leaf = (row.leaf_sha256, row.leaf_serial or "", row.leaf_issuer or "",
                row.leaf_subject or "")
        renew_at = policy.renew_at_dates(row.leaf_not_before, row.leaf_not_after).timestamp()
    return AddressState(
        target=target_label(row.target), address=row.target.ip or "", status=row.status,
        breaks_at=None if row.breaks_at is None else row.breaks_at.timestamp(),
        profiles=tuple(profiles), findings=findings, not_after=not_after, leaf=leaf,
        renew_at=renew_at, overdue=FindingCode.RENEWAL_OVERDUE.value in {c for c, _ in findings},
    )


def states_of_reports(reports: Iterable[Report],
                      policies: Iterable[RenewalPolicy]) -> list[AddressState]:
    """The series' view of freshly made reports (each with its ``target``), one renewal
    policy each."""
    out = []
    for report, policy in zip(reports, policies, strict=True):
        target = report.target or Target(host=report.host or "")
        evaluated = report.evaluated_at.timestamp()
        leaf = report.chain[0] if report.chain else None
        out.append(AddressState(
            target=target_label(target), address=target.ip or "",
            status=report.status.value,
            breaks_at=None if report.breaks_at is None else report.breaks_at.timestamp(),
            profiles=tuple(
                (p.profile, p.trusted,
                 p.breaks_at.timestamp() if p.trusted and p.breaks_at is not None
                 else evaluated)
                for p in report.profiles),
            findings=tuple((f.code.value, f.severity.value) for f in report.findings),
            not_after=tuple(c.not_after.timestamp() for c in report.chain),
            leaf=None if leaf is None else (leaf.sha256, format(leaf.parsed.serial_number, "x"),
                                            leaf.issuer, leaf.subject),
            renew_at=None if leaf is None else policy.renew_at(leaf).timestamp(),
            overdue=any(f.code is FindingCode.RENEWAL_OVERDUE for f in report.findings),
        ))
    return out


def target_families(states: Sequence[AddressState], *, per_cert: bool = False) -> Iterator[Metric]:
    """The per-target ``chainwatch_`` families of ``states``, one at a time (a family is
    dropped once written, so the render never holds every sample at once)."""
    g = GaugeMetricFamily(
        "chainwatch_breaks_at_timestamp_seconds",
        "First instant at which this client profile stops trusting the served chain "
        "(the instant of evaluation when it is untrusted already).",
        labels=("target", "address", "profile"))
    for s in states:
        for spec, _, breaks in s.profiles:
            g.add_metric((s.target, s.address, spec), breaks)
    yield g
    g = GaugeMetricFamily(
        "chainwatch_target_breaks_at_timestamp_seconds",
        "Earliest breaks_at over the target's required profiles and addresses.",
        labels=("target",))
    earliest: dict[str, float] = {}
    for s in states:
        if s.breaks_at is not None:
            earliest[s.target] = min(s.breaks_at, earliest.get(s.target, s.breaks_at))
    for target, when in earliest.items():
        g.add_metric((target,), when)
    yield g
    g = GaugeMetricFamily("chainwatch_profile_trusted",
                          "1 when this client profile trusts the served chain now, else 0.",
                          labels=("target", "address", "profile"))
    for s in states:
        for spec, trusted, _ in s.profiles:
            g.add_metric((s.target, s.address, spec), 1.0 if trusted else 0.0)
    yield g
    g = GaugeMetricFamily("chainwatch_target_status",
                          "Verdict: 0 ok, 1 warning, 2 critical, 3 unknown.", labels=_TA)
    for s in states:
        g.add_metric((s.target, s.address), STATUS_VALUE.get(s.status, 3))
    yield g
    g = GaugeMetricFamily("chainwatch_findings", "Findings of the latest report, by code "
                          "and severity.", labels=("target", "address", "code", "severity"))
    for s in states:
        counts: dict[tuple[str, str], int] = {}
        for key in s.findings:
            counts[key] = counts.get(key, 0) + 1
        for (code, severity), n in counts.items():
            g.add_metric((s.target, s.address, code, severity), n)
    yield g
    g = GaugeMetricFamily("chainwatch_renew_at_timestamp_seconds",
                          "When the served leaf is expected to have been renewed.", labels=_TA)
    for s in states:
        if s.renew_at is not None:
            g.add_metric((s.target, s.address), s.renew_at)
    yield g
    g = GaugeMetricFamily("chainwatch_renewal_overdue",
                          "1 when the served leaf is past its renewal point plus grace and "
                          "no newer certificate is served (RENEWAL_OVERDUE).", labels=_TA)
    for s in states:
        if s.leaf is not None:
            g.add_metric((s.target, s.address), 1.0 if s.overdue else 0.0)
    yield g
    g = GaugeMetricFamily("chainwatch_leaf_info",
                          "The served leaf certificate (always 1; the only series with "
                          "fingerprints and serials).",
                          labels=("target", "address", "sha256", "serial", "issuer", "subject"))
    for s in states:
        if s.leaf is not None:
            g.add_metric((s.target, s.address, *s.leaf), 1.0)
    yield g
    if per_cert:
        g = GaugeMetricFamily("chainwatch_cert_not_after_timestamp_seconds",
                              "notAfter of each served certificate by position (0 = leaf).",
                              labels=("target", "address", "position"))
        for s in states:
            for position, when in enumerate(s.not_after):
                g.add_metric((s.target, s.address, str(position)), when)
        yield g


def monitor_families(state: MonitorState) -> Iterator[Metric]:
    """The monitor's own series."""
    g = GaugeMetricFamily("chainwatch_last_scan_timestamp_seconds",
                          "When the last scan batch was recorded.")
    if state.last_scan is not None:
        g.add_metric((), state.last_scan.timestamp())
    yield g
    counters = state.counters
    buckets = [(f"{b:g}", counters.get((SCAN_DURATION, f"le={b:g}"), 0.0)) for b in SCAN_BUCKETS]
    buckets.append(("+Inf", counters.get((SCAN_DURATION, "le=+Inf"), 0.0)))
    yield HistogramMetricFamily(
        "chainwatch_scan_duration_seconds", "Seconds each recorded scan batch took "
        "(probe, analysis, tracking, storing).", buckets=buckets,
        sum_value=counters.get((SCAN_DURATION, "sum"), 0.0))
    c = CounterMetricFamily("chainwatch_probe_failures_total",
                            "Probes that failed, by reason.", labels=("reason",))
    for (name, labels), value in sorted(counters.items()):
        if name == PROBE_FAILURES and labels.startswith("reason="):
            c.add_metric((labels.removeprefix("reason="),), value)
    yield c
    g = GaugeMetricFamily("chainwatch_alerts_open", "Open (unresolved) alerts, by the "
                          "action they last fired.", labels=("action",))
    for action, n in sorted(state.alerts_open.items()):
        g.add_metric((action,), n)
    yield g
    c = CounterMetricFamily("chainwatch_deliveries_total", "Alert delivery outcomes by "
                            "channel: delivered messages, failed attempts, dead messages.",
                            labels=("channel", "result"))
    for (channel, result), n in sorted(state.deliveries.items()):
        c.add_metric((channel, result), n)
    yield c
    g = GaugeMetricFamily("chainwatch_outbox_pending", "Alert messages waiting to be sent.")
    g.add_metric((), state.outbox_pending)
    yield g
    g = GaugeMetricFamily("chainwatch_watchdog_firing", "Watchdog alerts open now (no scan "
                          "completing, an alert channel failing).")
    g.add_metric((), state.watchdog_firing)
    yield g


def zone_families(zones: Sequence[ZoneHealth]) -> Iterator[Metric]:
    """Distributed mode's zones (the zones that have batches or workers in the database,
    and those an inventory's ``zones:`` lists). Times, not "alive now" flags: the series
    depend on stored rows only, and a rule compares them with ``time()``."""
    beat = GaugeMetricFamily("chainwatch_zone_last_worker_beat_timestamp_seconds",
                             "The newest heartbeat of any worker of the zone.", labels=("zone",))
    depth = GaugeMetricFamily("chainwatch_zone_queue_depth", "Batches put on the zone's "
                              "queue and not finished yet.", labels=("zone",))
    oldest = GaugeMetricFamily("chainwatch_zone_oldest_pending_timestamp_seconds",
                               "When the oldest unfinished batch of the zone was put on its "
                               "queue.", labels=("zone",))
    last = GaugeMetricFamily("chainwatch_zone_last_result_timestamp_seconds",
                             "When a worker of the zone last finished a batch.", labels=("zone",))
    for z in zones:
        depth.add_metric((z.name,), z.queue_depth)
        if z.last_worker_beat is not None:
            beat.add_metric((z.name,), z.last_worker_beat.timestamp())
        if z.oldest_pending is not None:
            oldest.add_metric((z.name,), z.oldest_pending.timestamp())
        if z.last_result is not None:
            last.add_metric((z.name,), z.last_result.at.timestamp())
    yield from (beat, depth, oldest, last)


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def render(families: Iterable[Metric]) -> bytes:
    """The text exposition of ``families`` (a fresh registry around them)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


def stored_states(db: Database, inventory: Inventory | None = None) -> list[AddressState]:
    """Every stored target's latest state (only the inventory's, when given)."""
    repo = MetricsRepo(db)
    if inventory is None:
        rows: Iterable[LatestRow] = repo.latest()
        policies: Mapping[str, RenewalPolicy] = {}
        default = RenewalPolicy()
    else:
        wanted = [e.target for e in inventory.endpoints]
        wanted += [Target.file(p) for f in inventory.files for p in f.paths()]
        rows = repo.latest(wanted)
        policies = {e.target.key: e.renewal for e in inventory.endpoints}
        default = inventory.defaults.renewal
    seen: set[tuple[str, str]] = set()
    out = []
    for row in rows:
        state = _state_of_row(row, policies.get(row.target.key, default))
        key = (state.target, state.address)
        if key in seen:
            continue
        seen.add(key)
        out.append(state)
    return out


_rendered: weakref.WeakKeyDictionary[Database, tuple[tuple[Any, ...], Inventory | None, bytes]]
_rendered = weakref.WeakKeyDictionary()
_rendered_lock = threading.Lock()


def exposition(db: Database, inventory: Inventory | None = None) -> tuple[bytes, str]:
    """``GET /metrics``: (body, content type) of every ``chainwatch_`` series, from what
    ``db`` stores (see the module docstring).

    No series depends on the clock, only on stored rows: while
    :meth:`~chainwatch.storage.metrics_repo.MetricsRepo.version` (a one-query fingerprint
    of those rows) stays the same, the last body rendered for this database and
    inventory is answered again. Scrapes between two scans cost one query, not a render
    (a render of a large fleet takes seconds: see the README's figures)."""
    version = MetricsRepo(db).version()
    with _rendered_lock:
        cached = _rendered.get(db)
    if cached is not None and cached[0] == version and cached[1] is inventory:
        return cached[2], CONTENT_TYPE
    # The version is read before the rows: a write during the render makes the stored
    # version older than the body, so the next scrape renders again (never the reverse).
    body = render_stored(db, inventory)
    with _rendered_lock:
        _rendered[db] = (version, inventory, body)
    return body, CONTENT_TYPE


def render_stored(db: Database, inventory: Inventory | None = None) -> bytes:
    """Render every series from ``db`` now (what :func:`exposition` caches)."""
    states = stored_states(db, inventory)
    monitor = MetricsRepo(db).monitor()
    per_cert = inventory is not None and inventory.metrics.per_cert

    zones = zone_health(db, zones=() if inventory is None else inventory.zones)

    def families() -> Iterator[Metric]:
        yield from target_families(states, per_cert=per_cert)
        yield from monitor_families(monitor)
        yield from zone_families(zones)

    return render(families())


__all__ = [
    "CONTENT_TYPE",
    "AddressState",
    "exposition",
    "monitor_families",
    "render",
    "render_stored",
    "states_of_reports",
    "stored_states",
    "target_families",
    "target_label",
    "zone_families",
]
