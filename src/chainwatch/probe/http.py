"""Bounded HTTP fetching of what certificates and ACME servers point at: certificates
(AIA caIssuers), OCSP responses, CRLs, ACME Renewal Information.

Public API::

    Fetcher(limits=..., cache=..., resolver=...)       async context manager; get / post
    FetchLimits, FetchKind, Fetched, FetchFailure, FetchCache, SHARED_CACHE
    url_problem(url), address_problem(ip, allow), allow_networks(["10.0.0.0/8", ...])

Every fetch is ``http``/``https`` only (``ldap:`` and ``file:`` URLs are refused), bounded
in time (``FetchLimits.timeout`` for the whole exchange: name resolution, every redirect,
every byte of the answer, so a server trickling bytes cannot stretch it) and size (64 KiB
for an OCSP response, a certificate or an ACME answer, 10 MiB for a CRL; counted after
``gzip``/``deflate`` decoding too, as the bytes arrive, so a compression bomb costs no
more memory than its limit), follows at most 3 redirects, and never raises: a failure is
a :class:`Fetched` value whose ``failure`` says why
(``bad_url | private | timeout | connect | http_status | too_large | other``) and whose
``message`` is one line naming the URL. Answers are cached by URL (an OCSP request by URL
and request body): certificates for a day, OCSP responses, CRLs and ACME answers until
their ``nextUpdate`` but at most an hour, failures for a minute; concurrent requests for
the same URL share one exchange.

Destinations. The URLs come from certificates a server chose to present (and from ACME
answers), so without a check any endpoint could make chainwatch send GETs and POSTs to
its loopback, its private networks or a cloud metadata service, and read the status
back. Each hop's host is therefore resolved first (numeric forms such as
``http://2852039166/`` or ``http://0xA9FEA9FE/`` are read as the IPv4 addresses they
denote); addresses that are private, loopback, link-local, multicast, reserved,
unspecified or otherwise not global (:func:`address_problem`) are dropped, and when none
is left the fetch is refused before any connection (``failure=private``, a note saying
which address, "not fetched"). The connection then goes to a checked address and nowhere
else: the connection pool's network backend connects to the addresses the check pinned
for that host, never resolving the name a second time, so a DNS answer that changes in
between (rebinding) changes nothing. Redirects are followed here, one hop at a time, each
checked the same way. ``FetchLimits.allow_private`` lists networks that are fetched from
all the same (an internal CA's responder; the inventory's ``fetch: {allow_private:
[CIDR...]}``). Proxies from the environment are not used: a proxy would resolve the name
itself.

What the bytes mean is not decided here: :mod:`chainwatch.service.netinputs` asks for
them and hands them to the (pure) analysis.

The rules themselves (the limits, the outcome types, which addresses are fetched from,
the bounded decoder) are :mod:`chainwatch.probe.fetchpolicy`'s, which imports no HTTP
client: the inventory and a scan that fetches nothing use them without loading httpx.
They remain importable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import importlib.metadata
import ipaddress
import socket
import ssl
import threading
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import httpcore
import httpx

# The rules of fetching (limits, outcomes, destinations, bounded decoding) live in
# fetchpolicy, which imports no HTTP client; they remain importable from here.
from chainwatch.probe.fetchpolicy import (
    DECODABLE,
    DEFAULT_TIMEOUT,
    MAX_REDIRECTS,  # noqa: F401  (re-exported)
    BoundedDecoder,
    DecodedTooLarge,
    Fetched,
    FetchFailure,
    FetchKind,
    FetchLimits,
    IPAddress,
    IPNetwork,
    KiB,
    MiB,
    address_problem,
    allow_networks,
    literal_address,
    numeric_ipv4,
)

_ACCEPT = {
    FetchKind.CERT: "application/pkix-cert, application/pkcs7-mime, */*;q=0.5",
    FetchKind.OCSP: "application/ocsp-response",
    FetchKind.CRL: "application/pkix-crl, */*;q=0.5",
    FetchKind.JSON: "application/json",
}


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


# -- destinations --------------------------------------------------------------------------

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses``: how a :class:`Fetcher` resolves a name (default: the
system's ``getaddrinfo``); tests inject their own."""


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(
        str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)
    ))


def _refusal(ip: IPAddress, kind: str) -> str:
    label = "" if kind == "private" else f", {kind}"
    return (f"points at a private address ({ip}{label}); not fetched "
            "(fetch: allow_private lists networks to fetch from)")


