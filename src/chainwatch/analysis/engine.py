"""``analyze(chain, profiles, host, at) -> Report``: the engine's one entry point.

Pure: values in, values out, ``at`` always a parameter. Results are memoised by
(chain fingerprints, profiles, host, at, thresholds, key, revocation, fetched) so that
thousands of endpoints serving one chain cost one analysis; the path search underneath
is memoised without ``at`` so re-evaluating a known chain on a new day is cheap too.

Inputs that need the network (the leaf's revocation status, certificates fetched via
AIA) are gathered by the service layer (:mod:`chainwatch.service.netinputs`) and handed
in as values.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from chainwatch.analysis.findings import Evidence, run_checks
from chainwatch.analysis.profiles import structure, verdict
from chainwatch.analysis.revocation import Revocation
from chainwatch.model import (
    Cert,
    Finding,
    FindingCode,
    NameKey,
    Profile,
    ProfileResult,
    Report,
    Severity,
    Status,
    Store,
    Target,
    clear_parsed,
)

DEFAULT_WARN_DAYS = 30
DEFAULT_CRIT_DAYS = 7

_REPORT_CACHE_SIZE = 8192
_report_cache: OrderedDict[tuple[object, ...], Report] = OrderedDict()


def key_fingerprint(key: PrivateKeyTypes) -> bytes:
    """The SubjectPublicKeyInfo DER of a private key's public half."""
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def analyze(
    chain: Sequence[Cert],
    profiles: Sequence[Profile],
    *,
    at: dt.datetime,
    host: str | None = None,
    warn_days: int = DEFAULT_WARN_DAYS,
    crit_days: int = DEFAULT_CRIT_DAYS,
    key_spki: bytes | None = None,
    required: Sequence[str] | None = None,
    revocation: Revocation | None = None,
    fetched: Sequence[Cert] = (),
) -> Report:
    """Analyse ``chain`` (leaf first, as presented) for every profile at ``at``.

    Args:
        chain: the presented certificates, leaf first; must not be empty.
        profiles: the client populations to judge for.
        at: the instant of evaluation (timezone-aware; naive means UTC).
        host: the name the client asks for; ``None`` skips the hostname check.
        warn_days / crit_days: thresholds on ``days_left``.
        key_spki: SubjectPublicKeyInfo DER of a private key that should match the leaf.
        required: the profile specs whose trust is required (default: all of them).
        revocation: the leaf's revocation status, when it was checked: ``revoked`` makes
            a critical ``REVOKED`` finding, ``unknown`` an informational
            ``REVOCATION_UNKNOWN`` one; ``None`` means not checked (no finding).
        fetched: certificates fetched via the AIA caIssuers URLs of the chain; profiles
            with ``aia`` set may build paths through them. They are never counted as
            presented: findings about the served chain stay as they are.
    """
    if not chain:
        raise ValueError("analyze() needs at least one certificate")
    at = _utc(at)
    extra = (
        tuple(c for c in dict.fromkeys(fetched) if c not in chain)
        if fetched and any(p.aia for p in profiles) else ()
    )
    cache_key = (
        tuple(c.sha256 for c in chain),
        tuple((p.spec, p.store.digest, p.building, p.aia) for p in profiles),
        host,
        at,
        warn_days,
        crit_days,
        key_spki,
        None if required is None else tuple(required),
        revocation,
        tuple(c.sha256 for c in extra),
    )
    hit = _report_cache.get(cache_key)
    if hit is not None:
        return hit
    report = _analyze(
        tuple(chain), tuple(profiles), at, host, warn_days, crit_days, key_spki, required,
        revocation, extra,
    )
    _report_cache[cache_key] = report
    if len(_report_cache) > _REPORT_CACHE_SIZE:
        _report_cache.popitem(last=False)
    return report


