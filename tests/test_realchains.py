"""Real certificates, real stores, real dates: does chainwatch say what actually happened?

Anchors come from the shipped Mozilla history (``mozilla@DATE``), never from the test
data, so these tests check the engine and the history data together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chainwatch.model import Cert, signature_valid
from chainwatch.model.bundle import load_bundle_file

from .pki import pem_of

DATA = Path(__file__).parent / "data" / "realchains"
CliJson = Callable[..., tuple[int, Any]]


def cert(name: str) -> Cert:
    (c,) = load_bundle_file(DATA / name)
    return c


def by_profile(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["profile"]: p for p in report["profiles"]}


def test_every_signature_verifies() -> None:
    certs = [c for p in sorted(DATA.glob("*.pem")) for c in load_bundle_file(p)]
    by_subject: dict[str, list[Cert]] = {}
    for c in certs:
        by_subject.setdefault(c.subject, []).append(c)
    for c in certs:
        issuers = by_subject.get(c.issuer, [])
        assert any(signature_valid(c, i) for i in issuers), c.subject
    assert cert("dst_root_ca_x3.pem").self_signed  # SHA-1 self-signature checked by hand
    assert cert("addtrust_external_root.pem").signature_hash == "sha1"


# -- AddTrust External CA Root, 2020-05-30T10:48:38Z ------------------------------------


@pytest.fixture
def addtrust_chain(tmp_path: Path) -> Path:
    path = tmp_path / "miraheze.pem"
    path.write_bytes(pem_of(
        cert("leaf_star_miraheze_org_2019.pem"),
        cert("sectigo_rsa_dv_by_usertrust.pem"),
        cert("usertrust_rsa_by_addtrust.pem"),
    ))
    return path


ADDTRUST_PROFILES = ("mozilla@2020-05-01", "legacy:mozilla@2020-05-01")


def _check(cli_json: CliJson, bundle: Path, host: str, when: str,
           profiles: tuple[str, ...]) -> tuple[int, Any]:
    args: list[str | Path] = ["check-bundle", bundle, "--host", host, "--at", when]
    for p in profiles:
        args += ["--profile", p]
    return cli_json(*args)


def test_addtrust_day_before(cli_json: CliJson, addtrust_chain: Path) -> None:
    code, report = _check(cli_json, addtrust_chain, "www.miraheze.org", "2020-05-29",
                          ADDTRUST_PROFILES)
    modern, legacy = (by_profile(report)[p] for p in ADDTRUST_PROFILES)
    assert modern["trusted"] and legacy["trusted"]
    assert legacy["breaks_at"] == "2020-05-30T10:48:39Z"
    assert legacy["path"][-1] == cert("addtrust_external_root.pem").sha256
    assert modern["breaks_at"] == "2020-10-23T00:00:00Z"
    assert modern["path"][-1] == cert("usertrust_rsa_root.pem").sha256
    breaks = [f for f in report["findings"] if f["code"] == "PROFILE_BREAKS"]
    assert [f["profile"] for f in breaks] == ["legacy:mozilla@2020-05-01"]
    assert report["breaks_at"] == "2020-05-30T10:48:39Z"
    assert code == 2


def test_addtrust_day_after(cli_json: CliJson, addtrust_chain: Path) -> None:
    code, report = _check(cli_json, addtrust_chain, "www.miraheze.org", "2020-05-31",
                          ADDTRUST_PROFILES)
    modern, legacy = (by_profile(report)[p] for p in ADDTRUST_PROFILES)
    assert modern["trusted"] is True
    assert legacy["trusted"] is False
    assert legacy["error"] == "expired"
    assert code == 2


def test_addtrust_served_bundle_with_root(cli_json: CliJson) -> None:
    """The four certificates miraheze actually served until the day of the incident."""
    _, report = _check(cli_json, DATA / "addtrust_2020_served.pem", "meta.miraheze.org",
                          "2020-05-31", ADDTRUST_PROFILES)
    codes = {f["code"] for f in report["findings"]}
    assert {"UNTRUSTED", "EXPIRED_CERT_SENT", "ROOT_SENT"} <= codes
    assert by_profile(report)["mozilla@2020-05-01"]["trusted"] is True


# -- DST Root CA X3, 2021-09-30T14:01:15Z -------------------------------------------------


@pytest.fixture
def dst_chain(tmp_path: Path) -> Path:
    path = tmp_path / "elastic.pem"
    path.write_bytes(pem_of(
        cert("leaf_geoip_elastic_dev_2021.pem"),
        cert("lets_encrypt_r3.pem"),
        cert("isrg_root_x1_by_dst_root_ca_x3.pem"),
    ))
    return path


DST_PROFILES = ("mozilla@2021-09-01", "legacy:mozilla@2021-09-01", "mozilla@2016-06-01")


def test_dst_day_before(cli_json: CliJson, dst_chain: Path) -> None:
    code, report = _check(cli_json, dst_chain, "geoip.elastic.dev", "2021-09-29T12:00:00Z",
                          DST_PROFILES)
    modern, legacy, old_store = (by_profile(report)[p] for p in DST_PROFILES)
    assert modern["trusted"] and legacy["trusted"] and old_store["trusted"]
    # Modern clients with ISRG Root X1 outlive DST: they last as long as the leaf.
    assert modern["breaks_at"] == "2021-11-09T09:01:36Z"
    assert modern["path"][-1] == cert("isrg_root_x1.pem").sha256
    # OpenSSL 1.0.x builds through the served cross-sign to DST and breaks with it ...
    assert legacy["breaks_at"] == "2021-09-30T14:01:16Z"
    assert legacy["path"][-1] == cert("dst_root_ca_x3.pem").sha256
    # ... and so does every client whose store predates ISRG Root X1 (2016).
    assert old_store["breaks_at"] == "2021-09-30T14:01:16Z"
    breaks = {f["profile"] for f in report["findings"] if f["code"] == "PROFILE_BREAKS"}
    assert breaks == {"legacy:mozilla@2021-09-01", "mozilla@2016-06-01"}
    assert report["breaks_at"] == "2021-09-30T14:01:16Z"
    assert report["days_left"] == 1
    assert code == 2


@pytest.mark.parametrize(
    ("when", "legacy_ok"),
    [("2021-09-30T14:01:15Z", True), ("2021-09-30T14:01:16Z", False)],
)
def test_dst_the_second_it_broke(cli_json: CliJson, dst_chain: Path, when: str,
                                 legacy_ok: bool) -> None:
    _, report = _check(cli_json, dst_chain, "geoip.elastic.dev", when, DST_PROFILES)
    profiles = by_profile(report)
    assert profiles["mozilla@2021-09-01"]["trusted"] is True
    assert profiles["legacy:mozilla@2021-09-01"]["trusted"] is legacy_ok
    assert profiles["mozilla@2016-06-01"]["trusted"] is legacy_ok


def test_dst_day_after(cli_json: CliJson, dst_chain: Path) -> None:
    code, report = _check(cli_json, dst_chain, "geoip.elastic.dev", "2021-10-01",
                          DST_PROFILES)
    modern, legacy, old_store = (by_profile(report)[p] for p in DST_PROFILES)
    assert modern["trusted"] is True
    assert legacy["trusted"] is False and legacy["error"] == "expired"
    assert old_store["trusted"] is False and old_store["error"] == "expired"
    assert "DST Root CA X3" in legacy["reason"]
    assert code == 2


def test_dst_current_store_no_longer_has_dst(cli_json: CliJson, dst_chain: Path) -> None:
    """Today's Mozilla store dropped DST Root CA X3; modern clients still trust via X1."""
    _, report = _check(cli_json, dst_chain, "geoip.elastic.dev", "2021-10-15",
                       ("mozilla", "legacy:mozilla"))
    profiles = by_profile(report)
    assert profiles["mozilla"]["trusted"] is True
    # 1.0.2's alternative chains find ISRG Root X1 when DST is not in the store at all.
    assert profiles["legacy:mozilla"]["trusted"] is True


