"""Real TLS servers on loopback for the probe and ``check`` tests.

The well-behaved servers (chosen chain in chosen order, SNI routing, the STARTTLS
protocol servers) and the server loop are the package's own
:mod:`chainwatch.testing.lab.servers`, shared with ``chainwatch lab``; they are re-exported
here. This module adds what only the tests need: hostile servers (silent, hanging up,
garbage, alerts, oversized chains), a flaky one, anonymous TLS, OCSP responses and a
refusing port::

    with ServerLoop() as lab:
        ep = lab.serve(tls_handler(server_context(chain, key, tmp_path)))
        observation = probe(ep.target())
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from itertools import count
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from chainwatch.model import Cert
from chainwatch.testing.lab.servers import (
    CONNECTION_LIFETIME,
    LDAP_STARTTLS_OID,
    READ_TIMEOUT,
    STARTTLS_SERVERS,
    ContextSource,
    Endpoint,
    Handler,
    ServerLoop,
    SniRouter,
    der_of,
    ftp_handler,
    imap_handler,
    ldap_handler,
    pop3_handler,
    postgres_handler,
    pyopenssl_context,
    pyopenssl_handler,
    read_line,
    serve_tls,
    server_context,
    smtp_handler,
    tls_handler,
    until_eof,
    xmpp_handler,
)
from chainwatch.testing.pki import CA

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
    "Watch",
    "anonymous_context",
    "closed_port",
    "der_of",
    "endless_line",
    "endless_records",
    "flaky_handler",
    "ftp_handler",
    "garbage",
    "garbage_first",
    "hangs_up_mid_handshake",
    "imap_handler",
    "ldap_handler",
    "ocsp_response",
    "pop3_handler",
    "postgres_handler",
    "pyopenssl_context",
    "pyopenssl_handler",
    "raw_alert",
    "read_line",
    "serve_tls",
    "server_context",
    "silent",
    "smtp_handler",
    "tls_handler",
    "until_eof",
    "xmpp_handler",
]

# -- contexts only tests need -------------------------------------------------------------


def anonymous_context() -> ssl.SSLContext:
    """A TLS 1.2 server with only anonymous (certificate-less) suites."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("aNULL:@SECLEVEL=0")
    return ctx


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


@contextlib.contextmanager
def closed_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A loopback port with nothing listening on it (bound, never listened: refuses)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        yield sock.getsockname()[1]


def flaky_handler(ctx: ssl.SSLContext, failures: int = 1) -> Handler:
    """Hangs up on the first ``failures`` connections mid-handshake, then serves TLS."""
    seen = count()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if next(seen) < failures:
            await reader.read(5)
            return  # the guard aborts the connection: a reset mid-handshake
        await serve_tls(reader, writer, ctx)

    return handle


# -- hostile servers -------------------------------------------------------------------------


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts, reads, never answers (until the client gives up)."""
    await until_eof(reader)


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
    await until_eof(reader)


def raw_alert(description: int = 40) -> Handler:
    """Answers the ClientHello with a plaintext fatal alert (default handshake_failure)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]))
        await writer.drain()
        await until_eof(reader)

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
        await until_eof(reader)

    return handle


async def garbage_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greets with an HTTP error (for STARTTLS clients expecting a protocol banner)."""
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    await until_eof(reader)


async def endless_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A banner line that never ends (up to 1 MiB of it)."""
    writer.write(b"+OK ")
    for _ in range(64):
        writer.write(b"A" * 16384)
        await writer.drain()
    await until_eof(reader)


class Watch:
    """A silent server that reports (thread-safely) when a client connected and when
    that client's socket was closed."""

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.closed = threading.Event()

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connected.set()
        try:
            await until_eof(reader)
        except ConnectionError:
            pass
        else:
            self.closed.set()
            return
        self.closed.set()


# -- nginx (a real dual-certificate server) -------------------------------------------------


def nginx_binary() -> str | None:
    """The nginx executable (Debian's ``nginx-light`` installs ``/usr/sbin/nginx``)."""
    import shutil

    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@contextlib.contextmanager
def nginx_server(binary: str, tmp: Path, port: int,
                 certificates: list[tuple[bytes, bytes]]) -> Iterator[int]:
    """nginx on 127.0.0.1:``port`` serving every (chain PEM, key PEM) of ``certificates``
    in one server block (nginx picks one per handshake: by cipher suite in TLS 1.2, by
    signature algorithm in TLS 1.3); yields the port. One process, no master (no user
    switching), stopped and waited for on exit; start-up bounded to 30 s."""
    import subprocess
    import time

    lines = []
    for n, (chain, key) in enumerate(certificates):
        (tmp / f"cert{n}.pem").write_bytes(chain)
        (tmp / f"cert{n}.key").write_bytes(key)
        lines.append(f"    ssl_certificate {tmp}/cert{n}.pem;")
        lines.append(f"    ssl_certificate_key {tmp}/cert{n}.key;")
    conf = tmp / "nginx.conf"
    conf.write_text("\n".join([
        "daemon off;", "master_process off;", f"pid {tmp}/nginx.pid;",
        f"error_log {tmp}/error.log warn;", "events { worker_connections 64; }",
        "http {", "  access_log off;",
        *(f"  {kind}_temp_path {tmp}/{kind};"
          for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
        "  ssl_protocols TLSv1.2 TLSv1.3;", "  ssl_session_tickets off;",
        f"  server {{ listen 127.0.0.1:{port} ssl;", *lines, "    return 204; }", "}",
    ]) + "\n")
    log = tmp / "error.log"
    stderr = tmp / "nginx.stderr"
    with stderr.open("wb") as sink:
        proc = subprocess.Popen([binary, "-p", f"{tmp}/", "-c", str(conf), "-e", str(log)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=sink)
    try:
        deadline = time.monotonic() + 30
        for _ in range(600):  # bounded: 30 s at most
            if proc.poll() is not None:
                err = stderr.read_text(errors="replace")
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"nginx exited with status {proc.returncode}: {err}{tail}")
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not listen within 30 s")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
