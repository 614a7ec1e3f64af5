"""Reading certificate bundles and private keys: PEM, DER and PKCS#12.

Every failure is a :class:`~chainwatch.errors.BundleError` naming the source and
saying what is wrong with it in one line; nothing here lets a parser traceback out.

Hostile files are bounded in the work they cause:

- only regular files are read (a FIFO, a device, a socket is refused without blocking:
  it is opened with ``O_NONBLOCK``, then checked with ``fstat``), and at most
  :data:`MAX_BUNDLE_BYTES` of them;
- PEM is scanned in one linear pass (a file of BEGIN lines without END lines costs what
  reading it costs).
"""

from __future__ import annotations

import os
import re
import stat
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


def _refuse_special(p: Path, mode: int) -> None:
    """Raise ``BundleError`` unless ``mode`` is a regular file's."""
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise BundleError(str(p), "is a directory, not a certificate file")
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "an unknown kind of file")
    raise BundleError(str(p), f"not a regular file ({kind})")


def read_source(path: str | Path, *, limit: int = MAX_BUNDLE_BYTES) -> bytes:
    """Read a regular file of at most ``limit`` bytes for parsing, mapping every problem
    (missing, unreadable, not a regular file, too large) to a one-line ``BundleError``.

    A FIFO, a device or a socket is refused: checked with ``stat`` before it is opened
    (opening a device can have effects), opened without blocking (``O_NONBLOCK``: a FIFO
    with no writer would block ``open`` forever), then checked again with ``fstat`` on
    the descriptor in case the path was swapped in between. The read stops past
    ``limit`` bytes, whatever the size said (a file that grows)."""
    p = Path(path)
    too_large = f"file is larger than {limit} bytes"
    try:
        info = p.stat()
        _refuse_special(p, info.st_mode)
        if info.st_size > limit:
            raise BundleError(str(p), too_large)
        fd = os.open(p, _OPEN_FLAGS)
        try:
            info = os.fstat(fd)
            _refuse_special(p, info.st_mode)
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
        raise BundleError(str(p), "is a directory, not a certificate file") from None
    except PermissionError:
        raise BundleError(str(p), "permission denied") from None
    except OSError as exc:
        raise BundleError(str(p), exc.strerror or str(exc)) from None
    if size > limit:
        raise BundleError(str(p), too_large)
    return b"".join(chunks)


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
    except ValueError:
        pass
    certs = _try_pkcs12(data, password)
    if certs is not None:
        if not certs:
            raise BundleError(source, "PKCS#12 file holds no certificate")
        return certs
    raise BundleError(source, "not a certificate: neither PEM, DER nor PKCS#12")


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
        except ValueError as exc:
            raise BundleError(source, f"PEM certificate #{number} is malformed: {exc}") from None
        certs.append(Cert.from_x509(loaded))
    if not certs:
        if others:
            raise BundleError(
                source, f"no certificate in PEM (found only: {', '.join(sorted(set(others)))})"
            )
        raise BundleError(source, "no certificate in PEM")
    return tuple(certs)


def _try_pkcs12(data: bytes, password: bytes | None) -> tuple[Cert, ...] | None:
    for pw in (password, b"") if password is None else (password,):
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, pw)
        except (ValueError, TypeError):
            continue
        del key
        ordered = ([cert] if cert is not None else []) + list(extra)
        return tuple(Cert.from_x509(c) for c in ordered)
    return None


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
    try:
        key, _cert, _extra = pkcs12.load_key_and_certificates(data, password)
    except (ValueError, TypeError):
        key = None
    if key is not None:
        return key
    raise BundleError(source, "not a private key (PEM, DER or PKCS#12 expected)")
