"""Revocation: OCSP responses and CRLs verified by the pure analysis (good, revoked,
wrong certificate, bad signature, stale, delegated responders, SHA-1), the REVOKED and
REVOCATION_UNKNOWN findings, and the probe layer end to end against a loopback HTTP
server acting as OCSP responder and CRL host, plus a TLS server stapling its answer."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from chainwatch.analysis.engine import analyze
from chainwatch.analysis.revocation import (
    CLOCK_SKEW,
    MAX_AGE_WITHOUT_NEXT_UPDATE,
    Revocation,
    RevocationSource,
    RevocationStatus,
    crl_status,
    ocsp_status,
)
from chainwatch.model import Cert, FindingCode, Profile, Severity, Status, Store
from chainwatch.probe.http import (
    SHARED_CACHE,
    FetchCache,
    Fetcher,
    FetchKind,
    FetchLimits,
    allow_networks,
)
from chainwatch.service.netinputs import check_revocation
from chainwatch.testing.pki import PrivateKey

from . import servers as srv
from .pki import CA, PKI, Leaf, at, pem_of

NOW = at("2026-03-01T12:00:00Z")
LOOPBACK = allow_networks(["127.0.0.0/8", "::1"])
"""The test responders listen on loopback, which fetches only go to when allowed."""
ALLOW_LOOPBACK = ("--allow-private", "127.0.0.0/8")
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def fresh_fetch_cache() -> Iterator[None]:
    """Loopback ports are reused between tests: no answer may outlive its test."""
    SHARED_CACHE.clear()
    yield
    SHARED_CACHE.clear()


# -- building OCSP responses and CRLs ------------------------------------------------------


def ocsp_der(
    leaf: Cert,
    issuer: CA,
    *,
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    this_update: dt.datetime = NOW - HOUR,
    next_update: dt.datetime | None = NOW + DAY,
    revoked_at: dt.datetime | None = None,
    reason: x509.ReasonFlags | None = None,
    signer: tuple[PrivateKey, Cert] | None = None,
    by_name: bool = False,
    include: Sequence[Cert] = (),
    cert_id_hash: hashes.HashAlgorithm | None = None,
    issuer_for_id: Cert | None = None,
) -> bytes:
    """An OCSP response about ``leaf``, signed by ``issuer`` or by ``signer`` (key, cert)."""
    key, responder = signer if signer is not None else (issuer.key, issuer.cert)
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf.parsed, issuer=(issuer_for_id or issuer.cert).parsed,
            algorithm=cert_id_hash or hashes.SHA1(), cert_status=status,
            this_update=this_update, next_update=next_update,
            revocation_time=revoked_at if status is ocsp.OCSPCertStatus.REVOKED else None,
            revocation_reason=reason if status is ocsp.OCSPCertStatus.REVOKED else None,
        )
        .responder_id(
            ocsp.OCSPResponderEncoding.NAME if by_name else ocsp.OCSPResponderEncoding.HASH,
            responder.parsed,
        )
    )
    if include:
        builder = builder.certificates([c.parsed for c in include])
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


_SHA1_RSA = _tlv(0x30, bytes.fromhex("06092a864886f70d010105") + b"\x05\x00")
_SHA256_ECDSA = _tlv(0x30, bytes.fromhex("06082a8648ce3d040302"))
_OCSP_BASIC = bytes.fromhex("06092b0601050507300101")


def resign(der: bytes, key: PrivateKey, *, sha1: bool = False, corrupt: bool = False) -> bytes:
    """The same response data with a new signature: SHA-1 (RSA keys; cryptography no
    longer signs OCSP with SHA-1), by another key, or corrupted after signing."""
    tbs = ocsp.load_der_ocsp_response(der).tbs_response_bytes
    if isinstance(key, rsa.RSAPrivateKey):
        algorithm = hashes.SHA1() if sha1 else hashes.SHA256()
        signature = key.sign(tbs, padding.PKCS1v15(), algorithm)
        alg_id = _SHA1_RSA if sha1 else _tlv(
            0x30, bytes.fromhex("06092a864886f70d01010b") + b"\x05\x00")
    else:
        signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
        alg_id = _SHA256_ECDSA
    if corrupt:
        signature = signature[:-1] + bytes([signature[-1] ^ 0x01])
    basic = _tlv(0x30, tbs + alg_id + _tlv(0x03, b"\x00" + signature))
    body = _tlv(0x30, _OCSP_BASIC + _tlv(0x04, basic))
    return _tlv(0x30, b"\x0a\x01\x00" + _tlv(0xA0, body))


def responder(
    issuer: CA,
    *,
    eku: bool = True,
    signed_by: CA | None = None,
    not_after: dt.datetime = NOW + 30 * DAY,
    name: str = "Test OCSP Responder",
) -> tuple[PrivateKey, Cert]:
    """A delegated OCSP responder certificate issued by ``issuer`` (or ``signed_by``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.OCSP_SIGNING if eku else ExtendedKeyUsageOID.SERVER_AUTH
    signer = signed_by or issuer
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(signer.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 30 * DAY)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .sign(signer.key, hashes.SHA256())
    )
    return key, Cert.from_x509(cert)


