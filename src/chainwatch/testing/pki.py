"""Throwaway certificate hierarchies for tests, the incident lab and the examples.

Any hierarchy in a few lines, dated however the scenario needs::

    pki = PKI(now=datetime(2021, 9, 1, tzinfo=UTC))
    old = pki.root("Old Root", expires="2021-09-30T14:01:15")
    x1 = pki.root("X1", expires="2035-06-04")
    x1_by_old = x1.cross_signed_by(old, expires="2024-09-30")
    r3 = x1.intermediate("R3", expires="2025-09-15")
    leaf = r3.leaf("app.example.com", expires="2021-11-09")
    bundle = leaf.chain(r3, x1_by_old)          # leaf first, as a server would send it

Keys default to EC P-256 (fast to generate); ``key="rsa2048"``/``"rsa1024"`` gives RSA.
``eku=[...]`` gives a CA an extendedKeyUsage extension (none by default) or a leaf another
one than serverAuth, e.g. ``root.intermediate("Mail CA", eku=[EMAIL_PROTECTION])``.
``sha1=True`` signs with SHA-1: ``cryptography`` no longer signs with SHA-1, so the
certificate is built as SHA-256 and its signature algorithm and signature are then
replaced (RSA only, as in the SHA-1 era). This module is a library, not a test helper
only: ``chainwatch lab`` and ``make run``'s examples are built with it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chainwatch.model import Cert

UTC = dt.UTC
When = dt.datetime | dt.date | str | None
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_KEY_TYPES = ("ec256", "ec384", "rsa1024", "rsa2048", "rsa3072")


def when(value: When, default: dt.datetime) -> dt.datetime:
    """A UTC instant from a datetime, a date (midnight UTC) or an ISO 8601 string."""
    if value is None:
        return default
    if isinstance(value, str):
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return dt.datetime(value.year, value.month, value.day, tzinfo=UTC)


class KeyPool:
    """Generates keys. RSA keys (~50 ms each to generate) are reused round-robin from
    ``rsa_size`` keys per size unless ``reuse_rsa=False``: certificates stay distinct
    (serials, names, dates) while suites stay fast. EC keys are always fresh.
    """

    def __init__(self, *, reuse_rsa: bool = True, rsa_size: int = 6) -> None:
        self.reuse_rsa = reuse_rsa
        self.rsa_size = rsa_size
        self._pools: dict[str, list[PrivateKey]] = {}
        self._cursor: dict[str, itertools.count[int]] = {}

    def get(self, kind: str) -> PrivateKey:
        if kind not in _KEY_TYPES:
            raise ValueError(f"unknown key type {kind!r}; expected one of {_KEY_TYPES}")
        if not (self.reuse_rsa and kind.startswith("rsa")):
            return _generate(kind)
        pool = self._pools.setdefault(kind, [])
        n = next(self._cursor.setdefault(kind, itertools.count()))
        if len(pool) < self.rsa_size:
            pool.append(_generate(kind))
            return pool[-1]
        return pool[n % self.rsa_size]


def _generate(kind: str) -> PrivateKey:
    if kind == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))


_SHARED_POOL = KeyPool()


@dataclass
class PKI:
    """A factory of hierarchies that share a notion of "now" and a key pool."""

    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(UTC).replace(microsecond=0))
    keys: KeyPool = field(default_factory=lambda: _SHARED_POOL)
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(0x1000))

    def root(
        self,
        name: str,
        *,
        not_before: When = None,
        expires: When = None,
        key: str = "ec256",
        sha1: bool = False,
        path_length: int | None = None,
        eku: Sequence[x509.ObjectIdentifier] | None = None,
    ) -> CA:
        """A self-signed root CA named ``CN=name``; ``eku``: its extendedKeyUsage."""
        private = self.keys.get(key)
        subject = _name(name)
        cert = self._build(
            subject=subject,
            issuer=subject,
            public=private.public_key(),
            signer=private,
            not_before=when(not_before, self.now - dt.timedelta(days=3650)),
            not_after=when(expires, self.now + dt.timedelta(days=3650)),
            ca=True,
            path_length=path_length,
            aki_from=private.public_key(),
            sha1=sha1,
            eku=eku,
        )
        return CA(self, private, cert, issuer=None)

    def self_signed_leaf(self, *names: str, expires: When = None) -> Leaf:
        """An end-entity certificate signed by its own key (the badssl "self-signed" case)."""
        private = self.keys.get("ec256")
        subject = _name(names[0] if names else "self-signed")
        cert = self._build(
            subject=subject,
            issuer=subject,
            public=private.public_key(),
            signer=private,
            not_before=self.now - dt.timedelta(days=1),
            not_after=when(expires, self.now + dt.timedelta(days=90)),
            ca=False,
            names=names,
        )
        return Leaf(private, cert, issuer=None)

    def _build(
        self,
        *,
        subject: x509.Name,
        issuer: x509.Name,
        public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        signer: PrivateKey,
        not_before: dt.datetime,
        not_after: dt.datetime,
        ca: bool,
        path_length: int | None = None,
        aki_from: rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None = None,
        names: Sequence[str] = (),
        sha1: bool = False,
        extra: Sequence[x509.ExtensionType] = (),
        eku: Sequence[x509.ObjectIdentifier] | None = None,
    ) -> Cert:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(next(self._serial) * 1_000_003 + x509.random_serial_number() % 997)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        )
        if aki_from is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(aki_from), critical=False
            )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            if eku is not None:
                builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        else:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False,
                    key_encipherment=isinstance(public, rsa.RSAPublicKey),
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            ).add_extension(
                x509.ExtendedKeyUsage(
                    list(eku) if eku is not None else [ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
            if names:
                builder = builder.add_extension(
                    x509.SubjectAlternativeName([_general_name(n) for n in names]),
                    critical=False,
                )
        for ext in extra:
            builder = builder.add_extension(ext, critical=False)
        cert = builder.sign(signer, hashes.SHA256())
        if sha1:
            return Cert.from_der(_resign_sha1(cert, signer))
        return Cert.from_x509(cert)


@dataclass
class CA:
    """A certificate authority: its certificate and private key."""

    pki: PKI
    key: PrivateKey
    cert: Cert
    issuer: CA | None

    @property
    def name(self) -> x509.Name:
        return self.cert.parsed.subject

    def intermediate(
        self,
        name: str,
        *,
        not_before: When = None,
        expires: When = None,
        key: str = "ec256",
        sha1: bool = False,
        path_length: int | None = None,
        extra: Sequence[x509.ExtensionType] = (),
        eku: Sequence[x509.ObjectIdentifier] | None = None,
    ) -> CA:
        """A subordinate CA signed by this one. ``extra``: more (non-critical) extensions,
        e.g. an ``AuthorityInformationAccess`` naming where its issuer can be fetched;
        ``eku``: its extendedKeyUsage (none by default)."""
        private = self.pki.keys.get(key)
        cert = self.pki._build(
            subject=_name(name),
            issuer=self.name,
            public=private.public_key(),
            signer=self.key,
            not_before=when(not_before, self.pki.now - dt.timedelta(days=365)),
            not_after=when(expires, self.pki.now + dt.timedelta(days=5 * 365)),
            ca=True,
            path_length=path_length,
            aki_from=self.key.public_key(),
            sha1=sha1,
            extra=extra,
            eku=eku,
        )
        return CA(self.pki, private, cert, issuer=self)

    def cross_signed_by(
        self,
        other: CA,
        *,
        not_before: When = None,
        expires: When = None,
        sha1: bool = False,
        eku: Sequence[x509.ObjectIdentifier] | None = None,
    ) -> CA:
        """This CA's subject and key, certified by ``other`` (a cross-sign); ``eku``: the
        cross-sign's extendedKeyUsage (none by default)."""
        cert = self.pki._build(
            subject=self.name,
            issuer=other.name,
            public=self.key.public_key(),
            signer=other.key,
            not_before=when(not_before, self.pki.now - dt.timedelta(days=365)),
            not_after=when(expires, self.pki.now + dt.timedelta(days=3 * 365)),
            ca=True,
            aki_from=other.key.public_key(),
            sha1=sha1,
            eku=eku,
        )
        return CA(self.pki, self.key, cert, issuer=other)

    def leaf(
        self,
        *names: str,
        not_before: When = None,
        expires: When = None,
        key: str = "ec256",
        sha1: bool = False,
        common_name: str | None = None,
        extra: Sequence[x509.ExtensionType] = (),
        eku: Sequence[x509.ObjectIdentifier] | None = None,
    ) -> Leaf:
        """An end-entity certificate for ``names`` (DNS names or IP literals) signed by this
        CA; ``eku``: its extendedKeyUsage (default serverAuth)."""
        private = self.pki.keys.get(key)
        cn = common_name if common_name is not None else (names[0] if names else "leaf")
        cert = self.pki._build(
            subject=_name(cn),
            issuer=self.name,
            public=private.public_key(),
            signer=self.key,
            not_before=when(not_before, self.pki.now - dt.timedelta(days=1)),
            not_after=when(expires, self.pki.now + dt.timedelta(days=90)),
            ca=False,
            aki_from=self.key.public_key(),
            names=names,
            sha1=sha1,
            extra=extra,
            eku=eku,
        )
        return Leaf(private, cert, issuer=self)

    @property
    def pem(self) -> bytes:
        return pem_of(self.cert)

    def key_pem(self) -> bytes:
        return key_pem(self.key)


