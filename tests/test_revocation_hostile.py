"""OCSP responses and CRLs with hostile names: the verdict's detail stays one printable
line and no library warning escapes (found by fuzzing the revocation answer handling;
the inputs are in ``tests/fuzz/corpus/revocation/crash-*``)."""

from __future__ import annotations

import datetime as dt
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from chainwatch.analysis.revocation import RevocationStatus, crl_status, ocsp_status

from .pki import PKI, at

NOW = at("2026-03-01T12:00:00Z")
HOUR = dt.timedelta(hours=1)
CN, COUNTRY = bytes.fromhex("550403"), bytes.fromhex("550406")

pki = PKI(now=NOW)
issuer = pki.root("Hostile Root").intermediate("Hostile CA")
leaf = issuer.leaf("app.example.com")


def crl(name: x509.Name) -> bytes:
    built = (x509.CertificateRevocationListBuilder().issuer_name(name)
             .last_update(NOW - HOUR).next_update(NOW + 24 * HOUR)
             .sign(issuer.key, hashes.SHA256()))
    return built.public_bytes(serialization.Encoding.DER)


def as_country(der: bytes) -> bytes:
    """The first commonName attribute made a countryName (whose length must be 2)."""
    i = der.index(CN)
    return der[:i] + COUNTRY + der[i + len(CN):]


def quietly(call: object) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert callable(call)
        call()
    return caught


def test_a_crl_issuer_name_with_a_line_break_is_shown_on_one_line() -> None:
    der = crl(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Evil\nCA")]))
    verdict = crl_status(der, leaf.cert, issuer.cert, at=NOW)
    assert verdict.status is RevocationStatus.UNKNOWN and verdict.detail is not None
    assert verdict.detail.isprintable(), verdict.detail
    assert "the CRL is issued by CN=Evil\\nCA, not by the leaf's issuer" in verdict.detail


def test_odd_names_in_a_crl_or_an_ocsp_response_raise_no_warning() -> None:
    bad_crl = as_country(crl(issuer.cert.parsed.subject))
    assert quietly(lambda: crl_status(bad_crl, leaf.cert, issuer.cert, at=NOW)) == []
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(cert=leaf.cert.parsed, issuer=issuer.cert.parsed, algorithm=hashes.SHA1(),
                      cert_status=ocsp.OCSPCertStatus.GOOD, this_update=NOW - HOUR,
                      next_update=NOW + 24 * HOUR, revocation_time=None, revocation_reason=None)
        .responder_id(ocsp.OCSPResponderEncoding.NAME, issuer.cert.parsed)
        .sign(issuer.key, hashes.SHA256())
    )
    bad_ocsp = as_country(response.public_bytes(serialization.Encoding.DER))
    caught = quietly(lambda: ocsp_status(bad_ocsp, leaf.cert, issuer.cert, at=NOW))
    assert caught == [], [str(w.message) for w in caught]