def crl_der(
    issuer: CA,
    revoked: Sequence[tuple[Cert, dt.datetime, x509.ReasonFlags | None]] = (),
    *,
    last_update: dt.datetime = NOW - HOUR,
    next_update: dt.datetime = NOW + 7 * DAY,
    key: PrivateKey | None = None,
    pem: bool = False,
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.name)
        .last_update(last_update)
        .next_update(next_update)
    )
    for cert, when, reason in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(cert.parsed.serial_number)
            .revocation_date(when)
        )
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(key or issuer.key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM if pem else serialization.Encoding.DER)


def aia(*, ocsp_url: str | None = None, ca_issuers: str | None = None
        ) -> x509.AuthorityInformationAccess:
    descriptions = []
    if ocsp_url is not None:
        descriptions.append(x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)))
    if ca_issuers is not None:
        descriptions.append(x509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(ca_issuers)))
    return x509.AuthorityInformationAccess(descriptions)


def crl_dp(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)], relative_name=None, reasons=None,
        crl_issuer=None)])


# -- a loopback HTTP server ----------------------------------------------------------------


@dataclass
class Route:
    """What one path answers: ``body`` with ``status``; ``answer(request body)`` computes
    it instead; ``hang`` accepts the request and never answers (until the lab closes)."""

    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    answer: Callable[[bytes], bytes] | None = None
    hang: bool = False


