"""Every fetch has one deadline and a size cap that holds after content decoding, and an
ACME Renewal Information lookup never ends a scan: whatever the server does, the default
renewal expectation applies, with a note.

The servers here are loopback ones doing what hostile or broken servers do: trickle an
answer a byte at a time, send a compression bomb, nest JSON too deep to parse, suggest a
window ending in the year 9999."""

from __future__ import annotations

import asyncio
import gzip
import json
import struct
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainwatch.config.inventory import load_inventory
from chainwatch.model import FindingCode
from chainwatch.probe.ari import RenewalInfo, cert_id, renewal_info
from chainwatch.probe.http import FetchCache, Fetched, Fetcher, FetchFailure, FetchKind, FetchLimits
from chainwatch.service.collect import collect
from chainwatch.service.cycle import scan
from chainwatch.storage.repo import Database

from . import servers as srv
from .servers import Handler, ServerLoop, server_context
from .test_fetch_destinations import LOOPBACK, read_request
from .test_renewal import DAY, T0, codes, inventory, issue

GUARD = 60.0


@pytest.fixture
def lab() -> Iterator[ServerLoop]:
    with ServerLoop() as servers:
        yield servers


def respond(body: bytes, *, headers: dict[str, str] | None = None, length: bool = True,
            ) -> Handler:
    """Answers with ``body``; without ``length``, the body ends when the connection does."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        if length:
            extra += f"Content-Length: {len(body)}\r\n"
        writer.write(f"HTTP/1.1 200 OK\r\n{extra}Connection: close\r\n\r\n".encode() + body)
        await writer.drain()

    return handle


class Trickle:
    """Answers with a body sent one byte at a time, ``every`` seconds apart, counting
    the bytes that went out before the client hung up."""

    def __init__(self, body: bytes, every: float = 0.1) -> None:
        self.body = body
        self.every = every
        self.sent = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(self.body)}\r\n"
                     "Content-Type: application/json\r\n\r\n".encode())
        await writer.drain()
        for byte in self.body:
            if reader.at_eof():
                return
            writer.write(bytes([byte]))
            await writer.drain()
            self.sent += 1
            await asyncio.sleep(self.every)


def bomb(decoded: int) -> bytes:
    """A gzip member of ``decoded`` zero bytes (about 1/1000 of that on the wire): one
    compressed MiB, flushed so that it can be repeated, repeated."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = bytes(1 << 20)
    first = squeeze.compress(block) + squeeze.flush(zlib.Z_FULL_FLUSH)
    again = squeeze.compress(block) + squeeze.flush(zlib.Z_FULL_FLUSH)
    blocks = decoded >> 20
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + first + again * (blocks - 1)
            + squeeze.flush() + struct.pack("<II", crc, decoded & 0xFFFFFFFF))


def test_the_bomb_is_what_it_says() -> None:
    assert gzip.decompress(bomb(4 << 20)) == bytes(4 << 20)


def fetch(url: str, kind: FetchKind, limits: FetchLimits) -> Fetched:
    async def go() -> Fetched:
        async with asyncio.timeout(GUARD), Fetcher(limits, cache=FetchCache()) as fetcher:
            return await fetcher.get(url, kind)

    return asyncio.run(go())


def ari(url: str, leaf: Any, timeout: float = 5.0) -> RenewalInfo:
    async def go() -> RenewalInfo:
        async with asyncio.timeout(GUARD):
            return await renewal_info(url, leaf, timeout=timeout, allow_private=LOOPBACK)

    return asyncio.run(go())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chainwatch.sqlite'}"


@pytest.fixture(scope="module")
def ca() -> Any:
    from .pki import PKI

    return PKI(now=T0).root("Limits Root").intermediate("Limits CA")


# -- one deadline ----------------------------------------------------------------------------


def test_a_trickled_answer_is_cut_off_at_the_deadline(lab: ServerLoop) -> None:
    """One byte every 0.1 s of a 400-byte CRL would take 40 s with per-read timeouts; the
    fetch's one deadline ends it after about half a second, a handful of bytes in."""
    slow = Trickle(b"x" * 400)
    ep = lab.serve(slow)
    got = fetch(f"http://127.0.0.1:{ep.port}/ca.crl", FetchKind.CRL,
                FetchLimits(timeout=0.5, allow_private=LOOPBACK))
    assert got.failure is FetchFailure.TIMEOUT
    assert got.message.endswith("timeout after 0.5s")
    assert slow.sent < 200


