"""Frozen value types shared by every room of chainwatch.

Nothing here does I/O. A :class:`Cert` is parsed once from DER and then only read;
stores, profiles, findings and reports are plain immutable values that can be
rebuilt from the database or compared in tests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import cached_property
from typing import ClassVar, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from chainwatch.errors import EXIT_CRITICAL, EXIT_OK, EXIT_UNKNOWN, EXIT_WARNING

UTC = dt.UTC
ONE_SECOND = dt.timedelta(seconds=1)


class Severity(StrEnum):
    """How bad a finding is. Ordered: ``info < warning < critical``."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class Status(StrEnum):
    """Overall verdict of a report, with the Nagios/Icinga exit status it maps to."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def exit_code(self) -> int:
        return _STATUS_EXIT[self]

    @property
    def rank(self) -> int:
        """Badness for picking the worst of several statuses (unknown sorts as critical+1)."""
        return _STATUS_EXIT[self] if self is not Status.UNKNOWN else 3


_STATUS_EXIT = {
    Status.OK: EXIT_OK,
    Status.WARNING: EXIT_WARNING,
    Status.CRITICAL: EXIT_CRITICAL,
    Status.UNKNOWN: EXIT_UNKNOWN,
}


class PathError(StrEnum):
    """Why a profile trusts no path now (the JSON ``error`` field)."""

    NO_PATH = "no_path"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    BAD_SIGNATURE = "bad_signature"
    PURPOSE = "purpose"
    """The path is not allowed for TLS servers: a certificate's extendedKeyUsage lacks
    serverAuth (the leaf's, or a CA's for clients that check the whole path)."""
    OTHER = "other"


class FindingCode(StrEnum):
    """Every finding code of the DESIGN.md contract."""

    UNTRUSTED = "UNTRUSTED"
    LEAF_EXPIRED = "LEAF_EXPIRED"
    LEAF_NOT_YET_VALID = "LEAF_NOT_YET_VALID"
    HOSTNAME_MISMATCH = "HOSTNAME_MISMATCH"
    CHAIN_INCOMPLETE = "CHAIN_INCOMPLETE"
    KEY_MISMATCH = "KEY_MISMATCH"
    SELF_SIGNED_LEAF = "SELF_SIGNED_LEAF"
    EXPIRES_SOON = "EXPIRES_SOON"
    PROFILE_BREAKS = "PROFILE_BREAKS"
    EXPIRED_CERT_SENT = "EXPIRED_CERT_SENT"
    CHAIN_ORDER = "CHAIN_ORDER"
    CHAIN_UNUSED_CERT = "CHAIN_UNUSED_CERT"
    ROOT_SENT = "ROOT_SENT"
    WEAK_KEY = "WEAK_KEY"
    WEAK_SIGNATURE = "WEAK_SIGNATURE"
    REVOKED = "REVOKED"
    STALE_DEPLOYMENT = "STALE_DEPLOYMENT"
    CA_CHANGED = "CA_CHANGED"
    PROBE_FAILED = "PROBE_FAILED"
    RENEWAL_OVERDUE = "RENEWAL_OVERDUE"
    CHAIN_DIVERGES = "CHAIN_DIVERGES"
    """(info) two handshakes of one target, made with different ClientHellos for different
    populations, were served different chains."""
    REVOCATION_UNKNOWN = "REVOCATION_UNKNOWN"
    """An extension of the contract (info): revocation was checked, but neither the
    staple, an OCSP responder nor a CRL gave a usable answer (the message says why)."""


NameKey = tuple[tuple[str, str], ...]


def name_key(name: x509.Name) -> NameKey:
    """A comparison key for a distinguished name.

    RFC 5280 section 7.1 compares names after case folding and whitespace
    normalisation of string attributes; this is the cheap form of that rule
    used for issuer/subject matching.
    """
    out: list[tuple[str, str]] = []
    for rdn in name.rdns:
        for attr in sorted(rdn, key=lambda a: a.oid.dotted_string):
            value = attr.value
            text = value.hex() if isinstance(value, bytes) else " ".join(value.split()).casefold()
            out.append((attr.oid.dotted_string, text))
    return tuple(out)


@contextmanager
def lenient() -> Iterator[None]:
    """Silence cryptography's warnings about real-world rule breaking (an attribute longer
    than its upper bound, a non-positive serial): such certificates are in real trust
    stores and served chains, and chainwatch must still read them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


_WEAK_HASHES = frozenset({"sha1", "md5", "md2", "md4"})

