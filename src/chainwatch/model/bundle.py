"""Reading certificate bundles and private keys: PEM, DER and PKCS#12.

Every failure is a :class:`~chainwatch.errors.BundleError` naming the source and
saying what is wrong with it in one line; nothing here lets a parser traceback out.

Hostile files are bounded in the work they cause:

- only regular files are read (a FIFO, a device, a socket is refused without blocking:
  it is opened with ``O_NONBLOCK``, then checked with ``fstat``), and at most
  :data:`MAX_BUNDLE_BYTES` of them;
- PEM is scanned in one linear pass (a file of BEGIN lines without END lines costs what
  reading it costs);
- a PKCS#12 file's key-derivation iteration counts (the MAC's and those of the
  encryption it shows) are read from its DER before the file is handed to
  ``cryptography``, and a file asking for more than :data:`MAX_PKCS12_ITERATIONS` in
  all is refused.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from chainwatch.errors import BundleError
from chainwatch.model import Cert, lenient

MAX_BUNDLE_BYTES = 16 * 1024 * 1024
"""The largest bundle, key or ``file:`` trust store read (16 MiB: Mozilla's whole store
is ~0.3 MiB as PEM)."""

MAX_PKCS12_ITERATIONS = 10_000_000
"""The most key-derivation iterations a PKCS#12 file may ask for, MAC and encryption
together. OpenSSL's default is 2,048 per derivation, Java's keytool 10,000 (100,000 for
the MAC before JDK 12), Windows 2,000; OWASP's strongest PBKDF2 recommendation (2023) is
1,300,000 (HMAC-SHA1). 10,000,000 admits all of them with room to spare and bounds a
hostile file to 1-2 s of CPU per password tried (PBKDF2 runs 0.1-0.2 s per million
iterations on one core), where the 2^31-1 a file can name takes minutes."""

_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----")
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}

_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_BINARY", 0)
)
_READ_CHUNK = 1 << 20


def _refuse_special(p: Path, mode: int, what: str) -> None:
    """Raise ``BundleError`` unless ``mode`` is a regular file's."""
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise BundleError(str(p), f"is a directory, not {what}")
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "an unknown kind of file")
    raise BundleError(str(p), f"not a regular file ({kind})")


