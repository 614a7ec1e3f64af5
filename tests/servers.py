"""Real TLS servers on loopback for the probe and ``check`` tests: well-behaved ones that
serve a chosen chain in a chosen order, minimal STARTTLS protocol servers, and hostile
ones (silent, hanging up, garbage, alerts, oversized chains, refusals).

Servers run on a private event loop in a background thread, listen on port 0 of a
loopback address, and give every connection a bounded lifetime. ``ServerLoop`` is a
context manager; leaving it closes every server and connection and stops the thread::

    with ServerLoop() as lab:
        ep = lab.serve(tls_handler(server_context(chain, key, tmp_path)))
        observation = probe(ep.target())
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from OpenSSL import SSL

from chainwatch.model import Cert, Target
from chainwatch.pki import CA, PrivateKey, key_pem, pem_of

T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

CONNECTION_LIFETIME = 20.0
"""No test connection outlives this many seconds, whatever its handler does."""
READ_TIMEOUT = 10.0
"""A server waits at most this long for the client's next bytes."""

_files = count()


# -- certificates and contexts ------------------------------------------------------------


def server_context(
    chain: Sequence[Cert],
    key: PrivateKey,
    directory: Path,
    *,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
    sni: Sequence[str] | None = None,
    client_ca: Cert | None = None,
    ciphers: str | None = None,
    seen_sni: list[str | None] | None = None,
) -> ssl.SSLContext:
    """A stdlib server context that serves ``chain`` in the order given.

    ``load_cert_chain`` with a full-chain PEM serves the certificates in file order
    (OpenSSL's ``SSL_CTX_use_certificate_chain_file``), however wrong that order is.

    Args:
        minimum / maximum: protocol versions (e.g. TLS 1.2 only, TLS 1.3 only).
        sni: names the server answers to; any other SNI (or none) gets a fatal
            ``unrecognized_name`` alert.
        client_ca: require a client certificate issued by this CA.
        ciphers: OpenSSL cipher list for TLS 1.2 and below.
        seen_sni: a list to which every SNI received is appended (``None``: none sent).
    """
    n = next(_files)
    certfile = directory / f"server-{n}-chain.pem"
    keyfile = directory / f"server-{n}-key.pem"
    certfile.write_bytes(pem_of(*chain))
    keyfile.write_bytes(key_pem(key))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if sni is not None or seen_sni is not None:
        allowed = None if sni is None else set(sni)

        def on_sni(
            _sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext
        ) -> int | None:
            if seen_sni is not None:
                seen_sni.append(name)
            if allowed is None or name in allowed:
                return None
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME

        ctx.sni_callback = on_sni
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=pem_of(client_ca).decode())
    return ctx


def pyopenssl_context(
    chain: Sequence[Cert], key: PrivateKey, *, ocsp: bytes | None = None
) -> SSL.Context:
    """A pyOpenSSL server context serving ``chain`` in order, optionally stapling ``ocsp``."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.use_certificate(chain[0].parsed)
    ctx.use_privatekey(key)
    for extra in chain[1:]:
        ctx.add_extra_chain_cert(extra.parsed)
    if ocsp is not None:
        staple = ocsp

        def on_ocsp(_conn: SSL.Connection, _data: object) -> bytes:
            return staple

        ctx.set_ocsp_server_callback(on_ocsp)
    return ctx


def anonymous_context() -> ssl.SSLContext:
    """A TLS 1.2 server with only anonymous (certificate-less) suites."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("aNULL:@SECLEVEL=0")
    return ctx


def der_of(cert: Cert) -> bytes:
    return cert.parsed.public_bytes(serialization.Encoding.DER)


def ocsp_response(leaf: Cert, issuer: CA) -> bytes:
    """A signed OCSP response (DER) saying ``leaf`` is good: OpenSSL only staples
    responses that parse."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf.parsed, issuer=issuer.cert.parsed, algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.GOOD, this_update=now,
            next_update=now + dt.timedelta(days=1), revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.cert.parsed)
        .sign(issuer.key, hashes.SHA256())
    )
    return response.public_bytes(serialization.Encoding.DER)


# -- the server loop ----------------------------------------------------------------------


@dataclass
class Endpoint:
    """A listening test server. ``connections`` counts accepted connections."""

    host: str
    port: int
    connections: int = 0
    server: asyncio.Server | None = field(default=None, repr=False)

    def target(self, **fields: Any) -> Target:
        """A Target for this server with ``ip`` set (override any field)."""
        values: dict[str, Any] = {"host": self.host, "port": self.port, "ip": self.host}
        values.update(fields)
        return Target(**values)

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class ServerLoop:
    """Test servers on an event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="test-servers", daemon=True
        )
        self._thread.start()
        self._endpoints: list[Endpoint] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> ServerLoop:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def serve(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> Endpoint:
        """Listen on ``host`` (port 0: any free port) and run ``handler`` for every
        connection."""
        endpoint = Endpoint(host, 0)

        async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            endpoint.connections += 1
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                async with asyncio.timeout(CONNECTION_LIFETIME):
                    await handler(reader, writer)
            except (Exception, asyncio.CancelledError):
                pass  # a client hanging up on a test server is routine
            finally:
                self._tasks.discard(task)
                writer.transport.abort()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(guarded, host, port)

        server = self.call(start())
        endpoint.port = server.sockets[0].getsockname()[1]
        endpoint.server = server
        self._endpoints.append(endpoint)
        return endpoint

    def close(self) -> None:
        async def shutdown() -> None:
            for endpoint in self._endpoints:
                if endpoint.server is not None:
                    endpoint.server.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=5)

        if self.loop.is_running():
            with contextlib.suppress(Exception):
                self.call(shutdown())
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