_NETSCAPE_SGC = x509.ObjectIdentifier("2.16.840.1.113730.4.1")
_MICROSOFT_SGC = x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3")
_SERVER_AUTH_LEAF = frozenset(
    {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
)
_SERVER_AUTH_CA = _SERVER_AUTH_LEAF | {_NETSCAPE_SGC, _MICROSOFT_SGC}
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH.dotted_string: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING.dotted_string: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING.dotted_string: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string: "anyExtendedKeyUsage",
    _NETSCAPE_SGC.dotted_string: "nsSGC",
    _MICROSOFT_SGC.dotted_string: "msSGC",
}


@dataclass(frozen=True, eq=False)
class Cert:
    """One parsed X.509 certificate.

    Attributes:
        der: the exact DER bytes (as served or as stored).
        sha256: lowercase hex SHA-256 of ``der``; the identity used everywhere.
        parsed: the ``cryptography`` object, for signature checks and extensions.
        subject / issuer: RFC 4514 strings, for people.
        subject_key / issuer_key: normalised names, for matching.
        not_before / not_after: validity, timezone-aware UTC; ``not_after`` is inclusive.
    Two ``Cert`` values are equal when their DER is equal.

    The names are decoded (and a malformed one refused) when the certificate is parsed;
    their strings and keys are made when first read: of a trust store's hundred-odd
    anchors, path building reads the subject keys, and a report the names of the few on
    its paths (making them all was most of the time of loading the ``mozilla`` store).
    """

    der: bytes
    sha256: str
    parsed: x509.Certificate = field(repr=False)
    not_before: dt.datetime
    not_after: dt.datetime

    memo: ClassVar[CertMemo | None] = None
    """Where :meth:`from_der` remembers what it parsed: the default
    :class:`~chainwatch.analysis.Analyzer`'s certificate table, which
    :mod:`chainwatch.analysis` installs (``None``: every call parses)."""

    @classmethod
    def from_der(cls, der: bytes) -> Cert:
        """Parse DER. Raises ``ValueError`` when the bytes are not a certificate.

        Parsing the same DER again returns the same (immutable) object from
        :attr:`memo`, a bounded table of recently parsed certificates: a CA certificate
        served in thousands of chains is parsed, and its derived facts computed, once per
        stay in the table.
        """
        der = bytes(der)
        memo = Cert.memo
        if memo is None:
            return cls.parse(der)
        hit = memo.get(der)
        if hit is not None and type(hit) is cls:
            return hit
        return memo.put(der, cls.parse(der))

    @classmethod
    def parse(cls, der: bytes) -> Cert:
        """Parse DER without consulting any table. Raises ``ValueError`` when the bytes
        are not a certificate."""
        try:
            with lenient():
                return cls._build(x509.load_der_x509_certificate(der), bytes(der))
        except x509.InvalidVersion as exc:
            # Not a ValueError in cryptography; callers rely on the documented contract.
            raise ValueError(f"not an X.509 v1, v2 or v3 certificate ({exc})") from None

    @classmethod
    def from_x509(cls, cert: x509.Certificate) -> Cert:
        return cls._from_x509(cert, cert.public_bytes(serialization.Encoding.DER))

    @classmethod
    def _from_x509(cls, cert: x509.Certificate, der: bytes) -> Cert:
        with lenient():
            return cls._build(cert, der)

    @classmethod
    def _build(cls, cert: x509.Certificate, der: bytes) -> Cert:
        """The instance (the caller silences cryptography's warnings: :func:`lenient`).
        Raises ``ValueError`` for a name cryptography cannot decode."""
        try:
            subject, issuer = cert.subject, cert.issuer
        except TypeError as exc:
            # NameAttribute refuses a malformed attribute (a BIT STRING value under another
            # OID than x500UniqueIdentifier) with TypeError while the name is decoded.
            raise ValueError(f"malformed name ({exc})") from None
        del subject, issuer  # decoded to refuse a malformed name now; made again on use
        return cls(
            der=der,
            sha256=hashlib.sha256(der).hexdigest(),
            parsed=cert,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cert) and other.der == self.der

    def __hash__(self) -> int:
        return hash(self.der)

    def __repr__(self) -> str:
        return (f"Cert(der={self.der!r}, sha256={self.sha256!r}, subject={self.subject!r}, "
                f"issuer={self.issuer!r}, not_before={self.not_before!r}, "
                f"not_after={self.not_after!r})")

    # -- names, made on first use ---------------------------------------------------------

    @cached_property
    def subject(self) -> str:
        with lenient():
            return self.parsed.subject.rfc4514_string()

    @cached_property
    def issuer(self) -> str:
        with lenient():
            return self.parsed.issuer.rfc4514_string()

    @cached_property
    def subject_key(self) -> NameKey:
        with lenient():
            return name_key(self.parsed.subject)

    @cached_property
    def issuer_key(self) -> NameKey:
        with lenient():
            return name_key(self.parsed.issuer)

    # -- derived facts, computed on first use -------------------------------------------

    @cached_property
    def extensions(self) -> Mapping[str, x509.Extension[x509.ExtensionType]] | None:
        """Extensions by dotted OID, or ``None`` when the extension block is malformed
        (duplicate extensions, undecodable values)."""
        try:
            with lenient():
                return {ext.oid.dotted_string: ext for ext in self.parsed.extensions}
        except (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
            return None

    def ext(self, oid: x509.ObjectIdentifier) -> x509.Extension[x509.ExtensionType] | None:
        exts = self.extensions
        return None if exts is None else exts.get(oid.dotted_string)

    @cached_property
    def public_key(self) -> CertificatePublicKeyTypes | None:
        """The subject public key, loaded once (signature checks of every certificate it
        issued use it); ``None`` when unsupported or malformed."""
        try:
            return self.parsed.public_key()
        except (UnsupportedAlgorithm, ValueError):  # an unknown or malformed key
            return None

    @cached_property
    def spki(self) -> bytes:
        """DER SubjectPublicKeyInfo; with the subject, the identity of a trust anchor."""
        try:
            key = self.public_key
            if key is None:
                raise ValueError("no usable public key")
            return key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        except (ValueError, TypeError):
            # Unsupported or malformed key: fall back to the raw TBS so identity stays unique.
            return b"unparsed:" + self.sha256.encode()

    @cached_property
    def ski(self) -> bytes | None:
        ext = self.ext(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
        return ext.value.digest if ext is not None and isinstance(
            ext.value, x509.SubjectKeyIdentifier
        ) else None

    @cached_property
    def aki(self) -> bytes | None:
        ext = self.ext(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
        if ext is not None and isinstance(ext.value, x509.AuthorityKeyIdentifier):
            return ext.value.key_identifier
        return None

    @cached_property
    def basic_constraints(self) -> x509.BasicConstraints | None:
        ext = self.ext(ExtensionOID.BASIC_CONSTRAINTS)
        return ext.value if ext is not None and isinstance(
            ext.value, x509.BasicConstraints
        ) else None

    @property
    def is_ca(self) -> bool:
        bc = self.basic_constraints
        return bc is not None and bc.ca

    @property
    def self_issued(self) -> bool:
        """Subject equals issuer (RFC 5280 "self-issued"); says nothing about the key."""
        return self.subject_key == self.issuer_key

    @cached_property
    def self_signed(self) -> bool:
        """Self-issued and its signature verifies under its own key."""
        if not self.self_issued:
            return False
        if self.aki is not None and self.ski is not None and self.aki != self.ski:
            return False
        return signature_valid(self, self)

    @cached_property
    def signature_hash(self) -> str | None:
        """Name of the signature's hash (``sha256``, ``sha1``...), or ``None`` for EdDSA
        and algorithms cryptography does not know."""
        try:
            algo = self.parsed.signature_hash_algorithm
        except UnsupportedAlgorithm:  # an unknown signature OID
            return "unknown"
        return None if algo is None else algo.name

    @property
    def weak_signature(self) -> bool:
        return self.signature_hash in _WEAK_HASHES

    @cached_property
    def key_description(self) -> tuple[str, int]:
        """(algorithm, size in bits) of the subject public key; ``("unknown", 0)`` if unparsable."""
        key = self.public_key
        if key is None:
            return ("unknown", 0)
        if isinstance(key, rsa.RSAPublicKey):
            return ("RSA", key.key_size)
        if isinstance(key, ec.EllipticCurvePublicKey):
            return ("EC", key.curve.key_size)
        if isinstance(key, ed25519.Ed25519PublicKey):
            return ("Ed25519", 256)
        if isinstance(key, ed448.Ed448PublicKey):
            return ("Ed448", 456)
        if isinstance(key, dsa.DSAPublicKey):
            return ("DSA", key.key_size)
        return (type(key).__name__, 0)

    @property
    def weak_key(self) -> bool:
        algo, bits = self.key_description
        return (algo == "RSA" and bits < 2048) or (algo == "EC" and bits < 256) or algo == "DSA"

    @cached_property
    def dns_names(self) -> tuple[str, ...]:
        ext = self.ext(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        if ext is None or not isinstance(ext.value, x509.SubjectAlternativeName):
            return ()
        return tuple(ext.value.get_values_for_type(x509.DNSName))

    @cached_property
    def ip_addresses(self) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
        ext = self.ext(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        if ext is None or not isinstance(ext.value, x509.SubjectAlternativeName):
            return ()
        return tuple(
            ip
            for ip in ext.value.get_values_for_type(x509.IPAddress)
            if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
        )

    @property
    def has_san(self) -> bool:
        return self.ext(ExtensionOID.SUBJECT_ALTERNATIVE_NAME) is not None

    @cached_property
    def common_names(self) -> tuple[str, ...]:
        from cryptography.x509.oid import NameOID

        with lenient():
            attrs = self.parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return tuple(str(a.value) for a in attrs)

    @property
    def short_name(self) -> str:
        """The subject's CN when it has one (for tables), else the full subject."""
        return self.common_names[0] if self.common_names else self.subject

    @property
    def names(self) -> tuple[str, ...]:
        """Names the certificate covers: its SAN DNS names and IP addresses. Clients no
        longer fall back to the subject CN, so neither does chainwatch."""
        return self.dns_names + tuple(str(ip) for ip in self.ip_addresses)

    @cached_property
    def eku(self) -> tuple[x509.ObjectIdentifier, ...] | None:
        """The extendedKeyUsage purposes, ``None`` when the extension is absent."""
        ext = self.ext(ExtensionOID.EXTENDED_KEY_USAGE)
        if ext is None or not isinstance(ext.value, x509.ExtendedKeyUsage):
            return None
        return tuple(ext.value)

    @property
    def eku_text(self) -> str:
        """The extendedKeyUsage purposes by name, for messages (``emailProtection``)."""
        if self.eku is None:
            return "none"
        return ", ".join(_EKU_NAMES.get(o.dotted_string, o.dotted_string) for o in self.eku)

    @cached_property
    def server_auth_allowed(self) -> bool:
        """EKU absent, or listing serverAuth / anyExtendedKeyUsage (the rule for leaves)."""
        return self.eku is None or bool(set(self.eku) & _SERVER_AUTH_LEAF)

    @cached_property
    def ca_server_auth_allowed(self) -> bool:
        """As a CA on a TLS server's path: EKU absent, or listing serverAuth,
        anyExtendedKeyUsage, or one of the Server Gated Crypto purposes that OpenSSL
        (``XKU_SGC``) and Go (``ExtKeyUsage*ServerGatedCrypto``) take for serverAuth."""
        return self.eku is None or bool(set(self.eku) & _SERVER_AUTH_CA)

    def valid_at(self, at: dt.datetime) -> bool:
        return self.not_before <= at <= self.not_after

    @property
    def lifetime(self) -> dt.timedelta:
        return self.not_after - self.not_before + ONE_SECOND


class CertMemo(Protocol):
    """A table of parsed certificates by DER (what :attr:`Cert.memo` holds)."""

    def get(self, key: bytes) -> Cert | None: ...

    def put(self, key: bytes, value: Cert) -> Cert: ...


def signature_valid(child: Cert, issuer: Cert) -> bool:
    """True when ``child``'s signature verifies under ``issuer``'s public key.

    Uses cryptography's primitives directly rather than ``verify_directly_issued_by``
    because the latter refuses SHA-1 signatures, and chainwatch has to *see* SHA-1
    chains (to say ``WEAK_SIGNATURE`` and to model legacy clients that accept them).
    """
    cert = child.parsed
    key = issuer.public_key
    if key is None:
        return False
    try:
        algo = cert.signature_hash_algorithm
        params = cert.signature_algorithm_parameters
    except (UnsupportedAlgorithm, ValueError):  # an unknown algorithm, malformed parameters
        return False
    return signature_verifies(
        key, cert.signature, cert.tbs_certificate_bytes, algo,
        params if isinstance(params, padding.PSS) else None,
    )


def signature_verifies(
    key: object,
    signature: bytes,
    data: bytes,
    algorithm: hashes.HashAlgorithm | None,
    pss: padding.PSS | None = None,
) -> bool:
    """True when ``signature`` over ``data`` verifies under the public ``key`` with the
    hash ``algorithm`` (``None`` for EdDSA); ``pss``: RSA-PSS parameters (else PKCS#1 v1.5).

    The primitive under :func:`signature_valid`, shared with OCSP responses and CRLs,
    which are signed the same way and exist with SHA-1 signatures too.
    """
    try:
        if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
            return True
        if algorithm is None:
            return False
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, pss if pss is not None else padding.PKCS1v15(), algorithm)
            return True
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algorithm))
            return True
        if isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, data, algorithm)
            return True
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        # A bad signature, a hash the key type cannot use, malformed parameters: "no".
        # Anything else (a TypeError from a wrong argument) is chainwatch's bug: it surfaces.
        return False
    return False


@dataclass(frozen=True)
class Store:
    """A set of trust anchors with a name and where it came from.

    Attributes:
        name: the spec part that names it (``mozilla``, ``mozilla@2016-06-01``, ``file:ca.pem``).
        anchors: the anchor certificates, in the order the source lists them.
        source: provenance for people (``certifi 2026.10.18``, a file path...).
    """

    name: str
    anchors: tuple[Cert, ...]
    source: str = ""

    @cached_property
    def by_subject(self) -> Mapping[NameKey, tuple[Cert, ...]]:
        index: dict[NameKey, list[Cert]] = {}
        for cert in self.anchors:
            index.setdefault(cert.subject_key, []).append(cert)
        return {k: tuple(v) for k, v in index.items()}

    @cached_property
    def fingerprints(self) -> frozenset[str]:
        return frozenset(c.sha256 for c in self.anchors)

    @cached_property
    def identities(self) -> frozenset[tuple[NameKey, bytes]]:
        """(subject, key) pairs: RFC 5280 trust anchors are a name and a key."""
        return frozenset((c.subject_key, c.spki) for c in self.anchors)

    @cached_property
    def digest(self) -> str:
        """SHA-256 over the sorted anchor fingerprints: which exact set of anchors this is."""
        return hashlib.sha256("".join(sorted(self.fingerprints)).encode()).hexdigest()

    def contains(self, cert: Cert) -> bool:
        return cert.sha256 in self.fingerprints

    def __hash__(self) -> int:
        return hash((self.name, self.digest))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Store)
            and other.name == self.name
            and other.fingerprints == self.fingerprints
        )


