"""``/metrics``: the ``chainwatch_`` series (DESIGN.md, "Read side") from the stored state.

::

    body, content_type = exposition(db, inventory)    # what GET /metrics answers

Everything is read from the database (:class:`~chainwatch.storage.metrics_repo.MetricsRepo`):
each target's newest observation, the monitor's counters, alert states and the outbox.
A process that only reads the database (``chainwatch web``) therefore answers exactly what
the scanning process would. There is no process-global registry and no state between
scrapes but the last body (:func:`exposition`).

Two renders, byte for byte the same (``tests/test_metrics_fast.py``):

- :func:`render_stored_plain`, the reference: every target's stored report decoded
  (:func:`stored_states`), every sample built as a prometheus-client family
  (:func:`target_families`, which the exporter uses too) and formatted by
  :func:`~prometheus_client.generate_latest` in a fresh registry. ~250 µs a target.
- :func:`render_stored`, what ``/metrics`` answers: prometheus-client formats each
  per-target family once, for a probe target whose label values are placeholders
  (:func:`_shapes`); each stored summary of a report document
  (:mod:`chainwatch.storage.series`, written with the document) becomes that document's
  profile, finding and chain lines once per render, with the address and target left as
  fields; each target then costs one lean row (no report decoded; each served leaf's
  certificate read once per render) and its escaped labels (escaped as prometheus-client
  escapes label values; values by its ``floatToGoString``) kept beside its templates; the
  body is then written family by family, a page of addresses at a time, as one join of
  the templates' literal parts and the label columns (:class:`_Writer`). The renewal
  point (each endpoint's policy, from the leaf's dates) and the leaf line are per leaf.
  At first use a tricky fleet (quotes, backslashes, newlines, ``%``, IPv6,
  non-ASCII) is rendered both ways: if this prometheus-client formats differently, the
  plain render is used.

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
import io
import re
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain, repeat
from operator import itemgetter
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
from prometheus_client.utils import floatToGoString

from chainwatch.config.values import Inventory
from chainwatch.model import FindingCode, RenewalPolicy, Report, Target
from chainwatch.model.times import iso_or_none
from chainwatch.model.values import FILE_PREFIX
from chainwatch.storage.batches import ZoneHealth, zone_health
from chainwatch.storage.metrics_repo import (
    PROBE_FAILURES,
    SCAN_BUCKETS,
    SCAN_DURATION,
    LatestRow,
    LeafColumns,
    MetricsRepo,
    MonitorState,
    instant,
)
from chainwatch.storage.repo import Database
from chainwatch.storage.series import Series, epoch, read_series, summarize

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


def _state_of_row(row: LatestRow, policy: RenewalPolicy) -> AddressState:
    report = row.report
    evaluated = epoch(report.get("evaluated_at")) or row.observed_at.timestamp()
    profiles = []
    for p in report.get("profiles") or ():
        if not isinstance(p, Mapping):
            continue
        trusted = p.get("trusted") is True
        breaks = epoch(p.get("breaks_at")) if trusted else evaluated
        profiles.append((str(p.get("profile")), trusted, breaks if breaks is not None
                         else evaluated))
    findings = tuple(
        (str(f.get("code")), str(f.get("severity")))
        for f in report.get("findings") or () if isinstance(f, Mapping)
    )
    not_after = tuple(
        e for c in report.get("chain") or () if isinstance(c, Mapping)
        if (e := epoch(c.get("not_after"))) is not None
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


def _selection(inventory: Inventory | None
               ) -> tuple[list[Target] | None, Mapping[str, RenewalPolicy], RenewalPolicy]:
    """What ``/metrics`` shows of the stored targets: (the targets to read, ``None`` for
    every one; each endpoint's renewal policy by key; the default policy)."""
    if inventory is None:
        return None, {}, RenewalPolicy()
    wanted = [e.target for e in inventory.endpoints]
    wanted += [Target.file(p) for f in inventory.files for p in f.paths()]
    return (wanted, {e.target.key: e.renewal for e in inventory.endpoints},
            inventory.defaults.renewal)


def stored_states(db: Database, inventory: Inventory | None = None) -> list[AddressState]:
    """Every stored target's latest state (only the inventory's, when given)."""
    wanted, policies, default = _selection(inventory)
    rows = MetricsRepo(db).latest(wanted)
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
    """Render every series from ``db`` now (what :func:`exposition` caches): the fast
    path (:func:`_render_fast`), byte for byte what :func:`render_stored_plain` gives."""
    shapes = _shapes()
    if shapes is None:  # this prometheus-client formats differently: the plain way
        return render_stored_plain(db, inventory)
    per_cert = inventory is not None and inventory.metrics.per_cert
    body = io.BytesIO()
    _render_fast(body, shapes, db, inventory, per_cert=per_cert)
    monitor = MetricsRepo(db).monitor()
    zones = zone_health(db, zones=() if inventory is None else inventory.zones)

    def families() -> Iterator[Metric]:
        yield from monitor_families(monitor)
        yield from zone_families(zones)

    body.write(render(families()))
    # getvalue() hands over the buffer itself when nothing else refers to it: the body
    # is not copied.
    return body.getvalue()


def render_stored_plain(db: Database, inventory: Inventory | None = None) -> bytes:
    """Every series from ``db``, the straightforward way: each target's stored report
    decoded (:func:`stored_states`), every sample built and formatted by
    prometheus-client. What :func:`render_stored` must equal; seconds per 10,000
    targets."""
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
    "render_stored_plain",
    "states_of_reports",
    "stored_states",
    "target_families",
    "target_label",
    "zone_families",
]


