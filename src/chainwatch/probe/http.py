"""Bounded HTTP fetching: certificates (AIA caIssuers), OCSP responses, CRLs.

Public API::

    Fetcher(limits=..., cache=..., transport=...)      async context manager; get / post
    FetchLimits, FetchKind, Fetched, FetchFailure, FetchCache, SHARED_CACHE, url_problem

Every fetch is ``http``/``https`` only (``ldap:`` and ``file:`` URLs are refused), bounded
in time (``FetchLimits.timeout`` for the whole exchange) and size (64 KiB for an OCSP
response or a certificate, 10 MiB for a CRL), follows at most 3 redirects, and never
raises: a failure is a :class:`Fetched` value whose ``failure`` says why
(``bad_url | timeout | connect | http_status | too_large | other``) and whose
``message`` is one line naming the URL. Answers are cached by URL (an OCSP request
by URL and request body): certificates for a day, OCSP responses and CRLs until their
``nextUpdate`` but at most an hour, failures for a minute; concurrent requests for
the same URL share one exchange.

What the bytes mean is not decided here: :mod:`chainwatch.service.netinputs` asks for
them and hands them to the (pure) analysis.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

import httpx

DEFAULT_TIMEOUT = 5.0
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


__all__ = [
    "DEFAULT_TIMEOUT",
    "SHARED_CACHE",
    "FetchCache",
    "FetchFailure",
    "FetchKind",
    "FetchLimits",
    "Fetched",
    "Fetcher",
    "url_problem",
]
