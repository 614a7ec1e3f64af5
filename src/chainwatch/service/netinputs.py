"""Network inputs of the analysis beyond the handshake: AIA issuers and revocation.

Browsers complete a chain whose intermediate is not served by downloading it from the
caIssuers URL in the certificate's Authority Information Access extension, and clients
that check revocation ask the OCSP responder it names, or download the CRL named in its
CRL Distribution Points. This module runs that fetch-verify-fetch loop: the fetching is
:mod:`chainwatch.probe.http`'s (bounded, cached), what the bytes mean is decided by the
(pure) analysis — :mod:`chainwatch.analysis.revocation` for OCSP responses and CRLs,
path building for the fetched certificates.

Public API::

    fetch_issuers(chain, fetcher=..., stores=...) -> AiaResult
    check_revocation(chain, staple, timeout=...) -> Revocation
    gather_inputs(observation, profiles, revocation=..., fetcher=...) -> NetworkInputs
    fetch_inputs([(observation, profiles), ...], revocation=..., timeout=...) -> [NetworkInputs]

The URLs come from certificates a server chose to present: the fetcher goes only to
public destinations (plus the networks in ``allow_private``), checked at every redirect,
and a refused URL is a note ("points at a private address ...; not fetched"), never an
error; only certificate parsing ever sees an answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from chainwatch.analysis.paths import could_issue
from chainwatch.analysis.revocation import (
    Revocation,
    RevocationSource,
    crl_next_update,
    crl_status,
    ocsp_next_update,
    ocsp_request,
    ocsp_status,
)
from chainwatch.model import Cert, Profile, Store, lenient, signature_valid
from chainwatch.probe import Observation
from chainwatch.probe.fetchpolicy import DEFAULT_TIMEOUT, FetchKind, FetchLimits, IPNetwork

if TYPE_CHECKING:
    from chainwatch.probe.http import FetchCache, Fetcher

MAX_AIA_HOPS = 3
"""Most caIssuers fetched one after another for one chain (real gaps are one certificate)."""
MAX_URLS = 2
"""Most URLs tried per extension (certificates rarely name more than one of a kind)."""
MAX_CERTS_PER_FETCH = 10


# -- URLs in certificates ------------------------------------------------------------------


def _aia_urls(cert: Cert, method: x509.ObjectIdentifier) -> list[str]:
    ext = cert.ext(ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    if ext is None or not isinstance(ext.value, x509.AuthorityInformationAccess):
        return []
    return [
        d.access_location.value
        for d in ext.value
        if d.access_method == method
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
    ]


def ca_issuers_urls(cert: Cert) -> list[str]:
    """The caIssuers URLs of ``cert``'s Authority Information Access extension."""
    return _aia_urls(cert, AuthorityInformationAccessOID.CA_ISSUERS)


def ocsp_urls(cert: Cert) -> list[str]:
    """The OCSP responder URLs of ``cert``'s Authority Information Access extension."""
    return _aia_urls(cert, AuthorityInformationAccessOID.OCSP)


def crl_urls(cert: Cert) -> list[str]:
    """The URLs of ``cert``'s CRL distribution points that its issuer signs (points with
    a separate ``cRLIssuer``, indirect CRLs, are skipped)."""
    ext = cert.ext(ExtensionOID.CRL_DISTRIBUTION_POINTS)
    if ext is None or not isinstance(ext.value, x509.CRLDistributionPoints):
        return []
    return [
        name.value
        for point in ext.value
        if point.full_name and point.crl_issuer is None
        for name in point.full_name
        if isinstance(name, x509.UniformResourceIdentifier)
    ]


def parse_certificates(body: bytes) -> tuple[Cert, ...] | str:
    """The certificates in a caIssuers answer: DER (RFC 5280 says ``application/pkix-cert``),
    PKCS#7 "certs-only" (``.p7c``, DER or PEM) or PEM; or why there are none."""
    try:
        with lenient():
            if b"-----BEGIN" in body:
                if b"-----BEGIN PKCS7-----" in body or b"-----BEGIN CMS-----" in body:
                    found = pkcs7.load_pem_pkcs7_certificates(body)
                else:
                    found = x509.load_pem_x509_certificates(body)
            else:
                try:
                    found = [x509.load_der_x509_certificate(body)]
                except ValueError:
                    found = pkcs7.load_der_pkcs7_certificates(body)
            certs = tuple(Cert.from_x509(c) for c in found[:MAX_CERTS_PER_FETCH])
    except Exception as exc:  # ValueError on anything that is none of the above
        return f"not a certificate, PKCS#7 bundle or PEM ({_one_line(exc)})"
    return certs or "no certificate in the answer"


# -- AIA: completing the chain -------------------------------------------------------------


@dataclass(frozen=True)
class AiaResult:
    """What fetching the caIssuers of a chain found.

    Attributes:
        certs: the certificates fetched, in the order fetched (never the served ones).
        notes: one line per URL tried (what it gave, or why nothing).
    """

    certs: tuple[Cert, ...] = ()
    notes: tuple[str, ...] = ()