@dataclass
class Leaf:
    """An end-entity certificate with its private key."""

    key: PrivateKey
    cert: Cert
    issuer: CA | None

    def chain(self, *cas: CA | Cert) -> tuple[Cert, ...]:
        """The leaf followed by ``cas`` in the order given (the served order)."""
        return (self.cert, *(c.cert if isinstance(c, CA) else c for c in cas))

    def key_pem(self) -> bytes:
        return key_pem(self.key)


def pem_of(*certs: Cert) -> bytes:
    return b"".join(
        c.parsed.public_bytes(serialization.Encoding.PEM) for c in certs
    )


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _general_name(text: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        return x509.DNSName(text)


# -- SHA-1 re-signing --------------------------------------------------------------------

_SHA256_RSA = bytes.fromhex("06092a864886f70d01010b")  # OID 1.2.840.113549.1.1.11
_SHA1_RSA = bytes.fromhex("06092a864886f70d010105")  # OID 1.2.840.113549.1.1.5


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(body)) + body


def _resign_sha1(cert: x509.Certificate, signer: CertificateIssuerPrivateKeyTypes) -> bytes:
    """The same certificate, signed with sha1WithRSAEncryption."""
    if not isinstance(signer, rsa.RSAPrivateKey):
        raise ValueError("SHA-1 test certificates need an RSA issuer key (key='rsa2048')")
    tbs = cert.tbs_certificate_bytes
    if tbs.count(_SHA256_RSA) < 1:
        raise ValueError("expected a sha256WithRSAEncryption certificate to re-sign")
    # The TBS names its signature algorithm once, before the issuer; same length OIDs.
    tbs = tbs.replace(_SHA256_RSA, _SHA1_RSA, 1)
    signature = signer.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    algorithm = _tlv(0x30, _SHA1_RSA + b"\x05\x00")
    return _tlv(0x30, tbs + algorithm + _tlv(0x03, b"\x00" + signature))