class HttpLab:
    """A threaded HTTP server on 127.0.0.1 serving :class:`Route` values by path, counting
    hits per path. A context manager; leaving it releases hanging requests and stops it."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.bodies: list[bytes] = []
        self.release = threading.Event()
        lab = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def _serve(self, body: bytes) -> None:
                lab.hits[self.path] += 1
                route = lab.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                if route.hang:
                    lab.release.wait(10)
                    self.close_connection = True
                    return
                payload = route.answer(body) if route.answer is not None else route.body
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._serve(b"")

            def do_POST(self) -> None:
                size = min(int(self.headers.get("Content-Length", "0") or 0), 1 << 20)
                body = self.rfile.read(size)
                lab.bodies.append(body)
                self._serve(body)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client hanging up mid-answer (size limits, timeouts) is routine

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> HttpLab:
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def web() -> Iterator[HttpLab]:
    with HttpLab() as lab:
        yield lab


# -- pure: OCSP ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hier() -> dict[str, Any]:
    pki = PKI(now=NOW)
    root = pki.root("Rev Root")
    inter = root.intermediate("Rev CA")
    other = root.intermediate("Other CA")
    return {
        "pki": pki,
        "root": root,
        "inter": inter,
        "other": other,
        "leaf": inter.leaf("www.example.com"),
        "sibling": inter.leaf("api.example.com"),
    }


def test_good_response_signed_by_the_issuer(hier: dict[str, Any]) -> None:
    leaf, inter = hier["leaf"].cert, hier["inter"]
    answer = ocsp_status(ocsp_der(leaf, inter), leaf, inter.cert, at=NOW)
    assert answer.status is RevocationStatus.GOOD
    assert answer.source is RevocationSource.OCSP and answer.definitive
    assert answer.this_update == NOW - HOUR and answer.next_update == NOW + DAY
    assert answer.detail is None and answer.revoked_at is None
    # Named by subject instead of key hash, and a SHA-256 CertID: the same answer.
    der = ocsp_der(leaf, inter, by_name=True, cert_id_hash=hashes.SHA256())
    assert ocsp_status(der, leaf, inter.cert, at=NOW).status is RevocationStatus.GOOD


def test_revoked_response_says_since_when_and_why(hier: dict[str, Any]) -> None:
    leaf, inter = hier["leaf"].cert, hier["inter"]
    der = ocsp_der(leaf, inter, status=ocsp.OCSPCertStatus.REVOKED,
                   revoked_at=NOW - 3 * DAY, reason=x509.ReasonFlags.key_compromise)
    answer = ocsp_status(der, leaf, inter.cert, at=NOW, source=RevocationSource.STAPLE)
    assert answer.status is RevocationStatus.REVOKED
    assert answer.revoked_at == NOW - 3 * DAY
    assert answer.reason == "keyCompromise"
    assert answer.source is RevocationSource.STAPLE
    assert answer.where == "the stapled OCSP response"


def test_responder_that_does_not_know_the_certificate(hier: dict[str, Any]) -> None:
    leaf, inter = hier["leaf"].cert, hier["inter"]
    der = ocsp_der(leaf, inter, status=ocsp.OCSPCertStatus.UNKNOWN)
    answer = ocsp_status(der, leaf, inter.cert, at=NOW)
    assert answer.status is RevocationStatus.UNKNOWN and not answer.definitive
    assert answer.detail is not None and "does not know this certificate" in answer.detail


def test_response_about_another_certificate_or_issuer(hier: dict[str, Any]) -> None:
    leaf, sibling, inter = hier["leaf"].cert, hier["sibling"].cert, hier["inter"]
    about_sibling = ocsp_der(sibling, inter)
    answer = ocsp_status(about_sibling, leaf, inter.cert, at=NOW)
    assert answer.status is RevocationStatus.UNKNOWN
    assert answer.detail is not None and "is not about this certificate" in answer.detail
    # The leaf's serial, but a CertID computed with another issuer's name and key.
    wrong_issuer = ocsp_der(leaf, inter, issuer_for_id=hier["other"].cert)
    answer = ocsp_status(wrong_issuer, leaf, inter.cert, at=NOW)
    assert answer.status is RevocationStatus.UNKNOWN
    assert answer.detail is not None and "is not about this certificate" in answer.detail
    # Negative control: the same bytes, checked against the issuer they name, verify fine
    # as far as the CertID goes (the signature is the real issuer's, so it is good).
    assert ocsp_status(about_sibling, sibling, inter.cert, at=NOW).status is (
        RevocationStatus.GOOD)


def test_bad_signature(hier: dict[str, Any]) -> None:
    leaf, inter = hier["leaf"].cert, hier["inter"]
    good = ocsp_der(leaf, inter, status=ocsp.OCSPCertStatus.REVOKED, revoked_at=NOW - DAY)
    corrupted = resign(good, inter.key, corrupt=True)
    answer = ocsp_status(corrupted, leaf, inter.cert, at=NOW)
    assert answer.status is RevocationStatus.UNKNOWN
    assert answer.detail == ("the OCSP response has a bad signature (it does not verify "
                             "under CN=Rev CA's key)")
    # Signed by a stranger's key while naming the issuer as responder.
    stranger = resign(good, hier["other"].key)
    assert "bad signature" in (ocsp_status(stranger, leaf, inter.cert, at=NOW).detail or "")
    # Negative control: re-signed by the right key, the revocation stands.
    assert ocsp_status(resign(good, inter.key), leaf, inter.cert, at=NOW).status is (
        RevocationStatus.REVOKED)


@pytest.mark.parametrize(("when", "fresh"), [
    (NOW + DAY + CLOCK_SKEW, True),
    (NOW + DAY + CLOCK_SKEW + dt.timedelta(seconds=1), False),
    (NOW - HOUR - CLOCK_SKEW, True),
    (NOW - HOUR - CLOCK_SKEW - dt.timedelta(seconds=1), False),
])
def test_freshness_boundaries(hier: dict[str, Any], when: dt.datetime, fresh: bool) -> None:
    leaf, inter = hier["leaf"].cert, hier["inter"]
    answer = ocsp_status(ocsp_der(leaf, inter), leaf, inter.cert, at=when)
    assert (answer.status is RevocationStatus.GOOD) is fresh
    if not fresh:
        assert answer.detail is not None
        assert ("is stale" in answer.detail) or ("from the future" in answer.detail)


def test_response_without_next_update_ages_out(hier: dict[str, Any]) -> None:
    leaf, inter = hier["leaf"].cert, hier["inter"]
    der = ocsp_der(leaf, inter, this_update=NOW, next_update=None)
    limit = NOW + MAX_AGE_WITHOUT_NEXT_UPDATE
    assert ocsp_status(der, leaf, inter.cert, at=limit).status is RevocationStatus.GOOD
    late = ocsp_status(der, leaf, inter.cert, at=limit + dt.timedelta(seconds=1))
    assert late.status is RevocationStatus.UNKNOWN
    assert late.detail is not None and "no nextUpdate" in late.detail


def test_sha1_signed_response_is_accepted() -> None:
    pki = PKI(now=NOW)
    root = pki.root("SHA1 Root", key="rsa2048")
    inter = root.intermediate("SHA1 CA", key="rsa2048")
    leaf = inter.leaf("old.example.com")
    der = resign(ocsp_der(leaf.cert, inter, status=ocsp.OCSPCertStatus.REVOKED,
                          revoked_at=NOW - DAY), inter.key, sha1=True)
    assert isinstance(ocsp.load_der_ocsp_response(der).signature_hash_algorithm, hashes.SHA1)
    answer = ocsp_status(der, leaf.cert, inter.cert, at=NOW)
    assert answer.status is RevocationStatus.REVOKED
    assert answer.reason is None


def test_delegated_responder(hier: dict[str, Any]) -> None:
    leaf, inter = hier["leaf"].cert, hier["inter"]
    key, cert = responder(inter)
    der = ocsp_der(leaf, inter, signer=(key, cert), include=[cert],
                   status=ocsp.OCSPCertStatus.REVOKED, revoked_at=NOW - DAY)
    assert ocsp_status(der, leaf, inter.cert, at=NOW).status is RevocationStatus.REVOKED
    by_name = ocsp_der(leaf, inter, signer=(key, cert), include=[cert], by_name=True)
    assert ocsp_status(by_name, leaf, inter.cert, at=NOW).status is RevocationStatus.GOOD

    def refused(signer: tuple[PrivateKey, Cert], include: bool = True) -> str:
        der = ocsp_der(leaf, inter, signer=signer, include=[signer[1]] if include else [])
        answer = ocsp_status(der, leaf, inter.cert, at=NOW)
        assert answer.status is RevocationStatus.UNKNOWN
        return answer.detail or ""

    assert "lacks the OCSPSigning extended key usage" in refused(responder(inter, eku=False))
    assert "was not issued by CN=Rev CA" in refused(responder(inter, signed_by=hier["other"]))
    assert "is outside its validity" in refused(responder(inter, not_after=NOW - DAY))
    assert "neither CN=Rev CA nor a delegated responder" in refused((key, cert), include=False)


def test_unsuccessful_and_malformed_responses(hier: dict[str, Any]) -> None:
    leaf, inter = hier["leaf"].cert, hier["inter"]
    later = ocsp.OCSPResponseBuilder.build_unsuccessful(
        ocsp.OCSPResponseStatus.TRY_LATER).public_bytes(serialization.Encoding.DER)
    answer = ocsp_status(later, leaf, inter.cert, at=NOW)
    assert answer.detail == "the OCSP responder answered try_later"
    garbage = ocsp_status(b"<html>oops</html>", leaf, inter.cert, at=NOW,
                          source=RevocationSource.STAPLE)
    assert garbage.status is RevocationStatus.UNKNOWN
    assert garbage.detail is not None
    assert garbage.detail.startswith("the stapled OCSP response does not parse")


# -- pure: CRL -----------------------------------------------------------------------------


def test_crl_good_and_revoked(hier: dict[str, Any]) -> None:
    leaf, sibling, inter = hier["leaf"].cert, hier["sibling"].cert, hier["inter"]
    crl = crl_der(inter, [(sibling, NOW - 2 * DAY, x509.ReasonFlags.superseded)])
    good = crl_status(crl, leaf, inter.cert, at=NOW, url="http://crl.example/ca.crl")
    assert good.status is RevocationStatus.GOOD and good.source is RevocationSource.CRL
    assert good.next_update == NOW + 7 * DAY
    bad = crl_status(crl, sibling, inter.cert, at=NOW, url="http://crl.example/ca.crl")
    assert bad.status is RevocationStatus.REVOKED
    assert (bad.revoked_at, bad.reason) == (NOW - 2 * DAY, "superseded")
    assert bad.where == "the CRL http://crl.example/ca.crl"
    pem = crl_der(inter, [(leaf, NOW - DAY, None)], pem=True)
    listed = crl_status(pem, leaf, inter.cert, at=NOW)
    assert listed.status is RevocationStatus.REVOKED and listed.reason is None


def test_crl_wrong_issuer_bad_signature_and_stale(hier: dict[str, Any]) -> None:
    leaf, inter, other = hier["leaf"].cert, hier["inter"], hier["other"]

    def detail(der: bytes, when: dt.datetime = NOW) -> str:
        answer = crl_status(der, leaf, inter.cert, at=when)
        assert answer.status is RevocationStatus.UNKNOWN
        return answer.detail or ""

    assert "is issued by CN=Other CA, not by the leaf's issuer" in detail(crl_der(other))
    assert "bad signature" in detail(crl_der(inter, key=other.key))
    assert "is stale" in detail(crl_der(inter), NOW + 8 * DAY)
    assert "does not parse" in detail(b"not a crl")


# -- the engine ----------------------------------------------------------------------------


def _profile(root: CA) -> Profile:
    return Profile("corp", Store("corp", (root.cert,)))


def test_engine_revoked_is_critical(hier: dict[str, Any]) -> None:
    chain = hier["leaf"].chain(hier["inter"])
    revoked = Revocation(RevocationStatus.REVOKED, RevocationSource.OCSP,
                         url="http://ocsp.example/", revoked_at=NOW - 3 * DAY,
                         reason="keyCompromise")
    report = analyze(chain, [_profile(hier["root"])], at=NOW, host="www.example.com",
                     revocation=revoked)
    assert report.status is Status.CRITICAL
    (finding,) = [f for f in report.findings if f.code is FindingCode.REVOKED]
    assert finding.severity is Severity.CRITICAL and finding.cert == chain[0].sha256
    assert finding.message == (
        "the leaf CN=www.example.com is revoked since 2026-02-26T12:00:00Z (reason: "
        "keyCompromise), according to the OCSP responder http://ocsp.example/"
    )
    # Negative control: the same chain unchecked, or checked and good, is ok.
    for revocation in (None, Revocation(RevocationStatus.GOOD, RevocationSource.STAPLE)):
        plain = analyze(chain, [_profile(hier["root"])], at=NOW, host="www.example.com",
                        revocation=revocation)
        assert plain.status is Status.OK and plain.findings == ()


def test_engine_unknown_is_an_info_note(hier: dict[str, Any]) -> None:
    chain = hier["leaf"].chain(hier["inter"])
    unknown = Revocation.unknown("OCSP http://ocsp.example/: timeout after 5s")
    report = analyze(chain, [_profile(hier["root"])], at=NOW, host="www.example.com",
                     revocation=unknown)
    assert report.status is Status.OK
    (finding,) = report.findings
    assert finding.code is FindingCode.REVOCATION_UNKNOWN
    assert finding.severity is Severity.INFO
    assert finding.message == ("the revocation status of the leaf is unknown: OCSP "
                               "http://ocsp.example/: timeout after 5s")


# -- the probe layer, end to end -----------------------------------------------------------


@pytest.fixture
def live() -> dict[str, Any]:
    """A hierarchy dated around the real clock: fetched answers are checked against it."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    pki = PKI(now=now)
    root = pki.root("Live Root")
    return {"now": now, "root": root, "inter": root.intermediate("Live CA")}


