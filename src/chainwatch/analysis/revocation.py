"""Revocation: what an OCSP response or a CRL says about the leaf, verified.

Pure: the bytes come from the probe layer (a stapled response, or one it fetched), the
instant of evaluation is a parameter, and the answer is a :class:`Revocation` value.
Nothing here raises on hostile or broken input; an answer that cannot be trusted is
``unknown`` with a ``detail`` saying why. Only what ``cryptography`` raises for bad
input is caught (``ValueError`` for malformed DER and for fields of an unsuccessful
response, ``UnsupportedAlgorithm`` for unknown hash or signature algorithms,
``InvalidVersion``, ``ExtensionNotFound`` and ``DuplicateExtension`` where it documents
them); anything else is chainwatch's own bug and surfaces rather than reading as "bad
signature" or "not about this certificate". (*) Where a distinguished name is decoded (a
CRL's issuer, an OCSP ResponderID) ``TypeError`` is caught too: cryptography's
``NameAttribute`` raises it for a malformed attribute (a BIT STRING value under another
OID than x500UniqueIdentifier) while decoding; ``Cert`` turns the same case into
``ValueError`` for certificates.

What is checked, for OCSP (RFC 6960):

- the response is ``successful`` and holds a single response for *this* leaf: its serial,
  and the hashes of its issuer's name and key (any hash the response chose);
- its signature verifies under the issuer's key, or under a delegated responder
  certificate included in the response that the issuer signed, that carries the
  ``OCSPSigning`` extended key usage, is valid at ``at`` and is the responder the
  response names (by name or key hash). SHA-1 signatures are accepted: they still exist;
- ``thisUpdate`` is not in the future and ``nextUpdate`` not in the past (both with
  :data:`CLOCK_SKEW` of slack); a response without ``nextUpdate`` is fresh for
  :data:`MAX_AGE_WITHOUT_NEXT_UPDATE`.

For a CRL (RFC 5280): issued and signed by the leaf's issuer (indirect CRLs are not
supported), current in the same sense, and whether the leaf's serial is listed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from chainwatch.model import Cert, lenient, name_key, signature_valid, signature_verifies
from chainwatch.model.times import iso

CLOCK_SKEW = dt.timedelta(minutes=5)
"""Slack for a responder's clock that runs a little ahead or behind."""

MAX_AGE_WITHOUT_NEXT_UPDATE = dt.timedelta(days=7)
"""How long a response that omits ``nextUpdate`` is taken as current (the CA/Browser
Forum requires OCSP responses to be valid for at most 10 days, refreshed well before)."""


class RevocationStatus(StrEnum):
    """What is known about the leaf."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


class RevocationSource(StrEnum):
    """Where an answer came from."""

    STAPLE = "staple"  # the OCSP response the server stapled to the handshake
    OCSP = "ocsp"  # an OCSP responder named in the leaf's Authority Information Access
    CRL = "crl"  # a CRL named in the leaf's CRL Distribution Points

    def describe(self, url: str | None) -> str:
        if self is RevocationSource.STAPLE:
            return "the stapled OCSP response"
        if self is RevocationSource.OCSP:
            return f"the OCSP responder {url}" if url else "an OCSP responder"
        return f"the CRL {url}" if url else "a CRL"


@dataclass(frozen=True)
class Revocation:
    """The revocation status of one leaf certificate.

    Attributes:
        status: ``good``, ``revoked`` or ``unknown`` (no usable answer).
        source: the kind of answer the status rests on; for ``unknown``, the source whose
            answer was unusable, or ``None`` when no source gave an answer at all.
        url: the responder or CRL URL of that answer (``None`` for a staple).
        revoked_at: when the leaf was revoked (``revoked`` only).
        reason: the revocation reason as the CA states it (``keyCompromise``,
            ``superseded``...), ``None`` when it gives none.
        detail: for ``unknown``, why: no responder, timeout, bad signature, stale
            response... (every source tried, ``; ``-separated); a note otherwise.
        this_update / next_update: the answer's validity window, when it has one.
    """

    status: RevocationStatus
    source: RevocationSource | None = None
    url: str | None = None
    revoked_at: dt.datetime | None = None
    reason: str | None = None
    detail: str | None = None
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None

    @property
    def definitive(self) -> bool:
        """A ``good`` or ``revoked`` answer (no further source needs asking)."""
        return self.status is not RevocationStatus.UNKNOWN

    @property
    def where(self) -> str:
        """The answer's source in words (``the OCSP responder http://...``)."""
        return "no source" if self.source is None else self.source.describe(self.url)

    @classmethod
    def unknown(
        cls, detail: str, source: RevocationSource | None = None, url: str | None = None
    ) -> Revocation:
        """Why there is no usable answer, as one printable line: names in it come from the
        answer (a CRL's issuer, a responder's subject) and may hold line breaks."""
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in detail)
        return cls(RevocationStatus.UNKNOWN, source=source, url=url, detail=shown)