@dataclass(frozen=True)
class Behaviour:
    """How a client population builds and judges a path: a small frozen value.

    The path builder and the rules read these fields; nothing compares a behaviour's
    name. :data:`MODERN` and :data:`LEGACY` are the two of the DESIGN.md contract; the
    named populations with their sources are in :mod:`chainwatch.model.behaviours`.

    Attributes:
        name: the ``BEHAVIOUR:`` prefix of a profile spec (``modern``, ``legacy``...).
        backtracking: every candidate path is searched, anchors tried first, and the
            profile trusts the chain when any one is valid; without it the builder
            follows the presented certificates first and judges the first path it builds
            (OpenSSL 1.0.x), never trying another when that one fails.
        anchor_expiry_checked: the anchor's validity period counts; when false, an
            anchor is a name and a key (RFC 5280 6.1.1 (d)) and its dates are ignored.
        intermediate_eku_enforced: a CA certificate below the anchor whose
            extendedKeyUsage lacks serverAuth (and anyExtendedKeyUsage) makes the path
            unusable for a TLS server.
        anchor_eku_enforced: the same rule applied to the anchor itself.
        sha1_accepted: SHA-1 (and MD5) signatures below the anchor are accepted.
        weak_keys_accepted: RSA keys under 2048 bits, EC keys under 256 bits, DSA keys and
            EC keys with explicit curve parameters are accepted.
        aia_fetching: a missing intermediate is fetched from the caIssuers URL (the
            default of :attr:`Profile.aia` for profiles of this behaviour).
        max_depth: the most certificates a path may hold, leaf and anchor included; a
            longer path is refused ("path longer than N").
        summary: one line for people.
        sources: where each value comes from (a citation per line).
    Two behaviours are equal when their name and values are; summary and sources are
    documentation.
    """

    name: str
    backtracking: bool
    anchor_expiry_checked: bool
    intermediate_eku_enforced: bool
    anchor_eku_enforced: bool
    sha1_accepted: bool
    weak_keys_accepted: bool
    aia_fetching: bool
    max_depth: int
    summary: str = field(default="", compare=False)
    sources: tuple[str, ...] = field(default=(), compare=False, repr=False)
    _hash: int = field(default=0, init=False, compare=False, repr=False)

    MODERN: ClassVar[Behaviour]
    LEGACY: ClassVar[Behaviour]

    def __post_init__(self) -> None:
        if self.max_depth < 1:
            raise ValueError(f"behaviour {self.name!r}: max_depth must be at least 1")
        # Behaviours are parts of memo keys: hash them once, not on every lookup.
        object.__setattr__(self, "_hash", hash((self.name, *self.values().values())))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[Behaviour], tuple[object, ...]]:
        # Rebuilt through the constructor: a pickled hash would be another process's
        # (string hashes are salted per process).
        return (Behaviour, tuple(getattr(self, f.name) for f in fields(self) if f.init))

    def values(self) -> dict[str, bool | int]:
        """The fields that change a verdict, by name (for tables and JSON)."""
        return {
            "backtracking": self.backtracking,
            "anchor_expiry_checked": self.anchor_expiry_checked,
            "intermediate_eku_enforced": self.intermediate_eku_enforced,
            "anchor_eku_enforced": self.anchor_eku_enforced,
            "sha1_accepted": self.sha1_accepted,
            "weak_keys_accepted": self.weak_keys_accepted,
            "aia_fetching": self.aia_fetching,
            "max_depth": self.max_depth,
        }