def live_leaf(inter: CA, web: HttpLab, *, ocsp_path: str | None = "/ocsp",
              crl_path: str | None = "/ca.crl", name: str = "www.example.com") -> Leaf:
    extra: list[x509.ExtensionType] = []
    if ocsp_path is not None:
        extra.append(aia(ocsp_url=web.url(ocsp_path)))
    if crl_path is not None:
        extra.append(crl_dp(web.url(crl_path)))
    return inter.leaf(name, extra=extra)


def live_ocsp(leaf: Cert, inter: CA, now: dt.datetime, **kw: Any) -> bytes:
    return ocsp_der(leaf, inter, this_update=now - HOUR, next_update=now + DAY, **kw)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_asks_the_ocsp_responder_and_caches_the_answer(web: HttpLab, live: dict[str, Any]
                                                       ) -> None:
    inter, now = live["inter"], live["now"]
    leaf = live_leaf(inter, web)
    revoked = live_ocsp(leaf.cert, inter, now, status=ocsp.OCSPCertStatus.REVOKED,
                        revoked_at=now - DAY, reason=x509.ReasonFlags.cessation_of_operation)

    def answer(request: bytes) -> bytes:
        asked = ocsp.load_der_ocsp_request(request)
        assert asked.serial_number == leaf.cert.parsed.serial_number
        return revoked

    web.routes["/ocsp"] = Route(answer=answer, content_type="application/ocsp-response")
    cache = FetchCache()

    async def twice() -> tuple[Revocation, Revocation]:
        async with Fetcher(FetchLimits(timeout=5, allow_private=LOOPBACK), cache=cache) as fetcher:
            first = await check_revocation(leaf.chain(inter), None, fetcher=fetcher)
            second = await check_revocation(leaf.chain(inter), None, fetcher=fetcher)
            return first, second

    first, second = run(twice())
    assert first == second
    assert first.status is RevocationStatus.REVOKED
    assert first.source is RevocationSource.OCSP and first.url == web.url("/ocsp")
    assert first.reason == "cessationOfOperation"
    assert web.hits["/ocsp"] == 1 and web.hits["/ca.crl"] == 0


