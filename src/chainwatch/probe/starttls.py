"""STARTTLS: just enough of each protocol to ask for the upgrade to TLS.

Supported: ``smtp imap pop3 ftp ldap xmpp postgres``. Each dialogue speaks the minimum
the protocol needs before the server starts TLS, and nothing after it: the caller then
runs the TLS handshake on the same connection.

Every read is bounded (line length and total bytes, :class:`Stream`) and has a deadline;
a server that misbehaves gets a precise :class:`~chainwatch.errors.ProbeError`:

- ``starttls_unsupported``: the server does not offer the upgrade (no ``STARTTLS`` in the
  SMTP capabilities, no ``<starttls/>`` in the XMPP features, an unknown command);
- ``starttls_refused``: it offers or knows the upgrade but declines it (SMTP 454, FTP 534,
  PostgreSQL ``N``, a non-zero LDAP result), or answers with something that is not the
  protocol at all;
- ``timeout``, ``closed``, ``too_large``: the server stalls, hangs up, or talks too much.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chainwatch.errors import ProbeError
from chainwatch.model.names import StartTLS
from chainwatch.probe import FailureReason

DEFAULT_PORTS: dict[str, int] = {p.value: p.default_port for p in StartTLS}
"""The protocols chainwatch can upgrade, with the port each usually listens on."""

PROTOCOLS: tuple[str, ...] = tuple(DEFAULT_PORTS)

MAX_LINE = 4096
"""Longest protocol line accepted (SMTP allows 512 octets; generous for the others)."""


def printable(data: bytes | str, limit: int = 80) -> str:
    """Server-supplied text made safe for a one-line message, in quotes: control
    characters escaped once (``'HTTP/1.1 400 Bad Request\\r\\n'``), cut at ``limit``
    characters. Already quoted: format it with ``{}``, never ``!r`` (that escapes twice)."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    cut = text[:limit]
    return f"'{''.join(map(_escaped, cut))}'" + ("..." if len(text) > limit else "")


def _escaped(c: str) -> str:
    if c == "'":
        return "\\'"
    return c if c.isprintable() else repr(c)[1:-1]


