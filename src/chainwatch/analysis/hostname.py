"""Does a certificate cover a host name? RFC 6125 as the Web PKI applies it.

- DNS names match case-insensitively, label by label, after IDNA (A-label) conversion.
- A wildcard is only a whole left-most label (``*.example.com``); it matches exactly one
  label, never the bare parent (``example.com``) nor two labels (``a.b.example.com``),
  and never a name with fewer than three labels (``*.com`` covers nothing).
- An IP address matches only an IP SAN, never a DNS SAN or the CN.
- A SAN dNSName must be ASCII (an IA5String holding A-labels); one that is not covers
  nothing, whatever its IDNA reading would be.
- The subject CN is never consulted: Chrome (since 58) and Go (since 1.15) ignore it, so
  a certificate without a SAN matches no host for most clients.
"""

from __future__ import annotations

import ipaddress

from chainwatch.model import Cert
from chainwatch.model.names import to_ascii

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


_IP_CHARS = frozenset("0123456789abcdefABCDEF.:")


def parse_ip(host: str) -> IPAddress | None:
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text or ("%" not in text and not _IP_CHARS.issuperset(text)):
        return None  # a DNS name: skip ipaddress's two failed parses (exceptions are slow)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def normalize_dns(name: str) -> str | None:
    """Lower-case A-label form without a trailing dot, or ``None`` if not a valid name."""
    name = name.strip().rstrip(".")
    if not name:
        return None
    try:
        return to_ascii(name)
    except ValueError:
        return None


def _valid_reference(name: str) -> bool:
    labels = name.split(".")
    return all(
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(ch.isalnum() or ch == "-" for ch in label)
        for label in labels
    )


def dns_pattern_matches(pattern: str, host: str) -> bool:
    """``pattern`` from a certificate against a normalised reference ``host``."""
    if not pattern.isascii():
        return False
    pat = normalize_dns(pattern)
    if pat is None or not pat.isascii():
        return False
    if "*" not in pat:
        return pat == host
    labels = pat.split(".")
    if labels[0] != "*" or any("*" in label for label in labels[1:]) or len(labels) < 3:
        return False
    host_labels = host.split(".")
    if len(host_labels) != len(labels):
        return False
    if host_labels[0].startswith("xn--"):
        # A wildcard must not stand for an internationalised label (RFC 6125 6.4.3).
        return False
    return host_labels[1:] == labels[1:]


def matches(cert: Cert, host: str) -> bool:
    """True when ``cert`` (a leaf) covers ``host`` (a DNS name or an IP literal)."""
    ip = parse_ip(host)
    if ip is not None:
        return ip in cert.ip_addresses
    ref = normalize_dns(host)
    if ref is None or not _valid_reference(ref):
        return False
    return any(dns_pattern_matches(p, ref) for p in cert.dns_names)