def test_falls_back_to_the_crl(web: HttpLab, live: dict[str, Any]) -> None:
    inter, now = live["inter"], live["now"]
    leaf = live_leaf(inter, web)
    web.routes["/ocsp"] = Route(status=500, body=b"responder down")
    web.routes["/ca.crl"] = Route(body=crl_der(
        inter, [(leaf.cert, now - DAY, x509.ReasonFlags.key_compromise)],
        last_update=now - HOUR, next_update=now + DAY))
    answer = run(check_revocation(leaf.chain(inter), None, timeout=5, allow_private=LOOPBACK))
    assert answer.status is RevocationStatus.REVOKED
    assert answer.source is RevocationSource.CRL and answer.url == web.url("/ca.crl")
    assert answer.reason == "keyCompromise"
    assert web.hits["/ocsp"] == 1


def test_unreachable_responders_give_unknown_within_the_timeout(
    web: HttpLab, live: dict[str, Any]
) -> None:
    inter = live["inter"]
    leaf = live_leaf(inter, web)
    web.routes["/ocsp"] = Route(hang=True)
    with srv.closed_port() as port:
        crl_leaf = inter.leaf("www.example.com", extra=[
            aia(ocsp_url=web.url("/ocsp")), crl_dp(f"http://127.0.0.1:{port}/ca.crl")])
        answer = run(check_revocation(crl_leaf.chain(inter), None, timeout=0.5,
                                      allow_private=LOOPBACK))
    assert answer.status is RevocationStatus.UNKNOWN and answer.source is None
    detail = answer.detail or ""
    assert f"OCSP {web.url('/ocsp')}: timeout after 0.5s" in detail
    assert f"CRL http://127.0.0.1:{port}/ca.crl: connection failed" in detail
    # Still unknown, and the engine turns it into the info note, not a failure.
    report = analyze(leaf.chain(inter), [_profile(live["root"])], at=live["now"],
                     revocation=answer)
    assert [f.code for f in report.findings] == [FindingCode.REVOCATION_UNKNOWN]


