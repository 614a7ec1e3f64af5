"""Change tracking across endpoints and across time: what no single check can see.

Pure functions over reports (this scan) and summaries of what each address served
before (from storage). They add findings:

- ``CA_CHANGED``: an address now serves a chain from a different hierarchy (no anchor
  in common with what it served before), naming the profiles that lost trust.
- ``STALE_DEPLOYMENT``: a newer certificate for the same name is served elsewhere
  while this address still serves an older one (the renewal never reached it).
- ``RENEWAL_OVERDUE``: the served leaf is past its expected renewal point plus grace,
  and no newer certificate for its names is served anywhere: the automation stopped.

Renewals (a new leaf for the same names at the same address) are reported as
:class:`Renewal` values for the history, not as findings: a renewal is good news.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from chainwatch.analysis import hostname
from chainwatch.model import (
    Cert,
    Finding,
    FindingCode,
    RenewalPolicy,
    Report,
    Severity,
    Status,
    Target,
)
from chainwatch.model.times import iso


@dataclass(frozen=True)
class Before:
    """What an address served at its previous observation. ``hierarchy`` and ``trusted``
    are read from the stored report only when that leaf is not the one served now (the
    only case that compares them); otherwise they are empty."""

    leaf_sha256: str | None
    hierarchy: frozenset[str]
    trusted: frozenset[str]
    observed_at: dt.datetime


@dataclass(frozen=True)
class Renewal:
    """A new leaf observed at an address that served another leaf for the same names."""

    target: Target
    old_leaf: str
    new_leaf: str
    observed_at: dt.datetime


def hierarchy_of(report_json: Mapping[str, object]) -> frozenset[str]:
    """The anchors a report's profiles reached (or the top issuer when none was)."""
    anchors: set[str] = set()
    profiles = report_json.get("profiles")
    if isinstance(profiles, list):
        for p in profiles:
            path = p.get("path") if isinstance(p, dict) else None
            if isinstance(path, list) and path:
                anchors.add(str(path[-1]))
    if anchors:
        return frozenset(anchors)
    chain = report_json.get("chain")
    if isinstance(chain, list) and chain and isinstance(chain[-1], dict):
        return frozenset({f"issuer:{chain[-1].get('issuer')}"})
    return frozenset()


def trusted_of(report_json: Mapping[str, object]) -> frozenset[str]:
    profiles = report_json.get("profiles")
    if not isinstance(profiles, list):
        return frozenset()
    return frozenset(
        str(p["profile"]) for p in profiles if isinstance(p, dict) and p.get("trusted")
    )


def ca_changed(report: Report, report_json: Mapping[str, object],
               before: Before | None) -> Finding | None:
    """``CA_CHANGED`` when this address's chain shares no anchor with what it served before."""
    if before is None or not report.chain or before.leaf_sha256 is None:
        return None
    if before.leaf_sha256 == report.chain[0].sha256:
        return None
    now = hierarchy_of(report_json)
    if not now or not before.hierarchy or now & before.hierarchy:
        return None
    lost = sorted(before.trusted - trusted_of(report_json))
    losing = f"; profiles that lose trust: {', '.join(lost)}" if lost else ""
    return Finding(
        FindingCode.CA_CHANGED,
        Severity.WARNING,
        f"the served chain now comes from a different CA hierarchy (issuer "
        f"{report.chain[0].issuer}) than at {iso(before.observed_at)}{losing}",
        cert=report.chain[0].sha256,
    )


def renewal(target: Target, report: Report, before: Before | None) -> Renewal | None:
    if before is None or before.leaf_sha256 is None or not report.chain:
        return None
    if before.leaf_sha256 == report.chain[0].sha256:
        return None
    return Renewal(target, before.leaf_sha256, report.chain[0].sha256, report.evaluated_at)


class LeafIndex:
    """Every leaf served in a scan, indexed by the names it covers (wildcards included)."""

    def __init__(self, leaves: Iterable[Cert]) -> None:
        self._exact: dict[str, list[Cert]] = {}
        self._wild: dict[str, list[Cert]] = {}
        seen: set[str] = set()
        for leaf in leaves:
            if leaf.sha256 in seen:
                continue
            seen.add(leaf.sha256)
            for name in leaf.names:
                n = name.lower().rstrip(".")
                if n.startswith("*."):
                    self._wild.setdefault(n[2:], []).append(leaf)
                else:
                    self._exact.setdefault(n, []).append(leaf)

    def covering(self, host: str) -> list[Cert]:
        h = host.lower().rstrip(".")
        found = list(self._exact.get(h, ()))
        if "." in h:
            found += [c for c in self._wild.get(h.split(".", 1)[1], ()) if hostname.matches(c, h)]
        return found

    def newest_for(self, host: str) -> Cert | None:
        found = self.covering(host)
        return max(found, key=lambda c: (c.not_before, c.not_after)) if found else None


def name_of(target: Target) -> str:
    return target.sni or target.host


def stale_deployment(report: Report, target: Target, index: LeafIndex,
                     crit_days: int) -> Finding | None:
    """``STALE_DEPLOYMENT`` when a newer leaf covering this name is served elsewhere."""
    if not report.chain:
        return None
    leaf = report.chain[0]
    newest = index.newest_for(name_of(target))
    if newest is None or newest.sha256 == leaf.sha256 or newest.not_before <= leaf.not_before:
        return None
    urgent = report.days_left is not None and report.days_left < crit_days
    return Finding(
        FindingCode.STALE_DEPLOYMENT,
        Severity.CRITICAL if urgent or report.status is Status.CRITICAL else Severity.WARNING,
        f"{name_of(target)} at {target.ip or target.host} still serves the certificate issued "
        f"{iso(leaf.not_before)} (expires {iso(leaf.not_after)}) while a newer one issued "
        f"{iso(newest.not_before)} ({newest.sha256[:16]}) is served elsewhere: "
        "the renewal did not reach this address",
        cert=leaf.sha256,
    )


def renewal_overdue(report: Report, target: Target, index: LeafIndex, at: dt.datetime,
                    policy: RenewalPolicy) -> Finding | None:
    """``RENEWAL_OVERDUE`` when the leaf is past renew_at + grace and nothing newer for its
    names is served anywhere (if something is, that is ``STALE_DEPLOYMENT`` instead)."""
    if not report.chain:
        return None
    leaf = report.chain[0]
    if at < policy.overdue_at(leaf) or at > leaf.not_after:
        return None
    newest = index.newest_for(name_of(target))
    if newest is not None and newest.not_before > leaf.not_before:
        return None
    return Finding(
        FindingCode.RENEWAL_OVERDUE,
        Severity.WARNING,
        f"renewal expected by {iso(policy.renew_at(leaf))}, overdue since "
        f"{iso(policy.overdue_at(leaf))}: no newer certificate for {name_of(target)} is served "
        "anywhere, the renewal automation has stopped",
        cert=leaf.sha256,
    )


def with_findings(report: Report, extra: Sequence[Finding]) -> Report:
    """``report`` with ``extra`` findings added and its status raised to match them."""
    if not extra:
        return report
    status = report.status
    for f in extra:
        implied = {Severity.CRITICAL: Status.CRITICAL, Severity.WARNING: Status.WARNING}.get(
            f.severity, Status.OK
        )
        if implied.rank > status.rank and status is not Status.UNKNOWN:
            status = implied
    return replace(report, findings=report.findings + tuple(extra), status=status)
