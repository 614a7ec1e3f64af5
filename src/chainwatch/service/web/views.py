"""The read models of the dashboard and the API: plain data built from stored rows.

Each function takes the database, the inventory (``None`` when the read side runs
without one) and ``now``, and returns JSON-ready dictionaries; the templates and the
API render the same dictionaries, so every page is also reachable as JSON.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chainwatch.alerts import outbox as alerting
from chainwatch.config.values import Endpoint, Inventory
from chainwatch.model import Cert, Target
from chainwatch.model.times import iso_or_none
from chainwatch.render.codec import history_json, target_json
from chainwatch.service.discovery import endpoint_names, is_covered
from chainwatch.storage.alerts_repo import AlertsRepo
from chainwatch.storage.discovery_repo import DiscoveryRepo
from chainwatch.storage.repo import Database
from chainwatch.storage.web_repo import MAX_LIMIT, CalendarRow, Query, WebRepo, WebRow

UTC = dt.UTC
STATUSES = ("critical", "warning", "unknown", "ok")

EXPLAIN: Mapping[str, str] = {
    "UNTRUSTED": "A client population trusts no path to this certificate now. Serve a chain "
                 "that reaches one of its anchors (check the intermediates you send).",
    "LEAF_EXPIRED": "The certificate has expired. Install the renewed certificate now.",
    "LEAF_NOT_YET_VALID": "The certificate is not valid yet: check the server's clock or "
                          "install the certificate that is valid now.",
    "HOSTNAME_MISMATCH": "The certificate does not cover this host name. Add the name to "
                         "the certificate (SAN) or serve the right certificate for this SNI.",
    "CHAIN_INCOMPLETE": "The server does not send an intermediate that clients need. Append "
                        "the missing intermediate to the served chain.",
    "KEY_MISMATCH": "The private key does not belong to the certificate.",
    "SELF_SIGNED_LEAF": "The certificate is self-signed: clients will not trust it. Use a "
                        "certificate issued by a CA your clients trust.",
    "EXPIRES_SOON": "Trust breaks soon. Renew the certificate (or the chain element that "
                    "expires first) and deploy it on every address.",
    "PROFILE_BREAKS": "A client population breaks before the leaf expires: a root, "
                      "intermediate or cross-sign on its path expires first. Serve a chain "
                      "without the expiring element, or update those clients' trust store.",
    "EXPIRED_CERT_SENT": "An expired certificate is in the served chain; legacy clients may "
                         "build through it and fail. Remove it from the chain.",
    "CHAIN_ORDER": "The chain is not served in issuing order (leaf first). Reorder the file.",
    "CHAIN_UNUSED_CERT": "A served certificate is on no trust path: it only adds bytes.",
    "ROOT_SENT": "The root certificate is served; clients ignore it. It can be dropped.",
    "WEAK_KEY": "The key is too small. Issue a new certificate with RSA >= 2048 or EC >= 256.",
    "WEAK_SIGNATURE": "A certificate is signed with SHA-1 or MD5. Reissue it with SHA-256.",
    "REVOKED": "The certificate is revoked. Replace it now.",
    "STALE_DEPLOYMENT": "This address still serves an older certificate than another address "
                        "of the same names: the renewal was not deployed everywhere.",
    "CA_CHANGED": "The certificate now comes from another issuing hierarchy: check every "
                  "client (and pinned back-end) trusts it.",
    "PROBE_FAILED": "The endpoint could not be probed. Check that it is up and reachable "
                    "from the monitor.",
    "CHAIN_DIVERGES": "Different handshakes were served different chains; check each one.",
    "RENEWAL_OVERDUE": "The certificate is past its expected renewal point and no newer one "
                       "is served: the renewal automation has stopped. Check it now.",
}


def z(value: dt.datetime | None) -> str | None:
    return iso_or_none(value)


def parse_z(text: object) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- the inventory's side: labels of each endpoint --------------------------------------


@dataclass(frozen=True)
class Labels:
    owner: str | None = None
    tags: tuple[str, ...] = ()
    zone: str | None = None
    warn_days: int = 30
    crit_days: int = 7
    endpoint: Endpoint | None = None


class InventoryIndex:
    """The inventory's endpoints by (host, port), built once per inventory object."""

    def __init__(self, inventory: Inventory | None) -> None:
        self.inventory = inventory
        self.by_key: dict[tuple[str, int], Labels] = {}
        if inventory is None:
            return
        for e in inventory.endpoints:
            self.by_key.setdefault((e.host.lower(), e.port), Labels(
                owner=e.owner, tags=tuple(e.tags), zone=e.zone, warn_days=e.warn_days,
                crit_days=e.crit_days, endpoint=e))
        for f in inventory.files:
            t = Target.file(f.path) if hasattr(f, "path") else None
            if t is not None:
                self.by_key.setdefault((t.host.lower(), 0), Labels(
                    owner=getattr(f, "owner", None), tags=tuple(getattr(f, "tags", ()) or ()),
                    warn_days=getattr(f, "warn_days", 30), crit_days=getattr(f, "crit_days", 7)))

    def labels(self, target: Target) -> Labels:
        return self.by_key.get((target.host.lower(), target.port), Labels())

    def keys(self, *, owner: str | None, tag: str | None,
             zone: str | None) -> tuple[tuple[str, int], ...] | None:
        """The (host, port) pairs matching the label filters (``None``: no filter)."""
        if owner is None and tag is None and zone is None:
            return None
        return tuple(k for k, lab in self.by_key.items()
                     if (owner is None or lab.owner == owner)
                     and (tag is None or tag in lab.tags)
                     and (zone is None or lab.zone == zone))

    def facets(self) -> dict[str, list[str]]:
        owners = sorted({lab.owner for lab in self.by_key.values() if lab.owner})
        tags = sorted({t for lab in self.by_key.values() for t in lab.tags})
        zones = sorted({lab.zone for lab in self.by_key.values() if lab.zone})
        return {"owners": owners, "tags": tags, "zones": zones}