def test_a_trickled_acme_directory_falls_back_to_the_default(lab: ServerLoop, ca: Any) -> None:
    slow = Trickle(json.dumps({"renewalInfo": "http://127.0.0.1:1/x" + " " * 300}).encode())
    ep = lab.serve(slow)
    leaf = issue(ca, "trickle.lab.test", T0, 90 * DAY)
    info = ari(f"http://127.0.0.1:{ep.port}/directory", leaf.cert, timeout=0.5)
    assert info.window is None
    assert info.note is not None and "using the default" in info.note
    assert "0.5s" in info.note
    assert slow.sent < 200


# -- bounded decoded size --------------------------------------------------------------------


def peak_while(run: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def test_a_gzip_bomb_stops_at_the_decoded_limit(lab: ServerLoop, ca: Any) -> None:
    """A 500 KB gzip answer that inflates to 512 MiB, sent without a length: decoding
    stops at the limit, and memory stays near it (counted as the bytes are decoded, not
    after)."""
    payload = bomb(512 << 20)
    assert len(payload) < 600_000
    gzipped = {"Content-Encoding": "gzip"}
    ep = lab.serve(respond(payload, headers=gzipped, length=False))
    leaf = issue(ca, "bomb.lab.test", T0, 90 * DAY)
    info, peak = peak_while(lambda: ari(f"http://127.0.0.1:{ep.port}/directory", leaf.cert))
    assert info.window is None
    assert info.note is not None and "gzip-decoded answer exceeds 64 KiB" in info.note
    assert peak < 24 << 20, peak
    crl, peak = peak_while(lambda: fetch(f"http://127.0.0.1:{ep.port}/ca.crl", FetchKind.CRL,
                                         FetchLimits(allow_private=LOOPBACK)))
    assert crl.failure is FetchFailure.TOO_LARGE
    assert crl.message.endswith("gzip-decoded answer exceeds 10 MiB")
    assert peak < 48 << 20, peak


def test_compressed_answers_within_the_limit_are_decoded(lab: ServerLoop) -> None:
    body = b"0\x82" + bytes(range(256)) * 40
    limits = FetchLimits(allow_private=LOOPBACK)
    for encoding, data in (
        ("gzip", gzip.compress(body)),
        ("deflate", zlib.compress(body)),
        ("deflate", zlib.compress(body)[2:-4]),  # without the zlib wrapper, as some send it
        ("gzip", gzip.compress(body[:5000]) + gzip.compress(body[5000:])),  # two members
    ):
        ep = lab.serve(respond(data, headers={"Content-Encoding": encoding}))
        got = fetch(f"http://127.0.0.1:{ep.port}/r3.cer", FetchKind.CERT, limits)
        assert got.ok and got.body == body, (encoding, got.message)
    broken = lab.serve(respond(gzip.compress(body)[:-30], headers={"Content-Encoding": "gzip"}))
    got = fetch(f"http://127.0.0.1:{broken.port}/r3.cer", FetchKind.CERT, limits)
    assert got.failure is FetchFailure.OTHER and "gzip" in got.message
    brotli = lab.serve(respond(b"\x0b\x02\x80", headers={"Content-Encoding": "br"}))
    got = fetch(f"http://127.0.0.1:{brotli.port}/r3.cer", FetchKind.CERT, limits)
    assert got.failure is FetchFailure.OTHER
    assert got.message.endswith("br-encoded answer (asked for identity)")


# -- ACME Renewal Information never ends a scan ------------------------------------------------


class AcmeServer:
    """An ACME directory whose renewalInfo answer is whatever the test sets."""

    def __init__(self, lab: ServerLoop) -> None:
        self.directory: bytes | None = None
        self.info: bytes = b"{}"
        self.requests = 0
        self.ep = lab.serve(self.handle)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ep.port}/directory"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line, _ = await read_request(reader)
        self.requests += 1
        if " /directory " in line:
            body = self.directory or json.dumps(
                {"renewalInfo": f"http://127.0.0.1:{self.ep.port}/renewal-info"}).encode()
        else:
            body = self.info
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n"
                     "Content-Type: application/json\r\nConnection: close\r\n\r\n".encode()
                     + body)
        await writer.drain()


