"""Findings: one small function per check, each returning the findings it makes.

Every check reads an :class:`Evidence` (the chain, the per-profile verdicts and the
facts the engine derived) and returns a tuple of :class:`~chainwatch.model.Finding`.
None of them raise on odd input: a check that cannot decide says nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from chainwatch.analysis import hostname
from chainwatch.analysis.paths import Verify, could_issue
from chainwatch.analysis.revocation import Revocation, RevocationStatus
from chainwatch.model import (
    ONE_SECOND,
    Cert,
    Finding,
    FindingCode,
    NameKey,
    PathError,
    ProfileResult,
    Severity,
)
from chainwatch.model.times import iso


@dataclass(frozen=True)
class Evidence:
    """Everything the checks may look at (all already computed; nothing here does work)."""

    chain: tuple[Cert, ...]
    results: tuple[ProfileResult, ...]
    at: dt.datetime
    host: str | None
    key_matches: bool | None
    breaks_at: dt.datetime | None
    days_left: int | None
    warn_days: int
    crit_days: int
    anchors: frozenset[str]
    """SHA-256 of every anchor of every profile (to tell roots from intermediates)."""
    anchor_names: frozenset[NameKey]
    """Subjects of every anchor of every profile."""
    known: Mapping[str, Cert]
    """Every certificate on any candidate path (chain and anchors), by SHA-256."""
    signed_by: Verify
    """``signed_by(child, issuer)``: the child's signature verifies under the issuer's key
    (the analyzer's memoised check)."""
    revocation: Revocation | None = None
    """The leaf's revocation status, when it was checked."""
    fetched: tuple[Cert, ...] = ()
    """Certificates fetched via AIA caIssuers (never counted as presented)."""
    served_only: Mapping[str, ProfileResult] = field(default_factory=dict)
    """For each AIA-fetching profile that had fetched certificates to use: its verdict on
    the served chain alone (what it would say without fetching)."""
    aia_profiles: frozenset[str] = frozenset()
    """Specs of the profiles whose clients fetch missing issuers via AIA."""

    @property
    def leaf(self) -> Cert:
        return self.chain[0]


Check = Callable[[Evidence], tuple[Finding, ...]]


def _about_leaf(ev: Evidence, code: FindingCode, severity: Severity,
                message: str) -> tuple[Finding, ...]:
    return (Finding(code, severity, message, cert=ev.leaf.sha256),)


def untrusted(ev: Evidence) -> tuple[Finding, ...]:
    return tuple(
        Finding(
            FindingCode.UNTRUSTED,
            Severity.CRITICAL,
            f"{r.profile} trusts no path now ({(r.error or PathError.OTHER).value}): {r.reason}",
            profile=r.profile,
            cert=r.path[0] if r.path else None,
        )
        for r in ev.results
        if not r.trusted
    )


def chain_incomplete(ev: Evidence) -> tuple[Finding, ...]:
    """A profile finds no path *in the served chain* because it stops at a certificate
    whose issuer is neither served nor an anchor. When another profile being checked does
    hold that issuer as an anchor, the chain is complete and this profile simply does not
    trust the hierarchy (UNTRUSTED says so); no CHAIN_INCOMPLETE then.

    AIA-fetching profiles are judged on the served chain alone here: the server is
    misconfigured whether or not some clients repair it, so the finding stays critical
    (DESIGN.md); the message says which profiles still succeed by fetching and which fail,
    and the profile verdicts show who is actually affected.
    """
    incomplete: list[tuple[ProfileResult, Cert]] = []
    for r in ev.results:
        served = ev.served_only.get(r.profile, r)
        if served.trusted or served.error is not PathError.NO_PATH or served.dead_end is None:
            continue
        end = next((c for c in ev.chain if c.sha256 == served.dead_end), None)
        if end is None or end.self_issued or end.issuer_key in ev.anchor_names:
            continue
        incomplete.append((r, end))
    fetching = ev.aia_profiles
    rescued = [r.profile for r, _ in incomplete if r.trusted]
    failing = [r.profile for r, _ in incomplete if not r.trusted and r.profile not in fetching]
    futile = [r.profile for r, _ in incomplete if not r.trusted and r.profile in fetching]
    outcome = ""
    if rescued or futile:
        parts = []
        if rescued:
            parts.append(f"clients that fetch it via AIA ({_profiles(rescued)}) still succeed")
        if futile:
            parts.append(f"fetching via AIA does not help {_profiles(futile)}")
        if failing:
            parts.append(f"clients that do not fetch ({_profiles(failing)}) fail")
        outcome = ": " + ", ".join(parts)
    return tuple(
        Finding(
            FindingCode.CHAIN_INCOMPLETE,
            Severity.CRITICAL,
            f"the served chain stops at {end.subject}: its issuer {end.issuer} is neither "
            f"served nor an anchor of {r.profile}; serve the missing intermediate{outcome}",
            profile=r.profile,
            cert=end.sha256,
        )
        for r, end in incomplete
    )


def _profiles(specs: Sequence[str]) -> str:
    return ("profile " if len(specs) == 1 else "profiles ") + ", ".join(specs)


def revoked(ev: Evidence) -> tuple[Finding, ...]:
    """REVOKED when the leaf's OCSP or CRL answer says so; when revocation was checked and
    no source gave a usable answer, an informational REVOCATION_UNKNOWN that says why."""
    rev = ev.revocation
    if rev is None or rev.status is RevocationStatus.GOOD:
        return ()
    leaf = ev.leaf
    if rev.status is RevocationStatus.REVOKED:
        since = f" since {iso(rev.revoked_at)}" if rev.revoked_at is not None else ""
        reason = f"reason: {rev.reason}" if rev.reason else "no reason given"
        return (
            Finding(
                FindingCode.REVOKED,
                Severity.CRITICAL,
                f"the leaf {leaf.subject} is revoked{since} ({reason}), according to "
                f"{rev.where}",
                cert=leaf.sha256,
            ),
        )
    return _about_leaf(ev, FindingCode.REVOCATION_UNKNOWN, Severity.INFO,
                       f"the revocation status of the leaf is unknown: {rev.detail or 'no answer'}")


def leaf_validity(ev: Evidence) -> tuple[Finding, ...]:
    leaf = ev.leaf
    if ev.at > leaf.not_after:
        return (
            Finding(
                FindingCode.LEAF_EXPIRED,
                Severity.CRITICAL,
                f"the leaf {leaf.subject} expired at {iso(leaf.not_after)}",
                cert=leaf.sha256,
            ),
        )
    if ev.at < leaf.not_before:
        return (
            Finding(
                FindingCode.LEAF_NOT_YET_VALID,
                Severity.CRITICAL,
                f"the leaf {leaf.subject} is not valid before {iso(leaf.not_before)}",
                cert=leaf.sha256,
            ),
        )
    return ()


def hostname_mismatch(ev: Evidence) -> tuple[Finding, ...]:
    if not ev.host or hostname.matches(ev.leaf, ev.host):
        return ()
    if ev.leaf.names:
        why = f"it covers: {', '.join(ev.leaf.names)}"
    elif ev.leaf.common_names:
        why = (f"it has no subjectAltName; clients ignore its CN "
               f"{', '.join(ev.leaf.common_names)}")
    else:
        why = "it names no host at all"
    return _about_leaf(ev, FindingCode.HOSTNAME_MISMATCH, Severity.CRITICAL,
                       f"the leaf does not cover {ev.host} ({why})")


def key_mismatch(ev: Evidence) -> tuple[Finding, ...]:
    if ev.key_matches is not False:
        return ()
    return _about_leaf(ev, FindingCode.KEY_MISMATCH, Severity.CRITICAL,
                       "the private key does not belong to the leaf certificate")


def self_signed_leaf(ev: Evidence) -> tuple[Finding, ...]:
    if not ev.leaf.self_signed:
        return ()
    return _about_leaf(ev, FindingCode.SELF_SIGNED_LEAF, Severity.CRITICAL,
                       f"the leaf {ev.leaf.subject} is self-signed")


def expires_soon(ev: Evidence) -> tuple[Finding, ...]:
    if ev.breaks_at is None or ev.days_left is None or ev.breaks_at <= ev.at:
        return ()
    if ev.days_left >= ev.warn_days:
        return ()
    severity = Severity.CRITICAL if ev.days_left < ev.crit_days else Severity.WARNING
    return (
        Finding(
            FindingCode.EXPIRES_SOON,
            severity,
            f"trust breaks in {ev.days_left} days, at {iso(ev.breaks_at)}",
            cert=_cause(ev, ev.breaks_at),
        ),
    )


def _cause(ev: Evidence, when: dt.datetime) -> str | None:
    """The certificate whose expiry makes trust break at ``when`` (reported path first)."""
    for r in ev.results:
        for path in (r.path, *r.all_paths):
            for sha in path:
                cert = ev.known.get(sha)
                if cert is not None and cert.not_after + ONE_SECOND == when:
                    return sha
    return None


def profile_breaks(ev: Evidence) -> tuple[Finding, ...]:
    leaf_end = ev.leaf.not_after + ONE_SECOND
    out = []
    for r in ev.results:
        if not r.trusted or r.breaks_at is None or r.breaks_at >= leaf_end:
            continue
        cause = _cause(ev, r.breaks_at)
        known = ev.known.get(cause) if cause is not None else None
        what = known.subject if known is not None else "a CA certificate on its path"
        out.append(
            Finding(
                FindingCode.PROFILE_BREAKS,
                Severity.WARNING,
                f"{r.profile} stops trusting this chain at {iso(r.breaks_at)}, before the leaf "
                f"expires ({iso(ev.leaf.not_after)}): {what} expires first",
                profile=r.profile,
                cert=cause,
            )
        )
    return tuple(out)


def expired_cert_sent(ev: Evidence) -> tuple[Finding, ...]:
    return tuple(
        Finding(
            FindingCode.EXPIRED_CERT_SENT,
            Severity.WARNING,
            f"the served certificate #{i} {c.subject} expired at {iso(c.not_after)}; "
            "legacy clients may build through it",
            cert=c.sha256,
        )
        for i, c in enumerate(ev.chain)
        if i > 0 and ev.at > c.not_after
    )


def chain_order(ev: Evidence) -> tuple[Finding, ...]:
    chain = ev.chain
    for i in range(len(chain) - 1):
        cert, nxt = chain[i], chain[i + 1]
        if cert.self_issued:
            return ()
        if could_issue(nxt, cert) and ev.signed_by(cert, nxt):
            continue
        later = [
            j for j in range(i + 2, len(chain))
            if could_issue(chain[j], cert) and ev.signed_by(cert, chain[j])
        ]
        if later:
            return (
                Finding(
                    FindingCode.CHAIN_ORDER,
                    Severity.WARNING,
                    f"certificate #{i} ({cert.subject}) is followed by #{i + 1} ({nxt.subject}) "
                    f"instead of its issuer #{later[0]}: serve leaf first, then each issuer",
                    cert=chain[later[0]].sha256,
                ),
            )
        return ()
    return ()


def chain_unused_cert(ev: Evidence) -> tuple[Finding, ...]:
    on_paths = {sha for r in ev.results for p in r.all_paths for sha in p}
    ancestry = _presented_ancestry(ev.chain, ev.signed_by)
    return tuple(
        Finding(
            FindingCode.CHAIN_UNUSED_CERT,
            Severity.INFO,
            f"the served certificate #{i} {c.subject} is on no path from the leaf; "
            "it only adds bytes to every handshake",
            cert=c.sha256,
        )
        for i, c in enumerate(ev.chain)
        if i > 0 and c.sha256 not in on_paths and c.sha256 not in ancestry
    )


def _presented_ancestry(chain: Sequence[Cert], signed_by: Verify) -> set[str]:
    """Presented certificates reachable from the leaf through issuer links."""
    seen = {chain[0].sha256}
    frontier = [chain[0]]
    for _ in range(len(chain)):
        nxt = []
        for cert in frontier:
            for cand in chain[1:]:
                if cand.sha256 not in seen and could_issue(cand, cert) and signed_by(cert, cand):
                    seen.add(cand.sha256)
                    nxt.append(cand)
        if not nxt:
            break
        frontier = nxt
    return seen


def root_sent(ev: Evidence) -> tuple[Finding, ...]:
    return tuple(
        Finding(
            FindingCode.ROOT_SENT,
            Severity.INFO,
            f"the served certificate #{i} {c.subject} is a self-signed root; clients use "
            "their own copy, so sending it only adds bytes",
            cert=c.sha256,
        )
        for i, c in enumerate(ev.chain)
        if i > 0 and c.self_signed
    )


def weak_key(ev: Evidence) -> tuple[Finding, ...]:
    out = []
    for i, c in enumerate(ev.chain):
        if not c.weak_key:
            continue
        algo, bits = c.key_description
        out.append(
            Finding(
                FindingCode.WEAK_KEY,
                Severity.WARNING,
                f"certificate #{i} {c.subject} has a weak {bits}-bit {algo} key",
                cert=c.sha256,
            )
        )
    return tuple(out)


def weak_signature(ev: Evidence) -> tuple[Finding, ...]:
    return tuple(
        Finding(
            FindingCode.WEAK_SIGNATURE,
            Severity.WARNING,
            f"certificate #{i} {c.subject} is signed with {c.signature_hash}",
            cert=c.sha256,
        )
        for i, c in enumerate(ev.chain)
        if c.weak_signature and not c.self_signed and c.sha256 not in ev.anchors
    )


CHECKS: tuple[Check, ...] = (
    untrusted,
    chain_incomplete,
    leaf_validity,
    hostname_mismatch,
    key_mismatch,
    self_signed_leaf,
    revoked,
    expires_soon,
    profile_breaks,
    expired_cert_sent,
    chain_order,
    chain_unused_cert,
    root_sent,
    weak_key,
    weak_signature,
)


def run_checks(ev: Evidence) -> tuple[Finding, ...]:
    return tuple(f for check in CHECKS for f in check(ev))