# -- overview ---------------------------------------------------------------------------


def key_of(target: Target) -> str:
    return Target(host=target.host, port=target.port).key


def row_json(row: WebRow, index: InventoryIndex) -> dict[str, Any]:
    labels = index.labels(row.target)
    key = key_of(row.target)
    return {
        "key": key,
        "target": target_json(row.target),
        "address": row.target.ip,
        "status": row.status,
        "breaks_at": z(row.breaks_at),
        "days_left": row.days_left,
        "observed_at": z(row.observed_at),
        "leaf_sha256": row.leaf_sha256,
        "findings": list(row.findings),
        "owner": labels.owner,
        "tags": list(labels.tags),
        "zone": labels.zone,
    }


@dataclass(frozen=True)
class Filters:
    status: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    profile: str | None = None
    q: str | None = None
    owner: str | None = None
    tag: str | None = None
    zone: str | None = None
    limit: int = 50
    offset: int = 0

    def query(self, index: InventoryIndex) -> Query:
        return Query(status=self.status, codes=self.code, profile=self.profile or None,
                     search=self.q or None,
                     keys=index.keys(owner=self.owner or None, tag=self.tag or None,
                                     zone=self.zone or None),
                     limit=self.limit, offset=self.offset)

    def params(self) -> dict[str, Any]:
        return {"status": list(self.status), "code": list(self.code), "profile": self.profile,
                "q": self.q, "owner": self.owner, "tag": self.tag, "zone": self.zone,
                "limit": self.limit, "offset": self.offset}


def overview(db: Database, index: InventoryIndex, filters: Filters) -> dict[str, Any]:
    repo = WebRepo(db)
    page = repo.page(filters.query(index))
    counts = repo.counts()
    earliest = repo.page(Query(limit=1, status=("critical", "warning", "ok")))
    return {
        "schema": 1,
        "total": page.total,
        "limit": filters.limit,
        "offset": filters.offset,
        "filters": filters.params(),
        "counts": {s: counts.get(s, 0) for s in STATUSES},
        "earliest_break": (z(earliest.rows[0].breaks_at) if earliest.rows else None),
        "targets": [row_json(r, index) for r in page.rows],
    }


def stream_rows(db: Database, q: Query) -> Iterator[WebRow]:
    """Every row matching ``q`` in ``breaks_at`` order, a page at a time (keyset-free:
    the calendar's rows are bounded by ``MAX_LIMIT`` pages of the horizon)."""
    offset = 0
    repo = WebRepo(db)
    while True:
        page = repo.page(replace(q, limit=MAX_LIMIT, offset=offset))
        yield from page.rows
        if len(page.rows) < MAX_LIMIT:
            return
        offset += MAX_LIMIT


# -- health -----------------------------------------------------------------------------