MODERN = Behaviour(
    name="modern",
    backtracking=True,
    anchor_expiry_checked=True,
    intermediate_eku_enforced=True,
    anchor_eku_enforced=True,
    sha1_accepted=False,
    weak_keys_accepted=False,
    aia_fetching=False,
    max_depth=10,
    summary="OpenSSL >= 1.1.0, Go and browsers without AIA fetching: every path searched, "
    "anchors first; the whole path must allow serverAuth",
    sources=(
        "backtracking, anchors first: OpenSSL 1.1.0 X509_V_FLAG_TRUSTED_FIRST default and "
        "the rewritten build_chain (crypto/x509/x509_vfy.c); Go crypto/x509 "
        "Certificate.Verify builds every chain",
        "EKU on every CA, the anchor included: OpenSSL >= 1.1.0 check_chain_extensions "
        "runs check_purpose on each certificate of the chain; a trusted one is exempt only "
        "through auxiliary trust settings (a TRUSTED CERTIFICATE), which a CA file and "
        "certifi do not carry (checked with OpenSSL 3.0.19: 'openssl verify -purpose "
        "sslserver' fails at depth 1 for an emailProtection-only intermediate and at "
        "depth 2 for an emailProtection-only root); Go checkChainForKeyUsage walks "
        "every certificate of the chain, root included "
        "(https://github.com/golang/go/blob/master/src/crypto/x509/verify.go)",
        "SHA-1 and weak keys refused: Chrome 56 and Firefox 51 (January 2017) and Go 1.18 refuse "
        "SHA-1 certificate signatures; 2048-bit RSA minimum of the CA/Browser Forum "
        "Baseline Requirements",
        "max depth 10 certificates: chainwatch's own bound on path search (OpenSSL's "
        "default verify depth is 100 intermediates; mozilla::pkix and rustls-webpki stop "
        "at 6 intermediates)",
    ),
)
"""DESIGN.md ``modern``."""