def served_top(chain: Sequence[Cert]) -> Cert:
    """The certificate the served chain leads to: from the leaf, follow served issuers
    (by name) as far as they go."""
    cert = chain[0]
    seen = {cert.sha256}
    for _ in range(len(chain)):
        if cert.self_issued:
            break
        nxt = next((p for p in chain[1:] if p.sha256 not in seen and could_issue(p, cert)), None)
        if nxt is None:
            break
        seen.add(nxt.sha256)
        cert = nxt
    return cert


async def fetch_issuers(
    chain: Sequence[Cert],
    *,
    fetcher: Fetcher,
    stores: Iterable[Store] = (),
    max_hops: int = MAX_AIA_HOPS,
) -> AiaResult:
    """Fetch what an AIA-fetching client would: starting from the certificate the served
    chain leads to, while its issuer is neither served, fetched already, nor an anchor
    of ``stores`` (and it is not self-issued), download its caIssuers; at most
    ``max_hops`` times."""
    if not chain:
        return AiaResult()
    anchor_names = {name for store in stores for name in store.by_subject}
    known = list(chain)
    fetched: list[Cert] = []
    notes: list[str] = []
    current = served_top(chain)
    for _ in range(max_hops):
        if current.self_issued or current.issuer_key in anchor_names:
            break
        have = next((c for c in fetched if c != current and could_issue(c, current)), None)
        if have is not None:  # a PKCS#7 answer carried the next issuer already
            current = have
            continue
        urls = ca_issuers_urls(current)
        if not urls:
            notes.append(f"{current.subject} names no caIssuers URL: nothing to fetch")
            break
        found: Cert | None = None
        for url in urls[:MAX_URLS]:
            got = await fetcher.get(url, FetchKind.CERT)
            if not got.ok or got.body is None:
                notes.append(got.message)
                continue
            certs = parse_certificates(got.body)
            if isinstance(certs, str):
                notes.append(f"{url}: {certs}")
                continue
            issuers = [c for c in certs if could_issue(c, current)]
            if not issuers:
                notes.append(f"{url}: {len(certs)} certificate(s), none the issuer of "
                             f"{current.subject}")
                continue
            new = [c for c in certs if c not in known]
            known.extend(new)
            fetched.extend(new)
            notes.append(f"{url}: fetched {', '.join(c.subject for c in issuers)}")
            found = issuers[0]
            break
        if found is None:
            break
        current = found
    return AiaResult(tuple(fetched), tuple(notes))


# -- revocation ----------------------------------------------------------------------------


def leaf_issuer(leaf: Cert, candidates: Iterable[Cert]) -> Cert | None:
    """The candidate whose name matches the leaf's issuer and whose key signed it."""
    for cert in candidates:
        if cert != leaf and could_issue(cert, leaf) and signature_valid(leaf, cert):
            return cert
    return None


async def check_revocation(
    chain: Sequence[Cert],
    staple: bytes | None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    fetcher: Fetcher | None = None,
    issuers: Sequence[Cert] = (),
    now: dt.datetime | None = None,
    allow_private: Sequence[IPNetwork] = (),
) -> Revocation:
    """The revocation status of ``chain[0]``: the stapled OCSP response when it gives a
    verified, current answer; else the leaf's OCSP responders (POST); else its CRLs.

    Args:
        chain: the served chain, leaf first (the leaf's issuer is looked for in it).
        staple: the OCSP response the server stapled, if any.
        timeout: seconds per fetch when no ``fetcher`` is given (at most
            ``2 * MAX_URLS`` fetches are made).
        fetcher: the fetcher to use (its limits then apply).
        allow_private: networks fetched from although not public, when no ``fetcher``
            is given (see :func:`chainwatch.probe.http.address_problem`).
        issuers: more candidates for the leaf's issuer (certificates fetched via AIA,
            anchors whose name matches), for chains that do not serve it.
        now: the instant answers must be current at (default: the clock).

    Never raises: without a usable answer the status is ``unknown`` and ``detail`` says,
    source by source, why.
    """
    if not chain:
        return Revocation.unknown("no certificate to check")
    if fetcher is None:
        from chainwatch.probe.http import Fetcher

        limits = FetchLimits(timeout=timeout, allow_private=tuple(allow_private))
        async with Fetcher(limits) as own:
            return await check_revocation(chain, staple, fetcher=own, issuers=issuers, now=now)
    at = now if now is not None else dt.datetime.now(dt.UTC).replace(microsecond=0)
    leaf = chain[0]
    issuer = leaf_issuer(leaf, (*chain[1:], *issuers))
    if issuer is None:
        return Revocation.unknown(
            f"the leaf's issuer {leaf.issuer} is neither served nor fetched, so no OCSP "
            "response or CRL about it can be verified"
        )
    tried: list[str] = []
    if staple is not None:
        answer = ocsp_status(staple, leaf, issuer, at=at, source=RevocationSource.STAPLE)
        if answer.definitive:
            return answer
        tried.append(answer.detail or "the stapled OCSP response is unusable")
    responders = ocsp_urls(leaf)[:MAX_URLS]
    if responders:
        try:
            request = ocsp_request(leaf, issuer)
        except Exception as exc:  # a key cryptography cannot hash into a CertID
            tried.append(f"no OCSP request can be built ({_one_line(exc)})")
            responders = []
    for url in responders:
        got = await fetcher.post(url, request, FetchKind.OCSP, fresh_until=ocsp_next_update)
        if not got.ok or got.body is None:
            tried.append(f"OCSP {got.message}")
            continue
        answer = ocsp_status(got.body, leaf, issuer, at=at, source=RevocationSource.OCSP,
                             url=url)
        if answer.definitive:
            return answer
        tried.append(f"OCSP {url}: {answer.detail}")
    for url in crl_urls(leaf)[:MAX_URLS]:
        got = await fetcher.get(url, FetchKind.CRL, fresh_until=crl_next_update)
        if not got.ok or got.body is None:
            tried.append(f"CRL {got.message}")
            continue
        answer = crl_status(got.body, leaf, issuer, at=at, url=url)
        if answer.definitive:
            return answer
        tried.append(f"CRL {url}: {answer.detail}")
    if not tried:
        return Revocation.unknown(
            "no staple, and the leaf names no OCSP responder and no CRL distribution point"
        )
    return Revocation.unknown("; ".join(tried))