def _analyze(
    chain: tuple[Cert, ...],
    profiles: tuple[Profile, ...],
    at: dt.datetime,
    host: str | None,
    warn_days: int,
    crit_days: int,
    key_spki: bytes | None,
    required: Sequence[str] | None,
    revocation: Revocation | None = None,
    fetched: tuple[Cert, ...] = (),
) -> Report:
    structures = tuple(
        structure(chain, p.store, p.building, fetched if p.aia else ()) for p in profiles
    )
    results = tuple(verdict(st, p, at) for st, p in zip(structures, profiles, strict=True))
    served_only = {
        p.spec: verdict(structure(chain, p.store, p.building), p, at)
        for p in profiles
        if p.aia and fetched
    }
    need = set(required) if required is not None else {p.spec for p in profiles}
    needed = [r for r in results if r.profile in need]
    breaks, days = target_breaks_at(needed, at)
    known: dict[str, Cert] = {c.sha256: c for c in chain}
    for st in structures:
        for info in st.paths:
            for c in info.candidate.certs:
                known.setdefault(c.sha256, c)
    stores = tuple(p.store for p in profiles)
    evidence = Evidence(
        chain=chain,
        results=results,
        at=at,
        host=host,
        key_matches=None if key_spki is None else key_spki == chain[0].spki,
        breaks_at=breaks,
        days_left=days,
        warn_days=warn_days,
        crit_days=crit_days,
        anchors=_anchor_fingerprints(stores),
        anchor_names=_anchor_names(stores),
        known=known,
        revocation=revocation,
        fetched=fetched,
        served_only=served_only,
        aia_profiles=frozenset(p.spec for p in profiles if p.aia),
    )
    findings = _only_required(run_checks(evidence), need)
    return Report(
        status=status_of(needed, findings, days, warn_days, crit_days),
        evaluated_at=at,
        host=host,
        breaks_at=breaks,
        days_left=days,
        chain=chain,
        profiles=results,
        findings=findings,
    )


@lru_cache(maxsize=64)
def _anchor_fingerprints(stores: tuple[Store, ...]) -> frozenset[str]:
    """SHA-256 of every anchor of ``stores`` (the same few store sets recur on every call)."""
    return frozenset(sha for store in stores for sha in store.fingerprints)


@lru_cache(maxsize=64)
def _anchor_names(stores: tuple[Store, ...]) -> frozenset[NameKey]:
    """Subject names of every anchor of ``stores``."""
    return frozenset(name for store in stores for name in store.by_subject)


def _only_required(findings: tuple[Finding, ...], need: set[str]) -> tuple[Finding, ...]:
    """Findings about optional profiles are kept but never above warning."""
    out = []
    for f in findings:
        if f.profile is not None and f.profile not in need and f.severity is Severity.CRITICAL:
            f = Finding(f.code, Severity.WARNING, f.message + " (optional profile)", f.profile,
                        f.cert)
        out.append(f)
    return tuple(out)


def target_breaks_at(
    results: Sequence[ProfileResult], at: dt.datetime
) -> tuple[dt.datetime | None, int | None]:
    """The target's ``breaks_at`` (earliest over required profiles; ``at`` if one is
    untrusted now) and ``days_left`` (whole days, rounded down)."""
    if not results:
        return None, None
    if any(not r.trusted for r in results):
        return at, 0
    breaks = min(r.breaks_at for r in results if r.breaks_at is not None)
    return breaks, days_between(at, breaks)


def days_between(at: dt.datetime, later: dt.datetime) -> int:
    return int((later - at).total_seconds() // 86400)


def status_of(
    needed: Sequence[ProfileResult],
    findings: Sequence[Finding],
    days_left: int | None,
    warn_days: int,
    crit_days: int,
) -> Status:
    if any(not r.trusted for r in needed):
        return Status.CRITICAL
    if any(f.severity is Severity.CRITICAL for f in findings):
        return Status.CRITICAL
    if days_left is not None and days_left < crit_days:
        return Status.CRITICAL
    if days_left is not None and days_left < warn_days:
        return Status.WARNING
    if any(f.severity is Severity.WARNING for f in findings):
        return Status.WARNING
    return Status.OK


def probe_failed_report(
    target: Target, reason: str, at: dt.datetime, host: str | None = None
) -> Report:
    """The report of a target that could not be probed (DESIGN.md: status unknown)."""
    return Report(
        status=Status.UNKNOWN,
        evaluated_at=_utc(at),
        host=host if host is not None else target.host,
        breaks_at=None,
        days_left=None,
        chain=(),
        profiles=(),
        findings=(
            Finding(FindingCode.PROBE_FAILED, Severity.CRITICAL, reason),
        ),
        target=target,
    )


def _utc(at: dt.datetime) -> dt.datetime:
    """``at`` in UTC, truncated to the second: X.509 times have whole-second precision and
    OpenSSL, BoringSSL and NSS compare at that precision (so ``breaks_at`` = notAfter + 1 s
    is exactly the first instant a client rejects)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at.astimezone(dt.UTC).replace(microsecond=0)


def clear_caches() -> None:
    """Forget memoised results (tests and long-running services after a store reload)."""
    from chainwatch.analysis import paths, profiles

    _report_cache.clear()
    _anchor_fingerprints.cache_clear()
    _anchor_names.cache_clear()
    profiles._struct_cache.clear()
    profiles._judged.clear()
    paths._sig_cache.clear()
    clear_parsed()
