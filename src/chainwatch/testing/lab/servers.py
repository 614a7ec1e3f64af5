"""Real TLS servers on loopback: the incident lab's endpoints and the test suite's.

Well-behaved servers serve a chosen chain in a chosen order, over direct TLS or after a
minimal STARTTLS dialogue (``smtp imap pop3 ftp ldap xmpp postgres``); one listening
port can select its certificate by the SNI name of each connection
(:class:`SniRouter`), and the certificate can be replaced while the server runs (new
connections get the new one).

Servers run on a private event loop in a background thread, listen on a loopback
address (port 0: any free port), and give every connection a bounded lifetime.
``ServerLoop`` is a context manager; leaving it closes every server and connection and
stops the thread::

    with ServerLoop() as loop:
        ep = loop.serve(tls_handler(server_context(chain, key)))
        observation = probe(ep.target())
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import struct
import tempfile
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from chainwatch.model import Cert, Target
from chainwatch.testing.pki import PrivateKey, key_pem, pem_of

T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

CONNECTION_LIFETIME = 20.0
"""No connection to these servers outlives this many seconds, whatever its handler does."""
READ_TIMEOUT = 10.0
"""A server waits at most this long for the client's next bytes."""

_files = count()


# -- certificates and contexts ------------------------------------------------------------