@contextlib.contextmanager
def closed_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A loopback port with nothing listening on it (bound, never listened: refuses)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        yield sock.getsockname()[1]


# -- handler building blocks --------------------------------------------------------------


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(READ_TIMEOUT):
        return await reader.readline()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Wait (bounded) until the client hangs up."""
    async with asyncio.timeout(READ_TIMEOUT):
        for _ in range(10_000):
            if not await reader.read(65536):
                return


async def _tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               ctx: ssl.SSLContext) -> None:
    """A server-side stdlib TLS handshake on memory BIOs, then wait for the client to go.

    Memory BIOs rather than ``StreamWriter.start_tls``: asyncio drops the connection on a
    failed handshake without sending the alert OpenSSL produced, and these servers must
    send their alerts (``unrecognized_name``, ``certificate_required``...).
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_side=True)
    for _ in range(1000):
        failed = done = False
        try:
            tls.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            failed = True
        writer.write(outgoing.read())
        await writer.drain()
        if done or failed:
            break
        async with asyncio.timeout(READ_TIMEOUT):
            data = await reader.read(65536)
        if not data:
            return
        incoming.write(data)
    await _until_eof(reader)


def tls_handler(ctx: ssl.SSLContext) -> Handler:
    """Direct TLS with the stdlib."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _tls(reader, writer, ctx)

    return handle


def pyopenssl_handler(ctx: SSL.Context) -> Handler:
    """Direct TLS with pyOpenSSL on memory BIOs (for OCSP stapling, which stdlib lacks)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = SSL.Connection(ctx, None)
        conn.set_accept_state()
        for _ in range(100):
            try:
                conn.do_handshake()
                done = True
            except SSL.WantReadError:
                done = False
            with contextlib.suppress(SSL.WantReadError):
                writer.write(conn.bio_read(1 << 20))
            await writer.drain()
            if done:
                break
            async with asyncio.timeout(READ_TIMEOUT):
                data = await reader.read(65536)
            if not data:
                return
            conn.bio_write(data)
        await _until_eof(reader)

    return handle


def flaky_handler(ctx: ssl.SSLContext, failures: int = 1) -> Handler:
    """Hangs up on the first ``failures`` connections mid-handshake, then serves TLS."""
    seen = count()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if next(seen) < failures:
            await reader.read(5)
            return  # the guard aborts the connection: a reset mid-handshake
        await _tls(reader, writer, ctx)

    return handle


# -- hostile servers -------------------------------------------------------------------------


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts, reads, never answers (until the client gives up)."""
    await _until_eof(reader)


async def hangs_up_mid_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Reads the ClientHello, sends the start of a ServerHello record, then closes."""
    await reader.read(65536)
    writer.write(b"\x16\x03\x03\x00\x4a\x02\x00\x00\x46\x03\x03")  # 11 of 79 bytes
    await writer.drain()
    writer.close()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers the ClientHello with an HTTP error page."""
    await reader.read(65536)
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    await _until_eof(reader)


def raw_alert(description: int = 40) -> Handler:
    """Answers the ClientHello with a plaintext fatal alert (default handshake_failure)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]))
        await writer.drain()
        await _until_eof(reader)

    return handle


def endless_records(total: int) -> Handler:
    """Sends ``total`` bytes of well-formed TLS records full of HelloRequest messages,
    which a client in mid-handshake must ignore: only a byte limit stops the flood."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        body = b"\x00\x00\x00\x00" * 4096
        record = b"\x16\x03\x03" + struct.pack("!H", len(body)) + body
        for _ in range(total // len(record) + 1):
            writer.write(record)
            await writer.drain()
        await _until_eof(reader)

    return handle


async def garbage_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greets with an HTTP error (for STARTTLS clients expecting a protocol banner)."""
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    await _until_eof(reader)


async def endless_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A banner line that never ends (up to 1 MiB of it)."""
    writer.write(b"+OK ")
    for _ in range(64):
        writer.write(b"A" * 16384)
        await writer.drain()
    await _until_eof(reader)


class Watch:
    """A silent server that reports (thread-safely) when a client connected and when
    that client's socket was closed."""

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.closed = threading.Event()

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connected.set()
        try:
            await _until_eof(reader)
        except ConnectionError:
            pass
        else:
            self.closed.set()
            return
        self.closed.set()


# -- STARTTLS protocol servers -------------------------------------------------------------


