"""What chainwatch may fetch over HTTP, and how much: the rules of
:mod:`chainwatch.probe.http` without the HTTP client.

Public API::

    FetchLimits, FetchKind, Fetched, FetchFailure        a fetch's bounds and its outcome
    address_problem(ip, allow), allow_networks(["10.0.0.0/8", ...])
    numeric_ipv4(host), literal_address(host)            URL hosts written as addresses
    BoundedDecoder(encoding, limit), DecodedTooLarge, DECODABLE

Destinations: :func:`address_problem` says why an address is not fetched from (loopback,
private, link-local, multicast, reserved, unspecified or otherwise not global, judged
also by the IPv4 address an IPv6 one carries) unless it lies in one of the allowed
networks (``fetch: {allow_private: [CIDR...]}``, parsed by :func:`allow_networks`).
Bodies: a :class:`BoundedDecoder` undoes ``gzip``/``deflate`` as the bytes arrive and
never produces more than its limit, so a compression bomb costs no more memory than the
limit; the alert channels bound their receivers' answers with it too.

Pure values and functions (the standard library only): the inventory, the scan and the
check import this module to parse and carry the fetch settings without importing
httpx, which :mod:`chainwatch.probe.http` (the fetcher) loads when something is fetched.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

DEFAULT_TIMEOUT = 5.0
"""Seconds for one whole fetch unless the inventory or the command says otherwise."""
MAX_REDIRECTS = 3
KiB = 1024
MiB = 1024 * KiB

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchKind(StrEnum):
    """What is fetched: decides the size limit, the cache lifetime and the Accept header."""

    CERT = "cert"
    OCSP = "ocsp"
    CRL = "crl"
    JSON = "json"  # an ACME directory or renewalInfo answer


@dataclass(frozen=True)
class FetchLimits:
    """How long and how much one fetch may take, and where it may go.

    Attributes:
        timeout: seconds for a whole exchange (resolution, connect, request, every
            redirect, every byte of the answer).
        cert_bytes / ocsp_bytes / crl_bytes / json_bytes: the largest answer accepted,
            per kind, after content decoding.
        concurrency: most exchanges in flight at once per
            :class:`~chainwatch.probe.http.Fetcher`.
        max_redirects: most redirects followed (each hop's destination is checked).
        allow_private: networks fetched from although not public (see
            :func:`address_problem`); nothing by default.
    """

    timeout: float = DEFAULT_TIMEOUT
    cert_bytes: int = 64 * KiB
    ocsp_bytes: int = 64 * KiB
    crl_bytes: int = 10 * MiB
    json_bytes: int = 64 * KiB
    concurrency: int = 16
    max_redirects: int = MAX_REDIRECTS
    allow_private: tuple[IPNetwork, ...] = ()

    def max_bytes(self, kind: FetchKind) -> int:
        if kind is FetchKind.CERT:
            return self.cert_bytes
        if kind is FetchKind.OCSP:
            return self.ocsp_bytes
        if kind is FetchKind.JSON:
            return self.json_bytes
        return self.crl_bytes


class FetchFailure(StrEnum):
    """Why a fetch gave no answer."""

    BAD_URL = "bad_url"  # not an absolute http(s) URL
    PRIVATE = "private"  # the destination is not public and not allowed: not fetched
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


# -- destinations --------------------------------------------------------------------------


def allow_networks(specs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Networks from CIDR strings (``10.0.0.0/8``, ``fd00::/8``, a bare address); raises
    ``ValueError`` naming the first one that is not a network."""
    out: list[IPNetwork] = []
    for spec in specs:
        try:
            out.append(ipaddress.ip_network(str(spec).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{spec!r} is not an IP network (CIDR, e.g. 10.0.0.0/8)") from None
    return tuple(out)


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries to (mapped, 6to4, Teredo, NAT64)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _kind(ip: IPAddress) -> str | None:
    """What makes ``ip`` not a public destination, or ``None`` for a public one."""
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "non-public"
    return None


def address_problem(ip: IPAddress, allow: Sequence[IPNetwork] = ()) -> str | None:
    """Why chainwatch does not connect to ``ip`` for a URL it was handed (``loopback``,
    ``private``, ``link-local``, ...), or ``None``: a public address, or one in ``allow``.
    An IPv6 address that carries an IPv4 one (mapped, 6to4, Teredo, NAT64) is judged by
    both."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            candidates.insert(0, inner)  # named after where it leads
    for candidate in candidates:
        if any(candidate in network for network in allow):
            return None
    for candidate in candidates:
        kind = _kind(candidate)
        if kind is not None:
            return kind
    return None


_DIGITS = {10: re.compile(r"[0-9]+"), 8: re.compile(r"[0-7]*"), 16: re.compile(r"[0-9a-fA-F]*")}


def numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a URL host denotes when written as numbers the way browsers and
    ``inet_aton`` read them (``2852039166``, ``0xA9FEA9FE``, ``0251.0376.0251.0376``,
    ``127.1``, a trailing dot), or ``None`` for a name."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        if part[:2].lower() == "0x":
            base, digits = 16, part[2:]
        elif len(part) > 1 and part[0] == "0":
            base, digits = 8, part[1:]
        else:
            base, digits = 10, part
        if not _DIGITS[base].fullmatch(digits):
            return None
        numbers.append(int(digits, base) if digits else 0)
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (4 - len(leading)):
        return None
    value = last
    for position, n in enumerate(leading):
        value += n << (8 * (3 - position))
    return ipaddress.IPv4Address(value)


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host is written as (IPv6, dotted or numeric IPv4), or ``None``."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in bare:
        try:
            return ipaddress.IPv6Address(bare)
        except ValueError:
            return None
    return numeric_ipv4(bare)


# -- bounded bodies ------------------------------------------------------------------------


class DecodedTooLarge(Exception):
    """More bytes than a :class:`BoundedDecoder`'s limit (raw or decoded)."""


_STEP = 256 * KiB
"""Most bytes decoded in one step: memory stays near the limit, plus one step."""


class BoundedDecoder:
    """A ``Content-Encoding`` undone as the bytes arrive, never producing more than
    ``limit`` bytes: each step asks zlib for at most what is left of the budget, so a
    small compressed answer that inflates to gigabytes stops at ``limit + 1``."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding
        self.limit = limit
        self.out = bytearray()
        self._z: Any = None
        self._fallback = encoding == "deflate"  # "deflate" without the zlib wrapper
        if encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.decompressobj()

    def feed(self, data: bytes) -> None:
        if self._z is None:  # identity
            self.out += data
            if len(self.out) > self.limit:
                raise DecodedTooLarge
            return
        pending = data
        # Every round consumes input or adds up to _STEP bytes of output, or ends.
        for _ in range(len(data) + self.limit // _STEP + 3):
            try:
                chunk = self._z.decompress(pending, min(_STEP, self.limit - len(self.out) + 1))
            except zlib.error:
                if not self._fallback:
                    raise
                self._fallback = False
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._fallback = False
            self.out += chunk
            if len(self.out) > self.limit:
                raise DecodedTooLarge
            rest = self._z.unconsumed_tail
            if self._z.eof and self._z.unused_data and self.encoding != "deflate":
                rest = self._z.unused_data  # the next gzip member
                self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
            if not rest:
                return
            pending = rest
        raise ValueError(f"{self.encoding} decoding made no progress")

    def finish(self) -> bytes:
        if self._z is not None and not self._z.eof:
            raise ValueError(f"truncated {self.encoding}-encoded answer")
        return bytes(self.out)


DECODABLE = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
"""The ``Content-Encoding`` values a :class:`BoundedDecoder` undoes (the empty one
and ``identity`` leave the bytes as they are)."""


__all__ = [
    "DECODABLE",
    "DEFAULT_TIMEOUT",
    "MAX_REDIRECTS",
    "BoundedDecoder",
    "DecodedTooLarge",
    "FetchFailure",
    "FetchKind",
    "FetchLimits",
    "Fetched",
    "IPAddress",
    "IPNetwork",
    "KiB",
    "MiB",
    "address_problem",
    "allow_networks",
    "literal_address",
    "numeric_ipv4",
]
