"""The monitor: inventory in, probed + analysed + tracked + stored reports out.

One :func:`scan` is one sweep over an inventory: probe every endpoint address (now),
read every certificate file, analyse each chain as of ``at`` (default: now; ``scan
--at`` rehearses a date while probing now), add the cross-endpoint findings of
:mod:`chainwatch.analysis.tracking`, store everything in one batch, record a heartbeat and
derive one :class:`~chainwatch.alerts.escalation.Situation` per target for the alert policy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from chainwatch.alerts.escalation import Situation
from chainwatch.analysis.populations import hellos_needed
from chainwatch.analysis.tracking import (
    Before,
    LeafIndex,
    Renewal,
    ca_changed,
    hierarchy_of,
    renewal,
    renewal_overdue,
    stale_deployment,
    trusted_of,
    with_findings,
)
from chainwatch.config.inventory import Endpoint, FileSource, Inventory
from chainwatch.config.values import by_timeout
from chainwatch.errors import BundleError
from chainwatch.model import (
    Cert,
    ClientHello,
    FindingCode,
    RenewalPolicy,
    Report,
    Severity,
    Status,
    Target,
)
from chainwatch.model.bundle import load_bundle_file
from chainwatch.probe import FailureReason, Observation
from chainwatch.probe.ari import RenewalInfo, renewal_info
from chainwatch.probe.fetchpolicy import IPNetwork
from chainwatch.probe.handshake import Limits
from chainwatch.probe.parallel import HeadStart, probe_all, probe_hellos
from chainwatch.render.codec import report_json, worst
from chainwatch.service.discovery import endpoint_names, is_covered
from chainwatch.service.netinputs import NetworkInputs, fetch_inputs
from chainwatch.service.observe import report_for
from chainwatch.storage.repo import Database, LatestLeaf

BROKEN_CODES = frozenset({
    FindingCode.UNTRUSTED,
    FindingCode.REVOKED,
    FindingCode.HOSTNAME_MISMATCH,
    FindingCode.PROBE_FAILED,
    FindingCode.STALE_DEPLOYMENT,
    FindingCode.CA_CHANGED,
    FindingCode.LEAF_EXPIRED,
    FindingCode.CHAIN_INCOMPLETE,
})
"""Findings that make a target *broken now* for the alert policy (DESIGN.md, Alerts)."""

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Item:
    """One thing scanned: an endpoint address or a certificate file, with its settings."""

    target: Target
    key: str
    host: str | None
    source: Endpoint | FileSource


@dataclass(frozen=True)
class ScanResult:
    """A finished sweep.

    Attributes:
        reports: one per endpoint address and per certificate file, each with ``target``.
        observations: the raw probe results, in the same order.
        situations: one per target key (an endpoint across all its addresses).
        renewals: new leaves seen at addresses that served another one before.
        uncovered: names on served certificates that no endpoint covers.
        keys: the target key of each report.
        notes: things worth saying that are not findings (an ACME server unreachable...).
        timings: seconds spent in each phase: ``probe`` (with the analysis of the chains
            that arrived meanwhile), ``analysis`` (fetches and what was left to analyse),
            ``track`` (cross-endpoint findings), ``store`` (reading back the previous
            leaves; :func:`~chainwatch.service.record.record` adds the writing; 0
            without a database) and ``total``.
        sweep: whether this was a full sweep (files read, uncovered names listed).
        at: the instant the reports were evaluated at.
    """

    reports: tuple[Report, ...]
    observations: tuple[Observation, ...]
    situations: tuple[Situation, ...]
    renewals: tuple[Renewal, ...] = ()
    uncovered: tuple[str, ...] = ()
    keys: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    sweep: bool = True
    at: dt.datetime | None = None

    @property
    def status(self) -> Status:
        return worst([r.status for r in self.reports])


def collect(
    inventory: Inventory,
    history: Database | None = None,
    *,
    at: dt.datetime | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    concurrency: int = 256,
    progress: Progress | None = None,
    endpoints: Sequence[Endpoint] | None = None,
    sweep: bool | None = None,
    allow_private: Sequence[IPNetwork] = (),
    begun: HeadStart | None = None,
) -> ScanResult:
    """One batch, written nowhere. ``endpoints`` limits it to some endpoints (the
    scheduler's due ones). A sweep (by default, a scan of every endpoint) also reads the
    files and lists uncovered names. ``history`` is only read. ``allow_private``:
    networks that OCSP, CRL, AIA and ACME fetches may go to although not public.
    ``begun``: probes a :class:`~chainwatch.probe.parallel.HeadStart` already started
    for these endpoints (``chainwatch scan`` starts them before opening its database).

    Cross-endpoint findings (``STALE_DEPLOYMENT``, ``RENEWAL_OVERDUE``) compare each leaf
    with what every endpoint of the inventory serves: the endpoints probed now, and for
    the others their last stored observation."""
    allow_private = tuple(allow_private) or inventory.allow_private
    chosen = tuple(inventory.endpoints if endpoints is None else endpoints)
    full = endpoints is None if sweep is None else sweep
    started = now()
    when = at or started
    wanted = {e.target: e for e in chosen}  # an address counts only when pinned (``ip:``)

    def endpoint_of(t: Target) -> Endpoint | None:
        return wanted.get(t) or wanted.get(t.endpoint)

    # Chains that need nothing from the network but the handshake are analysed as they
    # arrive, while the other probes are still in flight (large scans probe in child
    # processes: the analysis then has a core of its own).
    early: dict[int, Report] = {}
    arrived = 0

    def analyse_early(observation: Observation) -> None:
        nonlocal arrived
        arrived += 1
        if progress is not None:  # addresses are known only once resolved: grow the total
            progress(arrived, max(arrived, len(chosen)))
        endpoint = endpoint_of(observation.target)
        if endpoint is None or _needs_network(endpoint):
            return
        early[id(observation)] = report_for(
            observation, endpoint.profiles, at=when,
            host=endpoint.server_name or endpoint.host,
            warn_days=endpoint.warn_days, crit_days=endpoint.crit_days,
        )

    clock = time.perf_counter
    t0 = clock()
    observations = _probe(chosen, concurrency, analyse_early, begun)
    t1 = clock()
    items: list[tuple[Item, Observation]] = []
    for obs in observations:
        endpoint = endpoint_of(obs.target)
        if endpoint is None:
            continue
        items.append((Item(obs.target, endpoint.target.key,
                           endpoint.server_name or endpoint.host, endpoint), obs))
    if full:
        items.extend(_read_files(inventory.files, started))

    served = population_handshakes(items)
    inputs = network_inputs(items, allow_private)
    reports: list[Report] = []
    for n, ((item, obs), inp) in enumerate(zip(items, inputs, strict=True), start=1):
        src = item.source
        known = early.get(id(obs))
        reports.append(known if known is not None else report_for(
            obs, src.profiles, at=when, host=item.host, warn_days=src.warn_days,
            crit_days=src.crit_days, revocation=inp.revocation, fetched=inp.fetched,
            served=served.get(n - 1, ()),
        ))
        if progress is not None:
            progress(n, len(items))

    t2 = clock()
    db = history
    last_served = db.latest_leaves() if db is not None else []  # read once per scan
    previous = _previous(db, last_served, [(i.target, r) for (i, _), r in zip(
        items, reports, strict=True)])
    elsewhere = _served_elsewhere(db, last_served, inventory, chosen)
    t3 = clock()
    policies, notes = renewal_policies([i for i, _ in items], reports, allow_private)
    # What each AIA fetch gave, or why nothing (a URL refused as private, a failure):
    # there is a fetch only for a chain that stops short of an anchor.
    notes = list(dict.fromkeys([f"{item.key}: AIA: {note}" for (item, _), inp in zip(
        items, inputs, strict=True) for note in inp.notes] + notes))
    reports, renewals = track([i for i, _ in items], reports, previous, when, policies,
                              elsewhere=elsewhere)
    t4 = clock()
    uncovered = uncovered_names(inventory, reports) if full else ()
    return ScanResult(
        reports=tuple(reports),
        observations=tuple(o for _, o in items),
        situations=situations([i for i, _ in items], reports, policies),
        renewals=tuple(renewals),
        uncovered=uncovered,
        notes=tuple(notes),
        keys=tuple(i.key for i, _ in items),
        timings={"probe": t1 - t0, "analysis": t2 - t1, "track": t4 - t3,
                 "store": t3 - t2, "total": t4 - t0},
        sweep=full,
        at=when,
    )


def network_inputs(items: Sequence[tuple[Item, Observation]],
                   allow_private: Sequence[IPNetwork] = ()) -> list[NetworkInputs]:
    """Revocation status (endpoints with ``revocation: true``) and AIA-fetched issuers
    (for profiles with ``aia: true``) of each observation; nothing for the others."""
    out = [NetworkInputs() for _ in items]
    for wanted in (True, False):
        chosen = [
            n for n, (item, obs) in enumerate(items)
            if isinstance(item.source, Endpoint) and obs.ok
            and item.source.revocation is wanted
            and (wanted or any(p.aia for p in item.source.profiles))
        ]
        fetched = fetch_inputs(
            [(items[n][1], items[n][0].source.profiles) for n in chosen], revocation=wanted,
            allow_private=allow_private,
        )
        for n, inp in zip(chosen, fetched, strict=True):
            out[n] = inp
    return out


def _needs_network(endpoint: Endpoint) -> bool:
    """Whether analysing this endpoint waits for OCSP/CRL or AIA fetches, or for the
    handshakes of populations with their own ClientHello."""
    return (endpoint.revocation or any(p.aia for p in endpoint.profiles)
            or bool(hellos_needed(endpoint.profiles)))


def population_handshakes(
    items: Sequence[tuple[Item, Observation]],
) -> dict[int, list[Observation]]:
    """For each probed address whose endpoint has profiles with a ``client_hello``, one
    more handshake per distinct hello (by position in ``items``); addresses whose first
    probe failed get none (their report is the failed probe's)."""
    requests: list[tuple[Target, ClientHello, Limits]] = []
    owners: list[int] = []
    for n, (item, obs) in enumerate(items):
        src = item.source
        if not isinstance(src, Endpoint) or not obs.ok:
            continue
        for hello in hellos_needed(src.profiles):
            requests.append((obs.target, hello, Limits(timeout=src.timeout.total_seconds())))
            owners.append(n)
    out: dict[int, list[Observation]] = {}
    for n, observation in zip(owners, probe_hellos(requests), strict=True):
        out.setdefault(n, []).append(observation)
    return out


def _probe(endpoints: Sequence[Endpoint], concurrency: int,
           on_result: Callable[[Observation], None],
           begun: HeadStart | None = None) -> list[Observation]:
    if not endpoints:
        return []
    out: list[Observation] = []
    for timeout, targets in by_timeout(endpoints).items():
        out.extend(probe_all(targets, concurrency=concurrency, limits=Limits(timeout=timeout),
                             on_result=lambda _, observation: on_result(observation),
                             begun=begun))
    return out


def _read_files(sources: Iterable[FileSource], when: dt.datetime) -> list[tuple[Item, Observation]]:
    out: list[tuple[Item, Observation]] = []
    for src in sources:
        for path in src.paths():
            target = Target.file(path)
            item = Item(target, target.key, src.host, src)
            try:
                chain = load_bundle_file(path)
            except BundleError as exc:
                out.append((item, Observation(target=target, observed_at=when,
                                              failure=FailureReason.OTHER, message=str(exc))))
                continue
            out.append((item, Observation(target=target, observed_at=when,
                                          chain=tuple(c.der for c in chain))))
    return out


def _previous(db: Database | None, last_served: Sequence[LatestLeaf],
              now: Sequence[tuple[Target, Report]]) -> dict[Target, Before]:
    """What each target last served (its newest observation with a certificate: a failed
    probe in between does not hide a renewal or a change of CA).

    The hierarchy and trusting profiles of what it served come from the stored report,
    read only for the targets whose leaf is not the one they serve now: the only ones
    change tracking compares them for (a steady-state scan reads no report at all)."""
    leaf_now = {t: (r.chain[0].sha256 if r.chain else None) for t, r in now}
    rows = [(t, row) for row in last_served if (t := _norm(row.target)) in leaf_now]
    changed = [row.observation_id for t, row in rows if row.leaf_sha256 != leaf_now[t]]
    stored = db.reports_of(changed) if db is not None and changed else {}
    out: dict[Target, Before] = {}
    for t, row in rows:
        report = stored.get(row.observation_id)
        out[t] = Before(
            leaf_sha256=row.leaf_sha256,
            hierarchy=hierarchy_of(report) if report is not None else frozenset(),
            trusted=trusted_of(report) if report is not None else frozenset(),
            observed_at=row.observed_at,
        )
    return out


def _served_elsewhere(db: Database | None, last_served: Sequence[LatestLeaf],
                      inventory: Inventory, probed: Sequence[Endpoint]) -> list[Cert]:
    """The leaves last stored for the inventory's endpoints that this scan did not probe
    (they keep their own intervals). An endpoint probed now speaks for all its addresses:
    an address it no longer resolves to does not count, nor does a target no longer in
    the inventory."""
    if db is None:
        return []
    now = {e.target.key for e in probed}
    others = {e.target: e for e in inventory.endpoints if e.target.key not in now}
    if not others:
        return []
    rows = [
        row for row in last_served
        if (others.get(row.target) or others.get(row.target.endpoint)) is not None
    ]
    parsed = db.parsed_certificates(row.leaf_sha256 for row in rows)
    return [parsed[row.leaf_sha256] for row in rows if row.leaf_sha256 in parsed]


def _norm(t: Target) -> Target:
    return Target(host=t.host, port=t.port, ip=t.ip or None, sni=t.sni or None,
                  starttls=t.starttls or None)


def renewal_policies(items: Sequence[Item], reports: Sequence[Report],
                     allow_private: Sequence[IPNetwork] = ()
                     ) -> tuple[list[RenewalPolicy], list[str]]:
    """Each item's renewal expectation: its inventory setting, moved to the ACME Renewal
    Information window when its endpoint names an ACME server that offers one."""
    policies = [
        i.source.renewal if isinstance(i.source, Endpoint) else RenewalPolicy() for i in items
    ]
    wanted: dict[tuple[str, str], Cert] = {}
    for item, report in zip(items, reports, strict=True):
        if isinstance(item.source, Endpoint) and item.source.acme and report.chain:
            wanted[(item.source.acme, report.chain[0].sha256)] = report.chain[0]
    if not wanted:
        return policies, []
    answers = asyncio.run(_fetch_renewal_info(wanted, allow_private))
    notes: list[str] = []
    for n, (item, report) in enumerate(zip(items, reports, strict=True)):
        if not (isinstance(item.source, Endpoint) and item.source.acme and report.chain):
            continue
        info = answers[(item.source.acme, report.chain[0].sha256)]
        if info.window is not None:
            policies[n] = replace(policies[n], window=info.window)
        elif info.note:
            notes.append(f"{item.key}: {info.note}")
    return policies, list(dict.fromkeys(notes))


async def _fetch_renewal_info(
    wanted: Mapping[tuple[str, str], Cert], allow_private: Sequence[IPNetwork] = (),
    concurrency: int = 16,
) -> dict[tuple[str, str], RenewalInfo]:
    gate = asyncio.Semaphore(concurrency)

    async def one(directory: str, leaf: Cert) -> RenewalInfo:
        async with gate:
            return await renewal_info(directory, leaf, allow_private=allow_private)

    keys = list(wanted)
    found = await asyncio.gather(*(one(d, wanted[(d, sha)]) for d, sha in keys))
    return dict(zip(keys, found, strict=True))


def track(
    items: Sequence[Item],
    reports: Sequence[Report],
    previous: Mapping[Target, Before],
    at: dt.datetime,
    policies: Sequence[RenewalPolicy],
    *,
    elsewhere: Iterable[Cert] = (),
) -> tuple[list[Report], list[Renewal]]:
    """Add CA_CHANGED, STALE_DEPLOYMENT and RENEWAL_OVERDUE findings (pure). ``elsewhere``:
    leaves served by endpoints that are not part of these reports."""
    index = LeafIndex([*(r.chain[0] for r in reports if r.chain), *elsewhere])
    out: list[Report] = []
    renewals: list[Renewal] = []
    for item, report, renewal_policy in zip(items, reports, policies, strict=True):
        before = previous.get(_norm(item.target))
        extra = []
        if before is not None and report.chain and before.leaf_sha256 != report.chain[0].sha256:
            # Only a new leaf can mean a new hierarchy: render the report just for those.
            changed = ca_changed(report, report_json(report), before)
            if changed is not None:
                extra.append(changed)
        if isinstance(item.source, Endpoint):
            stale = stale_deployment(report, item.target, index, item.source.crit_days)
            if stale is not None:
                extra.append(stale)
        overdue = renewal_overdue(report, item.target, index, at, renewal_policy)
        if overdue is not None:
            extra.append(overdue)
        renewed = renewal(item.target, report, before)
        if renewed is not None:
            renewals.append(renewed)
        out.append(with_findings(report, extra))
    return out, renewals


def situations(items: Sequence[Item], reports: Sequence[Report],
               policies: Sequence[RenewalPolicy] | None = None) -> tuple[Situation, ...]:
    """One alerting situation per target key, across all of its addresses. With each
    item's renewal policy, a situation knows when its leaf becomes ``RENEWAL_OVERDUE``
    (the earliest over its addresses)."""
    grouped: dict[str, list[Report]] = {}
    labels: dict[str, tuple[tuple[str, ...], str | None]] = {}
    overdue: dict[str, dt.datetime] = {}
    for n, (item, report) in enumerate(zip(items, reports, strict=True)):
        grouped.setdefault(item.key, []).append(report)
        labels.setdefault(item.key, (item.source.tags, item.source.owner))
        if policies is not None and report.chain:
            when = policies[n].overdue_at(report.chain[0])
            overdue[item.key] = min(when, overdue.get(item.key, when))
    return tuple(
        replace(situation(key, reps, overdue_at=overdue.get(key)), tags=labels[key][0],
                owner=labels[key][1])
        for key, reps in grouped.items()
    )


def situation(key: str, reports: Sequence[Report], *,
              overdue_at: dt.datetime | None = None) -> Situation:
    leaves = [r.chain[0] for r in reports if r.chain]
    oldest: Cert | None = min(leaves, key=lambda c: c.not_before) if leaves else None
    breaks = [r.breaks_at for r in reports if r.breaks_at is not None]
    broken_findings = [
        f for r in reports for f in r.findings
        if f.code in BROKEN_CODES and f.severity is not Severity.INFO
        and (f.severity is Severity.CRITICAL or f.code in {FindingCode.CA_CHANGED,
                                                            FindingCode.STALE_DEPLOYMENT})
    ]
    findings = [f for r in reports for f in r.findings if f.severity is not Severity.INFO]
    findings.sort(key=lambda f: -f.severity.rank)
    summary = findings[0].message if findings else ""
    return Situation(
        key=key,
        cycle=oldest.sha256 if oldest is not None else None,
        breaks_at=min(breaks) if breaks else None,
        lifetime=oldest.lifetime if oldest is not None else None,
        broken=bool(broken_findings),
        overdue=any(f.code is FindingCode.RENEWAL_OVERDUE for f in findings),
        overdue_at=overdue_at,
        summary=(broken_findings[0].message if broken_findings else summary),
        status=worst([r.status for r in reports]).value,
        findings=tuple(dict.fromkeys(f.code.value for f in findings)),
    )


def uncovered_names(inventory: Inventory, reports: Iterable[Report]) -> tuple[str, ...]:
    """SAN names on served certificates that no endpoint of the inventory covers."""
    watched = endpoint_names(inventory)
    names: set[str] = set()
    for r in reports:
        if r.chain:
            names.update(n.lower() for n in r.chain[0].dns_names)
    return tuple(sorted(n for n in names if not is_covered(n, watched)))
