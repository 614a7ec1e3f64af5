"""Named client behaviours: how a population builds and judges paths, with sources.

A profile spec is ``BEHAVIOUR:STORE`` (``modern`` when omitted): ``legacy:mozilla@2016-06-01``,
``android:mozilla``, ``java:file:truststore.pem``. Each behaviour is a frozen
:class:`~chainwatch.model.Behaviour` whose values are stated from public sources, one
citation per value in ``sources``; where chainwatch could run the client itself (OpenSSL
3.0.19, OpenJDK 17.0.15 and 25) the source says what that run showed.

``chainwatch stores --behaviours`` prints this registry (:func:`describe`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chainwatch.errors import ProfileError
from chainwatch.model import LEGACY, MODERN, Behaviour

ANDROID = Behaviour(
    name="android",
    backtracking=True,
    anchor_expiry_checked=False,
    intermediate_eku_enforced=False,
    anchor_eku_enforced=False,
    sha1_accepted=False,
    weak_keys_accepted=True,
    aia_fetching=False,
    max_depth=10,
    summary="Android's platform verifier (Conscrypt's TrustManagerImpl): searches like "
    "modern, but ignores a trust anchor's dates and checks only the leaf's EKU",
    sources=(
        "anchor expiry not checked: Let's Encrypt, \"Extending Android Device Compatibility "
        "for Let's Encrypt Certificates\", 2020-12-21 "
        "(https://letsencrypt.org/2020/12/21/extending-android-compatibility.html): \"This "
        "solution works because Android intentionally does not enforce the expiration "
        "dates of certificates used as trust anchors\" - why the DST Root CA X3 "
        "cross-sign of ISRG Root X1 kept Android < 7.1.1 working after 2021-09-30",
        "backtracking, anchors first: Conscrypt TrustManagerImpl.checkTrustedRecursive tries "
        "the trust anchors that issued the current certificate, then the presented ones "
        "(skipping expired ones), and backtracks when a candidate chain fails "
        "(https://github.com/google/conscrypt, org/conscrypt/TrustManagerImpl.java); "
        "older releases ordered the presented chain instead",
        "EKU on the leaf only: TrustManagerImpl's ExtendedKeyUsagePKIXCertPathChecker "
        "(\"We only want to validate the EKU on the leaf certificate\"); the anchor is a "
        "java.security.cert.TrustAnchor, outside the validated CertPath",
        "SHA-1 refused: Conscrypt ChainStrengthAnalyzer's SIGNATURE_ALGORITHM_OID_BLACKLIST "
        "lists sha1WithRSAEncryption, dsa-with-sha1 and ecdsa-with-SHA1 in current releases "
        "(older ones listed only MD2, MD4 and MD5)",
        "weak keys accepted: ChainStrengthAnalyzer's minimums are 1024-bit RSA and DSA and a "
        "160-bit EC field, so the keys modern refuses are taken (smaller ones, which no CA "
        "issues, are not modelled)",
        "no AIA fetching and max depth 10: TrustManagerImpl completes chains only from "
        "intermediates it cached from earlier connections; no depth limit is documented, "
        "so chainwatch's own bound applies",
    ),
)
"""Android's system TLS verification (apps using the platform ``TrustManager``)."""