# -- everything one observation needs ------------------------------------------------------


@dataclass(frozen=True)
class NetworkInputs:
    """The network inputs of one observation's analysis (``report_for``'s ``revocation``
    and ``fetched``), with notes for people about the AIA fetching.

    Attributes:
        revocation: the leaf's revocation status; ``None`` when it was not checked.
        fetched: certificates fetched via AIA caIssuers (only when a profile fetches).
        notes: what each caIssuers URL gave, or why nothing.
    """

    revocation: Revocation | None = None
    fetched: tuple[Cert, ...] = ()
    notes: tuple[str, ...] = ()


async def gather_inputs(
    observation: Observation,
    profiles: Sequence[Profile],
    *,
    revocation: bool,
    fetcher: Fetcher,
    now: dt.datetime | None = None,
) -> NetworkInputs:
    """Fetch the AIA issuers (when some profile has ``aia`` set) and check revocation
    (when asked) for what ``observation`` saw. A failed probe or an unparsable chain
    needs nothing (its report is ``PROBE_FAILED``)."""
    if not observation.ok or not observation.chain:
        return NetworkInputs()
    try:
        chain = tuple(Cert.from_der(der) for der in observation.chain)
    except Exception:  # the report will say the chain could not be parsed
        return NetworkInputs()
    fetching = [p for p in profiles if p.aia]
    aia = AiaResult()
    if fetching:
        aia = await fetch_issuers(chain, fetcher=fetcher, stores=[p.store for p in fetching])
    status: Revocation | None = None
    if revocation:
        anchors = [a for p in profiles for a in p.store.by_subject.get(chain[0].issuer_key, ())]
        status = await check_revocation(
            chain, observation.ocsp_staple, fetcher=fetcher,
            issuers=(*aia.certs, *dict.fromkeys(anchors)), now=now,
        )
    return NetworkInputs(status, aia.certs, aia.notes)


def fetch_inputs(
    items: Sequence[tuple[Observation, Sequence[Profile]]],
    *,
    revocation: bool,
    timeout: float = DEFAULT_TIMEOUT,
    concurrency: int = 16,
    cache: FetchCache | None = None,
    allow_private: Sequence[IPNetwork] = (),
) -> list[NetworkInputs]:
    """:func:`gather_inputs` for many observations (one event loop, one fetcher, shared
    cache): one result per item, in order. Synchronous, for the CLI and the monitor.
    ``allow_private``: networks fetched from although not public (an internal CA's
    responder); by default only public destinations are."""
    if not items:
        return []
    # The HTTP client is imported by the scans that fetch, not by every scan.
    from chainwatch.probe.http import Fetcher

    async def run() -> list[NetworkInputs]:
        limits = FetchLimits(timeout=timeout, concurrency=concurrency,
                             allow_private=tuple(allow_private))
        async with Fetcher(limits, cache=cache) as fetcher:
            return list(await asyncio.gather(*(
                gather_inputs(obs, profiles, revocation=revocation, fetcher=fetcher)
                for obs, profiles in items
            )))

    return asyncio.run(run())


def _one_line(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:160]


__all__ = [
    "AiaResult",
    "NetworkInputs",
    "ca_issuers_urls",
    "check_revocation",
    "crl_urls",
    "fetch_inputs",
    "fetch_issuers",
    "gather_inputs",
    "leaf_issuer",
    "ocsp_urls",
    "parse_certificates",
    "served_top",
]