def scan_with_acme(lab: ServerLoop, tmp_path: Path, ca: Any, acme: AcmeServer, name: str,
                   at_day: int, db: Database | None = None) -> Any:
    leaf = issue(ca, name, T0, 90 * DAY)
    port = lab.serve(srv.tls_handler(server_context(leaf.chain(ca), leaf.key, tmp_path))).port
    inv = load_inventory(inventory(tmp_path, ca, [
        {"host": name, "port": port, "ip": "127.0.0.1", "acme": acme.url}]))
    if db is None:
        return collect(inv, None, at=T0 + at_day * DAY, allow_private=LOOPBACK), leaf
    return scan(inv, db, at=T0 + at_day * DAY, allow_private=LOOPBACK), leaf


def test_json_nested_too_deep_is_a_note_and_the_scan_stores_its_observations(
    lab: ServerLoop, tmp_path: Path, ca: Any, sqlite_url: str
) -> None:
    acme = AcmeServer(lab)
    acme.directory = b"[" * 30_000 + b"]" * 30_000  # within 64 KiB, beyond any parser
    with Database(sqlite_url) as db:
        result, _ = scan_with_acme(lab, tmp_path, ca, acme, "deep.lab.test", 70, db)
        assert db.count_observations() == 1
    assert FindingCode.RENEWAL_OVERDUE in codes(result)[0]  # the default: day 66 + 9 days grace
    (note,) = [n for n in result.notes if "deep.lab.test" in n]
    assert "RecursionError" in note and "using the default" in note


def test_a_window_ending_in_the_year_9999_is_a_note_not_an_overflow(
    lab: ServerLoop, tmp_path: Path, ca: Any, sqlite_url: str
) -> None:
    acme = AcmeServer(lab)
    acme.info = json.dumps({"suggestedWindow": {
        "start": "2026-02-01T00:00:00Z", "end": "9999-12-31T23:59:59Z"}}).encode()
    with Database(sqlite_url) as db:
        result, leaf = scan_with_acme(lab, tmp_path, ca, acme, "far.lab.test", 70, db)
        assert db.count_observations() == 1
    assert FindingCode.RENEWAL_OVERDUE in codes(result)[0]
    (note,) = [n for n in result.notes if "far.lab.test" in n]
    assert "lies far outside the certificate's validity" in note
    assert "using the default" in note
    assert acme.requests == 2
    assert cert_id(leaf.cert) is not None


@pytest.mark.parametrize("info", [
    b'{"suggestedWindow": {"start": "0001-01-01T00:00:00Z", "end": "0001-01-02T00:00:00Z"}}',
    b'{"suggestedWindow": {"start": "2026-02-01T00:00:00+23:59", "end": 12}}',
    b'{"suggestedWindow": {"start": "2026-02-02T00:00:00Z", "end": "2026-02-01T00:00:00Z"}}',
    b'{"suggestedWindow": []}',
    b'["not", "an", "object"]',
    b"\xff\xfe not JSON",
    b'{"suggestedWindow": {"start": "9999-12-31T23:59:59-01:00", "end": "9999-12-31"}}',
])
def test_any_broken_answer_falls_back_to_the_default(
    lab: ServerLoop, ca: Any, info: bytes
) -> None:
    acme = AcmeServer(lab)
    acme.info = info
    leaf = issue(ca, "broken.lab.test", T0, 90 * DAY)
    got = ari(acme.url, leaf.cert)
    assert got.window is None
    assert got.note


def test_an_acme_directory_on_a_private_address_is_not_asked(
    lab: ServerLoop, tmp_path: Path, ca: Any
) -> None:
    acme = AcmeServer(lab)
    leaf = issue(ca, "private.lab.test", T0, 90 * DAY)
    port = lab.serve(srv.tls_handler(server_context(leaf.chain(ca), leaf.key, tmp_path))).port
    inv = load_inventory(inventory(tmp_path, ca, [
        {"host": "private.lab.test", "port": port, "ip": "127.0.0.1", "acme": acme.url}]))
    result = collect(inv, None, at=T0 + 70 * DAY)  # loopback not allowed
    assert acme.requests == 0
    (note,) = result.notes
    assert "points at a private address (127.0.0.1, loopback); not fetched" in note
    assert "using the default" in note
    assert FindingCode.RENEWAL_OVERDUE in codes(result)[0]