LEGACY = Behaviour(
    name="legacy",
    backtracking=False,
    anchor_expiry_checked=True,
    intermediate_eku_enforced=True,
    anchor_eku_enforced=False,
    sha1_accepted=True,
    weak_keys_accepted=True,
    aia_fetching=False,
    max_depth=101,
    summary="OpenSSL 1.0.x: presented certificates first, the first path built is the "
    "one judged; what broke on 2020-05-30 (AddTrust) and 2021-09-30 (DST Root CA X3)",
    sources=(
        "untrusted-first, no backtracking: OpenSSL 1.0.2 X509_verify_cert follows "
        "ctx->untrusted before the store; the 'alternative chains' retry (1.0.2b) only "
        "when no trusted issuer was found",
        "EKU on presented CAs only: OpenSSL 1.0.2 check_chain_extensions loops "
        "'for (i = 0; i < ctx->last_untrusted; i++)' (\"Check all untrusted "
        "certificates\"), so a certificate taken from the store is never purpose-checked",
        "anchor expiry checked: OpenSSL 1.0.x internal_verify checks the validity of every "
        "certificate of the chain, the trusted root included (the AddTrust outage)",
        "SHA-1 and small keys accepted: OpenSSL 1.0.x has no security level",
        "max depth 101 certificates: X509_VERIFY_PARAM default depth 100, the chain "
        "growing while 'depth >= num' (leaf plus 100)",
    ),
)
"""DESIGN.md ``legacy``: OpenSSL 1.0.x."""