def read_source(path: str | Path, *, limit: int = MAX_BUNDLE_BYTES,
                what: str = "a certificate file") -> bytes:
    """Read a regular file of at most ``limit`` bytes for parsing, mapping every problem
    (missing, unreadable, not a regular file, too large) to a one-line ``BundleError``
    (``what`` the file should have been, for the directory case). Every file chainwatch
    reads is read through here: bundles, keys and stores, the inventory, secret files.

    A FIFO, a device or a socket is refused: checked with ``stat`` before it is opened
    (opening a device can have effects), opened without blocking (``O_NONBLOCK``: a FIFO
    with no writer would block ``open`` forever), then checked again with ``fstat`` on
    the descriptor in case the path was swapped in between. The read stops past
    ``limit`` bytes, whatever the size said (a file that grows)."""
    p = Path(path)
    too_large = f"file is larger than {limit} bytes"
    try:
        info = p.stat()
        _refuse_special(p, info.st_mode, what)
        if info.st_size > limit:
            raise BundleError(str(p), too_large)
        fd = os.open(p, _OPEN_FLAGS)
        try:
            info = os.fstat(fd)
            _refuse_special(p, info.st_mode, what)
            if info.st_size > limit:
                raise BundleError(str(p), too_large)
            chunks: list[bytes] = []
            size = 0
            while size <= limit:
                chunk = os.read(fd, min(_READ_CHUNK, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise BundleError(str(p), "no such file") from None
    except IsADirectoryError:
        raise BundleError(str(p), f"is a directory, not {what}") from None
    except PermissionError:
        raise BundleError(str(p), "permission denied") from None
    except OSError as exc:
        raise BundleError(str(p), exc.strerror or str(exc)) from None
    if size > limit:
        raise BundleError(str(p), too_large)
    return b"".join(chunks)


def _is_der_certificate(data: bytes) -> bool:
    """Whether ``data`` has the outer shape of a DER certificate (cryptography loads it;
    its parts are decoded later)."""
    try:
        with lenient():
            x509.load_der_x509_certificate(data)
    except ValueError:
        return False
    except _BROKEN_CERT:
        return True
    return True


def load_bundle_file(path: str | Path, password: bytes | None = None) -> tuple[Cert, ...]:
    return parse_bundle(read_source(path), str(path), password=password)


def parse_bundle(data: bytes, source: str, password: bytes | None = None) -> tuple[Cert, ...]:
    """Certificates in served order from PEM (one or more), DER, or PKCS#12 bytes."""
    if not data.strip():
        raise BundleError(source, "file is empty")
    if b"-----BEGIN" in data:
        return _parse_pem(data, source)
    try:
        return (Cert.from_der(data),)
    except (ValueError, *_BROKEN_CERT) as exc:
        if _is_der_certificate(data):  # a certificate, but one whose parts do not decode
            raise BundleError(source, f"DER certificate is malformed: {exc}") from None
    certs = _try_pkcs12(data, password, source)
    if certs is not None:
        if not certs:
            raise BundleError(source, "PKCS#12 file holds no certificate")
        return certs
    raise BundleError(source, "not a certificate: neither PEM, DER nor PKCS#12")


_BROKEN_CERT = (x509.InvalidVersion, TypeError)
"""What cryptography raises, besides ``ValueError``, for a certificate it loaded but cannot
read: a version that does not exist, a name attribute of the wrong type (names are
decoded lazily, on first use)."""

_TRUNCATED = "truncated PEM: a BEGIN line has no matching END line"


def _pem_blocks(data: bytes, source: str) -> list[tuple[bytes, bytes]]:
    """(label, whole block) of every PEM block, in one pass over ``data``.

    Each BEGIN line's END line is searched for once, from the BEGIN line on, and the
    scan goes on after it: no byte is looked at more than a few times (a backtracking
    regular expression looked for an END line from every BEGIN line to the end of the
    file: quadratic). Every BEGIN line must start a block: one without a line break
    after it, without an END line, or inside another block makes the file truncated."""
    blocks: list[tuple[bytes, bytes]] = []
    pos = 0
    while True:
        begin = _PEM_BEGIN.search(data, pos)
        if begin is None:
            return blocks
        label = begin.group(1)
        body = begin.end()
        if data.startswith(b"\r\n", body):
            body += 2
        elif data.startswith(b"\n", body):
            body += 1
        else:
            raise BundleError(source, _TRUNCATED)
        end_line = b"-----END " + label + b"-----"
        end = data.find(end_line, body)
        if end < 0 or _PEM_BEGIN.search(data, body, end) is not None:
            raise BundleError(source, _TRUNCATED)
        pos = end + len(end_line)
        blocks.append((label, data[begin.start() : pos]))


def _parse_pem(data: bytes, source: str) -> tuple[Cert, ...]:
    certs: list[Cert] = []
    others: list[str] = []
    for number, (label, block) in enumerate(_pem_blocks(data, source), start=1):
        if label not in _CERT_LABELS:
            others.append(label.decode("ascii", "replace"))
            continue
        if label == b"TRUSTED CERTIFICATE":
            # OpenSSL's "trusted" form appends trust settings after the DER; keep the cert.
            block = block.replace(b"TRUSTED CERTIFICATE", b"CERTIFICATE")
        try:
            with lenient():
                loaded = x509.load_pem_x509_certificate(block)
            # cryptography decodes the names lazily: a broken one fails here, not above
            certs.append(Cert.from_x509(loaded))
        except (ValueError, *_BROKEN_CERT) as exc:
            raise BundleError(source, f"PEM certificate #{number} is malformed: {exc}") from None
    if not certs:
        if others:
            raise BundleError(
                source, f"no certificate in PEM (found only: {', '.join(sorted(set(others)))})"
            )
        raise BundleError(source, "no certificate in PEM")
    return tuple(certs)


def _try_pkcs12(data: bytes, password: bytes | None, source: str) -> tuple[Cert, ...] | None:
    if not _pkcs12_affordable(data, source):
        return None
    for pw in (password, b"") if password is None else (password,):
        try:
            with lenient():  # cryptography warns when it falls back to BER (or extra data)
                key, cert, extra = pkcs12.load_key_and_certificates(data, pw)
        except (ValueError, TypeError):
            continue
        del key
        ordered = ([cert] if cert is not None else []) + list(extra)
        return tuple(Cert.from_x509(c) for c in ordered)
    return None


def load_pkcs12_certs(
    data: bytes, source: str, passwords: tuple[bytes | None, ...]
) -> tuple[Cert, ...]:
    """Every certificate of a PKCS#12 file (its key's certificate first), opened with the
    first of ``passwords`` that works. ``BundleError`` when ``data`` is not PKCS#12, is
    malformed or too costly (see :func:`_pkcs12_affordable`), or no password opens it
    (the reason then starts with ``wrong password``)."""
    if not data.strip():
        raise BundleError(source, "file is empty")
    if not _pkcs12_affordable(data, source):
        raise BundleError(source, "not a PKCS#12 file (for a Java JKS keystore say jks:)")
    for pw in passwords:
        try:
            with lenient():
                key, cert, extra = pkcs12.load_key_and_certificates(data, pw)
        except (ValueError, TypeError):
            continue
        del key
        ordered = ([cert] if cert is not None else []) + list(extra)
        return tuple(Cert.from_x509(c) for c in ordered)
    raise BundleError(source, "wrong password (or a damaged PKCS#12 file)")


def load_private_key(path: str | Path, password: bytes | None = None) -> PrivateKeyTypes:
    """A private key from PEM, DER or PKCS#12, for the ``--key`` check."""
    source = str(path)
    data = read_source(path)
    if not data.strip():
        raise BundleError(source, "key file is empty")
    loaders = (
        serialization.load_pem_private_key,
        serialization.load_der_private_key,
    )
    for loader in loaders:
        try:
            return loader(data, password)
        except TypeError:
            raise BundleError(source, "the private key is encrypted; no password given") from None
        except ValueError:
            continue
    key = None
    if _pkcs12_affordable(data, source):
        try:
            with lenient():
                key, _cert, _extra = pkcs12.load_key_and_certificates(data, password)
        except (ValueError, TypeError):
            key = None
    if key is not None:
        return key
    raise BundleError(source, "not a private key (PEM, DER or PKCS#12 expected)")


# -- PKCS#12: the work a file asks for, read before cryptography does it ------------------
#
# PFX ::= SEQUENCE { version INTEGER, authSafe ContentInfo, macData MacData OPTIONAL }
# MacData ::= SEQUENCE { mac DigestInfo, macSalt OCTET STRING, iterations INTEGER DEFAULT 1 }
# authSafe (data) holds AuthenticatedSafe ::= SEQUENCE OF ContentInfo, each either data
# (SafeContents, whose shrouded key bags name their encryption) or encryptedData (whose
# EncryptedContentInfo names it). Encryption is PKCS#12 PBE or PKCS#5 PBES1
# (PBEParameter: salt, iterationCount) or PBES2 with PBKDF2 (salt, iterationCount, ...);
# RFC 9579's PBMAC1 MAC uses PBKDF2 too. BER's indefinite lengths and constructed
# OCTET STRINGs (some Windows exports) are read as well.

_DATA = "1.2.840.113549.1.7.1"
_SIGNED_DATA = "1.2.840.113549.1.7.2"
_ENCRYPTED_DATA = "1.2.840.113549.1.7.6"
_SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2"
_SAFE_CONTENTS_BAG = "1.2.840.113549.1.12.10.1.6"
_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"
_PBMAC1 = "1.2.840.113549.1.5.14"
_PBE_PARAMETER = frozenset(
    {f"1.2.840.113549.1.12.1.{n}" for n in range(1, 7)}  # PKCS#12 PBE
    | {f"1.2.840.113549.1.5.{n}" for n in (1, 3, 4, 6, 10, 11)}  # PKCS#5 PBES1
)
_MAX_DER_NODES = 100_000
_MAX_DER_DEPTH = 32


class _Asn1Error(ValueError):
    """The DER (or BER) is not what PKCS#12 says it must be."""


@dataclass(frozen=True)
class _Node:
    tag: int
    start: int  # of the contents
    end: int


class _Der:
    """A bounded reader of a DER/BER buffer. Readers of nested buffers (the contents of
    OCTET STRINGs) share one budget: at most :data:`_MAX_DER_NODES` elements are decoded
    in all, nested at most :data:`_MAX_DER_DEPTH` deep."""

    def __init__(self, data: bytes, budget: list[int] | None = None) -> None:
        self.data = data
        self.budget = [_MAX_DER_NODES] if budget is None else budget

    def nested(self, data: bytes) -> tuple[_Der, _Node]:
        """A reader of ``data`` (one whole element) sharing this budget, and its element."""
        der = _Der(data, self.budget)
        node, _ = der.element(0, len(data))  # bytes after it are ignored, as OpenSSL does
        return der, node

    def element(self, pos: int, end: int, depth: int = 0) -> tuple[_Node, int]:
        """The element at ``pos`` (which must end by ``end``) and the position after it."""
        self.budget[0] -= 1
        if self.budget[0] < 0 or depth > _MAX_DER_DEPTH:
            raise _Asn1Error("too deeply nested or too many elements")
        data = self.data
        if pos + 2 > end:
            raise _Asn1Error("truncated element")
        tag, first = data[pos], data[pos + 1]
        if tag & 0x1F == 0x1F:
            raise _Asn1Error("unexpected high tag number")
        pos += 2
        if first == 0x80:  # BER indefinite length: the contents run to an end-of-contents
            if not tag & 0x20:
                raise _Asn1Error("indefinite length on a primitive element")
            inner = pos
            while not data.startswith(b"\x00\x00", inner):
                _, inner = self.element(inner, end, depth + 1)
            if inner + 2 > end:
                raise _Asn1Error("truncated element")
            return _Node(tag, pos, inner), inner + 2
        if first & 0x80:
            count = first & 0x7F
            if count > 4 or pos + count > end:
                raise _Asn1Error("bad length")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        else:
            length = first
        if pos + length > end:
            raise _Asn1Error("truncated contents")
        return _Node(tag, pos, pos + length), pos + length

    def children(self, node: _Node, depth: int = 0) -> list[_Node]:
        if not node.tag & 0x20:
            raise _Asn1Error("expected a constructed element")
        out: list[_Node] = []
        pos = node.start
        while pos < node.end:
            child, pos = self.element(pos, node.end, depth + 1)
            out.append(child)
        return out

    def octets(self, node: _Node, depth: int = 0) -> bytes:
        """The contents of an OCTET STRING, primitive or (BER) constructed."""
        if depth > _MAX_DER_DEPTH:
            raise _Asn1Error("OCTET STRING nested too deeply")
        if node.tag == 0x04:
            return self.data[node.start : node.end]
        if node.tag == 0x24:
            return b"".join(self.octets(c, depth + 1) for c in self.children(node, depth))
        raise _Asn1Error("expected an OCTET STRING")

    def oid(self, node: _Node) -> str:
        if node.tag != 0x06 or node.start == node.end or self.data[node.end - 1] & 0x80:
            raise _Asn1Error("expected an OBJECT IDENTIFIER")
        arcs: list[int] = []
        value = 0
        for byte in self.data[node.start : node.end]:
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                arcs.append(value)
                value = 0
        first = min(arcs[0] // 40, 2)
        return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))

    def integer(self, node: _Node) -> int:
        if node.tag != 0x02 or node.start == node.end:
            raise _Asn1Error("expected an INTEGER")
        return int.from_bytes(self.data[node.start : node.end], "big", signed=True)

    def explicit(self, node: _Node) -> _Node:
        """The element inside an ``[0] EXPLICIT`` tag."""
        if node.tag != 0xA0:
            raise _Asn1Error("expected [0]")
        inner = self.children(node)
        if len(inner) != 1:
            raise _Asn1Error("expected one element in [0]")
        return inner[0]


def _kdf_iterations(der: _Der, algorithm: _Node) -> int:
    """The iterations the AlgorithmIdentifier ``algorithm`` derives its key with (0 for an
    algorithm that derives none from a password)."""
    parts = der.children(algorithm)
    if not parts:
        raise _Asn1Error("empty AlgorithmIdentifier")
    oid = der.oid(parts[0])
    if oid in _PBE_PARAMETER or oid == _PBKDF2:  # salt, iterationCount, ...
        params = der.children(parts[1]) if len(parts) > 1 else []
        if len(params) < 2:
            raise _Asn1Error("PBE parameters without an iteration count")
        return max(0, der.integer(params[1]))
    if oid in (_PBES2, _PBMAC1):  # keyDerivationFunc, then the cipher or the MAC
        params = der.children(parts[1]) if len(parts) > 1 else []
        if not params:
            raise _Asn1Error("PBES2/PBMAC1 parameters without a key derivation")
        return _kdf_iterations(der, params[0])
    return 0


def _bag_iterations(der: _Der, safe_contents: _Node, depth: int = 0) -> int:
    """The iterations of the shrouded key bags in a SafeContents (SEQUENCE OF SafeBag),
    nested SafeContents bags included."""
    if depth > 4:
        raise _Asn1Error("SafeContents nested too deeply")
    total = 0
    for bag in der.children(safe_contents):
        parts = der.children(bag)
        if len(parts) < 2:
            raise _Asn1Error("SafeBag without a value")
        bag_id, value = der.oid(parts[0]), der.explicit(parts[1])
        if bag_id == _SHROUDED_KEY_BAG:  # EncryptedPrivateKeyInfo: algorithm, data
            fields = der.children(value)
            if not fields:
                raise _Asn1Error("empty EncryptedPrivateKeyInfo")
            total += _kdf_iterations(der, fields[0])
        elif bag_id == _SAFE_CONTENTS_BAG:
            total += _bag_iterations(der, value, depth + 1)
    return total


def _pkcs12_iterations(data: bytes) -> tuple[int, int] | None:
    """(MAC iterations, iterations in all) a PFX asks for, or ``None`` when ``data``
    does not have the shape of one. Raises ``_Asn1Error`` for a PFX that is malformed
    inside (cryptography could not read it either)."""
    der = _Der(data)
    try:
        pfx, _ = der.element(0, len(data))
        parts = der.children(pfx) if pfx.tag == 0x30 else []
        if len(parts) < 2 or parts[0].tag != 0x02 or parts[1].tag != 0x30:
            return None
        auth_safe = der.children(parts[1])
        if der.integer(parts[0]) != 3 or not auth_safe:
            return None
        kind = der.oid(auth_safe[0])
    except _Asn1Error:
        return None
    if kind not in (_DATA, _SIGNED_DATA):  # not a PFX (a PKCS#8 key has this shape too)
        return None
    mac = 0
    if len(parts) > 2:  # MacData: DigestInfo (its algorithm: a hash, or PBMAC1), salt, ...
        mac_data = der.children(parts[2])
        if len(mac_data) < 2:
            raise _Asn1Error("MacData without a salt")
        digest_info = der.children(mac_data[0])
        if not digest_info:
            raise _Asn1Error("empty DigestInfo")
        mac = _kdf_iterations(der, digest_info[0])
        mac += max(0, der.integer(mac_data[2])) if len(mac_data) > 2 else 1
    total = mac
    if kind != _DATA or len(auth_safe) < 2:
        return mac, total  # no password-protected contents that cryptography would read
    safes_der, safes = der.nested(der.octets(der.explicit(auth_safe[1])))
    for info in safes_der.children(safes):
        fields = safes_der.children(info)
        if not fields:
            raise _Asn1Error("empty ContentInfo")
        content_type = safes_der.oid(fields[0])
        if len(fields) < 2:
            continue
        content = safes_der.explicit(fields[1])
        if content_type == _DATA:
            bags_der, bags = safes_der.nested(safes_der.octets(content))
            total += _bag_iterations(bags_der, bags)
        elif content_type == _ENCRYPTED_DATA:  # version, EncryptedContentInfo
            encrypted = safes_der.children(content)
            if len(encrypted) < 2:
                raise _Asn1Error("EncryptedData without EncryptedContentInfo")
            info_fields = safes_der.children(encrypted[1])
            if len(info_fields) < 2:
                raise _Asn1Error("EncryptedContentInfo without an algorithm")
            total += _kdf_iterations(safes_der, info_fields[1])
    return mac, total


def _pkcs12_affordable(data: bytes, source: str) -> bool:
    """Whether ``data`` is a PKCS#12 file worth handing to cryptography: ``False`` when it
    does not look like one; ``BundleError`` when it is malformed or asks for more than
    :data:`MAX_PKCS12_ITERATIONS` key-derivation iterations."""
    try:
        work = _pkcs12_iterations(data)
    except _Asn1Error as exc:
        raise BundleError(source, f"malformed PKCS#12 file ({exc})") from None
    if work is None:
        return False
    mac, total = work
    if total > MAX_PKCS12_ITERATIONS:
        raise BundleError(
            source,
            f"PKCS#12 file asks for {total:,} key-derivation iterations (MAC: {mac:,}); "
            f"chainwatch refuses more than {MAX_PKCS12_ITERATIONS:,} (OpenSSL's default "
            "is 2,048)",
        )
    return True