# -- OCSP ----------------------------------------------------------------------------------


def ocsp_request(leaf: Cert, issuer: Cert) -> bytes:
    """The DER OCSP request for ``leaf`` (SHA-1 CertID and no nonce, as RFC 5019's
    lightweight profile asks: every responder understands it and answers are cacheable)."""
    from cryptography.hazmat.primitives import serialization

    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf.parsed, issuer.parsed, hashes.SHA1())
        .build()
    )
    return request.public_bytes(serialization.Encoding.DER)


def ocsp_next_update(der: bytes) -> dt.datetime | None:
    """The ``nextUpdate`` of an OCSP response's first single response (for caching);
    ``None`` when it has none or does not parse."""
    try:
        with lenient():
            response = ocsp.load_der_ocsp_response(der)
            if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
                return None
            for single in response.responses:
                return single.next_update_utc
    except (ValueError, UnsupportedAlgorithm):  # an unreadable response: no caching hint
        return None
    return None


def ocsp_status(
    der: bytes,
    leaf: Cert,
    issuer: Cert,
    *,
    at: dt.datetime,
    source: RevocationSource = RevocationSource.OCSP,
    url: str | None = None,
) -> Revocation:
    """What the OCSP response ``der`` says about ``leaf`` (issued by ``issuer``) at ``at``,
    after checking that the response is about this leaf, authentic and current."""

    def unknown(why: str) -> Revocation:
        return Revocation.unknown(why, source, url)

    what = "stapled OCSP response" if source is RevocationSource.STAPLE else "OCSP response"
    try:
        with lenient():
            response = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:  # malformed DER
        return unknown(f"the {what} does not parse ({_one_line(exc)})")
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return unknown(f"the OCSP responder answered {response.response_status.name.lower()}")
    try:
        with lenient():
            singles = list(response.responses)
    except ValueError as exc:
        return unknown(f"the {what} does not parse ({_one_line(exc)})")
    single = next((s for s in singles if _about(s, leaf, issuer)), None)
    if single is None:
        return unknown(
            f"the {what} is not about this certificate (serial {leaf.parsed.serial_number:x} "
            f"issued by {issuer.subject})"
        )
    signer = _ocsp_signer(response, issuer, at)
    if isinstance(signer, str):
        return unknown(f"the {what} {signer}")
    this_update, next_update = single.this_update_utc, single.next_update_utc
    stale = _staleness(this_update, next_update, at)
    if stale is not None:
        return unknown(f"the {what} {stale}")
    status = single.certificate_status
    if status is ocsp.OCSPCertStatus.GOOD:
        return Revocation(RevocationStatus.GOOD, source, url, this_update=this_update,
                          next_update=next_update)
    if status is ocsp.OCSPCertStatus.REVOKED:
        reason = single.revocation_reason
        return Revocation(
            RevocationStatus.REVOKED, source, url,
            revoked_at=single.revocation_time_utc,
            reason=None if reason is None else reason.value,
            this_update=this_update, next_update=next_update,
        )
    return Revocation(
        RevocationStatus.UNKNOWN, source, url,
        detail=f"the OCSP responder does not know this certificate ({what} says unknown)",
        this_update=this_update, next_update=next_update,
    )


_CERT_ID_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),
    "sha224": hashes.SHA224(),
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


