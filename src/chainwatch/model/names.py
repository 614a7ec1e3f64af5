"""Names and addresses, converted in one place.

- :func:`to_ascii` turns a host name into its A-label form with the ``idna`` package (UTS 46
  mapping, IDNA 2008, *non-transitional*): ``straße.de`` is ``xn--strae-oqa.de``, a
  different domain from ``strasse.de`` (Python's built-in ``idna`` codec implements IDNA
  2003 and maps the former onto the latter). The inventory, hostname matching and the SNI
  a probe sends all use it.
- :func:`parse_ip` and :func:`is_ip` recognise IPv4/IPv6 literals (``[v6]`` too).
- :func:`split_host_port` reads ``HOST``, ``HOST:PORT``, ``[V6]``, ``[V6]:PORT`` and bare
  IPv6 addresses.
- :class:`StartTLS` names the protocols upgraded before the handshake, with their ports.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_NAME_SHOWN = 80
"""Longest piece of a user's or a server's text quoted back in a message."""


class StartTLS(StrEnum):
    """Protocols whose plaintext session is upgraded to TLS before the handshake."""

    SMTP = "smtp"
    IMAP = "imap"
    POP3 = "pop3"
    FTP = "ftp"
    LDAP = "ldap"
    XMPP = "xmpp"
    POSTGRES = "postgres"

    @property
    def default_port(self) -> int:
        """The port the protocol usually listens on (an endpoint without a port gets it)."""
        return _PORTS[self]


_PORTS = {
    StartTLS.SMTP: 25,
    StartTLS.IMAP: 143,
    StartTLS.POP3: 110,
    StartTLS.FTP: 21,
    StartTLS.LDAP: 389,
    StartTLS.XMPP: 5222,
    StartTLS.POSTGRES: 5432,
}

_IP_CHARS = frozenset("0123456789abcdefABCDEF.:")


def parse_ip(host: str) -> IPAddress | None:
    """The address ``host`` spells (``[v6]`` accepted), or ``None`` for a DNS name."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text or ("%" not in text and not _IP_CHARS.issuperset(text)):
        return None  # a DNS name: skip ipaddress's two failed parses (exceptions are slow)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_ip(text: str) -> bool:
    return parse_ip(text) is not None


def printable(text: str) -> str:
    """``text`` with every character that is not printable shown as its escape
    (``\\n``, ``\\x1b``, ``\\u202e``): control characters, line and paragraph
    separators, bidirectional and other format characters. For names and messages that
    come from certificates and servers: a subject or a SAN with a line break in it must
    not forge a line of text output, a log line, or a line of an alert."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def shown(text: str, limit: int = MAX_NAME_SHOWN) -> str:
    """``text`` quoted for a one-line message, cut at ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


def to_ascii(name: str) -> str:
    """The lower-case A-label form of a DNS name (no trailing dot).

    Raises :class:`ValueError` with a one-line reason for a name that is not valid under
    IDNA 2008 (UTS 46 non-transitional processing).
    """
    text = name.strip().rstrip(".")
    if not text:
        raise ValueError("empty host name")
    if text.isascii():
        return text.lower()
    import idna  # only for a name that is not ASCII: most are, and idna's tables are large

    try:
        return idna.encode(text, uts46=True, transitional=False).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"{shown(name)} is not a valid internationalised name: {exc}") from None


def split_host_port(text: str) -> tuple[str, str | None]:
    """``HOST[:PORT]``, ``[V6][:PORT]`` or a bare IPv6 address → (host, port text or None).

    Raises :class:`ValueError` for a malformed bracket form; the port is not checked.
    """
    raw = text.strip()
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{shown(text)}: expected [IPV6]:PORT")
        return host, (rest[1:] if rest else None)
    if raw.count(":") == 1:
        host, _, port = raw.partition(":")
        return host, port
    return raw, None  # a name, or a bare IPv6 address (several colons)


def parse_port(text: str) -> int:
    """A port number 1-65535, or :class:`ValueError`."""
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError("the port must be a number from 1 to 65535")
    return int(text)


def parse_endpoint(text: str, default_port: int) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]``, ``[V6]:PORT`` or a bare IPv6 address as (host,
    port): an address in its canonical form, a name in its A-label form (IDNA 2008),
    ``default_port`` when none is given. Raises :class:`ValueError` saying what is wrong
    (callers name the text: a flag, a query parameter)."""
    try:
        host, port_text = split_host_port(text)
    except ValueError:
        raise ValueError("expected [IPV6]:PORT") from None
    if not host or any(c.isspace() or c in "/[]" for c in host):
        raise ValueError("expected HOST[:PORT]")
    address = parse_ip(host)
    host = str(address) if address is not None else to_ascii(host)
    if port_text is None:
        return host, default_port
    return host, parse_port(port_text)