class Stream:
    """A connection's byte stream with a read budget and a deadline per phase.

    It reads a connected non-blocking socket through the event loop
    (``sock_recv``/``sock_sendall``), owns its read buffer (a line-oriented dialogue never
    loses bytes between reads) and counts every byte received: once ``budget`` bytes have
    arrived in the current phase, the next read fails with ``too_large``. The TLS
    handshake then reads the socket itself; whatever the buffer still holds is dropped
    (:meth:`discard_buffer`).
    """

    def __init__(self, sock: socket.socket, *, budget: int) -> None:
        self.sock = sock  # connected, non-blocking
        self.budget = budget
        self.received = 0
        self.deadline = float("inf")
        self.timeout = 0.0
        self.phase = "read"
        self._buffer = bytearray()

    def start_phase(self, phase: str, timeout: float, budget: int) -> None:
        """Begin a phase (``STARTTLS (smtp)``, ``TLS handshake``) with its own time and
        byte allowance."""
        self.phase = phase
        self.deadline = asyncio.get_running_loop().time() + timeout
        self.timeout = timeout
        self.budget = budget
        self.received = 0

    def discard_buffer(self) -> None:
        """Forget bytes received but not consumed. Called at the switch to TLS: anything the
        server sent before its go-ahead is not part of the TLS stream."""
        self._buffer.clear()

    async def _fill(self, what: str) -> None:
        """Read at least one more byte into the buffer, or fail."""
        if self.received >= self.budget:
            raise ProbeError(
                FailureReason.TOO_LARGE,
                f"the server sent more than {self.budget} bytes during the {self.phase}",
            )
        try:
            async with asyncio.timeout_at(self.deadline):
                chunk = await asyncio.get_running_loop().sock_recv(
                    self.sock, min(65536, self.budget - self.received + 1)
                )
        except TimeoutError:
            raise ProbeError(
                FailureReason.TIMEOUT,
                f"no complete {what} within {self.timeout:g}s during the {self.phase}",
            ) from None
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise ProbeError(
                FailureReason.CLOSED,
                f"connection reset during the {self.phase} ({exc.strerror or exc})",
            ) from None
        except OSError as exc:
            raise ProbeError(
                FailureReason.CLOSED, f"connection failed during the {self.phase}: {exc}"
            ) from None
        if not chunk:
            raise ProbeError(
                FailureReason.CLOSED, f"the server closed the connection during the {self.phase}"
            )
        self.received += len(chunk)
        self._buffer += chunk

    async def read_some(self) -> bytes:
        """Whatever is buffered, or the next chunk from the network (never empty)."""
        if not self._buffer:
            await self._fill("reply")
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    async def read_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            await self._fill("reply")
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def read_line(self, max_line: int = MAX_LINE) -> str:
        """One line without its CRLF/LF, decoded leniently (latin-1 never fails)."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                if len(line) > max_line:
                    break
                return line.rstrip(b"\r\n").decode("latin-1")
            if len(self._buffer) > max_line:
                break
            await self._fill("line")
        raise ProbeError(
            FailureReason.TOO_LARGE,
            f"a line longer than {max_line} bytes during the {self.phase}",
        )

    async def read_until(self, pattern: re.Pattern[bytes], what: str) -> re.Match[bytes]:
        """Read until ``pattern`` matches the buffered bytes; consume through the match."""
        while True:
            # Search a copy: a match on the bytearray would change with the buffer.
            match = pattern.search(bytes(self._buffer))
            if match is not None:
                del self._buffer[: match.end()]
                return match
            await self._fill(what)

    async def write(self, data: bytes) -> None:
        try:
            async with asyncio.timeout_at(self.deadline):
                await asyncio.get_running_loop().sock_sendall(self.sock, data)
        except TimeoutError:
            raise ProbeError(
                FailureReason.TIMEOUT,
                f"the server did not accept data within {self.timeout:g}s during the "
                f"{self.phase}",
            ) from None
        except OSError as exc:
            raise ProbeError(
                FailureReason.CLOSED,
                f"connection lost while sending during the {self.phase} ({exc})",
            ) from None


@dataclass(frozen=True)
class Dialogue:
    """Who we are talking to, for the protocols that name the server or the client."""

    server_name: str
    """The name the server is addressed as (XMPP ``to=``), usually the SNI name."""
    client_name: str
    """How the client introduces itself (SMTP EHLO): an address literal."""


Upgrade = Callable[[Stream, Dialogue], Awaitable[None]]


async def upgrade(protocol: str, stream: Stream, dialogue: Dialogue) -> None:
    """Speak ``protocol`` on ``stream`` until the server is ready for the TLS handshake."""
    try:
        step = _UPGRADES[protocol]
    except KeyError:
        raise ValueError(
            f"unknown STARTTLS protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}"
        ) from None
    await step(stream, dialogue)
    stream.discard_buffer()


def _refused(detail: str) -> ProbeError:
    return ProbeError(FailureReason.STARTTLS_REFUSED, detail)


def _unsupported(detail: str) -> ProbeError:
    return ProbeError(FailureReason.STARTTLS_UNSUPPORTED, detail)


# -- SMTP (RFC 3207) and FTP (RFC 4217): numbered replies ----------------------------------

_REPLY = re.compile(r"^(\d{3})([ -])(.*)$")
_MAX_REPLY_LINES = 100


async def _reply(stream: Stream, protocol: str) -> tuple[int, list[str]]:
    """A (possibly multi-line) ``NNN-text`` / ``NNN text`` reply: its code and its texts."""
    texts: list[str] = []
    for _ in range(_MAX_REPLY_LINES):
        line = await stream.read_line()
        match = _REPLY.match(line)
        if match is None:
            if texts and protocol == "ftp":
                # RFC 959 lets the middle lines of a multi-line FTP reply be free text.
                texts.append(line)
                continue
            raise _refused(f"the server does not speak {protocol.upper()}: {printable(line)}")
        texts.append(match.group(3))
        if match.group(2) == " ":
            return int(match.group(1)), texts
    raise ProbeError(
        FailureReason.TOO_LARGE, f"a {protocol.upper()} reply of more than {_MAX_REPLY_LINES} lines"
    )


async def _smtp(stream: Stream, dialogue: Dialogue) -> None:
    code, texts = await _reply(stream, "smtp")
    if code != 220:
        raise _refused(f"SMTP greeting {code} {printable(texts[0])}")
    await stream.write(f"EHLO {dialogue.client_name}\r\n".encode())
    code, texts = await _reply(stream, "smtp")
    if code != 250:
        raise _refused(f"SMTP EHLO answered {code} {printable(texts[0])}")
    keywords = {t.split(" ", 1)[0].upper() for t in texts[1:] if t}
    if "STARTTLS" not in keywords:
        raise _unsupported("the SMTP server does not offer STARTTLS in its EHLO capabilities")
    await stream.write(b"STARTTLS\r\n")
    code, texts = await _reply(stream, "smtp")
    if code != 220:
        raise _refused(f"SMTP STARTTLS answered {code} {printable(texts[0])}")


async def _ftp(stream: Stream, dialogue: Dialogue) -> None:
    code, texts = await _reply(stream, "ftp")
    if code != 220:
        raise _refused(f"FTP greeting {code} {printable(texts[0])}")
    await stream.write(b"AUTH TLS\r\n")
    code, texts = await _reply(stream, "ftp")
    if code in (500, 502, 504):  # syntax error / not implemented / parameter not implemented
        raise _unsupported(f"FTP AUTH TLS answered {code} {printable(texts[0])}")
    if code != 234:
        raise _refused(f"FTP AUTH TLS answered {code} {printable(texts[0])}")


# -- IMAP (RFC 3501 section 6.2.1) and POP3 (RFC 2595) ---------------------------------------

_MAX_UNTAGGED = 100


async def _imap(stream: Stream, dialogue: Dialogue) -> None:
    greeting = await stream.read_line()
    upper = greeting.upper()
    if upper.startswith("* BYE"):
        raise _refused(f"IMAP greeting {printable(greeting)}")
    if not upper.startswith(("* OK", "* PREAUTH")):
        raise _refused(f"the server does not speak IMAP: {printable(greeting)}")
    await stream.write(b"a1 STARTTLS\r\n")
    for _ in range(_MAX_UNTAGGED):
        line = await stream.read_line()
        if line.startswith("* "):
            continue  # untagged data (capabilities, alerts) before our tagged answer
        status = line.upper().split(" ", 2)
        if len(status) >= 2 and status[0] == "A1":
            if status[1] == "OK":
                return
            if status[1] == "BAD":
                raise _unsupported(f"IMAP STARTTLS answered {printable(line)}")
            raise _refused(f"IMAP STARTTLS answered {printable(line)}")
        raise _refused(f"unexpected IMAP answer {printable(line)}")
    raise ProbeError(
        FailureReason.TOO_LARGE, f"more than {_MAX_UNTAGGED} untagged IMAP lines before STARTTLS"
    )


async def _pop3(stream: Stream, dialogue: Dialogue) -> None:
    greeting = await stream.read_line()
    if not greeting.startswith("+OK"):
        if greeting.startswith("-ERR"):
            raise _refused(f"POP3 greeting {printable(greeting)}")
        raise _refused(f"the server does not speak POP3: {printable(greeting)}")
    await stream.write(b"STLS\r\n")
    answer = await stream.read_line()
    if not answer.startswith("+OK"):
        raise _refused(f"POP3 STLS answered {printable(answer)}")


# -- LDAP (RFC 4511 section 4.14): StartTLS extended operation, BER by hand ---------------

LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"


def _ber_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _ber(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _ber_length(len(body)) + body


LDAP_STARTTLS_REQUEST = _ber(
    0x30,  # LDAPMessage ::= SEQUENCE
    _ber(0x02, b"\x01")  # messageID 1
    + _ber(0x77, _ber(0x80, LDAP_STARTTLS_OID)),  # [APPLICATION 23] ExtendedRequest, [0] name
)

_LDAP_MAX_MESSAGE = 65536
_LDAP_PROTOCOL_ERROR = 2


def _ber_read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, value, position after) of the BER element at ``pos``; ValueError if truncated."""
    if pos + 2 > len(data):
        raise ValueError("truncated element")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first & 0x80:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    else:
        length = first
    if pos + length > len(data):
        raise ValueError("truncated value")
    return tag, data[pos : pos + length], pos + length