class _Refused(Exception):
    """A destination that is not fetched (its message says why)."""


class _Unresolved(Exception):
    """A host name without a usable answer."""


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the addresses the destination check pinned for a host, and nowhere
    else: a name is never resolved a second time between the check and the connect."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()
        self.pins: dict[tuple[str, int], tuple[str, ...]] = {}

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = self.pins.get((host.lower(), port))
        if not addresses:
            raise httpcore.ConnectError(f"{host}:{port} has no checked address")
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not fetched from")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


_MAPPED_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpcore's exceptions as the httpx ones the client's callers expect."""
    try:
        yield
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
            httpcore.UnsupportedProtocol) as exc:
        raise _as_httpx(exc) from exc


def _as_httpx(exc: Exception) -> httpx.TransportError:
    for source, target in _MAPPED_ERRORS:
        if isinstance(exc, source):
            return target(str(exc))
    return httpx.TransportError(str(exc))


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        closer = getattr(self._stream, "aclose", None)
        if closer is not None:
            await closer()


class _PinnedTransport(httpx.AsyncBaseTransport):
    """httpx on an httpcore connection pool whose network backend is pinned."""

    def __init__(self, backend: _PinnedBackend, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, network_backend=backend, max_connections=100,
            max_keepalive_connections=20, keepalive_expiry=5.0,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme, host=request.url.raw_host,
                port=request.url.port, target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core)
        return httpx.Response(
            status_code=response.status, headers=response.headers,
            stream=_Body(response.stream), extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


# -- the cache -----------------------------------------------------------------------------

CacheKey = tuple[str, str, bytes, str]
"""(method, URL, request body digest, the allowed private networks): an answer fetched
under one ``allow_private`` is never handed to a fetcher with another."""

SUCCESS_TTL = {
    FetchKind.CERT: dt.timedelta(days=1),
    FetchKind.OCSP: dt.timedelta(hours=1),
    FetchKind.CRL: dt.timedelta(hours=1),
    FetchKind.JSON: dt.timedelta(hours=1),
}
"""How long a successful answer is reused at most (OCSP and CRL: less when their
``nextUpdate`` comes sooner)."""
MIN_TTL = dt.timedelta(minutes=1)
FAILURE_TTL = dt.timedelta(minutes=1)
"""A failed fetch is not retried for this long: one dead responder shared by many
endpoints costs one timeout per minute, not one per endpoint."""


class FetchCache:
    """Outcomes by :data:`CacheKey`, each until its expiry; bounded in
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


