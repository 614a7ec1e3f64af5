"""``chainwatch advise``: which chain to serve, told on the incidents.

AddTrust (2020): serving the expired cross-sign is what broke OpenSSL 1.0.x; the advice
drops it. DST Root CA X3 (2021): Android < 7.1.1 lives on the cross-sign; the advice
keeps it while modern clients go on via ISRG Root X1. Hourfleet (2019): no chain makes a
back-end that trusts only the old hierarchy accept the new leaf; the advice says so and
why. Every chain is judged by the engine; the stores are real (``file:`` of the lab's
roots, the shipped Android and Mozilla histories) and so are the servers (loopback TLS,
a loopback HTTP server for caIssuers).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainwatch.analysis.advise import advise
from chainwatch.analysis.engine import Analyzer, target_breaks_at
from chainwatch.model import LEGACY, MODERN, Cert, Profile, ProfileResult, Store
from chainwatch.model.advice import Change, PoolCert
from chainwatch.model.behaviours import ANDROID as ANDROID_BEHAVIOUR
from chainwatch.model.bundle import load_bundle_file
from chainwatch.probe.http import SHARED_CACHE
from chainwatch.stores import resolve_profile
from chainwatch.testing.lab.scenarios import build_world, trust_bundles

from . import servers as srv
from .pki import PKI, at, pem_of
from .test_revocation import ALLOW_LOOPBACK, HttpLab, Route, aia

CliJson = Callable[..., tuple[int, Any]]
Cli = Callable[..., tuple[int, str, str]]
WritePem = Callable[..., Path]
REAL = Path(__file__).parent / "data" / "realchains"


def real(name: str) -> Cert:
    (cert,) = load_bundle_file(REAL / name)
    return cert


def by_profile(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["profile"]: p for p in doc["advice"]["profiles"]}


def changes(doc: dict[str, Any]) -> dict[str, str]:
    return {d["sha256"]: d["change"] for d in doc["advice"]["diff"]}


@pytest.fixture(autouse=True)
def fresh_fetch_cache() -> Iterator[None]:
    SHARED_CACHE.clear()
    yield
    SHARED_CACHE.clear()


# -- AddTrust (2020-05-30): the expired cross-sign must go -----------------------------------


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
    leaf = dv.leaf("www.example.org", not_before="2019-10-25", expires="2020-10-22T23:59:59")
    return {
        "bundle": write_pem("served.pem", *leaf.chain(dv, ut_by_addtrust, addtrust)),
        "store": write_pem("store-2020.pem", addtrust.cert, usertrust.cert),
        "leaf": leaf.cert, "dv": dv.cert, "cross": ut_by_addtrust.cert,
        "addtrust": addtrust.cert, "usertrust": usertrust.cert,
    }


def test_addtrust_after_the_expiry_the_advice_drops_the_cross_sign(
    cli_json: CliJson, addtrust_world: dict[str, Any]
) -> None:
    w = addtrust_world
    modern, legacy = f"file:{w['store']}", f"legacy:file:{w['store']}"
    code, doc = cli_json("advise", w["bundle"], "--host", "www.example.org",
                         "--at", "2020-05-31", "--profile", modern, "--profile", legacy)
    advice = doc["advice"]
    # The leaf and its issuer stay; the expired cross-sign and the expired root go.
    assert advice["advised"]["chain"] == [w["leaf"].sha256, w["dv"].sha256]
    assert changes(doc) == {
        w["leaf"].sha256: "kept", w["dv"].sha256: "kept",
        w["cross"].sha256: "removed", w["addtrust"].sha256: "removed",
    }
    removed = [d for d in advice["diff"] if d["change"] == "removed"]
    assert [d["served_index"] for d in removed] == [2, 3]
    assert advice["changed"] is True and advice["order_changed"] is False
    assert advice["advised"]["bytes"] < advice["served"]["bytes"]
    profiles = by_profile(doc)
    # OpenSSL 1.0.x was broken by the served cross-sign; without it, it finds USERTrust.
    assert profiles[legacy]["before"]["trusted"] is False
    assert profiles[legacy]["before"]["error"] == "expired"
    assert profiles[legacy]["after"] == {"trusted": True, "error": None, "reason": None,
                                         "breaks_at": "2020-10-23T00:00:00Z"}
    assert profiles[modern]["before"]["breaks_at"] == "2020-10-23T00:00:00Z"
    assert profiles[modern]["after"]["breaks_at"] == "2020-10-23T00:00:00Z"
    assert advice["served"]["status"] == "critical"
    assert advice["unsatisfied"] == []
    # The document is the advised chain's schema-1 report: what check-bundle says of it.
    assert doc["schema"] == 1 and doc["status"] == "ok"
    assert doc["breaks_at"] == "2020-10-23T00:00:00Z"
    assert [c["sha256"] for c in doc["chain"]] == advice["advised"]["chain"]
    assert code == 0


def test_addtrust_the_day_before_the_advice_already_drops_it(
    cli_json: CliJson, addtrust_world: dict[str, Any]
) -> None:
    """Before the expiry the served chain still works, but legacy clients count down to
    the cross-sign's expiry: the advice moves their breaks_at to the leaf's."""
    w = addtrust_world
    legacy = f"legacy:file:{w['store']}"
    _, doc = cli_json("advise", w["bundle"], "--at", "2020-05-29", "--profile", legacy)
    profile = by_profile(doc)[legacy]
    assert profile["before"]["breaks_at"] == "2020-05-30T10:48:39Z"
    assert profile["after"]["breaks_at"] == "2020-10-23T00:00:00Z"
    assert doc["advice"]["served"]["breaks_at"] == "2020-05-30T10:48:39Z"
    assert w["cross"].sha256 not in doc["advice"]["advised"]["chain"]


def test_lab_addtrust_scenario_advice() -> None:
    """The incident lab's AddTrust-style endpoint, judged with the lab's profiles."""
    w = build_world(at("2026-03-01"))
    roots = next(b for b in trust_bundles(w) if b.profile == "lab").anchors
    store = Store("lab-roots", roots)
    profiles = [Profile("lab", store, MODERN), Profile("legacy-clients", store, LEGACY)]
    leaf = w.issuers["usertrust"].leaf("shop.addtrust.lab.test")
    served = leaf.chain(w.issuers["usertrust"], w.extra["usertrust-by-addtrust"],
                        w.roots["addtrust"].cert)
    advice = advise(served, profiles, [PoolCert(c, "store:lab-roots") for c in roots],
                    at=w.now, host="shop.addtrust.lab.test")
    assert advice.advised == leaf.chain(w.issuers["usertrust"])
    assert {c.change for c in advice.changes if c.served_index in (2, 3)} == {Change.REMOVED}
    legacy = advice.profiles[1]
    assert not legacy.before.trusted and legacy.after.trusted
    assert advice.advised_report.status.value == "ok"


# -- DST Root CA X3 (2021-09-30): Android lives on the cross-sign ---------------------------


@pytest.fixture
def dst_bundle(tmp_path: Path) -> Path:
    path = tmp_path / "elastic.pem"
    path.write_bytes(pem_of(real("leaf_geoip_elastic_dev_2021.pem"),
                            real("lets_encrypt_r3.pem"),
                            real("isrg_root_x1_by_dst_root_ca_x3.pem")))
    return path


def test_dst_android_and_mozilla_the_advice_keeps_the_cross_sign(
    cli_json: CliJson, dst_bundle: Path
) -> None:
    android, mozilla = "android:android@7.0", "mozilla@2021-09-01"
    cross = real("isrg_root_x1_by_dst_root_ca_x3.pem").sha256
    code, doc = cli_json("advise", dst_bundle, "--host", "geoip.elastic.dev",
                         "--at", "2021-10-15", "--profile", android, "--profile", mozilla)
    advice = doc["advice"]
    assert cross in advice["advised"]["chain"]
    assert changes(doc)[cross] == "kept"
    assert advice["changed"] is False
    profiles = by_profile(doc)
    # Android 7.0 has no ISRG Root X1: it trusts through DST, whose expiry it ignores.
    assert profiles[android]["after"]["trusted"] is True
    assert profiles[android]["after"]["breaks_at"] == "2021-11-09T09:01:36Z"
    assert profiles[mozilla]["after"]["breaks_at"] == "2021-11-09T09:01:36Z"
    assert code == 1  # the leaf expires in 25 days: EXPIRES_SOON, as check-bundle says


def test_dst_without_android_the_cross_sign_only_costs_bytes(
    cli_json: CliJson, dst_bundle: Path
) -> None:
    """Negative control: for modern clients with ISRG Root X1 alone, the cross-sign is
    on no needed path, and the advice drops it (fewer bytes)."""
    cross = real("isrg_root_x1_by_dst_root_ca_x3.pem").sha256
    _, doc = cli_json("advise", dst_bundle, "--at", "2021-10-15",
                      "--profile", "mozilla@2021-09-01")
    assert changes(doc)[cross] == "removed"
    assert doc["advice"]["advised"]["chain"] == [
        real("leaf_geoip_elastic_dev_2021.pem").sha256, real("lets_encrypt_r3.pem").sha256]


def test_dst_android_cross_sign_offered_as_a_candidate_file(
    cli_json: CliJson, tmp_path: Path
) -> None:
    """A server that sends only leaf and R3 loses Android 7.0 after 2021-09-30; the
    cross-sign, given in --candidates, brings it back."""
    bundle = tmp_path / "short.pem"
    bundle.write_bytes(pem_of(real("leaf_geoip_elastic_dev_2021.pem"),
                              real("lets_encrypt_r3.pem")))
    pool = tmp_path / "pool"
    pool.mkdir()
    for name in ("isrg_root_x1_by_dst_root_ca_x3.pem", "lets_encrypt_r3_by_dst_root_ca_x3.pem",
                 "usertrust_rsa_root.pem"):
        (pool / name).write_bytes((REAL / name).read_bytes())
    (pool / "notes.txt").write_text("not a certificate, and not read")
    android = "android:android@7.0"
    code, doc = cli_json("advise", bundle, "--at", "2021-10-15", "--profile", android,
                         "--profile", "mozilla@2021-09-01", "--candidates", pool)
    cross = real("isrg_root_x1_by_dst_root_ca_x3.pem")
    added = [d for d in doc["advice"]["diff"] if d["change"] == "added"]
    assert [d["sha256"] for d in added] == [cross.sha256]
    assert added[0]["source"] == f"file:{pool / 'isrg_root_x1_by_dst_root_ca_x3.pem'}"
    assert added[0]["advised_index"] == 2
    assert by_profile(doc)[android]["before"]["trusted"] is False
    assert by_profile(doc)[android]["after"]["trusted"] is True
    assert code == 1


def test_dst_all_three_populations_at_once(dst_bundle: Path) -> None:
    """With OpenSSL 1.0.x required too: it follows the served certificates first and the
    cross-sign leads it to the expired DST root. Serving ISRG Root X1 itself before the
    cross-sign stops it there (self-signed, in its store), while Android still finds the
    cross-sign behind it."""
    specs = ("android:android@7.0", "mozilla@2021-09-01", "legacy:mozilla@2021-09-01")
    profiles = [resolve_profile(s) for s in specs]
    served = load_bundle_file(dst_bundle)
    pool = [PoolCert(a, f"store:{p.store.name}") for p in profiles for a in p.store.anchors]
    advice = advise(served, profiles, pool, at=at("2021-10-15"))
    x1 = real("isrg_root_x1.pem")
    cross = real("isrg_root_x1_by_dst_root_ca_x3.pem")
    assert advice.advised == (*served[:2], x1, cross)
    assert not advice.profiles[2].before.trusted
    assert all(p.after.trusted for p in advice.profiles)
    added = [c for c in advice.changes if c.change is Change.ADDED]
    assert [(c.cert, c.source) for c in added] == [(x1, "store:mozilla@2021-09-01")]


def test_lab_dst_scenario_android_keeps_the_cross_sign() -> None:
    """The lab's DST-style endpoint ten days after its old root expired, for devices
    whose store is frozen without X1 (Android behaviour) and a current store."""
    w = build_world(at("2026-03-01"))
    bundles = {b.profile: b for b in trust_bundles(w)}
    old = Store("old-devices", bundles["old-devices"].anchors)
    current = Store("lab-roots", bundles["lab"].anchors)
    profiles = [Profile("android:old-devices", old, ANDROID_BEHAVIOUR),
                Profile("lab", current, MODERN)]
    leaf = w.issuers["x1"].leaf("devices.netpark.lab.test")
    served = leaf.chain(w.issuers["x1"], w.extra["x1-by-old"])
    pool = [PoolCert(c, "store") for c in (*old.anchors, *current.anchors)]
    later = w.now + dt.timedelta(days=10)
    advice = advise(served, profiles, pool, at=later)
    assert w.extra["x1-by-old"].cert in advice.advised
    assert all(p.after.trusted for p in advice.profiles)
    # The same populations, modern instead of Android: nothing can satisfy the old store.
    strict = [Profile("old-devices", old, MODERN), Profile("lab", current, MODERN)]
    advice = advise(served, strict, pool, at=later)
    assert not advice.profiles[0].satisfiable
    assert advice.profiles[0].why is not None
    assert "expired" in advice.profiles[0].why


# -- Hourfleet (2019): nothing satisfies the back-end ---------------------------------------


def test_hourfleet_no_chain_satisfies_the_backend(cli_json: CliJson, write_pem: WritePem,
                                                  cli: Cli) -> None:
    pki = PKI(now=at("2019-06-01"))
    old_root = pki.root("Old Corp Root")
    new_root = pki.root("New Vendor Root")
    inter = new_root.intermediate("New Vendor CA")
    renewed = inter.leaf("api.example.com")
    bundle = write_pem("renewed.pem", *renewed.chain(inter))
    backend = f"file:{write_pem('backend.pem', old_root.cert)}"
    public = f"file:{write_pem('public.pem', new_root.cert)}"
    code, doc = cli_json("advise", bundle, "--host", "api.example.com", "--at", "2019-06-01",
                         "--profile", backend, "--profile", public)
    advice = doc["advice"]
    assert [u["profile"] for u in advice["unsatisfied"]] == [backend]
    (unsat,) = advice["unsatisfied"]
    assert unsat["error"] == "no_path"
    assert unsat["reason"].startswith("no chain of the candidates satisfies it: ")
    assert "CN=New Vendor Root" in unsat["reason"]
    profiles = by_profile(doc)
    assert profiles[backend]["satisfiable"] is False
    assert profiles[public]["satisfiable"] is True
    assert profiles[public]["after"]["trusted"] is True
    assert doc["status"] == "critical"
    assert code == 2
    code, out, _ = cli("advise", bundle, "--host", "api.example.com", "--at", "2019-06-01",
                       "--profile", backend, "--profile", public)
    first = out.splitlines()[0]
    assert first.startswith("CHAINWATCH CRITICAL - api.example.com: keep serving")
    assert f"still untrusted: {backend}" in first
    assert "no chain of the candidates satisfies it" in out
    assert code == 2


# -- two populations, two roots: both cross-signs, or a conflict ----------------------------


@pytest.fixture(scope="module")
def two_roots() -> dict[str, Any]:
    pki = PKI(now=at("2025-01-01"))
    a = pki.root("CA A")
    y = pki.root("Root Y")
    z = pki.root("Root Z")
    a_by_y = a.cross_signed_by(y)
    a_by_z = a.cross_signed_by(z)
    inter = a.intermediate("Issuing CA")
    leaf = inter.leaf("svc.example.net")
    return {"leaf": leaf, "inter": inter.cert, "a_by_y": a_by_y.cert, "a_by_z": a_by_z.cert,
            "y": Store("y", (y.cert,)), "z": Store("z", (z.cert,))}


def test_two_modern_populations_get_both_cross_signs(two_roots: dict[str, Any]) -> None:
    w = two_roots
    served = w["leaf"].chain(w["inter"], w["a_by_y"])
    profiles = [Profile("y", w["y"], MODERN), Profile("z", w["z"], MODERN)]
    advice = advise(served, profiles, [PoolCert(w["a_by_z"], "file:a-by-z.pem")],
                    at=at("2025-01-01"))
    assert advice.advised == (*served, w["a_by_z"])
    assert all(p.after.trusted for p in advice.profiles)
    assert not advice.profiles[1].before.trusted


def test_two_legacy_populations_conflict(two_roots: dict[str, Any]) -> None:
    """OpenSSL 1.0.x takes the first served issuer and never backtracks: one of two
    populations with different roots is left out, and the advice says a chain exists
    for it, just not together with the other."""
    w = two_roots
    served = w["leaf"].chain(w["inter"], w["a_by_y"])
    profiles = [Profile("legacy-y", w["y"], LEGACY), Profile("legacy-z", w["z"], LEGACY)]
    advice = advise(served, profiles, [PoolCert(w["a_by_z"], "file:a-by-z.pem")],
                    at=at("2025-01-01"))
    left_out = advice.unsatisfied
    assert len(left_out) == 1
    assert left_out[0].satisfiable and left_out[0].conflict
    assert left_out[0].why is not None and "not together" in left_out[0].why
    assert left_out[0].why.startswith("another chain would satisfy it (until 2025-04-01T00:00:01Z)")


def test_the_search_cap_is_reported_and_the_served_chain_still_counts(
    two_roots: dict[str, Any],
) -> None:
    w = two_roots
    served = w["leaf"].chain(w["inter"], w["a_by_y"])
    profiles = [Profile("y", w["y"], MODERN)]
    advice = advise(served, profiles, [PoolCert(w["a_by_z"], "x")], at=at("2025-01-01"),
                    max_chains=2)
    assert advice.search.exhausted and advice.search.chains == 2
    served_breaks = advice.served_report.breaks_at
    assert advice.advised_report.breaks_at is not None and served_breaks is not None
    assert advice.advised_report.breaks_at >= served_breaks


# -- never worse than what is served (property) ---------------------------------------------


@pytest.fixture(scope="module")
def mixed_hierarchy() -> dict[str, Any]:
    """One leaf and a pool with every trap: expired and live cross-signs, an expired
    reissue of the intermediate, a foreign CA, roots that expire before the leaf."""
    pki = PKI(now=at("2024-01-01"))
    old = pki.root("Old Root", expires="2024-03-01")
    new = pki.root("New Root", expires="2040-01-01")
    other = pki.root("Other Root")
    new_by_old = new.cross_signed_by(old, expires="2025-01-01")
    new_by_old_expired = new.cross_signed_by(old, expires="2023-06-01")
    inter = new.intermediate("Issuing CA", expires="2030-01-01")
    inter_by_old = pki.root("Issuing CA Twin")  # same name elsewhere: a decoy by name only
    stray = other.intermediate("Unrelated CA")
    leaf = inter.leaf("app.example.com", expires="2025-06-01")
    certs = [inter.cert, new_by_old.cert, new_by_old_expired.cert, new.cert, old.cert,
             inter_by_old.cert, stray.cert, other.cert]
    stores = {
        "old": Store("old", (old.cert,)),
        "new": Store("new", (new.cert,)),
        "both": Store("both", (old.cert, new.cert)),
        "other": Store("other", (other.cert,)),
    }
    return {"leaf": leaf.cert, "certs": certs, "stores": stores}


_BEHAVIOURS = {"modern": MODERN, "legacy": LEGACY, "android": ANDROID_BEHAVIOUR}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_advice_is_never_worse_than_what_is_served(
    mixed_hierarchy: dict[str, Any], data: st.DataObject
) -> None:
    h = mixed_hierarchy
    served_extra = data.draw(st.lists(st.sampled_from(h["certs"]), max_size=5, unique=True))
    specs = data.draw(st.lists(
        st.tuples(st.sampled_from(sorted(_BEHAVIOURS)), st.sampled_from(sorted(h["stores"]))),
        min_size=1, max_size=3, unique=True))
    when = at("2023-01-01") + dt.timedelta(days=data.draw(st.integers(0, 1000)))
    profiles = [Profile(f"{b}:{s}", h["stores"][s], _BEHAVIOURS[b]) for b, s in specs]
    pool = [PoolCert(c, "pool") for c in h["certs"]]
    served = (h["leaf"], *served_extra)
    advice = advise(served, profiles, pool, at=when, analyzer=Analyzer())
    before, _ = target_breaks_at(advice.served_report.profiles, advice.at)
    after, _ = target_breaks_at(advice.advised_report.profiles, advice.at)
    assert before is not None and after is not None
    assert after >= before
    assert advice.advised[0] == h["leaf"]
    assert advice.advised == advice.served or len(advice.advised) <= advice.search.max_depth
    # Beyond the earliest: every population's breaks_at, sorted, is no worse either
    # (leximin), and where it is the same the advice costs no more bytes.
    def vector(results: tuple[ProfileResult, ...]) -> list[dt.datetime]:
        return sorted(r.breaks_at if r.trusted and r.breaks_at else advice.at for r in results)

    served_vector = vector(advice.served_report.profiles)
    advised_vector = vector(advice.advised_report.profiles)
    assert advised_vector >= served_vector
    if advised_vector == served_vector:
        assert advice.advised_bytes <= advice.served_bytes


# -- a live endpoint on loopback ------------------------------------------------------------


@pytest.fixture
def tls() -> Iterator[srv.ServerLoop]:
    with srv.ServerLoop() as loop:
        yield loop


@pytest.fixture
def web() -> Iterator[HttpLab]:
    with HttpLab() as lab:
        yield lab


def test_live_addtrust_style_server(cli_json: CliJson, tls: srv.ServerLoop,
                                    tmp_path: Path) -> None:
    w = build_world()
    host = "shop.addtrust.lab.test"
    leaf = w.issuers["usertrust"].leaf(host)
    served = leaf.chain(w.issuers["usertrust"], w.extra["usertrust-by-addtrust"],
                        w.roots["addtrust"].cert)
    ep = tls.serve(srv.tls_handler(srv.server_context(served, leaf.key, tmp_path)))
    trust = tmp_path / "roots.pem"
    trust.write_bytes(pem_of(*next(b for b in trust_bundles(w) if b.profile == "lab").anchors))
    out = tmp_path / "deploy.pem"
    code, doc = cli_json("advise", ep.hostport, "--sni", host, "--profile", f"file:{trust}",
                         "--profile", f"legacy:file:{trust}", "--write", out)
    assert doc["target"]["port"] == ep.port and doc["target"]["sni"] == host
    assert doc["host"] == host
    assert doc["advice"]["served"]["chain"] == [c.sha256 for c in served]
    assert doc["advice"]["advised"]["chain"] == [c.sha256 for c in served[:2]]
    assert doc["advice"]["served"]["status"] == "critical"
    assert doc["status"] == "ok" and code == 0
    # The file written is the advised chain, ready to deploy.
    assert load_bundle_file(out) == served[:2]


def test_live_server_missing_its_intermediate_with_aia(
    cli_json: CliJson, tls: srv.ServerLoop, web: HttpLab, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    pki = PKI(now=now)
    root = pki.root("Advise AIA Root")
    inter = root.intermediate("Advise AIA CA")
    host = "www.example.com"
    leaf = inter.leaf(host, extra=[aia(ca_issuers=web.url("/inter.cer"))])
    web.routes["/inter.cer"] = Route(
        body=inter.cert.parsed.public_bytes(serialization.Encoding.DER))
    ep = tls.serve(srv.tls_handler(srv.server_context(leaf.chain(), leaf.key, tmp_path)))
    trust = tmp_path / "trust.pem"
    trust.write_bytes(pem_of(root.cert))
    profile = f"legacy:file:{trust}"
    base = ("advise", ep.hostport, "--sni", host, "--profile", profile, "--aia")

    code, doc = cli_json(*base, *ALLOW_LOOPBACK)
    added = [d for d in doc["advice"]["diff"] if d["change"] == "added"]
    assert [(d["sha256"], d["source"]) for d in added] == [(inter.cert.sha256, "aia")]
    assert doc["advice"]["aia"] == [f"{web.url('/inter.cer')}: fetched CN=Advise AIA CA"]
    assert by_profile(doc)[profile]["after"]["trusted"] is True
    assert code == 0

    # Without --allow-private the loopback URL is never fetched: nothing to add.
    code, doc = cli_json(*base)
    assert doc["advice"]["unsatisfied"][0]["profile"] == profile
    assert "private" in doc["advice"]["aia"][0] or "loopback" in doc["advice"]["aia"][0]
    assert web.hits["/inter.cer"] == 1
    assert code == 2


# -- the command as a user runs it ------------------------------------------------------------


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("chainwatch")
    return subprocess.run([str(exe), "advise", *map(str, args)], capture_output=True,
                          text=True, timeout=120, check=False)


def test_cli_process_exit_codes_and_json(addtrust_world: dict[str, Any],
                                         tmp_path: Path) -> None:
    w = addtrust_world
    legacy = f"legacy:file:{w['store']}"
    proc = _run(w["bundle"], "--at", "2020-05-31", "--profile", legacy, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["advice"]["advised"]["chain"] == [w["leaf"].sha256, w["dv"].sha256]
    # Text: the plugin line first.
    proc = _run(w["bundle"], "--at", "2020-05-31", "--profile", legacy)
    assert proc.returncode == 0
    assert proc.stdout.startswith("CHAINWATCH OK - ")
    assert "serve 2 certificate(s) instead of 4 (drop 2)" in proc.stdout.splitlines()[0]
    # Broken now, even after the advice (the store lacks USERTrust): critical.
    only_old = tmp_path / "only-addtrust.pem"
    only_old.write_bytes(pem_of(w["addtrust"]))
    proc = _run(w["bundle"], "--at", "2020-05-31", "--profile", f"file:{only_old}")
    assert proc.returncode == 2
    # Bad input: one line, exit 3, no traceback.
    broken = tmp_path / "pool"
    broken.mkdir()
    (broken / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    for args, needle in (
        ((tmp_path / "missing.pem",), "missing.pem"),
        ((w["bundle"], "--profile", "nosuch:thing"), "nosuch:thing"),
        ((w["bundle"], "--candidates", broken), "bad.pem"),
        ((w["bundle"], "--candidates", tmp_path / "nodir"), "--candidates"),
        ((w["bundle"], "--at", "yesterday"), "--at"),
        ((w["bundle"], "--sni", "x.example"), "--sni"),
    ):
        proc = _run(*args)
        assert proc.returncode == 3, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("chainwatch: error: "), proc.stderr
        assert needle in lines[0]


def test_candidates_directory_reads_regular_certificate_files_only(tmp_path: Path) -> None:
    """A FIFO or a directory named like a certificate is skipped, never read (a FIFO would
    block); other suffixes are not read at all."""
    import os

    from chainwatch.service.advise import directory_candidates

    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "cross.pem").write_bytes((REAL / "isrg_root_x1_by_dst_root_ca_x3.pem").read_bytes())
    (pool / "r3.DER").write_bytes(real("lets_encrypt_r3.pem").der)
    (pool / "readme.md").write_text("-----BEGIN CERTIFICATE-----\nnot read\n")
    (pool / "sub.pem").mkdir()
    os.mkfifo(pool / "pipe.crt")
    found = directory_candidates(pool)
    assert [(c.cert, c.source) for c in found] == [
        (real("isrg_root_x1_by_dst_root_ca_x3.pem"), f"file:{pool / 'cross.pem'}"),
        (real("lets_encrypt_r3.pem"), f"file:{pool / 'r3.DER'}"),
    ]


def test_real_addtrust_bundle_miraheze_served(cli_json: CliJson) -> None:
    """The four certificates miraheze really served on 2020-05-30, the Mozilla store of
    that spring: the advice drops the real USERTrust cross-sign and AddTrust root."""
    specs = ("mozilla@2020-05-01", "legacy:mozilla@2020-05-01")
    code, doc = cli_json("advise", REAL / "addtrust_2020_served.pem", "--host",
                         "meta.miraheze.org", "--at", "2020-05-31", "--profile", specs[0],
                         "--profile", specs[1])
    served = load_bundle_file(REAL / "addtrust_2020_served.pem")
    assert real("usertrust_rsa_by_addtrust.pem") in served
    assert doc["advice"]["advised"]["chain"] == [c.sha256 for c in served[:2]]
    assert changes(doc)[real("usertrust_rsa_by_addtrust.pem").sha256] == "removed"
    assert changes(doc)[real("addtrust_external_root.pem").sha256] == "removed"
    assert by_profile(doc)[specs[1]]["after"]["breaks_at"] == "2020-10-23T00:00:00Z"
    assert code == 0