def _about(single: ocsp.OCSPSingleResponse, leaf: Cert, issuer: Cert) -> bool:
    """The single response's CertID names ``leaf``: serial, issuer name hash and issuer key
    hash, computed with the hash algorithm the response used."""
    try:
        if single.serial_number != leaf.parsed.serial_number:
            return False
        algorithm = _CERT_ID_HASHES.get(single.hash_algorithm.name)
        if algorithm is None:
            return False
        expected = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(leaf.parsed, issuer.parsed, algorithm)
            .build()
        )
        return (
            single.issuer_name_hash == expected.issuer_name_hash
            and single.issuer_key_hash == expected.issuer_key_hash
        )
    except (UnsupportedAlgorithm, ValueError):  # an unknown hash OID, a malformed key
        return False


def _ocsp_signer(response: ocsp.OCSPResponse, issuer: Cert, at: dt.datetime) -> Cert | str:
    """The certificate whose key signed ``response`` (the issuer or an authorised
    delegated responder), or why there is none, completing "the OCSP response ..."."""
    delegates: list[Cert] = []
    rejected: list[str] = []
    try:
        with lenient():
            included = [Cert.from_x509(c) for c in response.certificates]
    except ValueError:  # a malformed certificate in the response
        included = []
    for cert in included[:8]:
        why = _delegate_problem(cert, issuer, at)
        if why is None:
            delegates.append(cert)
        else:
            rejected.append(f"{cert.subject} {why}")
    named = [c for c in (issuer, *delegates) if _names_responder(response, c)]
    if not named:
        if rejected:
            return "is signed by a responder that is not authorised: " + "; ".join(rejected)
        return (f"is signed by a responder that is neither {issuer.subject} nor a delegated "
                "responder certificate it issued")
    for cert in named:
        if _response_signature_valid(response, cert):
            return cert
    return f"has a bad signature (it does not verify under {named[0].subject}'s key)"


def _delegate_problem(cert: Cert, issuer: Cert, at: dt.datetime) -> str | None:
    """Why ``cert`` may not sign OCSP responses for ``issuer``'s certificates (RFC 6960
    section 4.2.2.2), or ``None`` when it may."""
    if cert.issuer_key != issuer.subject_key or not signature_valid(cert, issuer):
        return f"was not issued by {issuer.subject}"
    ext = cert.ext(x509.oid.ExtensionOID.EXTENDED_KEY_USAGE)
    if ext is None or not isinstance(ext.value, x509.ExtendedKeyUsage) or (
        ExtendedKeyUsageOID.OCSP_SIGNING not in set(ext.value)
    ):
        return "lacks the OCSPSigning extended key usage"
    if not cert.valid_at(at):
        return f"is outside its validity ({_iso(cert.not_before)} to {_iso(cert.not_after)})"
    return None


def _names_responder(response: ocsp.OCSPResponse, cert: Cert) -> bool:
    """The response's ResponderID (a name or a SHA-1 key hash) identifies ``cert``."""
    try:
        with lenient():  # the name is decoded now: an odd attribute warns
            name = response.responder_name
        if name is not None:
            return name_key(name) == cert.subject_key
        key_hash = response.responder_key_hash
        if key_hash is None:
            return False
        public = cert.public_key
        if public is None:
            return False
        return x509.SubjectKeyIdentifier.from_public_key(public).digest == key_hash
    except (ValueError, TypeError):  # a malformed responder name (*)
        return False


def _response_signature_valid(response: ocsp.OCSPResponse, signer: Cert) -> bool:
    key = signer.public_key
    if key is None:
        return False
    try:
        algorithm = response.signature_hash_algorithm
        pss = None
        if response.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS and algorithm:
            pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.AUTO)
        return signature_verifies(key, response.signature, response.tbs_response_bytes,
                                  algorithm, pss)
    except UnsupportedAlgorithm:  # an unknown signature algorithm
        return False


# -- CRL -----------------------------------------------------------------------------------


def crl_next_update(der: bytes) -> dt.datetime | None:
    """A CRL's ``nextUpdate`` (for caching); ``None`` when absent or unparsable."""
    crl = _load_crl(der)
    return None if isinstance(crl, str) else crl.next_update_utc