def test_bounded_and_refused_answers(web: HttpLab, live: dict[str, Any]) -> None:
    inter = live["inter"]
    leaf = inter.leaf("www.example.com", extra=[
        aia(ocsp_url=web.url("/huge")), crl_dp("ldap://ldap.example.com/cn=CA?crl")])
    web.routes["/huge"] = Route(body=b"\x30" * (64 * 1024 + 1))
    answer = run(check_revocation(leaf.chain(inter), None, timeout=5, allow_private=LOOPBACK))
    assert answer.status is RevocationStatus.UNKNOWN
    assert answer.detail == (
        f"OCSP {web.url('/huge')}: answer of 65537 bytes exceeds 64 KiB; "
        "CRL ldap://ldap.example.com/cn=CA?crl: not an http(s) URL (ldap)"
    )
    bare = inter.leaf("bare.example.com")
    nothing = run(check_revocation(bare.chain(inter), None, timeout=5, allow_private=LOOPBACK))
    assert nothing.detail == ("no staple, and the leaf names no OCSP responder and no CRL "
                              "distribution point")
    orphan = run(check_revocation(bare.chain(), None, timeout=5, allow_private=LOOPBACK))
    assert orphan.detail is not None and "is neither served nor fetched" in orphan.detail
    # The issuer may come from elsewhere (an anchor, an AIA fetch): then it is usable.
    served_alone = live_leaf(inter, web, crl_path=None)
    web.routes["/ocsp"] = Route(body=live_ocsp(served_alone.cert, inter, live["now"]))
    good = run(check_revocation(served_alone.chain(), None, timeout=5, allow_private=LOOPBACK,
                                issuers=[inter.cert]))
    assert good.status is RevocationStatus.GOOD


