"""What the verification core catches: only the exceptions cryptography raises for bad
input. Bad input still yields a clear answer (``ValueError`` from ``Cert.from_der``, an
``unknown`` revocation status, a one-line CLI error); chainwatch's own mistakes (a wrong
argument) surface as exceptions instead of reading as "bad signature" or "not about this
certificate"."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from chainwatch.analysis.revocation import RevocationStatus, crl_status, ocsp_status
from chainwatch.model import Cert, signature_verifies

from .pki import CA, PKI, at

Cli = Callable[..., tuple[int, str, str]]
NOW = at("2026-03-01T12:00:00Z")
_CN = bytes.fromhex("0603550403")  # the commonName OID, as it precedes the value


def bit_string_cn(der: bytes, text: bytes) -> bytes:
    """``der`` with every commonName ``text`` (a UTF8String) re-tagged as a BIT STRING:
    cryptography decodes such a name attribute with ``TypeError``, not ``ValueError``."""
    utf8 = _CN + bytes([0x0C, len(text)]) + text
    assert utf8 in der
    return der.replace(utf8, _CN + bytes([0x03, len(text)]) + text)


def unknown_version(der: bytes) -> bytes:
    """``der`` claiming X.509 version 4 (cryptography raises ``InvalidVersion``)."""
    v3 = bytes.fromhex("a003020102")
    assert v3 in der
    return der.replace(v3, bytes.fromhex("a003020103"), 1)


def test_from_der_raises_value_error_for_an_unknown_version() -> None:
    der = unknown_version(PKI(now=NOW).root("Version Root").cert.der)
    with pytest.raises(ValueError, match=r"not an X\.509 v1, v2 or v3 certificate"):
        Cert.from_der(der)


def test_from_der_raises_value_error_for_an_undecodable_name() -> None:
    der = bit_string_cn(PKI(now=NOW).root("\x00ab").cert.der, b"\x00ab")
    with pytest.raises(ValueError, match="malformed name"):
        Cert.from_der(der)


def test_check_bundle_of_an_unknown_version_is_a_one_line_error(
    cli: Cli, tmp_path: Path
) -> None:
    bundle = tmp_path / "v4.der"
    bundle.write_bytes(unknown_version(PKI(now=NOW).root("Version Root").cert.der))
    code, _, err = cli("check-bundle", bundle)
    assert code == 3
    assert err.strip() == (
        f"chainwatch: error: {bundle}: DER certificate is malformed: not an X.509 v1, v2 "
        "or v3 certificate (3 is not a valid X509 version)"
    )
    assert "Traceback" not in err and "internal error" not in err


def test_a_crl_whose_issuer_name_cannot_be_decoded_is_unknown() -> None:
    pki = PKI(now=NOW)
    issuer = pki.root("\x00cd")
    leaf = issuer.leaf("www.example.com")
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.parsed.subject)
        .last_update(NOW - dt.timedelta(hours=1))
        .next_update(NOW + dt.timedelta(days=1))
        .sign(issuer.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    result = crl_status(bit_string_cn(crl, b"\x00cd"), leaf.cert, issuer.cert, at=NOW)
    assert result.status is RevocationStatus.UNKNOWN
    assert result.detail is not None and result.detail.startswith("the CRL does not parse")


def _ocsp(leaf: Cert, issuer: CA, *, include: Sequence[Cert] = ()) -> bytes:
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf.parsed, issuer=issuer.cert.parsed, algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.GOOD, this_update=NOW - dt.timedelta(hours=1),
            next_update=NOW + dt.timedelta(days=1), revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.NAME, issuer.cert.parsed)
    )
    if include:
        builder = builder.certificates([c.parsed for c in include])
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_an_ocsp_response_naming_an_undecodable_responder_is_unknown() -> None:
    pki = PKI(now=NOW)
    issuer = pki.root("\x00ef")
    leaf = issuer.leaf("www.example.com").cert
    der = bit_string_cn(_ocsp(leaf, issuer, include=[issuer.cert]), b"\x00ef")
    result = ocsp_status(der, leaf, issuer.cert, at=NOW)
    assert result.status is RevocationStatus.UNKNOWN
    assert result.detail and "signed by a responder" in result.detail


def test_a_wrong_argument_surfaces_instead_of_reading_as_a_bad_answer() -> None:
    """Handing the OCSP checks a CA object where its certificate belongs is chainwatch's
    mistake: it raises, where it used to read as "not about this certificate" and "bad
    signature" and hide the bug."""
    from chainwatch.analysis import revocation

    pki = PKI(now=NOW)
    issuer = pki.root("Responder Root")
    leaf = issuer.leaf("www.example.com").cert
    der = _ocsp(leaf, issuer)
    assert ocsp_status(der, leaf, issuer.cert, at=NOW).status is RevocationStatus.GOOD
    response = ocsp.load_der_ocsp_response(der)
    (single,) = response.responses
    assert revocation._about(single, leaf, issuer.cert)
    assert revocation._response_signature_valid(response, issuer.cert)
    with pytest.raises(AttributeError):
        revocation._about(single, leaf, cast(Cert, issuer))
    with pytest.raises(AttributeError):
        revocation._response_signature_valid(response, cast(Cert, issuer))


def test_a_wrong_argument_surfaces_instead_of_reading_as_a_bad_signature() -> None:
    pki = PKI(now=NOW)
    root = pki.root("Signer Root")
    leaf = root.leaf("www.example.com").cert
    key, tbs = root.cert.public_key, leaf.parsed.tbs_certificate_bytes
    algorithm = leaf.parsed.signature_hash_algorithm
    assert signature_verifies(key, leaf.parsed.signature, tbs, algorithm)
    assert not signature_verifies(key, b"\x30\x00", tbs, algorithm)  # bad input: "no"
    with pytest.raises(TypeError):
        signature_verifies(key, cast(bytes, leaf.parsed.signature.hex()), tbs, algorithm)