async def _ldap_message(stream: Stream) -> bytes:
    """One whole LDAPMessage (SEQUENCE with definite length), bounded in size."""
    head = await stream.read_exact(2)
    if head[0] != 0x30:
        raise _refused(f"the server does not speak LDAP: {printable(head)}")
    if head[1] & 0x80:
        count = head[1] & 0x7F
        if count == 0 or count > 4:
            raise _refused("the server does not speak LDAP: bad message length")
        size_bytes = await stream.read_exact(count)
        length = int.from_bytes(size_bytes, "big")
        head += size_bytes
    else:
        length = head[1]
    if length > _LDAP_MAX_MESSAGE:
        raise ProbeError(
            FailureReason.TOO_LARGE,
            f"an LDAP message of {length} bytes (limit {_LDAP_MAX_MESSAGE})",
        )
    return head + await stream.read_exact(length)


async def _ldap(stream: Stream, dialogue: Dialogue) -> None:
    await stream.write(LDAP_STARTTLS_REQUEST)
    message = await _ldap_message(stream)
    try:
        _, body, _ = _ber_read(message, 0)
        _, _message_id, pos = _ber_read(body, 0)
        op_tag, op, _ = _ber_read(body, pos)
        if op_tag != 0x78:  # [APPLICATION 24] ExtendedResponse
            raise _refused(f"LDAP answered with operation tag 0x{op_tag:02x}, not ExtendedResponse")
        code_tag, code_bytes, pos = _ber_read(op, 0)
        if code_tag != 0x0A:
            raise ValueError("resultCode is not ENUMERATED")
        code = int.from_bytes(code_bytes, "big")
        diagnostic = b""
        _, _matched, pos = _ber_read(op, pos)
        _, diagnostic, _ = _ber_read(op, pos)
    except ValueError as exc:
        raise _refused(f"malformed LDAP response ({exc})") from None
    if code == 0:
        return
    text = f"LDAP StartTLS resultCode {code}" + (
        f" {printable(diagnostic)}" if diagnostic else ""
    )
    if code == _LDAP_PROTOCOL_ERROR:  # RFC 4511 4.12: what an unknown extended op gets
        raise _unsupported(text)
    raise _refused(text)