# -- the fast path --------------------------------------------------------------------------
#
# prometheus-client writes every sample of a family the same way: the name, the labels
# sorted by name with each value escaped, the value as floatToGoString gives it. _shapes()
# has prometheus-client format each per-target family once (target_families of a probe
# state whose label values are placeholders) and keeps its header and its sample line
# as a %-template with those placeholders as fields. A render fills the fields: label
# values escaped as prometheus-client escapes them (_label), values by its own
# floatToGoString. Everything that depends on a report document only (the profiles,
# findings and chain lines) is filled once per distinct stored summary, leaving the
# address and target (and the instant of evaluation, which is per scan) as fields of a
# second template filled per target address (_Writer: a page at a time, by joining the
# template's literal parts with the field columns where it can). At first use a tricky
# fleet (quotes, backslashes, newlines, percent signs, IPv6, non-ASCII) is rendered both
# ways; if this prometheus-client formats anything differently, the plain render is used
# instead.

_PLACEHOLDER = {
    "a": "\x00a\x00", "t": "\x00t\x00", "p": "\x00p\x00", "c": "\x00c\x00", "s": "\x00s\x00",
    "h": "\x00h\x00", "n": "\x00n\x00", "i": "\x00i\x00", "j": "\x00j\x00",
}
_PROBE_VALUE = 0.5  # floatToGoString: "0.5"
_FAMILIES = ("breaks", "target_breaks", "trusted", "status", "findings", "renew",
             "overdue", "leaf", "not_after")
_ADDRESS_FAMILIES = ("breaks", "trusted", "status", "findings", "renew", "overdue", "leaf",
                     "not_after")  # a line template per target address (_Writer._lines)
_PAGE = 2000  # target addresses filled and written at a time


def _go(value: float) -> str:
    """A sample value as prometheus-client's text format writes it (its own function)."""
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]  # untyped upstream
    return text