@functools.cache
def _version() -> str:
    """chainwatch's version for the User-Agent (package metadata, not the package root,
    which would import every room)."""
    try:
        return importlib.metadata.version("chainwatch")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class Fetcher:
    """Bounded, cached HTTP fetching of certificates, OCSP responses, CRLs and ACME answers,
    from public destinations only (plus ``limits.allow_private``).

    Use as an async context manager (it owns one connection pool)::

        async with Fetcher(FetchLimits(timeout=5)) as fetcher:
            got = await fetcher.get("http://r3.i.lencr.org/", FetchKind.CERT)

    ``cache`` swaps the cache (default: :data:`SHARED_CACHE`); ``resolver`` the name
    resolution (default: :func:`system_resolver`); ``transport`` the whole network
    (destinations are still checked, but the connection is then the transport's to pin).
    """

    def __init__(
        self,
        limits: FetchLimits | None = None,
        *,
        cache: FetchCache | None = None,
        resolver: Resolver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.limits = limits or FetchLimits()
        self.cache = cache if cache is not None else SHARED_CACHE
        self._resolver = resolver or system_resolver
        self._backend = _PinnedBackend()
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._gate: asyncio.Semaphore | None = None
        self._inflight: dict[CacheKey, asyncio.Future[Fetched]] = {}
        self._allowed = ",".join(sorted(str(n) for n in self.limits.allow_private))

    async def __aenter__(self) -> Fetcher:
        transport = self._transport or _PinnedTransport(self._backend, httpx.create_ssl_context())
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(self.limits.timeout),
            follow_redirects=False,  # followed by _exchange, each hop checked
            trust_env=False,  # no proxies from the environment: they would resolve names
            headers={"User-Agent": f"chainwatch/{_version()}", "Accept-Encoding": "identity"},
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
        digest = hashlib.sha256(body).digest() if body else b""
        key: CacheKey = (method, url, digest, self._allowed)
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

    async def _check(self, url: httpx.URL) -> None:
        """Resolve ``url``'s host, keep its fetchable addresses and pin the connection to
        them; raise :class:`_Refused` when none is left, :class:`_Unresolved` when the
        name has no answer."""
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        literal = literal_address(host)
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        else:
            try:
                answers = await self._resolver(url.raw_host.decode("ascii"), port)
            except (OSError, UnicodeError) as exc:
                detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise _Unresolved(f"{host}: {detail}") from None
            addresses = []
            for answer in answers:
                with contextlib.suppress(ValueError):
                    addresses.append(ipaddress.ip_address(answer))
            if not addresses:
                raise _Unresolved(f"{host} has no address")
        allow = self.limits.allow_private
        fetchable = [ip for ip in addresses if address_problem(ip, allow) is None]
        if not fetchable:
            first = addresses[0]
            raise _Refused(_refusal(first, address_problem(first, allow) or "private"))
        pin = tuple(str(ip).split("%", 1)[0] if ip.version == 6 else str(ip) for ip in fetchable)
        self._backend.pins[(url.raw_host.decode("ascii").lower(), port)] = pin

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

        hop = url
        try:
            async with asyncio.timeout(self.limits.timeout):
                request = client.build_request(method, url, content=body, headers=headers)
                for redirects in range(self.limits.max_redirects + 1):
                    hop = str(request.url)
                    if redirects:
                        problem = url_problem(hop)
                        if problem is not None:
                            return fail(FetchFailure.BAD_URL,
                                        f"redirected to an unsupported URL ({problem})")
                    await self._check(request.url)
                    response = await client.send(request, stream=True)
                    try:
                        if response.next_request is None:
                            return await self._read(response, url, limit, fail)
                        request = response.next_request
                    finally:
                        await response.aclose()
                return fail(FetchFailure.OTHER, f"more than {self.limits.max_redirects} "
                                                "redirects")
        except _Refused as exc:
            where = "" if hop == url else f"redirected to {hop}, which "
            return fail(FetchFailure.PRIVATE, f"{where}{exc}")
        except _Unresolved as exc:
            return fail(FetchFailure.CONNECT, f"connection failed (name not resolved: {exc})")
        except (TimeoutError, httpx.TimeoutException):
            return fail(FetchFailure.TIMEOUT, f"timeout after {self.limits.timeout:g}s")
        except httpx.ConnectError as exc:
            return fail(FetchFailure.CONNECT, f"connection failed ({_one_line(exc)})")
        except httpx.UnsupportedProtocol as exc:
            return fail(FetchFailure.BAD_URL, f"redirected to an unsupported URL "
                                              f"({_one_line(exc)})")
        except Exception as exc:  # httpx.HTTPError, OSError, ssl errors: never raised
            return fail(FetchFailure.OTHER, f"{type(exc).__name__}: {_one_line(exc)}")

    @staticmethod
    async def _read(
        response: httpx.Response, url: str, limit: int,
        fail: Callable[[FetchFailure, str], Fetched],
    ) -> Fetched:
        """The body of a final answer, within ``limit`` bytes raw and decoded."""
        if response.status_code != 200:
            phrase = f" {response.reason_phrase}" if response.reason_phrase else ""
            return fail(FetchFailure.HTTP_STATUS, f"HTTP {response.status_code}{phrase}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in DECODABLE:
            return fail(FetchFailure.OTHER, f"{encoding}-encoded answer (asked for identity)")
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            return fail(FetchFailure.TOO_LARGE,
                        f"answer of {int(declared)} bytes exceeds {_size(limit)}")
        decoder = BoundedDecoder(encoding, limit)
        received = 0
        try:
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received > limit:
                    raise DecodedTooLarge
                decoder.feed(chunk)
            data = decoder.finish()
        except DecodedTooLarge:
            what = "answer" if decoder.encoding in ("", "identity") else (
                f"{encoding}-decoded answer")
            return fail(FetchFailure.TOO_LARGE, f"{what} exceeds {_size(limit)}")
        except (zlib.error, ValueError) as exc:
            return fail(FetchFailure.OTHER, f"undecodable {encoding} answer ({_one_line(exc)})")
        return Fetched(url, data, message=f"{url}: {len(data)} bytes")


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
    "IPNetwork",
    "Resolver",
    "address_problem",
    "allow_networks",
    "literal_address",
    "numeric_ipv4",
    "system_resolver",
    "url_problem",
]
