"""``analyze(chain, profiles, host, at) -> Report``: the engine's one entry point.

Pure: values in, values out, ``at`` always a parameter. An :class:`Analyzer` owns every
memo table of the engine: reports by (chain fingerprints, profiles, host, at,
thresholds, key, revocation, fetched), so that thousands of endpoints serving one chain
cost one analysis; the path search underneath without ``at``, so re-evaluating a known
chain on a new day is cheap too; and below that signature checks, path judgements,
parsed certificates and per-certificate facts. :func:`analyze` is the convenience over
the default analyzer (:func:`default_analyzer`), whose certificate table is also the one
:meth:`Cert.from_der <chainwatch.model.Cert.from_der>` consults.

Inputs that need the network (the leaf's revocation status, certificates fetched via
AIA) are gathered by the service layer (:mod:`chainwatch.service.netinputs`) and handed
in as values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from chainwatch.analysis import profiles as _profiles
from chainwatch.analysis.findings import Evidence, run_checks
from chainwatch.analysis.memo import Memo
from chainwatch.analysis.paths import Candidate
from chainwatch.analysis.policy import CertFacts, cert_facts
from chainwatch.analysis.profiles import PathInfo, Structure, verdict
from chainwatch.analysis.revocation import Revocation
from chainwatch.model import (
    Behaviour,
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
    signature_valid,
)

DEFAULT_WARN_DAYS = 30
DEFAULT_CRIT_DAYS = 7


def key_fingerprint(key: PrivateKeyTypes) -> bytes:
    """The SubjectPublicKeyInfo DER of a private key's public half."""
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class _Anchors:
    fingerprints: frozenset[str]
    names: frozenset[NameKey]