def health(db: Database, inventory: Inventory | None, now: dt.datetime) -> dict[str, Any]:
    from chainwatch.storage.metrics_repo import MetricsRepo

    state = MetricsRepo(db).monitor()
    beat = db.last_beat("scan")
    failing: list[dict[str, Any]] = []
    repo = AlertsRepo(db)
    for name, h in sorted(repo.channel_health(now, stall_after=alerting.STALL_AFTER,
                                              max_failures=alerting.MAX_FAILURES).items()):
        if h.failing:
            failing.append({"channel": name, "since": z(h.failing_since), "reason": h.reason})
    age = None if beat is None else (now - beat.last_beat).total_seconds()
    from chainwatch.storage.batches import zone_health

    zones = [{
        "zone": h.name, "workers": list(h.workers), "queue_depth": h.queue_depth,
        "last_worker_beat": z(h.last_worker_beat), "oldest_pending": z(h.oldest_pending),
        "last_result": None if h.last_result is None else {
            "at": z(h.last_result.at), "worker": h.last_result.worker,
            "observations": h.last_result.observations, "status": h.last_result.status},
    } for h in zone_health(db, now=now, zones=() if inventory is None else inventory.zones)]
    return {
        "schema": 1,
        "now": z(now),
        "last_scan": z(state.last_scan),
        "heartbeat_age_seconds": age,
        "watchdog_firing": state.watchdog_firing,
        "outbox_pending": state.outbox_pending,
        "failing_channels": failing,
        "zones": zones,
        "inventory": inventory is not None,
    }


# -- one target -------------------------------------------------------------------------


def target_rows(db: Database, target: Target) -> list[WebRow]:
    page = WebRepo(db).page(Query(keys=((target.host, target.port),), limit=MAX_LIMIT))
    return [r for r in page.rows if r.target.host.lower() == target.host.lower()]


def _renew_at(labels: Labels, report: Mapping[str, Any]) -> dt.datetime | None:
    chain = report.get("chain") or []
    if not chain:
        return None
    nb, na = parse_z(chain[0].get("not_before")), parse_z(chain[0].get("not_after"))
    if nb is None or na is None:
        return None
    if labels.endpoint is not None:
        return labels.endpoint.renewal.renew_at_dates(nb, na)
    return nb + (na - nb) * 2 / 3


def _breaking_profile(report: Mapping[str, Any]) -> Mapping[str, Any] | None:
    breaks = report.get("breaks_at")
    profiles = [p for p in report.get("profiles") or () if isinstance(p, Mapping)]
    for p in profiles:
        if not p.get("trusted"):
            return p
    for p in profiles:
        if p.get("breaks_at") == breaks:
            return p
    return profiles[0] if profiles else None


def address_view(row: WebRow, labels: Labels, now: dt.datetime) -> dict[str, Any]:
    report = row.report
    chain = [c for c in report.get("chain") or () if isinstance(c, Mapping)]
    profiles = [p for p in report.get("profiles") or () if isinstance(p, Mapping)]
    on_path = {sha for p in profiles for sha in p.get("path") or ()}
    certs = []
    for c in chain:
        na = parse_z(c.get("not_after"))
        certs.append({**c, "expired": na is not None and na <= now,
                      "unused": bool(profiles) and c.get("sha256") not in on_path,
                      "used_by": [p.get("profile") for p in profiles
                                  if c.get("sha256") in (p.get("path") or ())]})
    presented = {c.get("sha256") for c in chain}
    anchors = sorted({p["path"][-1] for p in profiles
                      if p.get("path") and p["path"][-1] not in presented})
    renew_at = _renew_at(labels, report)
    return {
        "address": row.target.ip,
        "status": row.status,
        "observed_at": z(row.observed_at),
        "breaks_at": report.get("breaks_at"),
        "days_left": report.get("days_left"),
        "renew_at": z(renew_at),
        "certs": certs,
        "anchors": [{"sha256": a, "used_by": [p.get("profile") for p in profiles
                                               if (p.get("path") or [None])[-1] == a]}
                    for a in anchors],
        "profiles": profiles,
        "findings": [{**f, "explanation": EXPLAIN.get(str(f.get("code")), "")}
                     for f in report.get("findings") or () if isinstance(f, Mapping)],
        "report": dict(report),
        "timeline": timeline_svg(chain, profiles, renew_at, now),
    }