JAVA = Behaviour(
    name="java",
    backtracking=True,
    anchor_expiry_checked=False,
    intermediate_eku_enforced=False,
    anchor_eku_enforced=False,
    sha1_accepted=True,
    weak_keys_accepted=True,
    aia_fetching=False,
    max_depth=11,
    summary="The JDK's default TrustManager (SunJSSE, PKIX): ignores a trust anchor's dates "
    "and every CA's EKU; at most 10 certificates sent",
    sources=(
        "backtracking: the PKIX CertPathBuilder (sun.security.provider.certpath."
        "SunCertPathBuilder) searches depth-first and backtracks; checked with OpenJDK "
        "17.0.15 and 25: checkServerTrusted trusts a chain whose presented cross-sign has "
        "expired through the anchor that issued the intermediate",
        "anchor expiry not checked: a java.security.cert.TrustAnchor is a name and a key "
        "(RFC 5280 6.1.1 (d)) and is not part of the validated CertPath; checked with "
        "OpenJDK 17.0.15 and 25: checkServerTrusted trusts a chain whose only anchor "
        "expired the day before",
        "EKU of CAs not checked: sun.security.validator.EndEntityChecker checks the end "
        "entity's extendedKeyUsage only; checked with OpenJDK 17.0.15 and 25: an "
        "emailProtection-only intermediate, and an emailProtection-only anchor, are trusted",
        "SHA-1 and weak keys accepted: jdk.certpath.disabledAlgorithms is \"MD2, MD5, SHA1 "
        "jdkCA & usage TLSServer, RSA keySize < 1024, DSA keySize < 1024, EC keySize < 224\" "
        "(java.security of OpenJDK 17 and 25): SHA-1 is refused only below a root of the "
        "JDK's own cacerts, so a private PKI's SHA-1 chain is taken, and so are 1024-bit "
        "RSA keys",
        "no AIA fetching: com.sun.security.enableAIAcaIssuers is false by default (Java PKI "
        "Programmer's Guide)",
        "max depth 11: jdk.tls.maxCertificateChainLength allows 10 certificates in the "
        "server's Certificate message; checked with OpenJDK 17.0.15 and 25 over TLS with 10 "
        "intermediates: \"The certificate chain length (11) exceeds the maximum allowed "
        "length (10)\"; with the anchor, which servers do not send, a path holds 11",
    ),
)
"""Java applications using the JDK's default ``TrustManagerFactory`` (PKIX)."""

BEHAVIOURS: Mapping[str, Behaviour] = {b.name: b for b in (MODERN, LEGACY, ANDROID, JAVA)}
"""Every named behaviour by the name a profile spec uses."""

STORE_PREFIXES = frozenset({"file", "jks", "pkcs12", "dir", "mozilla", "system"})
"""Store spec prefixes no behaviour may be named after (``NAME:`` would be ambiguous)."""


def behaviour(name: str) -> Behaviour:
    """The behaviour called ``name``. Raises ``ProfileError`` naming the known ones."""
    found = BEHAVIOURS.get(name.strip().lower())
    if found is None:
        raise ProfileError(
            f"unknown behaviour {name!r}: expected one of {', '.join(BEHAVIOURS)}"
        )
    return found


def describe() -> list[dict[str, Any]]:
    """The registry as plain data: name, summary, values and sources of each behaviour
    (what ``chainwatch stores --behaviours --format json`` prints)."""
    return [
        {"name": b.name, "summary": b.summary, **b.values(), "sources": list(b.sources)}
        for b in BEHAVIOURS.values()
    ]


_COLUMNS = (
    ("backtracking", "backtrack"),
    ("anchor_expiry_checked", "anchor expiry"),
    ("intermediate_eku_enforced", "CA EKU"),
    ("anchor_eku_enforced", "anchor EKU"),
    ("sha1_accepted", "SHA-1 ok"),
    ("weak_keys_accepted", "weak keys ok"),
    ("aia_fetching", "AIA"),
    ("max_depth", "max depth"),
)


def text_lines() -> list[str]:
    """The registry as text: a table of the values, then each behaviour's sources."""

    def cell(value: object) -> str:
        return ("yes" if value else "no") if isinstance(value, bool) else str(value)

    widths = [max(len(title), 3) for _, title in _COLUMNS]
    lines = [
        "Client behaviours, use as BEHAVIOUR:STORE (modern when omitted):",
        "  " + f"{'name':<9}" + "  ".join(f"{t:>{w}}" for (_, t), w in zip(_COLUMNS, widths,
                                                                         strict=True)),
    ]
    for b in BEHAVIOURS.values():
        values = b.values()
        lines.append("  " + f"{b.name:<9}" + "  ".join(
            f"{cell(values[field]):>{w}}" for (field, _), w in zip(_COLUMNS, widths, strict=True)
        ))
    for b in BEHAVIOURS.values():
        lines.append("")
        lines.append(f"{b.name}: {b.summary}")
        lines.extend(f"  - {source}" for source in b.sources)
    return lines


__all__ = ["ANDROID", "BEHAVIOURS", "JAVA", "LEGACY", "MODERN", "behaviour", "describe",
           "text_lines"]
