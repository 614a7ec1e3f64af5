"""Frozen values shared by every room: certificates, profiles, findings, reports, targets.

:mod:`chainwatch.model.values` holds the types, :mod:`chainwatch.model.bundle` turns bytes
(PEM, DER, PKCS#12) into :class:`Cert` values.
"""

from __future__ import annotations

from chainwatch.model.values import (
    ONE_SECOND,
    UTC,
    Building,
    Cert,
    Finding,
    FindingCode,
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
    clear_parsed,
    lenient,
    name_key,
    sha256_hex,
    signature_valid,
    signature_verifies,
)

__all__ = [
    "ONE_SECOND",
    "UTC",
    "Building",
    "Cert",
    "Finding",
    "FindingCode",
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
    "clear_parsed",
    "lenient",
    "name_key",
    "sha256_hex",
    "signature_valid",
    "signature_verifies",
]