def crl_status(
    der: bytes, leaf: Cert, issuer: Cert, *, at: dt.datetime, url: str | None = None
) -> Revocation:
    """What the CRL ``der`` (DER or PEM) says about ``leaf`` at ``at``, after checking that
    ``issuer`` issued and signed it and that it is current."""
    source = RevocationSource.CRL

    def unknown(why: str) -> Revocation:
        return Revocation.unknown(why, source, url)

    crl = _load_crl(der)
    if isinstance(crl, str):
        return unknown(crl)
    try:
        with lenient():  # the name is decoded now: an odd attribute warns
            crl_name = crl.issuer
        crl_issuer = name_key(crl_name)
    except (ValueError, TypeError) as exc:  # TypeError: a malformed name attribute (*)
        return unknown(f"the CRL does not parse ({_one_line(exc)})")
    if crl_issuer != issuer.subject_key:
        return unknown(
            f"the CRL is issued by {crl_name.rfc4514_string()}, not by the leaf's issuer "
            f"{issuer.subject} (indirect CRLs are not supported)"
        )
    if not _crl_signature_valid(crl, issuer):
        return unknown(f"the CRL has a bad signature (it does not verify under "
                       f"{issuer.subject}'s key)")
    this_update, next_update = crl.last_update_utc, crl.next_update_utc
    stale = _staleness(this_update, next_update, at)
    if stale is not None:
        return unknown(f"the CRL {stale}")
    try:
        with lenient():
            entry = crl.get_revoked_certificate_by_serial_number(leaf.parsed.serial_number)
    except ValueError as exc:
        return unknown(f"the CRL's entries do not parse ({_one_line(exc)})")
    if entry is None:
        return Revocation(RevocationStatus.GOOD, source, url, this_update=this_update,
                          next_update=next_update)
    return Revocation(
        RevocationStatus.REVOKED, source, url,
        revoked_at=entry.revocation_date_utc, reason=_entry_reason(entry),
        this_update=this_update, next_update=next_update,
    )


def _load_crl(der: bytes) -> x509.CertificateRevocationList | str:
    try:
        with lenient():
            if der.lstrip().startswith(b"-----BEGIN"):
                return x509.load_pem_x509_crl(der.strip())
            return x509.load_der_x509_crl(der)
    except (ValueError, x509.InvalidVersion) as exc:  # malformed input, an unknown version
        return f"the CRL does not parse ({_one_line(exc)})"


def _crl_signature_valid(crl: x509.CertificateRevocationList, issuer: Cert) -> bool:
    key = issuer.public_key
    if key is None:
        return False
    try:
        params = crl.signature_algorithm_parameters
        return signature_verifies(
            key, crl.signature, crl.tbs_certlist_bytes, crl.signature_hash_algorithm,
            params if isinstance(params, padding.PSS) else None,
        )
    except (UnsupportedAlgorithm, ValueError):  # an unknown algorithm, malformed parameters
        return False


def _entry_reason(entry: x509.RevokedCertificate) -> str | None:
    try:
        with lenient():
            ext = entry.extensions.get_extension_for_class(x509.CRLReason)
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        return None  # no reason stated, or entry extensions that do not parse
    return ext.value.reason.value


# -- shared --------------------------------------------------------------------------------



def _staleness(
    this_update: dt.datetime,
    next_update: dt.datetime | None,
    at: dt.datetime,
) -> str | None:
    """Why an answer produced at ``this_update`` and valid until ``next_update`` may not
    be used at ``at``, completing "the OCSP response ..." (or "the CRL ..."), or ``None``
    when it may."""
    if this_update > at + CLOCK_SKEW:
        return f"is from the future (thisUpdate {_iso(this_update)}, evaluated at {_iso(at)})"
    if next_update is not None:
        if at > next_update + CLOCK_SKEW:
            return f"is stale (nextUpdate {_iso(next_update)} has passed at {_iso(at)})"
        return None
    if at > this_update + MAX_AGE_WITHOUT_NEXT_UPDATE:
        return (f"is stale (thisUpdate {_iso(this_update)}, no nextUpdate, older than "
                f"{MAX_AGE_WITHOUT_NEXT_UPDATE.days} days at {_iso(at)})")
    return None


def _iso(t: dt.datetime) -> str:
    return iso(t)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


__all__ = [
    "CLOCK_SKEW",
    "MAX_AGE_WITHOUT_NEXT_UPDATE",
    "Revocation",
    "RevocationSource",
    "RevocationStatus",
    "crl_next_update",
    "crl_status",
    "ocsp_next_update",
    "ocsp_request",
    "ocsp_status",
]