def target_view(db: Database, index: InventoryIndex, target: Target,
                now: dt.datetime) -> dict[str, Any] | None:
    rows = target_rows(db, target)
    if not rows:
        return None
    labels = index.labels(target)
    key = key_of(target)
    alert = next((a.to_json() for a in alerting.list_alerts(db, now=now)
                  if a.target == key), None)
    hist = db.history(target.host, target.port, limit=50)
    return {
        "schema": 1,
        "key": key,
        "host": target.host,
        "port": target.port,
        "owner": labels.owner,
        "tags": list(labels.tags),
        "zone": labels.zone,
        "status": max((r.status for r in rows), key=lambda s: -STATUSES.index(s)
                      if s in STATUSES else 0),
        "addresses": [address_view(r, labels, now) for r in rows],
        "history": history_events(hist),
        "alert": alert,
        "alerts_sent": alerts_sent(db, key),
    }


def alerts_sent(db: Database, key: str, limit: int = 50) -> list[dict[str, Any]]:
    """The messages the outbox holds for a target, newest first: action, step, channel
    (by name), when, and whether it was delivered, is still being retried or failed.
    Neither payloads nor channel settings are read: no credential can show."""
    out = []
    for a in WebRepo(db).alerts_sent(key, limit=limit):
        if a.status == "delivered":
            outcome = "delivered"
        elif a.status == "dead":
            outcome = "failed"
        else:
            outcome = "retrying" if a.attempts else "pending"
        out.append({"at": z(a.created_at), "event": a.event, "step": a.step,
                    "channel": a.channel, "outcome": outcome, "attempts": a.attempts,
                    "last_attempt_at": z(a.last_attempt_at),
                    "delivered_at": z(a.delivered_at), "error": a.last_error,
                    "resolved": a.event == "resolve"})
    return out