# -- check --revocation: the staple decides, no fetch needed ------------------------------


@pytest.fixture
def tls() -> Iterator[srv.ServerLoop]:
    with srv.ServerLoop() as loop:
        yield loop


def test_check_uses_the_staple_without_fetching(
    cli: Callable[..., tuple[int, str, str]], web: HttpLab, tls: srv.ServerLoop,
    live: dict[str, Any], tmp_path: Path,
) -> None:
    inter, now = live["inter"], live["now"]
    leaf = live_leaf(inter, web)
    staple = live_ocsp(leaf.cert, inter, now, status=ocsp.OCSPCertStatus.REVOKED,
                       revoked_at=now - DAY, reason=x509.ReasonFlags.key_compromise)
    ep = tls.serve(srv.pyopenssl_handler(srv.pyopenssl_context(
        leaf.chain(inter), leaf.key, ocsp=staple)))
    trust = tmp_path / "trust.pem"
    trust.write_bytes(pem_of(live["root"].cert))
    code, out, err = cli("check", *ALLOW_LOOPBACK, ep.hostport, "--sni", "www.example.com",
                         "--profile", f"file:{trust}", "--revocation", "--format", "json")
    assert (code, err) == (2, "")
    report = json.loads(out)
    assert report["status"] == "critical"
    (finding,) = [f for f in report["findings"] if f["code"] == "REVOKED"]
    assert finding["severity"] == "critical"
    assert finding["message"].endswith(
        "(reason: keyCompromise), according to the stapled OCSP response")
    assert report["revocation"]["status"] == "revoked"
    assert report["revocation"]["source"] == "staple"
    assert sum(web.hits.values()) == 0

    # A good staple: ok; and without --revocation nothing is checked or added.
    good = tls.serve(srv.pyopenssl_handler(srv.pyopenssl_context(
        leaf.chain(inter), leaf.key, ocsp=live_ocsp(leaf.cert, inter, now))))
    code, out, _ = cli("check", *ALLOW_LOOPBACK, good.hostport, "--sni", "www.example.com",
                       "--profile", f"file:{trust}", "--revocation")
    assert code == 0
    assert "revocation: good, according to the stapled OCSP response" in out
    code, out, _ = cli("check", *ALLOW_LOOPBACK, ep.hostport, "--sni", "www.example.com",
                       "--profile", f"file:{trust}", "--format", "json")
    assert code == 0 and "revocation" not in json.loads(out)
    assert sum(web.hits.values()) == 0