def test_dst_android_kept_working_through_the_cross_sign(cli_json: CliJson,
                                                         dst_chain: Path) -> None:
    """2021-10-15, two weeks after DST Root CA X3 expired: Android 7.0, which lacks ISRG
    Root X1, still trusts the served chain through the DST cross-sign (Android does not
    check a trust anchor's expiry: Let's Encrypt, 2020-12-21); OpenSSL 1.0.x with the same
    era's Mozilla store builds the same path and rejects it; a modern client trusts it
    through ISRG Root X1. The anchors are AOSP's android-7.0.0_r1 store and Mozilla's."""
    profiles = ("android-7.0", "legacy:mozilla@2021-09-01", "mozilla@2021-09-01",
                "android-7.1.1")
    code, report = _check(cli_json, dst_chain, "geoip.elastic.dev", "2021-10-15", profiles)
    android7, legacy, modern, android711 = (by_profile(report)[p] for p in profiles)
    dst, x1 = cert("dst_root_ca_x3.pem").sha256, cert("isrg_root_x1.pem").sha256
    cross = cert("isrg_root_x1_by_dst_root_ca_x3.pem").sha256

    assert android7["trusted"] is True and android7["error"] is None
    assert android7["path"][-2:] == [cross, dst]  # through the expired anchor
    assert android7["breaks_at"] == "2021-11-09T09:01:36Z"  # the leaf, not DST, ends it

    assert legacy["trusted"] is False and legacy["error"] == "expired"
    assert legacy["path"][-1] == dst and "DST Root CA X3" in legacy["reason"]

    assert modern["trusted"] is True and modern["path"][-1] == x1
    assert cross not in modern["path"]
    # 7.1.1 has ISRG Root X1 itself; it prefers the path that does not lean on DST
    assert android711["trusted"] is True and android711["path"][-1] == x1
    untrusted = {f["profile"] for f in report["findings"] if f["code"] == "UNTRUSTED"}
    assert untrusted == {"legacy:mozilla@2021-09-01"}
    assert code == 2


def test_dst_android_without_the_anchor_expiry_rule() -> None:
    """The same store with modern building (anchor dates checked) fails: the verdict
    above comes from the behaviour, not from the store."""
    from chainwatch.analysis.profiles import evaluate
    from chainwatch.stores import resolve_profile

    chain = (cert("leaf_geoip_elastic_dev_2021.pem"), cert("lets_encrypt_r3.pem"),
             cert("isrg_root_x1_by_dst_root_ca_x3.pem"))
    at = dt.datetime(2021, 10, 15, tzinfo=dt.UTC)
    assert evaluate(chain, resolve_profile("android-7.0"), at).trusted is True
    modern = evaluate(chain, resolve_profile("android@7.0"), at)
    assert modern.trusted is False and modern.error is not None
    assert modern.error.value == "expired"
