"""Frozen values shared by every room: certificates, profiles, findings, reports, targets.

:mod:`chainwatch.model.values` holds the types, :mod:`chainwatch.model.bundle` turns bytes
(PEM, DER, PKCS#12) into :class:`Cert` values.
"""

from __future__ import annotations

from chainwatch.model.values import (
    LEGACY,
    MODERN,
    ONE_SECOND,
    UTC,
    Behaviour,
    Building,
    Cert,
    ClientHello,
    Finding,
    FindingCode,
    Handshake,
    NameKey,
    PathError,
    Profile,
    ProfileResult,
    RenewalPolicy,
    Report,
    Severity,
    Status,
    Store,
    Target,
    lenient,
    name_key,
    sha256_hex,
    signature_valid,
    signature_verifies,
)

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
    "NameKey",
    "PathError",
    "Profile",
    "ProfileResult",
    "RenewalPolicy",
    "Report",
    "Severity",
    "Status",
    "Store",
    "Target",
    "lenient",
    "name_key",
    "sha256_hex",
    "signature_valid",
    "signature_verifies",
]