def test_check_asks_the_responder_when_nothing_is_stapled(
    cli: Callable[..., tuple[int, str, str]], web: HttpLab, tls: srv.ServerLoop,
    live: dict[str, Any], tmp_path: Path,
) -> None:
    inter, now = live["inter"], live["now"]
    leaf = live_leaf(inter, web)
    web.routes["/ocsp"] = Route(body=live_ocsp(leaf.cert, inter, now))
    ep = tls.serve(srv.pyopenssl_handler(srv.pyopenssl_context(leaf.chain(inter), leaf.key)))
    trust = tmp_path / "trust.pem"
    trust.write_bytes(pem_of(live["root"].cert))
    code, out, _ = cli("check", *ALLOW_LOOPBACK, ep.hostport, "--sni", "www.example.com",
                       "--profile", f"file:{trust}", "--revocation", "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["revocation"] == {
        "status": "good", "source": "ocsp", "url": web.url("/ocsp"), "revoked_at": None,
        "reason": None, "detail": None,
    }
    assert web.hits["/ocsp"] == 1


def test_cache_lifetimes_follow_next_update_and_failures_expire(web: HttpLab) -> None:
    clock = [NOW]
    cache = FetchCache(clock=lambda: clock[0])
    web.routes["/r"] = Route(body=b"answer")
    soon = NOW + dt.timedelta(minutes=10)

    async def get(path: str, fresh: dt.datetime | None = None) -> bytes | None:
        async with Fetcher(FetchLimits(timeout=5, allow_private=LOOPBACK), cache=cache) as fetcher:
            got = await fetcher.get(web.url(path), FetchKind.OCSP,
                                    fresh_until=lambda _: fresh)
            return got.body

    def advance(minutes: int) -> None:
        clock[0] += dt.timedelta(minutes=minutes)

    assert run(get("/r", soon)) == b"answer"
    advance(9)
    assert run(get("/r", soon)) == b"answer" and web.hits["/r"] == 1
    advance(2)  # past nextUpdate: asked again
    assert run(get("/r")) == b"answer" and web.hits["/r"] == 2
    advance(59)  # no hint: an OCSP answer is kept at most an hour
    run(get("/r"))
    assert web.hits["/r"] == 2
    advance(2)
    run(get("/r"))
    assert web.hits["/r"] == 3
    # A failure is remembered for a minute, then tried again.
    assert run(get("/gone")) is None and run(get("/gone")) is None
    assert web.hits["/gone"] == 1
    advance(2)
    run(get("/gone"))
    assert web.hits["/gone"] == 2