Behaviour.MODERN = MODERN
Behaviour.LEGACY = LEGACY

Building = Behaviour
"""The former name of :class:`Behaviour`, kept for callers of the two-value enum it
replaced: ``Building.MODERN`` and ``Building.LEGACY`` are the same values."""


TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
"""The protocol versions a ClientHello may be capped at, oldest first."""
SIGNATURE_KINDS = ("rsa", "ecdsa")


@dataclass(frozen=True)
class ClientHello:
    """What a population's clients offer in their handshake, as far as it decides which
    chain a server sends (DESIGN.md "What each population is served").

    Attributes:
        max_version: the newest protocol version offered (``TLSv1.2``), or ``None``.
        signature: the only server signature algorithm family accepted, ``rsa`` or
            ``ecdsa`` (TLS 1.2 cipher suites and signature algorithms restricted to it, so
            a dual-certificate server picks that certificate), or ``None``.
    """

    max_version: str | None = None
    signature: str | None = None

    def __post_init__(self) -> None:
        if self.max_version is not None and self.max_version not in TLS_VERSIONS:
            raise ValueError(f"max_version must be one of {', '.join(TLS_VERSIONS)}")
        if self.signature is not None and self.signature not in SIGNATURE_KINDS:
            raise ValueError(f"signature must be one of {', '.join(SIGNATURE_KINDS)}")

    @property
    def label(self) -> str:
        """``TLSv1.2/rsa``, ``ecdsa``, ``default`` for people and findings."""
        parts = [p for p in (self.max_version, self.signature) if p]
        return "/".join(parts) or "default"

    def as_dict(self) -> dict[str, str | None]:
        return {"max_version": self.max_version, "signature": self.signature}


