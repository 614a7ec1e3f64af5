"""Each finding code a static bundle can show, with a negative control beside it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chainwatch.analysis.engine import analyze
from chainwatch.model import Building, Cert, Profile, Report, Severity, Status, Store

from .pki import CA, PKI, at

NOW = at("2024-03-01T12:00:00Z")


@pytest.fixture
def pki() -> PKI:
    return PKI(now=NOW)


@pytest.fixture
def root(pki: PKI) -> CA:
    return pki.root("Test Root")


@pytest.fixture
def inter(root: CA) -> CA:
    return root.intermediate("Test Intermediate")


def modern(*anchors: Cert) -> Profile:
    return Profile("test", Store("test", anchors))


def legacy(*anchors: Cert) -> Profile:
    return Profile("legacy:test", Store("test", anchors), Building.LEGACY)


def check(chain: tuple[Cert, ...], *profiles: Profile, host: str | None = "www.example.com",
          when: dt.datetime = NOW, **kw: Any) -> Report:
    return analyze(chain, profiles, at=when, host=host, **kw)


def codes(report: Report) -> set[str]:
    return {f.code.value for f in report.findings}


def test_clean_chain_has_no_findings(root: CA, inter: CA) -> None:
    leaf = inter.leaf("www.example.com")
    report = check(leaf.chain(inter), modern(root.cert), legacy(root.cert))
    assert report.status is Status.OK
    assert report.findings == ()
    assert all(p.trusted for p in report.profiles)
    assert report.profiles[0].path == (leaf.cert.sha256, inter.cert.sha256, root.cert.sha256)


def test_missing_intermediate_is_chain_incomplete(root: CA, inter: CA) -> None:
    leaf = inter.leaf("www.example.com")
    report = check(leaf.chain(), modern(root.cert), legacy(root.cert))
    assert {"CHAIN_INCOMPLETE", "UNTRUSTED"} <= codes(report)
    incomplete = [f for f in report.findings if f.code.value == "CHAIN_INCOMPLETE"]
    assert {f.profile for f in incomplete} == {"test", "legacy:test"}
    assert all(f.cert == leaf.cert.sha256 for f in incomplete)
    assert "Test Intermediate" in incomplete[0].message
    assert report.profiles[0].error is not None and report.profiles[0].error.value == "no_path"
    assert report.status is Status.CRITICAL


def test_intermediate_in_the_store_is_not_incomplete(root: CA, inter: CA) -> None:
    leaf = inter.leaf("www.example.com")
    report = check(leaf.chain(), modern(root.cert, inter.cert))
    assert "CHAIN_INCOMPLETE" not in codes(report)
    assert report.profiles[0].trusted


def test_wrong_order(root: CA, inter: CA) -> None:
    sub = inter.intermediate("Sub CA")
    leaf = sub.leaf("www.example.com")
    report = check((leaf.cert, inter.cert, sub.cert), modern(root.cert))
    assert "CHAIN_ORDER" in codes(report)
    assert report.profiles[0].trusted  # modern clients cope; the finding is a warning
    assert report.status is Status.WARNING
    ordered = check((leaf.cert, sub.cert, inter.cert), modern(root.cert))
    assert "CHAIN_ORDER" not in codes(ordered)


def test_extra_unrelated_cert(pki: PKI, root: CA, inter: CA) -> None:
    stranger = pki.root("Unrelated Root").intermediate("Unrelated CA")
    leaf = inter.leaf("www.example.com")
    report = check(leaf.chain(inter, stranger), modern(root.cert))
    unused = [f for f in report.findings if f.code.value == "CHAIN_UNUSED_CERT"]
    assert [f.cert for f in unused] == [stranger.cert.sha256]
    assert unused[0].severity is Severity.INFO
    assert report.status is Status.OK


def test_root_sent(root: CA, inter: CA) -> None:
    leaf = inter.leaf("www.example.com")
    report = check(leaf.chain(inter, root), modern(root.cert))
    sent = [f for f in report.findings if f.code.value == "ROOT_SENT"]
    assert [f.cert for f in sent] == [root.cert.sha256]
    assert "CHAIN_UNUSED_CERT" not in codes(report)


def test_expired_cert_sent_but_unused_by_modern(pki: PKI, root: CA) -> None:
    """An expired cross-sign is served; modern clients route around it."""
    inter = root.intermediate("CA")
    old = pki.root("Retired Root", not_before="2000-01-01", expires="2023-01-01")
    root_by_old = root.cross_signed_by(old, not_before="2020-01-01", expires="2023-01-01")
    leaf = inter.leaf("www.example.com")
    report = check(leaf.chain(inter, root_by_old), modern(root.cert, old.cert),
                   legacy(root.cert, old.cert))
    sent = [f for f in report.findings if f.code.value == "EXPIRED_CERT_SENT"]
    assert [f.cert for f in sent] == [root_by_old.cert.sha256]
    profiles = {p.profile: p for p in report.profiles}
    assert profiles["test"].trusted
    assert root_by_old.cert.sha256 not in profiles["test"].path
    assert not profiles["legacy:test"].trusted  # 1.0.x builds through it and fails


def test_leaf_expired_and_not_yet_valid(inter: CA, root: CA) -> None:
    expired = inter.leaf("www.example.com", not_before="2023-01-01", expires="2024-01-01")
    report = check(expired.chain(inter), modern(root.cert))
    assert "LEAF_EXPIRED" in codes(report)
    assert report.profiles[0].error is not None
    assert report.profiles[0].error.value == "expired"
    future = inter.leaf("www.example.com", not_before="2024-06-01", expires="2025-06-01")
    report = check(future.chain(inter), modern(root.cert))
    assert "LEAF_NOT_YET_VALID" in codes(report)
    assert report.profiles[0].error is not None
    assert report.profiles[0].error.value == "not_yet_valid"
    assert report.status is Status.CRITICAL


@pytest.mark.parametrize(
    ("names", "host", "ok"),
    [
        (("*.example.com",), "www.example.com", True),
        (("*.example.com",), "WWW.Example.COM.", True),
        (("*.example.com",), "a.b.example.com", False),
        (("*.example.com",), "example.com", False),
        (("www.example.com",), "example.com", False),
        (("f*.example.com",), "foo.example.com", False),
        (("*.com",), "example.com", False),
        (("192.0.2.7",), "192.0.2.7", True),
        (("192.0.2.7",), "192.0.2.8", False),
        (("2001:db8::1",), "2001:db8:0::1", True),
        (("www.example.com",), "192.0.2.7", False),
    ],
)
def test_hostname_matching(inter: CA, root: CA, names: tuple[str, ...], host: str,
                           ok: bool) -> None:
    leaf = inter.leaf(*names)
    report = check(leaf.chain(inter), modern(root.cert), host=host)
    assert ("HOSTNAME_MISMATCH" not in codes(report)) is ok
    assert (report.status is Status.CRITICAL) is not ok


def test_cn_is_ignored_when_sans_exist(inter: CA, root: CA) -> None:
    leaf = inter.leaf("api.example.com", common_name="www.example.com")
    report = check(leaf.chain(inter), modern(root.cert), host="www.example.com")
    assert "HOSTNAME_MISMATCH" in codes(report)


def test_self_signed_leaf(pki: PKI) -> None:
    leaf = pki.self_signed_leaf("www.example.com")
    report = check(leaf.chain(), modern(pki.root("Some Root").cert))
    assert {"SELF_SIGNED_LEAF", "UNTRUSTED"} <= codes(report)
    assert "CHAIN_INCOMPLETE" not in codes(report)


def test_rsa_1024_leaf(inter: CA, root: CA) -> None:
    leaf = inter.leaf("www.example.com", key="rsa1024")
    report = check(leaf.chain(inter), modern(root.cert), legacy(root.cert))
    weak = [f for f in report.findings if f.code.value == "WEAK_KEY"]
    assert [f.cert for f in weak] == [leaf.cert.sha256]
    assert "1024-bit RSA" in weak[0].message
    profiles = {p.profile: p for p in report.profiles}
    assert not profiles["test"].trusted  # modern clients refuse it
    assert profiles["legacy:test"].trusted  # OpenSSL 1.0.x accepted it


def test_sha1_signature(pki: PKI) -> None:
    root = pki.root("RSA Root", key="rsa2048")
    inter = root.intermediate("SHA-1 CA", key="rsa2048", sha1=True)
    leaf = inter.leaf("www.example.com", sha1=True)
    report = check(leaf.chain(inter), modern(root.cert), legacy(root.cert))
    weak = {f.cert for f in report.findings if f.code.value == "WEAK_SIGNATURE"}
    assert weak == {leaf.cert.sha256, inter.cert.sha256}
    assert leaf.cert.signature_hash == "sha1"
    profiles = {p.profile: p for p in report.profiles}
    assert profiles["legacy:test"].trusted  # the SHA-1 signatures really verify
    assert not profiles["test"].trusted


def test_tampered_signature_is_bad_signature(root: CA, inter: CA) -> None:
    leaf = inter.leaf("www.example.com")
    der = bytearray(leaf.cert.der)
    der[-3] ^= 0x01  # inside the signature value: still parses, no longer verifies
    tampered = Cert.from_der(bytes(der))
    report = check((tampered, inter.cert), modern(root.cert))
    assert not report.profiles[0].trusted
    assert report.profiles[0].error is not None
    assert report.profiles[0].error.value == "bad_signature"


def test_same_name_other_key_is_no_path(root: CA, inter: CA, pki: PKI) -> None:
    impostor = pki.root("Test Intermediate").cross_signed_by(root)  # right name, wrong key
    leaf = inter.leaf("www.example.com")
    report = check(leaf.chain(impostor), modern(root.cert))
    assert report.profiles[0].error is not None
    assert report.profiles[0].error.value == "no_path"


def test_key_mismatch(cli: Callable[..., tuple[int, str, str]], write_pem: Callable[..., Path],
                      tmp_path: Path, root: CA, inter: CA) -> None:
    leaf = inter.leaf("www.example.com", expires=dt.datetime.now(dt.UTC) + dt.timedelta(days=90))
    other = inter.leaf("www.example.com")
    bundle = write_pem("bundle.pem", *leaf.chain(inter))
    trust = write_pem("trust.pem", root.cert)
    right, wrong = tmp_path / "right.key", tmp_path / "wrong.key"
    right.write_bytes(leaf.key_pem())
    wrong.write_bytes(other.key_pem())
    base = ["check-bundle", bundle, "--profile", f"file:{trust}", "--host", "www.example.com"]
    code, out, _ = cli(*base, "--key", right)
    assert code == 0, out
    assert "KEY_MISMATCH" not in out
    code, out, _ = cli(*base, "--key", wrong)
    assert code == 2
    assert out.startswith("CHAINWATCH CRITICAL")
    assert "KEY_MISMATCH" in out


def test_expires_soon_thresholds(root: CA, inter: CA) -> None:
    leaf = inter.leaf("www.example.com", expires=NOW + dt.timedelta(days=20, hours=1))
    report = check(leaf.chain(inter), modern(root.cert))
    assert report.days_left == 20
    assert report.status is Status.WARNING
    soon = [f for f in report.findings if f.code.value == "EXPIRES_SOON"]
    assert soon[0].severity is Severity.WARNING
    assert soon[0].cert == leaf.cert.sha256
    report = check(leaf.chain(inter), modern(root.cert), warn_days=10, crit_days=5)
    assert report.status is Status.OK
    report = check(leaf.chain(inter), modern(root.cert), when=NOW + dt.timedelta(days=15))
    assert report.days_left == 5
    assert report.status is Status.CRITICAL


def test_days_left_rounds_down_and_breaks_at_is_exact(root: CA, inter: CA) -> None:
    leaf = inter.leaf("www.example.com", expires=NOW + dt.timedelta(days=3, seconds=-1))
    report = check(leaf.chain(inter), modern(root.cert))
    assert report.breaks_at == NOW + dt.timedelta(days=3)  # not_after + 1 s
    assert report.days_left == 3
    report = check(leaf.chain(inter), modern(root.cert), when=NOW + dt.timedelta(seconds=1))
    assert report.days_left == 2  # 2 days 23:59:59 left rounds down


def test_breaks_at_bridges_overlapping_roots(pki: PKI) -> None:
    """Trust carries over from an expiring path to a longer one without a gap."""
    old = pki.root("Old", expires=NOW + dt.timedelta(days=10))
    new = pki.root("New", expires=NOW + dt.timedelta(days=4000))
    inter = new.intermediate("CA", expires=NOW + dt.timedelta(days=1000))
    inter_by_old = inter.cross_signed_by(old, expires=NOW + dt.timedelta(days=10))
    leaf = inter.leaf("www.example.com", expires=NOW + dt.timedelta(days=60))
    report = check(leaf.chain(inter_by_old), modern(old.cert, new.cert))
    # Only the path through the cross-sign is served... but modern finds none via `new`
    # without `inter` itself, so trust ends with the cross-sign.
    assert report.days_left == 10
    both = check(leaf.chain(inter, inter_by_old), modern(old.cert, new.cert))
    assert both.days_left == 60