# -- XMPP (RFC 6120 section 5) ---------------------------------------------------------------

_XMPP_FEATURES = re.compile(
    rb"<(?:[\w.-]+:)?features(?:\s[^>]*)?/>|<(?:[\w.-]+:)?features[\s>].*?</(?:[\w.-]+:)?features>",
    re.DOTALL,
)
_XMPP_STREAM_ERROR = re.compile(rb"<(?:[\w.-]+:)?error[\s>].*?</(?:[\w.-]+:)?error>", re.DOTALL)
_XMPP_ANSWER = re.compile(rb"<(proceed|failure)[\s/>]")
_XMPP_ENDED = re.compile(rb"</(?:[\w.-]+:)?stream>")


def _xml_attr(value: str) -> str:
    return (
        value.replace("&", "&amp;").replace("'", "&apos;").replace("<", "&lt;")
        .replace(">", "&gt;").replace('"', "&quot;")
    )


async def _xmpp(stream: Stream, dialogue: Dialogue) -> None:
    await stream.write(
        (
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' version='1.0' "
            f"to='{_xml_attr(dialogue.server_name)}'>"
        ).encode()
    )
    first = await stream.read_some()
    if b"<" not in first[:64]:
        raise _refused(f"the server does not speak XMPP: {printable(first)}")
    received = bytearray(first)
    for _ in range(10_000):
        features = _XMPP_FEATURES.search(received)
        if features is not None:
            break
        error = _XMPP_STREAM_ERROR.search(received) or _XMPP_ENDED.search(received)
        if error is not None:
            raise _refused(f"XMPP stream error {printable(error.group(0), 120)}")
        received += await stream.read_some()
    else:
        raise ProbeError(FailureReason.TOO_LARGE, "XMPP stream features never ended")
    if b"<starttls" not in features.group(0):
        raise _unsupported("the XMPP server does not offer <starttls/> in its stream features")
    await stream.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    answer = await stream.read_until(_XMPP_ANSWER, "XMPP <proceed/>")
    if answer.group(1) != b"proceed":
        raise _refused("the XMPP server answered <failure/> to <starttls/>")
    # Consume the rest of the <proceed .../> element: TLS starts right after it.
    await stream.read_until(re.compile(rb"/>|</proceed>"), "XMPP <proceed/>")


# -- PostgreSQL (protocol 3, SSLRequest) ----------------------------------------------------

POSTGRES_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


async def _postgres(stream: Stream, dialogue: Dialogue) -> None:
    await stream.write(POSTGRES_SSL_REQUEST)
    answer = await stream.read_exact(1)
    if answer == b"S":
        return
    if answer == b"N":
        raise _refused("the PostgreSQL server answered N to SSLRequest (TLS not enabled)")
    raise _refused(f"the PostgreSQL server answered {printable(answer)} to SSLRequest")


_UPGRADES: dict[str, Upgrade] = {
    "smtp": _smtp,
    "imap": _imap,
    "pop3": _pop3,
    "ftp": _ftp,
    "ldap": _ldap,
    "xmpp": _xmpp,
    "postgres": _postgres,
}