class Analyzer:
    """The analysis engine with its memo tables: one object to size, share and clear.

    Tables (entries; evicted least recently used, or first in first out where a hit is
    not worth reordering for):

    ==============  =======  ==========================================================
    table           entries  what
    ==============  =======  ==========================================================
    ``reports``      8192    reports by chain, profiles, host, instant and options (FIFO)
    ``structures``  20000    candidate paths judged without time, by chain, store and
                             behaviour (LRU)
    ``judgements``   1024    one path judged for one behaviour, shared by every store
                             that leads to it (LRU); every path starts at the leaf, so a
                             short memory suffices and keeps parsed leaves alive no longer
                             than the other tables do
    ``signatures``  65536    does a child's signature verify under an issuer key (FIFO)
    ``certs``        4096    parsed certificates by DER (FIFO): a CA certificate served
                             in thousands of chains is parsed, and its derived facts
                             computed, once per stay
    ``cert_facts``   4096    what the rules derive from one certificate alone (LRU)
    ``anchor_sets``    64    anchor fingerprints and names of a tuple of stores (LRU)
    ==============  =======  ==========================================================

    Thread safety: the tables are shared by every thread using the analyzer, each behind
    its own lock (:class:`~chainwatch.analysis.memo.Memo`). Shared rather than per-thread
    because the point of the tables is that one analysis serves every endpoint serving
    that chain, whichever worker thread sees it; per-thread tables would multiply memory
    by the thread count and lose those hits. A lock is held only around one dictionary
    operation, never while a signature is checked or a path searched: two threads missing
    on one key both compute the same pure value, and one write wins.

    :meth:`clear` forgets everything (tests, and services after a store reload).
    """

    REPORTS = 8192
    STRUCTURES = 20000
    JUDGEMENTS = 1024
    SIGNATURES = 65536
    CERTS = 4096
    CERT_FACTS = 4096
    ANCHOR_SETS = 64

    def __init__(
        self,
        *,
        reports: int = REPORTS,
        structures: int = STRUCTURES,
        judgements: int = JUDGEMENTS,
        signatures: int = SIGNATURES,
        certs: int = CERTS,
        cert_facts: int = CERT_FACTS,
        anchor_sets: int = ANCHOR_SETS,
    ) -> None:
        self.reports: Memo[tuple[object, ...], Report] = Memo("reports", reports, lru=False)
        self.structures: Memo[tuple[object, ...], Structure] = Memo("structures", structures)
        self.judgements: Memo[tuple[object, ...], PathInfo] = Memo("judgements", judgements)
        self.signatures: Memo[tuple[str, bytes], bool] = Memo(
            "signatures", signatures, lru=False
        )
        self.certs: Memo[bytes, Cert] = Memo("certs", certs, lru=False)
        self.cert_facts: Memo[str, CertFacts] = Memo("cert_facts", cert_facts)
        self.anchor_sets: Memo[tuple[Store, ...], _Anchors] = Memo("anchor_sets", anchor_sets)

    @property
    def tables(self) -> tuple[Memo[object, object], ...]:
        """Every memo table this analyzer owns."""
        return (  # type: ignore[return-value]
            self.reports, self.structures, self.judgements, self.signatures, self.certs,
            self.cert_facts, self.anchor_sets,
        )

    def clear(self) -> None:
        """Forget everything every table remembers."""
        for table in self.tables:
            table.clear()

    def __repr__(self) -> str:
        return "Analyzer(" + ", ".join(f"{t.name}={len(t)}/{t.size}" for t in self.tables) + ")"

    # -- memoised primitives ---------------------------------------------------------------

    def cert(self, der: bytes) -> Cert:
        """``Cert.from_der`` through this analyzer's certificate table."""
        der = bytes(der)
        hit = self.certs.get(der)
        if hit is not None:
            return hit
        return self.certs.put(der, Cert.parse(der))

    def signed_by(self, child: Cert, issuer: Cert) -> bool:
        """``child``'s signature verifies under ``issuer``'s key (memoised)."""
        key = (child.sha256, issuer.spki)
        hit = self.signatures.get(key)
        if hit is not None:
            return hit
        return self.signatures.put(key, signature_valid(child, issuer))

    def facts(self, cert: Cert) -> CertFacts:
        """What the rules derive from ``cert`` alone (memoised)."""
        hit = self.cert_facts.get(cert.sha256)
        if hit is not None:
            return hit
        return self.cert_facts.put(cert.sha256, cert_facts(cert))

    def judge(self, candidate: Candidate, building: Behaviour) -> PathInfo:
        """One candidate path judged for ``building`` (memoised; store-independent)."""
        key = (candidate.fingerprints, candidate.anchor_index, building)
        hit = self.judgements.get(key)
        if hit is not None:
            return hit
        info = _profiles.judge(candidate, building, verify=self.signed_by, facts=self.facts)
        return self.judgements.put(key, info)

    def structure(
        self,
        chain: Sequence[Cert],
        store: Store,
        building: Behaviour,
        fetched: Sequence[Cert] = (),
    ) -> Structure:
        """Every candidate path from ``chain[0]`` to ``store``'s anchors, judged without time.

        ``fetched``: certificates an AIA-fetching client would download (the caIssuers of a
        chain whose intermediate is not served); path building may use them as if served.
        Pass them only for profiles with ``aia`` set: the memo key holds their
        fingerprints, so a profile that fetches nothing shares its entry with one that
        cannot fetch.
        """
        extra = tuple(c for c in dict.fromkeys(fetched) if c not in chain) if fetched else ()
        key = (
            tuple(c.sha256 for c in chain), store.digest, building,
            tuple(c.sha256 for c in extra),
        )
        hit = self.structures.get(key)
        if hit is not None:
            return hit
        built = _profiles.build((*chain, *extra), store, building)
        result = Structure(
            paths=tuple(self.judge(c, building) for c in built.paths),
            dead_end=built.dead_end,
            exhausted=built.exhausted,
        )
        return self.structures.put(key, result)

    def evaluate(self, chain: Sequence[Cert], profile: Profile, at: dt.datetime) -> ProfileResult:
        """The verdict of ``profile`` on ``chain`` at ``at``."""
        return verdict(self.structure(chain, profile.store, profile.building), profile, _utc(at))

    def _anchors(self, stores: tuple[Store, ...]) -> _Anchors:
        hit = self.anchor_sets.get(stores)
        if hit is not None:
            return hit
        return self.anchor_sets.put(stores, _Anchors(
            fingerprints=frozenset(sha for store in stores for sha in store.fingerprints),
            names=frozenset(name for store in stores for name in store.by_subject),
        ))

    # -- the entry point -------------------------------------------------------------------

    def analyze(
        self,
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
            revocation: the leaf's revocation status, when it was checked: ``revoked``
                makes a critical ``REVOKED`` finding, ``unknown`` an informational
                ``REVOCATION_UNKNOWN`` one; ``None`` means not checked (no finding).
            fetched: certificates fetched via the AIA caIssuers URLs of the chain;
                profiles with ``aia`` set may build paths through them. They are never
                counted as presented: findings about the served chain stay as they are.
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
        hit = self.reports.get(cache_key)
        if hit is not None:
            return hit
        report = self._analyze(
            tuple(chain), tuple(profiles), at, host, warn_days, crit_days, key_spki,
            required, revocation, extra,
        )
        return self.reports.put(cache_key, report)

    def _analyze(
        self,
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
            self.structure(chain, p.store, p.building, fetched if p.aia else ())
            for p in profiles
        )
        results = tuple(verdict(st, p, at) for st, p in zip(structures, profiles, strict=True))
        served_only = {
            p.spec: verdict(self.structure(chain, p.store, p.building), p, at)
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
        anchors = self._anchors(tuple(p.store for p in profiles))
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
            anchors=anchors.fingerprints,
            anchor_names=anchors.names,
            known=known,
            signed_by=self.signed_by,
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


_DEFAULT = Analyzer()
Cert.memo = _DEFAULT.certs


def default_analyzer() -> Analyzer:
    """The analyzer behind :func:`analyze`, :func:`clear_caches` and ``Cert.from_der``."""
    return _DEFAULT


analyze = _DEFAULT.analyze
""":meth:`Analyzer.analyze` of the default analyzer (the method itself, bound: no extra call
on the path of a report served from the table)."""


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
    """Forget everything the default analyzer remembers (tests, and long-running services
    after a store reload)."""
    _DEFAULT.clear()
