"""Purpose (extendedKeyUsage) along the whole path, and the depth each behaviour allows.

An intermediate whose EKU lacks serverAuth (an email-only CA) is refused by Chrome,
Firefox, Go, rustls and OpenSSL (``-purpose sslserver``, 1.0.2 included), so ``modern``
and ``legacy`` must call such a chain untrusted with error ``purpose``; ``modern``
backtracks to another issuer that allows serverAuth, ``legacy`` judges the first path it
built. An anchor's own EKU counts for ``modern`` (OpenSSL >= 1.1.0, Go) and not for
``legacy`` (OpenSSL 1.0.x checks only the certificates it was sent). Android and Java
check the leaf's EKU only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU

from chainwatch.analysis.engine import analyze
from chainwatch.model import LEGACY, MODERN, Behaviour, Cert, PathError, Profile, Store
from chainwatch.model.behaviours import ANDROID, JAVA

from . import servers as srv
from .pki import PKI, at

CliJson = Callable[..., tuple[int, Any]]
WritePem = Callable[..., Path]
NOW = at("2026-03-01T12:00:00Z")
MAIL_ONLY = [EKU.EMAIL_PROTECTION]


def verdicts(chain: tuple[Cert, ...], anchors: tuple[Cert, ...],
             *behaviours: Behaviour) -> dict[str, Any]:
    store = Store("test", anchors)
    profiles = [Profile(b.name, store, b) for b in behaviours]
    report = analyze(chain, profiles, at=NOW, host="www.example.com")
    return {r.profile: r for r in report.profiles} | {"report": report}


def test_email_only_intermediate_is_untrusted_for_modern_and_legacy() -> None:
    pki = PKI(now=NOW)
    root = pki.root("Mail Root")
    inter = root.intermediate("Mail CA", eku=MAIL_ONLY)
    leaf = inter.leaf("www.example.com")
    got = verdicts(leaf.chain(inter), (root.cert,), MODERN, LEGACY, ANDROID, JAVA)
    for name in ("modern", "legacy"):
        result = got[name]
        assert not result.trusted
        assert result.error is PathError.PURPOSE
        assert result.reason == (
            "the intermediate 'CN=Mail CA' has extendedKeyUsage emailProtection, without "
            f"serverAuth: {name} clients refuse it on a TLS server's path"
        )
        assert result.path == (leaf.cert.sha256, inter.cert.sha256, root.cert.sha256)
    # Android and Java check the EKU of the leaf only (see chainwatch.model.behaviours).
    assert got["android"].trusted and got["java"].trusted
    untrusted = [f for f in got["report"].findings if f.code == "UNTRUSTED"]
    assert {f.profile for f in untrusted} == {"modern", "legacy"}
    assert all("(purpose)" in f.message and "CN=Mail CA" in f.message for f in untrusted)


def test_any_eku_and_server_gated_crypto_allow_server_auth_on_a_ca() -> None:
    from cryptography import x509

    pki = PKI(now=NOW)
    root = pki.root("Root")
    for eku in ([EKU.ANY_EXTENDED_KEY_USAGE], [x509.ObjectIdentifier("2.16.840.1.113730.4.1")],
                [EKU.SERVER_AUTH, EKU.CLIENT_AUTH]):
        inter = root.intermediate("CA", eku=eku)
        leaf = inter.leaf("www.example.com")
        assert verdicts(leaf.chain(inter), (root.cert,), MODERN)["modern"].trusted


def test_modern_backtracks_from_an_email_only_cross_sign_to_a_valid_path() -> None:
    """The intermediate exists twice: cross-signed by root A with an email-only EKU,
    and issued by root B without one. Both are served, the email-only one first."""
    pki = PKI(now=NOW)
    a, b = pki.root("Root A"), pki.root("Root B")
    inter = b.intermediate("Issuing CA")
    inter_by_a = inter.cross_signed_by(a, eku=MAIL_ONLY)
    leaf = inter.leaf("www.example.com")
    chain = leaf.chain(inter_by_a, inter)
    got = verdicts(chain, (a.cert, b.cert), MODERN, LEGACY)
    assert got["modern"].trusted
    assert got["modern"].path == (leaf.cert.sha256, inter.cert.sha256, b.cert.sha256)
    assert got["modern"].breaks_at is not None
    # OpenSSL 1.0.x takes the first served issuer, reaches Root A and stops there.
    legacy = got["legacy"]
    assert not legacy.trusted and legacy.error is PathError.PURPOSE
    assert legacy.path == (leaf.cert.sha256, inter_by_a.cert.sha256, a.cert.sha256)
    assert "'CN=Issuing CA' has extendedKeyUsage emailProtection" in (legacy.reason or "")


def test_the_anchors_own_eku_counts_for_modern_but_not_for_legacy() -> None:
    pki = PKI(now=NOW)
    root = pki.root("Mail Root", eku=MAIL_ONLY)
    inter = root.intermediate("Issuing CA")
    leaf = inter.leaf("www.example.com")
    got = verdicts(leaf.chain(inter), (root.cert,), MODERN, LEGACY, ANDROID, JAVA)
    assert not got["modern"].trusted
    assert got["modern"].error is PathError.PURPOSE
    assert got["modern"].reason is not None
    assert got["modern"].reason.startswith(
        "the anchor 'CN=Mail Root' has extendedKeyUsage emailProtection, without serverAuth"
    )
    assert got["legacy"].trusted
    assert got["android"].trusted and got["java"].trusted


def test_leaf_without_server_auth_is_a_purpose_error_for_every_behaviour() -> None:
    pki = PKI(now=NOW)
    root = pki.root("Root")
    inter = root.intermediate("CA")
    leaf = inter.leaf("www.example.com", eku=[EKU.CLIENT_AUTH])
    got = verdicts(leaf.chain(inter), (root.cert,), MODERN, LEGACY, ANDROID, JAVA)
    for name in ("modern", "legacy", "android", "java"):
        assert got[name].error is PathError.PURPOSE
        assert got[name].reason == (
            "the leaf 'CN=www.example.com' has extendedKeyUsage clientAuth, without serverAuth"
        )


def test_check_bundle_reports_error_purpose(cli_json: CliJson, write_pem: WritePem) -> None:
    pki = PKI(now=NOW)
    root = pki.root("Mail Root")
    inter = root.intermediate("Mail CA", eku=MAIL_ONLY)
    leaf = inter.leaf("www.example.com")
    bundle = write_pem("bundle.pem", *leaf.chain(inter))
    trust = write_pem("trust.pem", root.cert)
    code, report = cli_json(
        "check-bundle", bundle, "--host", "www.example.com", "--at", "2026-03-01",
        "--profile", f"file:{trust}", "--profile", f"legacy:file:{trust}",
        "--profile", f"android:file:{trust}",
    )
    assert code == 2
    by = {p["profile"]: p for p in report["profiles"]}
    assert by[f"file:{trust}"]["error"] == "purpose"
    assert by[f"legacy:file:{trust}"]["error"] == "purpose"
    assert by[f"android:file:{trust}"]["trusted"] is True
    assert "CN=Mail CA" in by[f"file:{trust}"]["reason"]


@pytest.fixture
def lab() -> Iterator[srv.ServerLoop]:
    with srv.ServerLoop() as servers:
        yield servers


def test_check_of_a_server_sending_an_email_only_intermediate(
    cli_json: CliJson, write_pem: WritePem, lab: srv.ServerLoop, tmp_path: Path
) -> None:
    """The missed outage end to end: a real TLS server on loopback."""
    pki = PKI(now=NOW)
    root = pki.root("Mail Root")
    inter = root.intermediate("Mail CA", eku=MAIL_ONLY)
    leaf = inter.leaf("www.example.com")
    ep = lab.serve(srv.tls_handler(srv.server_context(leaf.chain(inter), leaf.key, tmp_path)))
    trust = write_pem("trust.pem", root.cert)
    code, report = cli_json("check", ep.hostport, "--sni", "www.example.com",
                            "--at", "2026-03-01T12:00:00Z", "--profile", f"file:{trust}")
    assert code == 2
    (profile,) = report["profiles"]
    assert profile["trusted"] is False and profile["error"] == "purpose"
    assert [f["code"] for f in report["findings"] if f["severity"] == "critical"] == ["UNTRUSTED"]


# -- depth --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deep() -> dict[str, Any]:
    """root -> 12 intermediates -> leaf, served leaf first (14 certificates with the root)."""
    pki = PKI(now=NOW)
    root = pki.root("Deep Root")
    cas = [root]
    for i in range(12):
        cas.append(cas[-1].intermediate(f"Deep CA {i}"))
    leaf = cas[-1].leaf("www.example.com")
    return {"root": root, "chain": leaf.chain(*reversed(cas[1:])), "leaf": leaf}


def test_a_chain_deeper_than_the_limit_says_so(deep: dict[str, Any]) -> None:
    chain, root = deep["chain"], deep["root"]
    assert len(chain) == 13
    got = verdicts(chain, (root.cert,), MODERN, LEGACY, JAVA)
    modern = got["modern"]
    assert not modern.trusted
    assert modern.error is PathError.OTHER
    assert modern.reason == (
        "path longer than 10 certificates: leaf to anchor it has 14, and modern clients "
        "stop building at 10"
    )
    assert modern.path == (*(c.sha256 for c in chain), root.cert.sha256)
    assert got["java"].reason is not None
    assert got["java"].reason.startswith("path longer than 11 certificates")
    # OpenSSL 1.0.x verifies up to depth 100.
    assert got["legacy"].trusted
    # The root is an anchor: the chain is complete, whatever the depth.
    assert not any(f.code == "CHAIN_INCOMPLETE" for f in got["report"].findings)


def test_each_behaviour_accepts_a_path_as_long_as_its_limit(deep: dict[str, Any]) -> None:
    pki = PKI(now=NOW)
    root = pki.root("Root")
    cas = [root]
    for i in range(8):  # leaf + 8 + root = 10 certificates: modern's limit exactly
        cas.append(cas[-1].intermediate(f"CA {i}"))
    leaf = cas[-1].leaf("www.example.com")
    chain = leaf.chain(*reversed(cas[1:]))
    assert verdicts(chain, (root.cert,), MODERN)["modern"].trusted
    nine = cas[-1].intermediate("CA 8")
    longer = nine.leaf("www.example.com").chain(nine, *reversed(cas[1:]))
    got = verdicts(longer, (root.cert,), MODERN, JAVA)
    assert not got["modern"].trusted and got["java"].trusted  # 11 certificates