def _label(value: str) -> str:
    """A label value as prometheus-client's text format escapes it."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass(frozen=True)
class _Shape:
    """One family as prometheus-client formats it: ``header`` (HELP and TYPE lines) and
    ``line``, its sample line as a %-template: each placeholder label value is a field
    (``%(a)s`` address, ``%(t)s`` target, ...) and ``%(v)s`` the value. Literal ``%``
    is doubled twice: the template is filled twice (:func:`_fill`)."""

    header: bytes
    line: str


_FIELDS = {k: f"%({k})s" for k in (*_PLACEHOLDER, "v")}


def _fill(shape: _Shape, value: str | None, value_field: str = "v", **labels: str) -> str:
    """``shape``'s sample line with ``labels`` (escaped) and ``value`` filled in, and
    every other field (and the value, when ``None``: as ``%(value_field)s``) kept as a
    field of the second template (``%(a)s`` ...)."""
    fields = dict(_FIELDS)
    for k, v in labels.items():
        fields[k] = _label(v).replace("%", "%%")
    fields["v"] = f"%({value_field})s" if value is None else value.replace("%", "%%")
    return shape.line % fields


def _shape_of(text: str, value: str, position: bool = False) -> _Shape | None:
    """The shape of a family prometheus-client formatted with one probe sample whose
    value is ``value``."""
    lines = text.splitlines(keepends=True)
    if len(lines) != 3 or not lines[0].startswith("# HELP ") \
            or not lines[1].startswith("# TYPE "):
        return None
    sample = lines[2]
    value = f" {value}\n"
    if not sample.endswith(value):
        return None
    sample = sample[: -len(value)]
    if position:  # chainwatch_cert_not_after's position is the index: 0 in the probe
        if sample.count('position="0"') != 1:
            return None
        sample = sample.replace('position="0"', 'position="\x00p\x00"')
    template = sample.replace("%", "%%%%")
    for key, placeholder in _PLACEHOLDER.items():
        template = template.replace(placeholder, f"%({key})s")
    if "\x00" in template:
        return None
    return _Shape(header=(lines[0] + lines[1]).encode(), line=template + " %(v)s\n")


def _probe_state() -> AddressState:
    ph = _PLACEHOLDER
    return AddressState(
        target=ph["t"], address=ph["a"], status="ok", breaks_at=_PROBE_VALUE,
        profiles=((ph["p"], True, _PROBE_VALUE),), findings=((ph["c"], ph["s"]),),
        not_after=(_PROBE_VALUE,), leaf=(ph["h"], ph["n"], ph["i"], ph["j"]),
        renew_at=_PROBE_VALUE, overdue=False)


def _build_shapes() -> dict[str, _Shape] | None:
    shapes: dict[str, _Shape] = {}
    probe = _probe_state()
    # The probe's values: 1 (trusted, one finding, leaf_info), 0 (ok, not overdue), 0.5.
    values = {"trusted": 1.0, "findings": 1.0, "leaf": 1.0, "status": 0.0, "overdue": 0.0}
    for name, family in zip(_FAMILIES, target_families([probe], per_cert=True), strict=True):
        text = render([family]).decode()
        shape = _shape_of(text, _go(values.get(name, _PROBE_VALUE)),
                          position=name == "not_after")
        if shape is None:
            return None
        shapes[name] = shape
    return shapes


_shapes_lock = threading.Lock()
_shapes_built: list[dict[str, _Shape] | None] = []


def _shapes() -> dict[str, _Shape] | None:
    """The families' shapes, built and checked once per process; ``None`` when this
    prometheus-client formats them other than the fast path assumes."""
    with _shapes_lock:
        if not _shapes_built:
            shapes = _build_shapes()
            if shapes is not None and not _self_check(shapes):
                shapes = None
            _shapes_built.append(shapes)
        return _shapes_built[0]


class _Fmt(dict[float, bytes]):
    """floatToGoString of prometheus-client, remembered (as UTF-8 bytes)."""

    def __missing__(self, value: float) -> bytes:
        text = _go(value).encode()
        self[value] = text
        return text


@dataclass(frozen=True)
class _Doc:
    """A stored summary's lines, as second templates (fields ``%(a)s``, ``%(t)s`` and
    ``%(v)s``, the instant of evaluation, when ``needs_evaluated``)."""

    breaks: bytes
    trusted: bytes
    findings: bytes
    not_after: bytes
    needs_evaluated: bool
    overdue: bool
    lines: dict[tuple[str, bytes | None, bool], tuple[bytes, ...]] = field(
        default_factory=dict, compare=False, repr=False)
    """Each address's templates, by (status, leaf line, no renewal point):
    :meth:`_Writer.add` fills it."""


def _doc(shapes: Mapping[str, _Shape], series: Series, fmt: _Fmt) -> _Doc:
    breaks = []
    trusted = []
    needs = False
    for spec, ok, at in series.profiles:
        if at is None:
            needs = True
        breaks.append(_fill(shapes["breaks"], None if at is None else fmt[at].decode(),
                            p=spec))
        trusted.append(_fill(shapes["trusted"], "1.0" if ok else "0.0", p=spec))
    findings = [_fill(shapes["findings"], fmt[float(n)].decode(), c=code, s=severity)
                for (code, severity), n in series.findings]
    not_after = [_fill(shapes["not_after"], fmt[when].decode(), p=str(position))
                 for position, when in enumerate(series.not_after)]
    return _Doc(
        breaks="".join(breaks).encode(), trusted="".join(trusted).encode(),
        findings="".join(findings).encode(), not_after="".join(not_after).encode(),
        needs_evaluated=needs,
        overdue=any(code == FindingCode.RENEWAL_OVERDUE.value
                    for (code, _), _ in series.findings))


class _Writer:
    """The per-target families, written one target address at a time in target order
    (:meth:`add`), then into the body family by family (:meth:`finish`).

    Each address keeps its escaped address and target and its two values (instant of
    evaluation, renewal point), one column each, and its templates (one tuple per
    distinct (document, status, leaf), made once and kept on the document; equal
    templates are one object). :meth:`finish` writes a page of addresses at a time,
    family by family, straight into the body (no buffer per family to grow and copy
    again), by one join of the page's pieces (:meth:`_chunk`): where every address of
    the page has the same template, or templates of the same fields, its literal parts
    and the field columns are interleaved (no line formatted on its own); otherwise
    each template is filled by ``%``. The addresses of one target are adjacent in
    target order, so its earliest ``breaks_at`` is known when the next target starts."""

    def __init__(self, shapes: Mapping[str, _Shape], per_cert: bool) -> None:
        self.shapes = shapes
        self.per_cert = per_cert
        self.page = _PAGE
        self.fmt = _Fmt()
        self.docs: dict[Any, _Doc] = {}
        self.leaves: dict[str, bytes] = {}  # by SHA-256: the line of each leaf
        self.templates: dict[bytes, bytes] = {}  # equal templates, one object
        self.splits = _Splits()
        status = shapes["status"]
        self.status = {name: _fill(status, _go(value)).encode()
                       for name, value in STATUS_VALUE.items()}
        self.status_unknown = _fill(status, _go(3)).encode()
        self.renew = _fill(shapes["renew"], None, value_field="r").encode()
        self.overdue = (_fill(shapes["overdue"], "0.0").encode(),
                        _fill(shapes["overdue"], "1.0").encode())
        self.target_breaks = _fill(shapes["target_breaks"], None, value_field="e").encode()
        self.target: str | None = None  # the target being written
        self.earliest: float | None = None  # its earliest breaks_at so far
        # One column per field, one entry per address (target_breaks: per target).
        self.columns: dict[bytes, list[bytes]] = {k: [] for k in (b"a", b"t", b"v", b"r")}
        self.lines: list[tuple[bytes, ...]] = []  # each address's templates
        self.target_columns: dict[bytes, list[bytes]] = {b"t": [], b"e": []}

    def doc(self, key: Any, series: Series) -> _Doc:
        doc = self.docs.get(key)
        if doc is None:
            doc = self.docs[key] = _doc(self.shapes, series, self.fmt)
        return doc

    def leaf(self, sha256: str, serial: str, issuer: str, subject: str) -> bytes:
        """The ``chainwatch_leaf_info`` template of a leaf (fields ``%(a)s``, ``%(t)s``)."""
        line = self.leaves.get(sha256)
        if line is None:
            line = self.leaves[sha256] = _fill(self.shapes["leaf"], "1.0", h=sha256,
                                               n=serial, i=issuer, j=subject).encode()
        return line

    def add(self, address: str, target: str, status: str, breaks_at: float | None,
            doc: _Doc, evaluated: float | None, leaf: bytes | None,
            renew: bytes | None) -> None:
        """One target address; ``evaluated`` (the instant of evaluation) is needed only
        when ``doc.needs_evaluated``; ``leaf`` is :meth:`leaf`'s template and ``renew``
        the renewal point as :attr:`fmt` writes it."""
        if target != self.target:  # the previous target is done
            if self.earliest is not None:
                self.target_columns[b"t"].append(self.columns[b"t"][-1])
                self.target_columns[b"e"].append(self.fmt[self.earliest])
            self.target = target
            self.earliest = breaks_at
        elif breaks_at is not None and (self.earliest is None or breaks_at < self.earliest):
            self.earliest = breaks_at
        key = (status, leaf, renew is None)
        lines = doc.lines.get(key)
        if lines is None:
            lines = doc.lines[key] = self._lines(doc, status, leaf, renew is not None)
        self.lines.append(lines)
        columns = self.columns
        # Label values escaped as _label escapes them (most need nothing).
        if "\\" in address or "\n" in address or '"' in address:
            address = _label(address)
        columns[b"a"].append(address.encode())
        if "\\" in target or "\n" in target or '"' in target:
            target = _label(target)
        columns[b"t"].append(target.encode())
        columns[b"v"].append(b"" if evaluated is None else self.fmt[evaluated])
        columns[b"r"].append(renew or b"")

    def _lines(self, doc: _Doc, status: str, leaf: bytes | None,
               renew: bool) -> tuple[bytes, ...]:
        """An address's templates, one per family of :data:`_ADDRESS_FAMILIES` (``b""``
        where it has no line)."""
        lines: tuple[bytes, ...] = (
            doc.breaks, doc.trusted, self.status.get(status, self.status_unknown),
            doc.findings, self.renew if renew else b"",
            b"" if leaf is None else self.overdue[doc.overdue], leaf or b"")
        if self.per_cert:
            lines = (*lines, doc.not_after)
        return tuple(self.templates.setdefault(line, line) for line in lines)

    def _target_done(self) -> None:
        if self.earliest is not None:
            self.target_columns[b"t"].append(self.columns[b"t"][-1])
            self.target_columns[b"e"].append(self.fmt[self.earliest])
        self.earliest = None

    def _chunk(self, templates: list[bytes], columns: Mapping[bytes, list[bytes]]) -> bytes:
        """The lines of ``templates`` (one per address of a page) filled with the page's
        ``columns``."""
        first = templates[0]
        if templates.count(first) == len(templates):  # one template: its parts repeat
            keys, parts = self.splits[first]
            if not keys:
                return parts[0] * len(templates)
            pieces: list[Iterable[bytes]] = [repeat(parts[0])]
            for key, part in zip(keys, parts[1:], strict=True):
                pieces += (columns[key], repeat(part))
            # The columns end the page (the parts repeat without end).
            return b"".join(chain.from_iterable(zip(*pieces, strict=False)))
        splits = list(map(self.splits.__getitem__, templates))
        keys = splits[0][0]
        if keys and list(map(itemgetter(0), splits)).count(keys) == len(splits):
            # The same fields, other parts (a leaf line per leaf).
            each = list(map(itemgetter(1), splits))
            pieces = [map(itemgetter(0), each)]
            for n, key in enumerate(keys, start=1):
                pieces += (columns[key], map(itemgetter(n), each))
            return b"".join(chain.from_iterable(zip(*pieces, strict=True)))
        fields = map(dict, map(zip, repeat(tuple(columns)), zip(*columns.values(), strict=True)))
        return b"".join(map(bytes.__mod__, templates, fields))

    def finish(self, body: io.BytesIO) -> None:
        self._target_done()
        columns, lines, page = self.columns, self.lines, self.page
        for name in _FAMILIES:
            if name == "not_after" and not self.per_cert:
                continue
            write = body.write
            write(self.shapes[name].header)
            if name == "target_breaks":
                targets = self.target_columns
                for start in range(0, len(targets[b"t"]), page):
                    fields = {k: v[start:start + page] for k, v in targets.items()}
                    write(self._chunk([self.target_breaks] * len(fields[b"t"]), fields))
                continue
            pick = itemgetter(_ADDRESS_FAMILIES.index(name))
            for start in range(0, len(lines), page):
                end = start + page
                write(self._chunk(list(map(pick, lines[start:end])),
                                  {k: v[start:end] for k, v in columns.items()}))
        for column in (*columns.values(), *self.target_columns.values()):
            column.clear()
        lines.clear()
        self.docs.clear()
        self.leaves.clear()
        self.templates.clear()
        self.splits.clear()
        self.fmt.clear()


_FIELD = re.compile(rb"%(?:\((\w)\)s|%)")


class _Splits(dict[bytes, tuple[tuple[bytes, ...], tuple[bytes, ...]]]):
    """A second template's fields and its literal parts around them (``%%`` read as
    ``%``), remembered: ``b'x%(a)sy%(t)s%%z'`` is ``((b"a", b"t"), (b"x", b"y", b"%z"))``."""

    def __missing__(self, template: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        keys: list[bytes] = []
        parts: list[bytes] = []
        current: list[bytes] = []
        position = 0
        for match in _FIELD.finditer(template):
            current.append(template[position:match.start()])
            if match.group(1) is None:
                current.append(b"%")
            else:
                parts.append(b"".join(current))
                current = []
                keys.append(match.group(1))
            position = match.end()
        current.append(template[position:])
        parts.append(b"".join(current))
        split = self[template] = (tuple(keys), tuple(parts))
        return split


def _series_of_state(state: AddressState) -> Series:
    counts: dict[tuple[str, str], int] = {}
    for key in state.findings:
        counts[key] = counts.get(key, 0) + 1
    return Series(
        profiles=tuple((spec, ok, at) for spec, ok, at in state.profiles),
        findings=tuple(counts.items()), not_after=state.not_after)


def _self_check(shapes: Mapping[str, _Shape]) -> bool:
    """Whether the fast path formats a tricky fleet exactly as prometheus-client does.
    Written two addresses a page, the fleet's pages have one template per family, the
    same fields in other templates (another leaf), and templates of other fields: each
    way :meth:`_Writer._chunk` writes a page."""
    odd = 'a"b\\c\nd%(a)s%%s é'
    tricky = AddressState(
        target=f"[2001:db8::1]:443{odd}", address=f"2001:db8::1{odd}", status="warning",
        breaks_at=1798761600.25,
        profiles=((f"file:/x{odd}", True, 1798761600.25),
                  ("legacy:mozilla", False, 1764756000.0)),
        findings=((f"CODE{odd}", f"sev{odd}"), ("RENEWAL_OVERDUE", "warning"),
                  (f"CODE{odd}", f"sev{odd}")),
        not_after=(1798761600.0, 2e9), leaf=(odd, "0a", f"CN={odd}", odd),
        renew_at=1790000000.5, overdue=True)
    bare = AddressState(target="file:/c%.pem", address="", status="strange", breaks_at=None,
                        profiles=(), findings=(), not_after=(), leaf=None, renew_at=None,
                        overdue=False)
    states = [
        tricky,  # page 1: one template per family
        replace(tricky, address=f"10.0.0.1{odd}", breaks_at=1798761599.0),
        replace(tricky, target="b.example:443"),  # page 2: another leaf
        replace(tricky, target="b.example:443", address="::1",
                leaf=("ff" * 32, "01", "CN=Other", "CN=b.example"), renew_at=1.5),
        bare,  # page 3: other fields
        replace(tricky, target="c.example:443"),
    ]
    expected = render(target_families(states, per_cert=True))
    writer = _Writer(shapes, per_cert=True)
    writer.page = 2
    for s in states:
        series = _series_of_state(s)
        evaluated = next((at for _, ok, at in s.profiles if not ok), 0.0)
        doc = writer.doc(series, Series(
            profiles=tuple((spec, ok, at if ok else None) for spec, ok, at in series.profiles),
            findings=series.findings, not_after=series.not_after))
        writer.add(s.address, s.target, s.status, s.breaks_at, doc, evaluated,
                   None if s.leaf is None else writer.leaf(*s.leaf),
                   None if s.renew_at is None else writer.fmt[s.renew_at])
    body = io.BytesIO()
    writer.finish(body)
    return body.getvalue() == expected


def _render_fast(body: io.BytesIO, shapes: Mapping[str, _Shape], db: Database,
                 inventory: Inventory | None, *, per_cert: bool) -> None:
    """The per-target families of :func:`stored_states` into ``body`` (see above)."""
    wanted, policies, default = _selection(inventory)
    writer = _Writer(shapes, per_cert)
    docs = writer.docs
    # Rows come in (host, port, ip, ...) order and the labels are a function of those
    # three: the rows of one (target, address) are adjacent, the first is shown.
    last_host: str | None = None
    last_port: int | None = None
    last_ip: str | None = None
    # Stored times repeat (a scan's batch, a leaf on many addresses): each is read once.
    epochs: dict[Any, float] = {}
    evaluated_of: dict[Any, float | None] = {}
    # Each leaf's line, dates and renewal point by the default policy, by SHA-256 (None:
    # not stored, or without dates); the renewal point by another policy, by (policy, leaf).
    leaf_of: dict[str, tuple[bytes, dt.datetime, dt.datetime, bytes] | None] = {}
    renew_of: dict[tuple[int, str], bytes] = {}
    for page, leaves in MetricsRepo(db).latest_series(wanted):
        for (host, port, ip, sni, starttls, status, breaks_at, evaluated_at, observed_at,
             text, report, _, leaf_sha) in page:
            if host == last_host and port == last_port and ip == last_ip:
                continue
            last_host, last_port, last_ip = host, port, ip
            if port == 0 and host.startswith(FILE_PREFIX):
                target = host
            else:
                target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            evaluated: float | None = None
            if text is not None:
                doc = docs.get(text)
                if doc is None:
                    doc = writer.doc(text, read_series(text))
                if doc.needs_evaluated:
                    if evaluated_at not in evaluated_of:
                        # As the plain render reads it: the report's evaluated_at, to the
                        # second.
                        evaluated_of[evaluated_at] = epoch(iso_or_none(instant(evaluated_at)))
                    evaluated = evaluated_of[evaluated_at]
            else:  # no stored summary: the row's whole report, decoded
                doc = _doc(shapes, summarize(report), writer.fmt)
                if doc.needs_evaluated:
                    evaluated = epoch(report.get("evaluated_at"))
            if doc.needs_evaluated and not evaluated:
                evaluated = _stamp(observed_at)
            line = renew = None
            if leaf_sha is not None:
                known = leaf_of.get(leaf_sha, _UNSEEN)
                if known is _UNSEEN:
                    known = leaf_of[leaf_sha] = _leaf(writer, leaf_sha, leaves.get(leaf_sha),
                                                      default)
                if known is not None:
                    line = known[0]
                    if policies:
                        policy = policies.get(Target(
                            host=host, port=port, ip=ip or None, sni=sni or None,
                            starttls=starttls or None).key, default)
                        renew_key = (id(policy), leaf_sha)
                        renew = renew_of.get(renew_key)
                        if renew is None:
                            renew = renew_of[renew_key] = writer.fmt[policy.renew_at_dates(
                                known[1], known[2]).timestamp()]
                    else:
                        renew = known[3]
            when = None
            if breaks_at is not None:
                when = epochs.get(breaks_at)
                if when is None:
                    when = epochs[breaks_at] = _stamp(breaks_at)
            writer.add(ip or "", target, status, when, doc, evaluated, line, renew)
    writer.finish(body)


def _leaf(writer: _Writer, sha256: str, stored: LeafColumns | None, policy: RenewalPolicy
          ) -> tuple[bytes, dt.datetime, dt.datetime, bytes] | None:
    """A stored leaf's line, dates and renewal point by ``policy`` (as written);
    ``None`` when it has no dates (no series)."""
    if stored is None or stored[3] is None or stored[4] is None:
        return None
    serial, subject, issuer, raw_before, raw_after = stored
    not_before, not_after = _aware(raw_before), _aware(raw_after)
    return (writer.leaf(sha256, serial or "", issuer or "", subject or ""), not_before,
            not_after, writer.fmt[policy.renew_at_dates(not_before, not_after).timestamp()])


_UNSEEN: Any = object()


def _aware(raw: Any) -> dt.datetime:
    value = instant(raw)
    if value is None:  # pragma: no cover - callers pass stored, non-NULL times
        raise ValueError("a stored time is NULL")
    return value


def _stamp(raw: Any) -> float:
    return _aware(raw).timestamp()
