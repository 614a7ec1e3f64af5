"""Property tests: the engine never raises, whatever bundle and instant it is given."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainwatch.analysis.engine import analyze
from chainwatch.analysis.forecast import breaks_at, trusted_at
from chainwatch.model import ONE_SECOND, Building, Cert, Profile, Status, Store

from .pki import PKI, at

_pki = PKI(now=at("2022-01-01"))
_roots = [_pki.root(f"Prop Root {i}", expires=f"20{25 + i}-01-01") for i in range(3)]
_old = _pki.root("Prop Old Root", not_before="2010-01-01", expires="2021-06-01")
_inters = [r.intermediate(f"Prop CA {i}") for i, r in enumerate(_roots)]
_cross = _roots[0].cross_signed_by(_old, expires="2021-06-01")
_leaves = [
    ca.leaf(f"host{i}.example.com", "*.example.net", not_before="2021-01-01",
            expires=f"2022-0{i + 2}-01")
    for i, ca in enumerate(_inters)
]
_self = _pki.self_signed_leaf("self.example.com")
POOL: list[Cert] = [
    *(r.cert for r in _roots), _old.cert, *(c.cert for c in _inters), _cross.cert,
    *(leaf.cert for leaf in _leaves), _self.cert,
]
STORES = [
    Store("all", (*(r.cert for r in _roots), _old.cert)),
    Store("old-only", (_old.cert,)),
    Store("empty-ish", (_inters[1].cert,)),
]

instants = st.datetimes(
    min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2060, 1, 1),
    timezones=st.just(dt.UTC),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chain=st.lists(st.sampled_from(POOL), min_size=1, max_size=6),
    when=instants,
    store_idx=st.lists(st.integers(0, len(STORES) - 1), min_size=1, max_size=3),
    legacy=st.booleans(),
    host=st.one_of(st.none(), st.sampled_from(["host0.example.com", "a.example.net",
                                              "192.0.2.1", "", "..", "xn--zz.example.net"])),
)
def test_analyze_never_raises_and_is_consistent(
    chain: list[Cert], when: dt.datetime, store_idx: list[int], legacy: bool, host: str | None
) -> None:
    profiles = [
        Profile(f"p{n}-{i}", STORES[i], Building.LEGACY if legacy and n == 0 else Building.MODERN)
        for n, i in enumerate(store_idx)
    ]
    report = analyze(chain, profiles, at=when, host=host)
    assert report.evaluated_at == when.replace(microsecond=0)  # whole seconds, like X.509
    when = report.evaluated_at
    assert report.status in set(Status)
    for result in report.profiles:
        if result.trusted:
            assert result.breaks_at is not None and result.breaks_at > when
            assert result.path and result.path[0] == chain[0].sha256
        else:
            assert result.breaks_at is None and result.error is not None
    if report.breaks_at is not None:
        assert report.breaks_at >= when
        assert report.days_left == int((report.breaks_at - when).total_seconds() // 86400)
    # Trusted at `at` means trusted one second before breaks_at and not at breaks_at.
    for result in report.profiles:
        if result.trusted and result.breaks_at is not None:
            before = analyze(chain, profiles, at=result.breaks_at - ONE_SECOND)
            after = analyze(chain, profiles, at=result.breaks_at)
            name = result.profile
            assert next(p for p in before.profiles if p.profile == name).trusted
            assert not next(p for p in after.profiles if p.profile == name).trusted


@given(
    windows=st.lists(
        st.tuples(st.integers(0, 1000), st.integers(0, 1000)).map(sorted), max_size=6
    ),
    start=st.integers(0, 1000),
)
def test_breaks_at_is_the_first_uncovered_second(windows: list[list[int]], start: int) -> None:
    base = at("2020-01-01")
    intervals = [(base + s * ONE_SECOND, base + e * ONE_SECOND) for s, e in windows]
    t0 = base + start * ONE_SECOND
    result = breaks_at(intervals, t0)
    if not trusted_at(intervals, t0):
        assert result is None
        return
    assert result is not None
    assert not trusted_at(intervals, result)
    t = t0
    while t < result:  # bounded: at most 1001 steps
        assert trusted_at(intervals, t)
        t += ONE_SECOND


# -- hostile bytes: certificates, OCSP responses and CRLs ----------------------------------

_rev_pki = PKI(now=at("2026-03-01"))
_rev_root = _rev_pki.root("Prop Revocation Root", key="rsa2048")
_rev_inter = _rev_root.intermediate("Prop Revocation CA", key="rsa2048")
_rev_leaf = _rev_inter.leaf("revoked.example.com")
_REV_AT = at("2026-03-01T12:00:00Z")


def _ocsp_response() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp

    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=_rev_leaf.cert.parsed, issuer=_rev_inter.cert.parsed, algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.REVOKED, this_update=_REV_AT - dt.timedelta(hours=1),
            next_update=_REV_AT + dt.timedelta(days=1), revocation_time=_REV_AT,
            revocation_reason=x509.ReasonFlags.key_compromise,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, _rev_inter.cert.parsed)
        .certificates([_rev_inter.cert.parsed])
    )
    return builder.sign(_rev_inter.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _crl() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    entry = (
        x509.RevokedCertificateBuilder()
        .serial_number(_rev_leaf.cert.parsed.serial_number)
        .revocation_date(_REV_AT - dt.timedelta(days=1))
        .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
        .build()
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(_rev_inter.cert.parsed.subject)
        .last_update(_REV_AT - dt.timedelta(hours=1))
        .next_update(_REV_AT + dt.timedelta(days=1))
        .add_revoked_certificate(entry)
        .sign(_rev_inter.key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.DER)


_OCSP = _ocsp_response()
_CRL = _crl()
_CERTS = [_rev_leaf.cert.der, _rev_inter.cert.der, _rev_root.cert.der, _leaves[0].cert.der,
          _inters[0].cert.der]


@st.composite
def mutated(draw: st.DrawFn, originals: list[bytes]) -> bytes:
    """One of ``originals`` with a few bytes overwritten, inserted or cut, or truncated:
    mostly still DER-shaped, so parsing gets deep before it meets the damage."""
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = bytes([draw(st.integers(0, 255))])
        elif op == "delete" and data:
            del data[pos]
        else:
            data = data[:pos]
    return bytes(data)


hostile_ocsp = st.one_of(mutated([_OCSP]), st.binary(max_size=64))
hostile_crl = st.one_of(mutated([_CRL]), st.binary(max_size=64))


def test_unmutated_inputs_are_definitive() -> None:
    """The control for the two tests below: the undamaged answers say revoked."""
    from chainwatch.analysis.revocation import RevocationStatus, crl_status, ocsp_status

    leaf, inter = _rev_leaf.cert, _rev_inter.cert
    assert ocsp_status(_OCSP, leaf, inter, at=_REV_AT).status is RevocationStatus.REVOKED
    assert crl_status(_CRL, leaf, inter, at=_REV_AT).status is RevocationStatus.REVOKED


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(der=hostile_ocsp)
def test_ocsp_parsing_never_raises(der: bytes) -> None:
    from chainwatch.analysis.revocation import (
        Revocation,
        RevocationStatus,
        ocsp_next_update,
        ocsp_status,
    )

    result = ocsp_status(der, _rev_leaf.cert, _rev_inter.cert, at=_REV_AT)
    assert isinstance(result, Revocation)
    if result.status is RevocationStatus.UNKNOWN:
        assert result.detail
    ocsp_next_update(der)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(der=hostile_crl, pem=st.booleans())
def test_crl_parsing_never_raises(der: bytes, pem: bool) -> None:
    import base64

    from chainwatch.analysis.revocation import (
        Revocation,
        RevocationStatus,
        crl_next_update,
        crl_status,
    )

    if pem:
        der = b"-----BEGIN X509 CRL-----\n" + base64.encodebytes(der) + b"-----END X509 CRL-----\n"
    result = crl_status(der, _rev_leaf.cert, _rev_inter.cert, at=_REV_AT)
    assert isinstance(result, Revocation)
    if result.status is RevocationStatus.UNKNOWN:
        assert result.detail
    crl_next_update(der)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    damaged=mutated(_CERTS),
    position=st.integers(0, 2),
    legacy=st.booleans(),
    when=instants,
)
def test_damaged_certificates_never_make_the_engine_raise(
    damaged: bytes, position: int, legacy: bool, when: dt.datetime
) -> None:
    """A damaged certificate either fails to parse with ValueError (the documented
    contract every caller relies on) or is analysed like any other, wherever it sits."""
    try:
        cert = Cert.from_der(damaged)
    except ValueError:
        return
    chain = [_rev_leaf.cert, _rev_inter.cert, _rev_root.cert]
    chain[position] = cert
    store = Store("rev", (_rev_root.cert,) if position != 2 else (cert,))
    profile = Profile("p", store, Building.LEGACY if legacy else Building.MODERN)
    report = analyze(chain, [profile], at=when, host="revoked.example.com")
    assert report.status in set(Status)
