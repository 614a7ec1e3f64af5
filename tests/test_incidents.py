"""The incidents chainwatch exists for, rebuilt with throwaway hierarchies.

Each test reads like its postmortem: who trusted what, when it broke, and what the
report must say. Bundles and trust files go through the real CLI and store loaders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chainwatch.analysis.engine import analyze
from chainwatch.model import Building, Profile, Store

from .pki import PKI, at

CliJson = Callable[..., tuple[int, Any]]
WritePem = Callable[..., Path]

OLD_EXPIRY = "2021-09-30T14:01:15"


def by_profile(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["profile"]: p for p in report["profiles"]}


def codes(report: dict[str, Any], profile: str | None = None) -> set[str]:
    return {
        f["code"] for f in report["findings"] if profile is None or f["profile"] == profile
    }


# -- Hourfleet 2019: the renewed cert came from a hierarchy the back-ends did not trust ---


def test_hourfleet_new_hierarchy_untrusted_by_old_backend_store(
    cli_json: CliJson, write_pem: WritePem
) -> None:
    pki = PKI(now=at("2019-06-01"))
    old_root = pki.root("Old Corp Root")
    new_root = pki.root("New Vendor Root")
    renewed = new_root.intermediate("New Vendor CA").leaf("api.example.com")
    bundle = write_pem("renewed.pem", *renewed.chain(renewed.issuer))  # type: ignore[arg-type]
    old_trust = write_pem("old-backend-trust.pem", old_root.cert)
    new_trust = write_pem("new-trust.pem", new_root.cert)

    code, report = cli_json(
        "check-bundle", bundle, "--host", "api.example.com", "--at", "2019-06-01",
        "--profile", f"file:{old_trust}", "--profile", f"file:{new_trust}",
    )

    assert code == 2
    assert report["status"] == "critical"
    old = by_profile(report)[f"file:{old_trust}"]
    new = by_profile(report)[f"file:{new_trust}"]
    assert old["trusted"] is False
    assert old["error"] == "no_path"
    assert old["breaks_at"] is None
    assert new["trusted"] is True
    assert new["path"][-1] == new_root.cert.sha256
    assert "UNTRUSTED" in codes(report, f"file:{old_trust}")
    assert "UNTRUSTED" not in codes(report, f"file:{new_trust}")
    assert report["breaks_at"] == "2019-06-01T00:00:00Z"  # broken now: breaks_at is `at`
    assert report["days_left"] == 0


def test_hourfleet_negative_control_same_hierarchy_is_fine(
    cli_json: CliJson, write_pem: WritePem
) -> None:
    pki = PKI(now=at("2019-06-01"))
    root = pki.root("Old Corp Root")
    inter = root.intermediate("Old Corp CA")
    leaf = inter.leaf("api.example.com")
    bundle = write_pem("bundle.pem", *leaf.chain(inter))
    trust = write_pem("trust.pem", root.cert)
    code, report = cli_json(
        "check-bundle", bundle, "--host", "api.example.com", "--at", "2019-06-01",
        "--profile", f"file:{trust}",
    )
    assert code == 0, report["findings"]
    assert report["status"] == "ok"
    assert report["findings"] == []


# -- DST Root CA X3 pattern (2021): an old root's expiry breaks legacy building -------------


@pytest.fixture
def dst_world(write_pem: WritePem) -> dict[str, Any]:
    """leaf <- R <- X1-cross-signed-by-OLD, served; anchors OLD and X1."""
    pki = PKI(now=at("2021-08-01"))
    old = pki.root("Old Root", not_before="2000-09-30", expires=OLD_EXPIRY, key="rsa2048")
    x1 = pki.root("X1", not_before="2015-06-04", expires="2035-06-04", key="rsa2048")
    x1_by_old = x1.cross_signed_by(old, not_before="2021-01-20", expires="2024-09-30T18:14:03")
    r = x1.intermediate("R", not_before="2020-09-04", expires="2025-09-15T16:00:00")
    leaf = r.leaf("app.example.com", not_before="2021-08-11", expires="2021-11-09T09:01:35")
    return {
        "bundle": write_pem("served.pem", *leaf.chain(r, x1_by_old)),
        "both": write_pem("old-and-x1.pem", old.cert, x1.cert),
        "only_old": write_pem("only-old.pem", old.cert),
        "only_x1": write_pem("only-x1.pem", x1.cert),
        "old": old,
        "x1": x1,
        "leaf": leaf,
        "x1_by_old": x1_by_old,
    }


def test_dst_before_old_root_expires(cli_json: CliJson, dst_world: dict[str, Any]) -> None:
    both = dst_world["both"]
    code, report = cli_json(
        "check-bundle", dst_world["bundle"], "--host", "app.example.com",
        "--at", "2021-09-29T00:00:00Z",
        "--profile", f"file:{both}", "--profile", f"legacy:file:{both}",
    )
    modern = by_profile(report)[f"file:{both}"]
    legacy = by_profile(report)[f"legacy:file:{both}"]
    assert modern["trusted"] and legacy["trusted"]
    # Legacy builds through the served cross-sign up to OLD and breaks with it.
    assert legacy["breaks_at"] == "2021-09-30T14:01:16Z"
    assert legacy["path"][-1] == dst_world["old"].cert.sha256
    assert dst_world["x1_by_old"].cert.sha256 in legacy["path"]
    # Modern finds X1 itself and lasts as long as the leaf.
    assert modern["breaks_at"] == "2021-11-09T09:01:36Z"
    assert modern["path"][-1] == dst_world["x1"].cert.sha256
    breaks = [f for f in report["findings"] if f["code"] == "PROFILE_BREAKS"]
    assert [f["profile"] for f in breaks] == [f"legacy:file:{both}"]
    assert breaks[0]["severity"] == "warning"
    # The target counts down to the legacy break, not to the leaf's expiry.
    assert report["breaks_at"] == "2021-09-30T14:01:16Z"
    assert report["days_left"] == 1
    assert report["status"] == "critical"  # 1 day < crit_days 7
    assert code == 2


def test_dst_one_second_either_side_of_the_expiry(dst_world: dict[str, Any]) -> None:
    from chainwatch.model.bundle import load_bundle_file
    from chainwatch.stores import resolve_profile

    chain = load_bundle_file(dst_world["bundle"])
    legacy = resolve_profile(f"legacy:file:{dst_world['both']}")
    last_good = analyze(chain, [legacy], at=at("2021-09-30T14:01:15Z"))
    first_bad = analyze(chain, [legacy], at=at("2021-09-30T14:01:16Z"))
    assert last_good.profiles[0].trusted
    assert last_good.days_left == 0
    assert not first_bad.profiles[0].trusted
    # Timezone offsets are the same instants.
    assert analyze(chain, [legacy], at=at("2021-09-30T16:01:15+02:00")).profiles[0].trusted


def test_dst_after_old_root_expires(cli_json: CliJson, dst_world: dict[str, Any]) -> None:
    both, only_old = dst_world["both"], dst_world["only_old"]
    code, report = cli_json(
        "check-bundle", dst_world["bundle"], "--host", "app.example.com",
        "--at", "2021-10-01",
        "--profile", f"file:{both}", "--profile", f"legacy:file:{both}",
        "--profile", f"file:{only_old}",
    )
    profiles = by_profile(report)
    assert profiles[f"file:{both}"]["trusted"] is True
    assert profiles[f"file:{both}"]["path"][-1] == dst_world["x1"].cert.sha256
    assert profiles[f"legacy:file:{both}"]["trusted"] is False
    assert profiles[f"legacy:file:{both}"]["error"] == "expired"
    assert profiles[f"file:{only_old}"]["trusted"] is False
    assert profiles[f"file:{only_old}"]["error"] == "expired"
    untrusted = {f["profile"] for f in report["findings"] if f["code"] == "UNTRUSTED"}
    assert untrusted == {f"legacy:file:{both}", f"file:{only_old}"}
    assert code == 2


def test_dst_android_keeps_trusting_through_the_expired_anchor(
    cli_json: CliJson, dst_world: dict[str, Any]
) -> None:
    """Let's Encrypt's answer for Android < 7.1.1: a store holding only the old root still
    trusts the served cross-sign after the root's expiry, because Android does not check
    an anchor's dates ("Extending Android Device Compatibility for Let's Encrypt
    Certificates", 2020-12-21). OpenSSL 1.0.x and modern clients with that store do not;
    modern clients with the new root do."""
    only_old, only_x1 = dst_world["only_old"], dst_world["only_x1"]
    specs = {
        "android": f"android:file:{only_old}",
        "java": f"java:file:{only_old}",
        "legacy": f"legacy:file:{only_old}",
        "modern-old": f"file:{only_old}",
        "modern-x1": f"file:{only_x1}",
    }
    args = [a for spec in specs.values() for a in ("--profile", spec)]
    code, report = cli_json("check-bundle", dst_world["bundle"], "--host", "app.example.com",
                            "--at", "2021-10-01", *args)
    profiles = by_profile(report)
    android = profiles[specs["android"]]
    assert android["trusted"] is True
    assert android["path"] == [dst_world["leaf"].cert.sha256, android["path"][1],
                               dst_world["x1_by_old"].cert.sha256, dst_world["old"].cert.sha256]
    # The anchor's dates do not count: the leaf's expiry is the next break.
    assert android["breaks_at"] == "2021-11-09T09:01:36Z"
    assert profiles[specs["java"]]["trusted"] is True  # the JDK ignores anchor dates too
    for name in ("legacy", "modern-old"):
        assert profiles[specs[name]]["trusted"] is False
        assert profiles[specs[name]]["error"] == "expired"
    assert profiles[specs["modern-x1"]]["trusted"] is True
    assert profiles[specs["modern-x1"]]["path"][-1] == dst_world["x1"].cert.sha256
    untrusted = {f["profile"] for f in report["findings"] if f["code"] == "UNTRUSTED"}
    assert untrusted == {specs["legacy"], specs["modern-old"]}
    assert code == 2


def test_dst_android_before_the_expiry_does_not_count_down_to_it(
    dst_world: dict[str, Any],
) -> None:
    from chainwatch.model.bundle import load_bundle_file
    from chainwatch.stores import resolve_profile

    chain = load_bundle_file(dst_world["bundle"])
    android = resolve_profile(f"android:file:{dst_world['only_old']}")
    legacy = resolve_profile(f"legacy:file:{dst_world['only_old']}")
    report = analyze(chain, [android, legacy], at=at("2021-09-29"))
    by = {r.profile: r for r in report.profiles}
    assert by[legacy.spec].breaks_at == at("2021-09-30T14:01:16Z")
    assert by[android.spec].breaks_at == at("2021-11-09T09:01:36Z")


# -- AddTrust pattern (2020): cross-signed intermediate served with the expiring root ------


@pytest.fixture
def addtrust_world(write_pem: WritePem) -> dict[str, Any]:
    pki = PKI(now=at("2020-05-01"))
    addtrust = pki.root("AddTrust", not_before="2000-05-30T10:48:38",
                        expires="2020-05-30T10:48:38", key="rsa2048", sha1=True)
    usertrust = pki.root("USERTrust", not_before="2010-02-01", expires="2038-01-18T23:59:59",
                         key="rsa2048")
    ut_by_addtrust = usertrust.cross_signed_by(
        addtrust, not_before="2000-05-30T10:48:38", expires="2020-05-30T10:48:38"
    )
    dv = usertrust.intermediate("Sectigo DV", not_before="2018-11-02", expires="2030-12-31")
    leaf = dv.leaf("*.example.org", "example.org", not_before="2019-10-25",
                   expires="2020-10-22T23:59:59")
    return {
        "bundle": write_pem("served.pem", *leaf.chain(dv, ut_by_addtrust, addtrust)),
        "store": write_pem("store-2020.pem", addtrust.cert, usertrust.cert),
        "addtrust": addtrust,
        "usertrust": usertrust,
        "ut_by_addtrust": ut_by_addtrust,
    }


def test_addtrust_day_before(cli_json: CliJson, addtrust_world: dict[str, Any]) -> None:
    store = addtrust_world["store"]
    code, report = cli_json(
        "check-bundle", addtrust_world["bundle"], "--host", "www.example.org",
        "--at", "2020-05-29", "--profile", f"file:{store}", "--profile", f"legacy:file:{store}",
    )
    profiles = by_profile(report)
    assert profiles[f"file:{store}"]["trusted"] is True
    assert profiles[f"file:{store}"]["breaks_at"] == "2020-10-23T00:00:00Z"
    assert profiles[f"legacy:file:{store}"]["trusted"] is True
    assert profiles[f"legacy:file:{store}"]["breaks_at"] == "2020-05-30T10:48:39Z"
    assert "PROFILE_BREAKS" in codes(report, f"legacy:file:{store}")
    assert "ROOT_SENT" in codes(report)
    assert "WEAK_SIGNATURE" not in codes(report)  # a SHA-1 *anchor* is trusted by inclusion
    assert report["breaks_at"] == "2020-05-30T10:48:39Z"
    assert code == 2


def test_addtrust_day_after(cli_json: CliJson, addtrust_world: dict[str, Any]) -> None:
    store = addtrust_world["store"]
    code, report = cli_json(
        "check-bundle", addtrust_world["bundle"], "--host", "www.example.org",
        "--at", "2020-05-31", "--profile", f"file:{store}", "--profile", f"legacy:file:{store}",
    )
    profiles = by_profile(report)
    assert profiles[f"file:{store}"]["trusted"] is True
    assert profiles[f"file:{store}"]["path"][-1] == addtrust_world["usertrust"].cert.sha256
    assert profiles[f"legacy:file:{store}"]["trusted"] is False
    assert profiles[f"legacy:file:{store}"]["error"] == "expired"
    expired_sent = {f["cert"] for f in report["findings"] if f["code"] == "EXPIRED_CERT_SENT"}
    assert expired_sent == {
        addtrust_world["ut_by_addtrust"].cert.sha256, addtrust_world["addtrust"].cert.sha256
    }
    assert code == 2


def test_legacy_recovers_when_the_expired_root_leaves_the_store(
    addtrust_world: dict[str, Any],
) -> None:
    """OpenSSL 1.0.2's alternative chains: with AddTrust gone from the store the builder
    drops the served cross-sign and finds USERTrust; with it present (expired) it does not."""
    from chainwatch.model.bundle import load_bundle_file

    chain = load_bundle_file(addtrust_world["bundle"])
    without = Store("after-removal", (addtrust_world["usertrust"].cert,))
    report = analyze(chain, [Profile("legacy:after", without, Building.LEGACY)],
                     at=at("2020-06-15"))
    assert report.profiles[0].trusted
    assert report.profiles[0].path[-1] == addtrust_world["usertrust"].cert.sha256