def smtp_handler(ctx: ssl.SSLContext, *, offer: bool = True, answer: int = 220) -> Handler:
    """An SMTP server: multi-line 220 banner, EHLO capabilities (with STARTTLS when
    ``offer``), and ``answer`` to STARTTLS (220 goes on to TLS; 454 refuses)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-mail.example.com ESMTP test\r\n220 ready\r\n")
        line = await _read_line(reader)
        if not line.upper().startswith(b"EHLO "):
            writer.write(b"500 expected EHLO\r\n")
            return
        caps = [b"250-mail.example.com", b"250-PIPELINING", b"250-SIZE 10240000"]
        if offer:
            caps.append(b"250-STARTTLS")
        caps.append(b"250 8BITMIME")
        writer.write(b"\r\n".join(caps) + b"\r\n")
        line = await _read_line(reader)
        if line.strip().upper() != b"STARTTLS":
            writer.write(b"502 unexpected\r\n")
            return
        if answer != 220:
            writer.write(f"{answer} TLS not available due to temporary reason\r\n".encode())
            await writer.drain()
            await _until_eof(reader)
            return
        writer.write(b"220 Go ahead\r\n")
        await _tls(reader, writer, ctx)

    return handle


def imap_handler(ctx: ssl.SSLContext, *, answer: str = "OK") -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n")
        line = await _read_line(reader)
        tag, _, command = line.strip().partition(b" ")
        if command.upper() != b"STARTTLS":
            writer.write(tag + b" BAD unexpected\r\n")
            return
        writer.write(b"* NOTE untagged noise first\r\n")
        writer.write(tag + f" {answer} Begin TLS negotiation now\r\n".encode())
        if answer != "OK":
            await _until_eof(reader)
            return
        await _tls(reader, writer, ctx)

    return handle


def pop3_handler(ctx: ssl.SSLContext) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+OK POP3 server ready\r\n")
        if (await _read_line(reader)).strip().upper() != b"STLS":
            writer.write(b"-ERR unexpected\r\n")
            return
        writer.write(b"+OK Begin TLS negotiation\r\n")
        await _tls(reader, writer, ctx)

    return handle


def ftp_handler(ctx: ssl.SSLContext, *, answer: int = 234) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-Welcome to the test FTP server\r\n free text line\r\n220 ready\r\n")
        if (await _read_line(reader)).strip().upper() != b"AUTH TLS":
            writer.write(b"500 unexpected\r\n")
            return
        if answer != 234:
            writer.write(f"{answer} AUTH TLS not available\r\n".encode())
            await _until_eof(reader)
            return
        writer.write(b"234 AUTH TLS successful\r\n")
        await _tls(reader, writer, ctx)

    return handle


LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"


def _ldap_response(result_code: int, diagnostic: bytes = b"") -> bytes:
    op = bytes([0x0A, 0x01, result_code, 0x04, 0x00, 0x04, len(diagnostic)]) + diagnostic
    body = b"\x02\x01\x01" + bytes([0x78, len(op)]) + op
    return bytes([0x30, len(body)]) + body


def ldap_handler(ctx: ssl.SSLContext, *, result_code: int = 0) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(READ_TIMEOUT):
            head = await reader.readexactly(2)
            request = head + await reader.readexactly(head[1])
        if head[0] != 0x30 or LDAP_STARTTLS_OID not in request:
            return
        writer.write(_ldap_response(result_code, b"" if result_code == 0 else b"not today"))
        await writer.drain()
        if result_code != 0:
            await _until_eof(reader)
            return
        await _tls(reader, writer, ctx)

    return handle


def xmpp_handler(ctx: ssl.SSLContext, *, offer: bool = True,
                 expect_to: str | None = None) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(READ_TIMEOUT):
            header = await reader.readuntil(b">")  # <?xml ...?>
            if header.startswith(b"<?xml"):
                header = await reader.readuntil(b">")
        match = re.search(rb"to='([^']*)'", header)
        if expect_to is not None and (match is None or match.group(1) != expect_to.encode()):
            writer.write(b"<stream:error><host-unknown/></stream:error></stream:stream>")
            return
        starttls = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
        writer.write(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            b"xmlns:stream='http://etherx.jabber.org/streams' id='t1' from='example.com' "
            b"version='1.0'><stream:features>"
            + (starttls if offer else b"")
            + b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN"
            b"</mechanism></mechanisms></stream:features>"
        )
        async with asyncio.timeout(READ_TIMEOUT):
            request = await reader.readuntil(b">")
        if b"<starttls" not in request:
            return
        writer.write(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await _tls(reader, writer, ctx)

    return handle


def postgres_handler(ctx: ssl.SSLContext, *, answer: bytes = b"S") -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(READ_TIMEOUT):
            request = await reader.readexactly(8)
        if request != struct.pack("!ii", 8, 80877103):
            return
        writer.write(answer)
        if answer != b"S":
            await _until_eof(reader)
            return
        await _tls(reader, writer, ctx)

    return handle


STARTTLS_SERVERS: dict[str, Callable[[ssl.SSLContext], Handler]] = {
    "smtp": smtp_handler,
    "imap": imap_handler,
    "pop3": pop3_handler,
    "ftp": ftp_handler,
    "ldap": ldap_handler,
    "xmpp": xmpp_handler,
    "postgres": postgres_handler,
}