def history_events(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Observations newest first, each marked with what changed since the one before:
    ``renewal`` (another leaf), ``ca_changed`` / ``stale`` (from the findings)."""
    out = history_json(rows)["observations"]
    by_address: dict[str | None, str | None] = {}
    for obs in reversed(out):
        addr = obs["target"]["ip"]
        before = by_address.get(addr, obs["leaf_sha256"])
        changes = []
        if obs["leaf_sha256"] and before and before != obs["leaf_sha256"]:
            changes.append("renewal")
        if "CA_CHANGED" in obs["findings"]:
            changes.append("ca_changed")
        if "STALE_DEPLOYMENT" in obs["findings"]:
            changes.append("stale")
        obs["changes"] = changes
        if obs["leaf_sha256"]:
            by_address[addr] = obs["leaf_sha256"]
    return list(out)


# -- the forecast timeline (server-side SVG) ----------------------------------------------


def _esc(text: object) -> str:
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


def timeline_svg(chain: Sequence[Mapping[str, Any]], profiles: Sequence[Mapping[str, Any]],
                 renew_at: dt.datetime | None, now: dt.datetime) -> str:
    """Every served certificate's validity as a bar on a time axis, each profile's break
    instant, ``renew_at`` and now marked. Every text is escaped here (the SVG is
    inserted into the page as markup)."""
    spans: list[tuple[dt.datetime, dt.datetime, Mapping[str, Any]]] = []
    for c in chain:
        nb, na = parse_z(c.get("not_before")), parse_z(c.get("not_after"))
        if nb is not None and na is not None:
            spans.append((nb, na, c))
    breaks = [(p.get("profile"), parse_z(p.get("breaks_at")) or now, bool(p.get("trusted")))
              for p in profiles]
    instants = [now, *(b for _, b, _ in breaks)]
    if renew_at is not None:
        instants.append(renew_at)
    ends = [b for _, b, _ in spans]
    start = min(now - dt.timedelta(days=90), *instants)
    stop = max(now + dt.timedelta(days=90), *instants, *ends[:1]) + dt.timedelta(days=15)
    stop = min(stop, max(instants) + dt.timedelta(days=3 * 365))
    width, left, bar_h = 900, 190, 18
    height = 40 + bar_h * len(spans) + 22 * len(breaks) + 40
    span_s = max((stop - start).total_seconds(), 1.0)

    def x(t: dt.datetime) -> float:
        t = min(max(t, start), stop)
        return round(left + (width - left - 10) * (t - start).total_seconds() / span_s, 1)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img" '
           f'viewBox="0 0 {width} {height}" width="100%" aria-label="forecast timeline">']
    y = 30
    year = start.year
    while year <= stop.year:
        tick = dt.datetime(year, 1, 1, tzinfo=UTC)
        if start <= tick <= stop:
            out.append(f'<line x1="{x(tick)}" y1="20" x2="{x(tick)}" y2="{height - 20}" '
                       f'class="tick"/><text x="{x(tick) + 2}" y="15" class="axis">{year}</text>')
        year += 1
    for i, (nb, na, c) in enumerate(spans):
        expired = na <= now
        cls = "bar expired" if expired else "bar"
        label = _esc(str(c.get("subject") or "?")[:32])
        out.append(f'<text x="4" y="{y + 13}" class="label">#{i} {label}</text>')
        out.append(f'<rect x="{x(nb)}" y="{y}" width="{max(x(na) - x(nb), 1.0)}" '
                   f'height="{bar_h - 4}" class="{cls}" data-sha256="{_esc(c.get("sha256"))}">'
                   f'<title>{label}: {_esc(c.get("not_before"))} to '
                   f'{_esc(c.get("not_after"))}</title></rect>')
        y += bar_h
    y += 6
    for name, when, trusted in breaks:
        cls = "break" if trusted else "break broken"
        out.append(f'<line x1="{x(when)}" y1="24" x2="{x(when)}" y2="{y + 12}" class="{cls}" '
                   f'data-profile="{_esc(name)}" data-at="{_esc(z(when))}"/>')
        out.append(f'<text x="{min(x(when) + 3, width - 280)}" y="{y + 12}" class="mark">'
                   f'{_esc(name)} breaks {_esc(z(when))}</text>')
        y += 22
    if renew_at is not None:
        out.append(f'<line x1="{x(renew_at)}" y1="24" x2="{x(renew_at)}" y2="{height - 20}" '
                   f'class="renew" data-at="{_esc(z(renew_at))}"/>'
                   f'<text x="{x(renew_at) + 3}" y="{height - 8}" class="mark">renew_at</text>')
    out.append(f'<line x1="{x(now)}" y1="20" x2="{x(now)}" y2="{height - 20}" class="now"/>'
               f'<text x="{x(now) + 3}" y="{height - 22}" class="mark">now</text>')
    out.append("</svg>")
    return "".join(out)


# -- calendar ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarEvent:
    uid: str
    kind: str  # "break" or "renew"
    key: str
    address: str | None
    host: str
    when: dt.datetime
    profile: str | None
    reason: str
    warn_days: int
    crit_days: int


def _uid(key: str, kind: str, path: Iterable[str]) -> str:
    digest = hashlib.sha256("|".join([kind, key, *path]).encode()).hexdigest()[:32]
    return f"{digest}@chainwatch"


def calendar_events(db: Database, index: InventoryIndex, now: dt.datetime, *,
                    until: dt.datetime | None, owner: str | None = None,
                    tag: str | None = None) -> list[CalendarEvent]:
    """One break event per (target, breaking path), at the earliest address that breaks
    on it, plus renewal-due events for short-lived certificates.

    The rows come from one query reading only the report parts that place the events
    (:meth:`WebRepo.calendar_rows`); the few whose breaking profile has no path (their
    UID is made of the whole served chain) have their reports read in one more query."""
    keys = index.keys(owner=owner, tag=tag, zone=None)
    max_life = dt.timedelta(days=100)
    inv = index.inventory
    if inv is not None and inv.alerts is not None and inv.alerts.short_lived is not None:
        max_life = inv.alerts.short_lived.max_lifetime
    seen: dict[str, CalendarEvent] = {}
    pathless: list[tuple[CalendarRow, Mapping[str, Any] | None]] = []
    for row in WebRepo(db).calendar_rows(Query(keys=keys,
                                                status=("ok", "warning", "critical"))):
        prof = _breaking_profile(row.report)
        if prof and prof.get("path"):
            _add_events(seen, row, row.report, prof, index, now, until, max_life)
        else:
            pathless.append((row, prof))
    whole = db.reports_of(r.observation_id for r, _ in pathless) if pathless else {}
    for row, prof in pathless:
        report = whole.get(row.observation_id, row.report)
        _add_events(seen, row, report, prof, index, now, until, max_life)
    return sorted(seen.values(), key=lambda e: (e.when, e.key, e.kind))


def _add_events(seen: dict[str, CalendarEvent], row: CalendarRow, report: Mapping[str, Any],
                prof: Mapping[str, Any] | None, index: InventoryIndex, now: dt.datetime,
                until: dt.datetime | None, max_life: dt.timedelta) -> None:
    labels = index.labels(row.target)
    key = key_of(row.target)
    path = [str(s) for s in (prof.get("path") or ())] if prof else []
    if not path:
        path = [str(c.get("sha256")) for c in report.get("chain") or ()]
    if until is None or row.breaks_at <= until:
        uid = _uid(key, "break", path)
        reason = str(prof.get("reason") or "") if prof else ""
        if not reason:
            reason = "; ".join(str(f.get("message")) for f in report.get("findings") or ()
                               if isinstance(f, Mapping))[:500]
        ev = CalendarEvent(uid=uid, kind="break", key=key, address=row.target.ip,
                           host=row.target.host, when=row.breaks_at,
                           profile=prof.get("profile") if prof else None,
                           reason=reason or "trust breaks", warn_days=labels.warn_days,
                           crit_days=labels.crit_days)
        if uid not in seen or ev.when < seen[uid].when:
            seen[uid] = ev
    chain = report.get("chain") or []
    if chain:
        nb, na = parse_z(chain[0].get("not_before")), parse_z(chain[0].get("not_after"))
        renew = _renew_at(labels, report)
        if (nb and na and renew and na - nb <= max_life and renew >= now
                and (until is None or renew <= until)):
            uid = _uid(key, "renew", [str(chain[0].get("sha256"))])
            seen.setdefault(uid, CalendarEvent(
                uid=uid, kind="renew", key=key, address=row.target.ip,
                host=row.target.host, when=renew, profile=None,
                reason="the short-lived certificate is due for renewal",
                warn_days=0, crit_days=0))


def event_json(e: CalendarEvent) -> dict[str, Any]:
    return {"uid": e.uid, "kind": e.kind, "key": e.key, "address": e.address, "host": e.host,
            "at": z(e.when), "date": e.when.date().isoformat(), "profile": e.profile,
            "reason": e.reason}


def weeks(events: Sequence[CalendarEvent], now: dt.datetime,
          days: int = 90) -> list[dict[str, Any]]:
    monday = (now - dt.timedelta(days=now.weekday())).date()
    out = []
    for w in range(days // 7 + 1):
        start = monday + dt.timedelta(weeks=w)
        end = start + dt.timedelta(days=7)
        out.append({"week": start.isoformat(),
                    "events": [event_json(e) for e in events
                               if start <= e.when.date() < end]})
    return out


# -- discovery --------------------------------------------------------------------------


def discovery(db: Database, index: InventoryIndex) -> dict[str, Any]:
    """Names on served leaves that no inventory endpoint asks for, and the results of
    the last Certificate Transparency import (``discover ct --db``): the names it
    stored that no endpoint covers now."""
    inv = index.inventory
    ct = ct_results(db, inv)
    if inv is None:
        return {"schema": 1, "inventory": False, "uncovered": [], "ct": ct}
    watched = endpoint_names(inv)
    leaves: dict[str, list[str]] = {}
    for row in stream_rows(db, Query(status=("ok", "warning", "critical"))):
        if row.leaf_sha256:
            leaves.setdefault(row.leaf_sha256, []).append(key_of(row.target))
    names: dict[str, set[str]] = {}
    for sha, cert in db.parsed_certificates(leaves).items():
        for name in _dns_names(cert):
            if not is_covered(name, watched):
                names.setdefault(name, set()).update(leaves[sha])
    return {"schema": 1, "inventory": True,
            "uncovered": [{"name": n, "served_by": sorted(t)} for n, t in sorted(names.items())],
            "ct": ct}


def ct_results(db: Database, inventory: Inventory | None) -> dict[str, Any]:
    """The stored CT import: the last one (when, from which export, how many names) and
    the names no endpoint of ``inventory`` covers (every name without an inventory)."""
    repo = DiscoveryRepo(db)
    last = repo.ct_import()
    if last is None:
        return {"last_import": None, "names": 0, "uncovered": []}
    stored = repo.ct_names()
    watched = endpoint_names(inventory) if inventory is not None else None
    return {
        "last_import": {"at": z(last.at), "source": last.source, "names": last.names},
        "names": len(stored),
        "uncovered": [{"name": n.name, "source": n.source, "first_seen": z(n.first_seen),
                       "last_seen": z(n.last_seen)}
                      for n in stored if watched is None or not is_covered(n.name, watched)],
    }


def _dns_names(cert: Cert) -> list[str]:
    from cryptography import x509

    try:
        ext = cert.parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [n.lower() for n in ext.value.get_values_for_type(x509.DNSName)]