@dataclass(frozen=True)
class Profile:
    """A client population: trust anchors plus path-building behaviour.

    ``spec`` is what the user wrote (``legacy:mozilla@2016-06-01``) or the inventory name;
    it is how reports refer to the profile. ``building`` is the :class:`Behaviour`.
    ``aia``: the clients complete a chain whose intermediate is not served by fetching it
    from the caIssuers URL of the certificate's Authority Information Access extension,
    as most browsers do (OpenSSL, Go, Java and Firefox do not); path building may then use
    the certificates the probe layer fetched.
    """

    spec: str
    store: Store
    building: Behaviour = MODERN
    aia: bool = False
    client_hello: ClientHello | None = None
    """The handshake this population makes, when it differs from the probe's default
    (inventory ``client_hello``): the probe makes one handshake per distinct value and the
    profile is judged on the chain its own handshake was served."""

    @property
    def legacy(self) -> bool:
        """The building follows the presented chain and never backtracks (OpenSSL 1.0.x)."""
        return not self.building.backtracking


@dataclass(frozen=True)
class Finding:
    """One observation about a chain. ``cert`` is the SHA-256 of the certificate it is
    about, ``profile`` the profile spec it concerns; either may be ``None``."""

    code: FindingCode
    severity: Severity
    message: str
    profile: str | None = None
    cert: str | None = None


@dataclass(frozen=True)
class ProfileResult:
    """A profile's verdict at ``at``.

    Attributes:
        profile: the profile spec.
        trusted: whether at least one acceptable path is valid at ``at`` (legacy: the one path).
        error: why not, when not trusted.
        reason: one human sentence explaining ``error`` (names the certificate at fault).
        path: SHA-256 fingerprints leaf → anchor of the path reported (the trusted one,
            or the closest failing one; empty when there is no path at all).
        breaks_at: first instant ≥ ``at`` at which the profile stops trusting the chain;
            ``None`` when it is untrusted already.
        all_paths: every candidate path (leaf → anchor) the builder found, for findings.
    """

    profile: str
    trusted: bool
    error: PathError | None
    reason: str | None
    path: tuple[str, ...]
    breaks_at: dt.datetime | None
    all_paths: tuple[tuple[str, ...], ...] = ()
    dead_end: str | None = None
    leaf: str | None = None
    """SHA-256 of the leaf this profile was judged on, set when the target was probed with
    more than one ClientHello (the report's ``chain`` is then the default handshake's)."""


@dataclass(frozen=True)
class RenewalPolicy:
    """When a served leaf is expected to have been renewed (DESIGN.md, ``RENEWAL_OVERDUE``).

    ``renew_at`` is not_before + ``fraction`` of the lifetime (default 2/3), or ``before``
    the expiry when that is set, or the start of the ACME Renewal Information window
    (RFC 9773) when one is known; the leaf is overdue ``grace`` (a fraction of its
    lifetime, default 10%) after that (after the window's end for ARI).
    """

    fraction: float = 2 / 3
    before: dt.timedelta | None = None
    grace: float = 0.10
    window: tuple[dt.datetime, dt.datetime] | None = None

    def renew_at(self, leaf: Cert) -> dt.datetime:
        return self.renew_at_dates(leaf.not_before, leaf.not_after)

    def renew_at_dates(self, not_before: dt.datetime, not_after: dt.datetime) -> dt.datetime:
        """:meth:`renew_at` of a leaf known by its validity dates only (a stored row)."""
        if self.window is not None:
            return self.window[0]
        if self.before is not None:
            return not_after - self.before
        return not_before + (not_after - not_before + ONE_SECOND) * self.fraction

    def overdue_at(self, leaf: Cert) -> dt.datetime:
        base = self.window[1] if self.window is not None else self.renew_at(leaf)
        return base + leaf.lifetime * self.grace