def server_context(
    chain: Sequence[Cert],
    key: PrivateKey,
    directory: Path | None = None,
    *,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
    sni: Sequence[str] | None = None,
    client_ca: Cert | None = None,
    ciphers: str | None = None,
    seen_sni: list[str | None] | None = None,
    security_level: int | None = None,
) -> ssl.SSLContext:
    """A stdlib server context that serves ``chain`` in the order given.

    ``load_cert_chain`` with a full-chain PEM serves the certificates in file order
    (OpenSSL's ``SSL_CTX_use_certificate_chain_file``), however wrong that order is.

    Args:
        directory: where the PEM files OpenSSL loads are written (and left); ``None``:
            a temporary directory, removed once they are loaded.
        minimum / maximum: protocol versions (e.g. TLS 1.2 only, TLS 1.3 only).
        sni: names the server answers to; any other SNI (or none) gets a fatal
            ``unrecognized_name`` alert.
        client_ca: require a client certificate issued by this CA.
        ciphers: OpenSSL cipher list for TLS 1.2 and below.
        seen_sni: a list to which every SNI received is appended (``None``: none sent).
        security_level: OpenSSL's security level (0 lets the server load and serve
            SHA-1-signed certificates and RSA-1024 keys, as the badssl cases need).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if security_level is not None:
        ctx.set_ciphers(f"{ciphers or 'DEFAULT'}:@SECLEVEL={security_level}")
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="chainwatch-ctx-") as tmp:
            _load_chain(ctx, chain, key, Path(tmp))
    else:
        _load_chain(ctx, chain, key, directory)
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    if ciphers is not None and security_level is None:
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


def _load_chain(
    ctx: ssl.SSLContext, chain: Sequence[Cert], key: PrivateKey, directory: Path
) -> None:
    n = next(_files)
    certfile = directory / f"server-{n}-chain.pem"
    keyfile = directory / f"server-{n}-key.pem"
    certfile.write_bytes(pem_of(*chain))
    keyfile.touch(mode=0o600)
    keyfile.write_bytes(key_pem(key))
    ctx.load_cert_chain(certfile, keyfile)


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


def der_of(cert: Cert) -> bytes:
    return cert.parsed.public_bytes(serialization.Encoding.DER)


class SniRouter:
    """The certificate a listening port serves, chosen per connection by its SNI name.

    ``default`` answers connections without SNI or with a name not in ``by_name`` (as a
    web server's default virtual host does). Either can be replaced at any time from any
    thread: connections that start afterwards get the new certificate, those already in
    their handshake keep the old one.
    """

    def __init__(
        self, default: ssl.SSLContext, by_name: Mapping[str, ssl.SSLContext] | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._default = self._adopt(default)
        self._names = {name.lower(): self._adopt(c) for name, c in (by_name or {}).items()}

    def _adopt(self, ctx: ssl.SSLContext) -> ssl.SSLContext:
        ctx.sni_callback = self._pick
        return ctx

    @property
    def context(self) -> ssl.SSLContext:
        """The context a new connection starts with (the default one)."""
        with self._lock:
            return self._default

    def names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._names)

    def set(self, ctx: ssl.SSLContext, name: str | None = None) -> None:
        """Serve ``ctx`` for SNI ``name`` (``None``: as the default) from now on."""
        adopted = self._adopt(ctx)
        with self._lock:
            if name is None:
                self._default = adopted
            else:
                self._names[name.lower()] = adopted

    def _pick(
        self, conn: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext
    ) -> int | None:
        if name is None:
            return None
        with self._lock:
            chosen = self._names.get(name.lower())
        if chosen is not None and chosen is not conn.context:
            conn.context = chosen
        return None


ContextSource = ssl.SSLContext | SniRouter
"""What a TLS handler serves: a fixed context, or a router read at each connection."""


def _context_of(source: ContextSource) -> ssl.SSLContext:
    return source.context if isinstance(source, SniRouter) else source


# -- the server loop ----------------------------------------------------------------------


@dataclass
class Endpoint:
    """A listening server. ``connections`` counts accepted connections."""

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
    """Servers on an event loop in a background thread."""

    def __init__(self, name: str = "chainwatch-servers") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
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
        connection. Raises ``OSError`` when the address cannot be bound."""
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
                pass  # a client hanging up on a server is routine
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
        if not self._thread.is_alive() and not self.loop.is_closed():
            self.loop.close()


# -- handler building blocks --------------------------------------------------------------


async def read_line(reader: asyncio.StreamReader) -> bytes:
    """One line from the client, waiting at most ``READ_TIMEOUT``."""
    async with asyncio.timeout(READ_TIMEOUT):
        return await reader.readline()


async def until_eof(reader: asyncio.StreamReader) -> None:
    """Wait (bounded) until the client hangs up."""
    async with asyncio.timeout(READ_TIMEOUT):
        for _ in range(10_000):
            if not await reader.read(65536):
                return


async def serve_tls(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, source: ContextSource
) -> None:
    """A server-side stdlib TLS handshake on memory BIOs, then wait for the client to go.

    Memory BIOs rather than ``StreamWriter.start_tls``: asyncio drops the connection on a
    failed handshake without sending the alert OpenSSL produced, and these servers must
    send their alerts (``unrecognized_name``, ``certificate_required``...).
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = _context_of(source).wrap_bio(incoming, outgoing, server_side=True)
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
    await until_eof(reader)


def tls_handler(source: ContextSource) -> Handler:
    """Direct TLS with the stdlib."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_tls(reader, writer, source)

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
        await until_eof(reader)

    return handle


# -- STARTTLS protocol servers -------------------------------------------------------------


def smtp_handler(source: ContextSource, *, offer: bool = True, answer: int = 220) -> Handler:
    """An SMTP server: multi-line 220 banner, EHLO capabilities (with STARTTLS when
    ``offer``), and ``answer`` to STARTTLS (220 goes on to TLS; 454 refuses)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-mail.example.com ESMTP test\r\n220 ready\r\n")
        line = await read_line(reader)
        if not line.upper().startswith(b"EHLO "):
            writer.write(b"500 expected EHLO\r\n")
            return
        caps = [b"250-mail.example.com", b"250-PIPELINING", b"250-SIZE 10240000"]
        if offer:
            caps.append(b"250-STARTTLS")
        caps.append(b"250 8BITMIME")
        writer.write(b"\r\n".join(caps) + b"\r\n")
        line = await read_line(reader)
        if line.strip().upper() != b"STARTTLS":
            writer.write(b"502 unexpected\r\n")
            return
        if answer != 220:
            writer.write(f"{answer} TLS not available due to temporary reason\r\n".encode())
            await writer.drain()
            await until_eof(reader)
            return
        writer.write(b"220 Go ahead\r\n")
        await serve_tls(reader, writer, source)

    return handle


def imap_handler(source: ContextSource, *, answer: str = "OK") -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n")
        line = await read_line(reader)
        tag, _, command = line.strip().partition(b" ")
        if command.upper() != b"STARTTLS":
            writer.write(tag + b" BAD unexpected\r\n")
            return
        writer.write(b"* NOTE untagged noise first\r\n")
        writer.write(tag + f" {answer} Begin TLS negotiation now\r\n".encode())
        if answer != "OK":
            await until_eof(reader)
            return
        await serve_tls(reader, writer, source)

    return handle


def pop3_handler(source: ContextSource) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+OK POP3 server ready\r\n")
        if (await read_line(reader)).strip().upper() != b"STLS":
            writer.write(b"-ERR unexpected\r\n")
            return
        writer.write(b"+OK Begin TLS negotiation\r\n")
        await serve_tls(reader, writer, source)

    return handle


def ftp_handler(source: ContextSource, *, answer: int = 234) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-Welcome to the test FTP server\r\n free text line\r\n220 ready\r\n")
        if (await read_line(reader)).strip().upper() != b"AUTH TLS":
            writer.write(b"500 unexpected\r\n")
            return
        if answer != 234:
            writer.write(f"{answer} AUTH TLS not available\r\n".encode())
            await until_eof(reader)
            return
        writer.write(b"234 AUTH TLS successful\r\n")
        await serve_tls(reader, writer, source)

    return handle


LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"


def _ldap_response(result_code: int, diagnostic: bytes = b"") -> bytes:
    op = bytes([0x0A, 0x01, result_code, 0x04, 0x00, 0x04, len(diagnostic)]) + diagnostic
    body = b"\x02\x01\x01" + bytes([0x78, len(op)]) + op
    return bytes([0x30, len(body)]) + body


def ldap_handler(source: ContextSource, *, result_code: int = 0) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(READ_TIMEOUT):
            head = await reader.readexactly(2)
            request = head + await reader.readexactly(head[1])
        if head[0] != 0x30 or LDAP_STARTTLS_OID not in request:
            return
        writer.write(_ldap_response(result_code, b"" if result_code == 0 else b"not today"))
        await writer.drain()
        if result_code != 0:
            await until_eof(reader)
            return
        await serve_tls(reader, writer, source)

    return handle


def xmpp_handler(source: ContextSource, *, offer: bool = True,
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
        await serve_tls(reader, writer, source)

    return handle


def postgres_handler(source: ContextSource, *, answer: bytes = b"S") -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(READ_TIMEOUT):
            request = await reader.readexactly(8)
        if request != struct.pack("!ii", 8, 80877103):
            return
        writer.write(answer)
        if answer != b"S":
            await until_eof(reader)
            return
        await serve_tls(reader, writer, source)

    return handle


STARTTLS_SERVERS: dict[str, Callable[[ContextSource], Handler]] = {
    "smtp": smtp_handler,
    "imap": imap_handler,
    "pop3": pop3_handler,
    "ftp": ftp_handler,
    "ldap": ldap_handler,
    "xmpp": xmpp_handler,
    "postgres": postgres_handler,
}


__all__ = [
    "CONNECTION_LIFETIME",
    "LDAP_STARTTLS_OID",
    "READ_TIMEOUT",
    "STARTTLS_SERVERS",
    "ContextSource",
    "Endpoint",
    "Handler",
    "ServerLoop",
    "SniRouter",
    "der_of",
    "ftp_handler",
    "imap_handler",
    "ldap_handler",
    "pop3_handler",
    "postgres_handler",
    "pyopenssl_context",
    "pyopenssl_handler",
    "read_line",
    "serve_tls",
    "server_context",
    "smtp_handler",
    "tls_handler",
    "until_eof",
    "xmpp_handler",
]
