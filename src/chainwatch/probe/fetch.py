"""Network inputs of the analysis beyond the handshake: AIA issuers and revocation.

Browsers complete a chain whose intermediate is not served by downloading it from the
caIssuers URL in the certificate's Authority Information Access extension, and clients
that check revocation ask the OCSP responder it names, or download the CRL named in its
CRL Distribution Points. This module does that fetching, and nothing else: what the
bytes mean is decided by the (pure) analysis — :mod:`chainwatch.analysis.revocation`
for OCSP responses and CRLs, path building for the fetched certificates.

Public API::

    Fetcher(limits=..., cache=..., transport=...)      async context manager; get / post
    fetch_issuers(chain, fetcher=..., stores=...) -> AiaResult
    check_revocation(chain, staple, timeout=...) -> Revocation
    gather_inputs(observation, profiles, revocation=..., fetcher=...) -> NetworkInputs
    fetch_inputs([(observation, profiles), ...], revocation=..., timeout=...) -> [NetworkInputs]

Every fetch is ``http``/``https`` only (``ldap:`` and ``file:`` URLs are refused), bounded
in time (``FetchLimits.timeout`` for the whole exchange) and size (64 KiB for an OCSP
response or a certificate, 10 MiB for a CRL), follows at most 3 redirects, and never
raises: a failure is a :class:`Fetched` value whose ``failure`` says why
(``bad_url | timeout | connect | http_status | too_large | other``) and whose
``message`` is one line naming the URL. Answers are cached by URL (an OCSP request
by URL and request body): certificates for a day, OCSP responses and CRLs until their
``nextUpdate`` but at most an hour, failures for a minute; concurrent requests for
the same URL share one exchange.

The URLs come from certificates a server chose to present, so a hostile server can make
chainwatch send a bounded GET or POST to an address of its choosing, exactly as it can
make every browser that visits it do; only certificate parsing ever sees the answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import httpx
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

DEFAULT_TIMEOUT = 5.0
MAX_AIA_HOPS = 3
"""Most caIssuers fetched one after another for one chain (real gaps are one certificate)."""
MAX_URLS = 2
"""Most URLs tried per extension (certificates rarely name more than one of a kind)."""
MAX_CERTS_PER_FETCH = 10
MAX_REDIRECTS = 3
KiB = 1024
MiB = 1024 * KiB


class FetchKind(StrEnum):
    """What is fetched: decides the size limit, the cache lifetime and the Accept header."""

    CERT = "cert"
    OCSP = "ocsp"
    CRL = "crl"


_ACCEPT = {
    FetchKind.CERT: "application/pkix-cert, application/pkcs7-mime, */*;q=0.5",
    FetchKind.OCSP: "application/ocsp-response",
    FetchKind.CRL: "application/pkix-crl, */*;q=0.5",
}


@dataclass(frozen=True)
class FetchLimits:
    """How long and how much one fetch may take.

    Attributes:
        timeout: seconds for a whole exchange (connect, request, every byte of the answer).
        cert_bytes / ocsp_bytes / crl_bytes: the largest answer accepted, per kind.
        concurrency: most exchanges in flight at once per :class:`Fetcher`.
    """

    timeout: float = DEFAULT_TIMEOUT
    cert_bytes: int = 64 * KiB
    ocsp_bytes: int = 64 * KiB
    crl_bytes: int = 10 * MiB
    concurrency: int = 16

    def max_bytes(self, kind: FetchKind) -> int:
        if kind is FetchKind.CERT:
            return self.cert_bytes
        if kind is FetchKind.OCSP:
            return self.ocsp_bytes
        return self.crl_bytes


class FetchFailure(StrEnum):
    """Why a fetch gave no answer."""

    BAD_URL = "bad_url"  # not an absolute http(s) URL
    TIMEOUT = "timeout"  # the exchange took longer than the limit
    CONNECT = "connect"  # no connection (refused, unreachable, name not found, TLS failed)
    HTTP_STATUS = "http_status"  # an answer other than 200
    TOO_LARGE = "too_large"  # more bytes than the kind's limit
    OTHER = "other"  # anything else (protocol errors, too many redirects...)


@dataclass(frozen=True)
class Fetched:
    """The outcome of one fetch.

    Attributes:
        url: what was fetched.
        body: the answer's bytes on success, else ``None``.
        failure: ``None`` on success, else why not.
        message: one line for people, naming the URL.
        cached: the outcome came from the cache.
    """

    url: str
    body: bytes | None = None
    failure: FetchFailure | None = None
    message: str = ""
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.failure is None and self.body is not None


def url_problem(url: str) -> str | None:
    """Why ``url`` is not fetched (only absolute http/https URLs are), or ``None``."""
    if len(url) > 2048:
        return "the URL is longer than 2048 characters"
    try:
        parsed = httpx.URL(url)
    except Exception:  # httpx.InvalidURL and friends
        return "not a valid URL"
    if parsed.scheme not in {"http", "https"}:
        return f"not an http(s) URL ({parsed.scheme or 'no scheme'})"
    if not parsed.host:
        return "the URL names no host"
    return None


# -- the cache -----------------------------------------------------------------------------

CacheKey = tuple[str, str, bytes]

SUCCESS_TTL = {
    FetchKind.CERT: dt.timedelta(days=1),
    FetchKind.OCSP: dt.timedelta(hours=1),
    FetchKind.CRL: dt.timedelta(hours=1),
}
"""How long a successful answer is reused at most (OCSP and CRL: less when their
``nextUpdate`` comes sooner)."""
MIN_TTL = dt.timedelta(minutes=1)
FAILURE_TTL = dt.timedelta(minutes=1)
"""A failed fetch is not retried for this long: one dead responder shared by many
endpoints costs one timeout per minute, not one per endpoint."""


class FetchCache:
    """Outcomes by (method, URL, request body digest), each until its expiry; bounded in
    entries and bytes (least recently used first out); safe to share between threads."""

    def __init__(
        self,
        *,
        max_entries: int = 4096,
        max_bytes: int = 64 * MiB,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self._entries: OrderedDict[CacheKey, tuple[dt.datetime, Fetched]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: CacheKey) -> Fetched | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            expires, value = hit
            if self.clock() >= expires:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return replace(value, cached=True)

    def put(self, key: CacheKey, value: Fetched, until: dt.datetime) -> None:
        size = len(value.body or b"")
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (until, value)
            self._bytes += size
            while self._entries and (
                len(self._entries) > self.max_entries or self._bytes > self.max_bytes
            ):
                self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: CacheKey) -> None:
        _, value = self._entries.pop(key)
        self._bytes -= len(value.body or b"")


SHARED_CACHE = FetchCache()
"""The process-wide cache every :class:`Fetcher` uses unless given its own."""


# -- the fetcher ---------------------------------------------------------------------------

FreshUntil = Callable[[bytes], dt.datetime | None]


class Fetcher:
    """Bounded, cached HTTP fetching of certificates, OCSP responses and CRLs.

    Use as an async context manager (it owns one connection pool)::

        async with Fetcher(FetchLimits(timeout=5)) as fetcher:
            got = await fetcher.get("http://r3.i.lencr.org/", FetchKind.CERT)

    ``transport`` swaps the network (``httpx.MockTransport`` in tests); ``cache`` the
    cache (default: :data:`SHARED_CACHE`).
    """

    def __init__(
        self,
        limits: FetchLimits | None = None,
        *,
        cache: FetchCache | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.limits = limits or FetchLimits()
        self.cache = cache if cache is not None else SHARED_CACHE
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._gate: asyncio.Semaphore | None = None
        self._inflight: dict[CacheKey, asyncio.Future[Fetched]] = {}

    async def __aenter__(self) -> Fetcher:
        from chainwatch import __version__

        self._client = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(self.limits.timeout),
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            headers={"User-Agent": f"chainwatch/{__version__}", "Accept-Encoding": "identity"},
        )
        self._gate = asyncio.Semaphore(max(1, self.limits.concurrency))
        return self

    async def __aexit__(self, *_: object) -> None:
        pending = [f for f in self._inflight.values() if not f.done()]
        for future in pending:
            future.cancel()
        if pending:
            await asyncio.wait(pending)
        self._inflight.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def get(
        self, url: str, kind: FetchKind, *, fresh_until: FreshUntil | None = None
    ) -> Fetched:
        """GET ``url``. ``fresh_until(body)``: when the answer stops being current (an
        OCSP response's or CRL's ``nextUpdate``), to cache it no longer than that."""
        return await self._fetch("GET", url, None, kind, fresh_until)

    async def post(
        self,
        url: str,
        body: bytes,
        kind: FetchKind,
        *,
        content_type: str = "application/ocsp-request",
        fresh_until: FreshUntil | None = None,
    ) -> Fetched:
        """POST ``body`` to ``url`` (an OCSP request, RFC 6960 appendix A)."""
        return await self._fetch("POST", url, body, kind, fresh_until, content_type)

    async def _fetch(
        self,
        method: str,
        url: str,
        body: bytes | None,
        kind: FetchKind,
        fresh_until: FreshUntil | None,
        content_type: str | None = None,
    ) -> Fetched:
        problem = url_problem(url)
        if problem is not None:
            return Fetched(url, failure=FetchFailure.BAD_URL, message=f"{url}: {problem}")
        key: CacheKey = (method, url, hashlib.sha256(body).digest() if body else b"")
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(
                self._fetch_and_store(key, method, url, body, kind, fresh_until, content_type)
            )
            self._inflight[key] = future
            future.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(future)

    async def _fetch_and_store(
        self,
        key: CacheKey,
        method: str,
        url: str,
        body: bytes | None,
        kind: FetchKind,
        fresh_until: FreshUntil | None,
        content_type: str | None,
    ) -> Fetched:
        if self._client is None or self._gate is None:
            raise RuntimeError("use the Fetcher as an async context manager")
        async with self._gate:
            result = await self._exchange(self._client, method, url, body, kind, content_type)
        now = self.cache.clock()
        if result.ok:
            until = now + SUCCESS_TTL[kind]
            if fresh_until is not None and result.body is not None:
                try:
                    stated = fresh_until(result.body)
                except Exception:  # a hint only: any failure means "no hint"
                    stated = None
                if stated is not None:
                    until = min(until, max(stated, now + MIN_TTL))
            self.cache.put(key, result, until)
        else:
            self.cache.put(key, result, now + FAILURE_TTL)
        return result

    async def _exchange(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        body: bytes | None,
        kind: FetchKind,
        content_type: str | None,
    ) -> Fetched:
        limit = self.limits.max_bytes(kind)
        headers = {"Accept": _ACCEPT[kind]}
        if content_type is not None:
            headers["Content-Type"] = content_type

        def fail(failure: FetchFailure, why: str) -> Fetched:
            return Fetched(url, failure=failure, message=f"{url}: {why}")

        try:
            async with asyncio.timeout(self.limits.timeout):
                async with client.stream(method, url, content=body, headers=headers) as resp:
                    if resp.status_code != 200:
                        phrase = f" {resp.reason_phrase}" if resp.reason_phrase else ""
                        return fail(FetchFailure.HTTP_STATUS, f"HTTP {resp.status_code}{phrase}")
                    encoding = resp.headers.get("content-encoding", "identity").strip().lower()
                    if encoding not in {"", "identity"}:
                        return fail(FetchFailure.OTHER, f"{encoding}-encoded answer (asked for "
                                                        "identity)")
                    declared = resp.headers.get("content-length", "").strip()
                    if declared.isdigit() and int(declared) > limit:
                        return fail(FetchFailure.TOO_LARGE,
                                    f"answer of {int(declared)} bytes exceeds {_size(limit)}")
                    data = bytearray()
                    async for chunk in resp.aiter_raw():
                        data += chunk
                        if len(data) > limit:
                            return fail(FetchFailure.TOO_LARGE, f"answer exceeds {_size(limit)}")
                    return Fetched(url, bytes(data), message=f"{url}: {len(data)} bytes")
        except (TimeoutError, httpx.TimeoutException):
            return fail(FetchFailure.TIMEOUT, f"timeout after {self.limits.timeout:g}s")
        except httpx.ConnectError as exc:
            return fail(FetchFailure.CONNECT, f"connection failed ({_one_line(exc)})")
        except httpx.TooManyRedirects:
            return fail(FetchFailure.OTHER, f"more than {MAX_REDIRECTS} redirects")
        except httpx.UnsupportedProtocol as exc:
            return fail(FetchFailure.BAD_URL, f"redirected to an unsupported URL "
                                              f"({_one_line(exc)})")
        except Exception as exc:  # httpx.HTTPError, OSError, ssl errors: never raised
            return fail(FetchFailure.OTHER, f"{type(exc).__name__}: {_one_line(exc)}")


def _size(n: int) -> str:
    if n % MiB == 0:
        return f"{n // MiB} MiB"
    if n % KiB == 0:
        return f"{n // KiB} KiB"
    return f"{n} bytes"


def _one_line(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:160]


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
) -> Revocation:
    """The revocation status of ``chain[0]``: the stapled OCSP response when it gives a
    verified, current answer; else the leaf's OCSP responders (POST); else its CRLs.

    Args:
        chain: the served chain, leaf first (the leaf's issuer is looked for in it).
        staple: the OCSP response the server stapled, if any.
        timeout: seconds per fetch when no ``fetcher`` is given (at most
            ``2 * MAX_URLS`` fetches are made).
        fetcher: the fetcher to use (its limits then apply).
        issuers: more candidates for the leaf's issuer (certificates fetched via AIA,
            anchors whose name matches), for chains that do not serve it.
        now: the instant answers must be current at (default: the clock).

    Never raises: without a usable answer the status is ``unknown`` and ``detail`` says,
    source by source, why.
    """
    if not chain:
        return Revocation.unknown("no certificate to check")
    if fetcher is None:
        async with Fetcher(FetchLimits(timeout=timeout)) as own:
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
) -> list[NetworkInputs]:
    """:func:`gather_inputs` for many observations (one event loop, one fetcher, shared
    cache): one result per item, in order. Synchronous, for the CLI and the monitor."""
    if not items:
        return []

    async def run() -> list[NetworkInputs]:
        limits = FetchLimits(timeout=timeout, concurrency=concurrency)
        async with Fetcher(limits, cache=cache) as fetcher:
            return list(await asyncio.gather(*(
                gather_inputs(obs, profiles, revocation=revocation, fetcher=fetcher)
                for obs, profiles in items
            )))

    return asyncio.run(run())


__all__ = [
    "DEFAULT_TIMEOUT",
    "SHARED_CACHE",
    "AiaResult",
    "FetchCache",
    "FetchFailure",
    "FetchKind",
    "FetchLimits",
    "Fetched",
    "Fetcher",
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
    "url_problem",
]