FILE_PREFIX = "file:"


@dataclass(frozen=True)
class Target:
    """What is watched: one address of an endpoint (``ip`` set), an endpoint across all
    its addresses (``ip`` None), or a certificate file (:meth:`file`). The one identity
    type: observations, stored rows, scheduler slots and alerts all name what they are
    about with it; :attr:`key` is its text form (stored as an alert's target key, the
    scheduler's slot) and :meth:`from_key` reads it back.

    Attributes:
        host: host name (ASCII form) or IP literal; ``file:PATH`` for a file.
        port: TCP port; 0 for a file.
        ip: the address probed; ``None``: every address ``host`` resolves to.
        sni: server name sent, when it differs from ``host``.
        starttls: upgrade protocol (a :class:`~chainwatch.model.names.StartTLS` value), or
            ``None`` for TLS from the first byte.
    """

    host: str
    port: int = 443
    ip: str | None = None
    sni: str | None = None
    starttls: str | None = None

    @classmethod
    def file(cls, path: object) -> Target:
        """A certificate file watched by the inventory's ``files:``."""
        return cls(host=f"{FILE_PREFIX}{path}", port=0)

    @property
    def is_file(self) -> bool:
        return self.port == 0 and self.host.startswith(FILE_PREFIX)

    @property
    def path(self) -> str | None:
        """The file's path, for a file target."""
        return self.host[len(FILE_PREFIX):] if self.is_file else None

    @property
    def endpoint(self) -> Target:
        """The endpoint this address belongs to: the same target without ``ip``."""
        return self if self.ip is None else Target(self.host, self.port, None, self.sni,
                                                   self.starttls)

    @property
    def key(self) -> str:
        """The endpoint's identity as text, shared by every address behind it:
        ``host:port``, ``/starttls`` and ``#sni`` when they apply; ``file:PATH``."""
        if self.is_file:
            return self.host
        key = f"{self.host}:{self.port}"
        if self.starttls:
            key += f"/{self.starttls}"
        if self.sni and self.sni != self.host:
            key += f"#{self.sni}"
        return key

    @classmethod
    def from_key(cls, key: str) -> Target | None:
        """The endpoint (or file) a :attr:`key` names; ``None`` for other subjects
        (``watchdog:...``) and text that is no key."""
        if key.startswith(FILE_PREFIX):
            return cls.file(key[len(FILE_PREFIX):])
        rest, _, sni = key.partition("#")
        rest, _, starttls = rest.partition("/")
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit() or key.startswith("watchdog:"):
            return None
        return cls(host=host, port=int(port), sni=sni or None, starttls=starttls or None)


@dataclass(frozen=True)
class Handshake:
    """One of several handshakes of a target: the ClientHello (``None``: the probe's
    default), the chain it was served (SHA-256, leaf first; empty when it failed), the
    profiles judged on it, and the failure message when it failed."""

    client_hello: ClientHello | None
    chain: tuple[str, ...]
    profiles: tuple[str, ...]
    error: str | None = None


@dataclass(frozen=True)
class Report:
    """The answer for one chain (or one endpoint). Serialised as the schema-1 JSON."""

    status: Status
    evaluated_at: dt.datetime
    host: str | None
    breaks_at: dt.datetime | None
    days_left: int | None
    chain: tuple[Cert, ...]
    profiles: tuple[ProfileResult, ...]
    findings: tuple[Finding, ...]
    target: Target | None = None
    handshakes: tuple[Handshake, ...] = ()
    """When the target was probed with more than one ClientHello: what each was served."""

    def with_target(self, target: Target) -> Report:
        from dataclasses import replace

        return replace(self, target=target)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = [
    "LEGACY",
    "MODERN",
    "ONE_SECOND",
    "UTC",
    "Behaviour",
    "Building",
    "Cert",
    "ClientHello",
    "Finding",
    "FindingCode",
    "Handshake",
    "PathError",
    "Profile",
    "ProfileResult",
    "Report",
    "Severity",
    "Status",
    "Store",
    "Target",
    "name_key",
    "signature_valid",
    "signature_verifies",
]
