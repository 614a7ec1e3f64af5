"""AIA fetching: how browsers complete a chain whose server forgot the intermediate.

The analysis lets profiles with ``aia`` set build paths through fetched certificates
(never counted as served) and still reports CHAIN_INCOMPLETE, naming who succeeds by
fetching and who fails; the probe layer fetches caIssuers (DER, PEM, PKCS#7) from a
loopback HTTP server, bounded in hops, size and time; ``check --aia`` ties them up."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from chainwatch.analysis.engine import analyze
from chainwatch.analysis.profiles import structure
from chainwatch.model import (
    Building,
    Cert,
    FindingCode,
    PathError,
    Profile,
    Severity,
    Status,
    Store,
)
from chainwatch.probe.http import SHARED_CACHE, Fetcher, FetchLimits
from chainwatch.service.netinputs import AiaResult, fetch_issuers, parse_certificates

from . import servers as srv
from .pki import CA, PKI, at, pem_of
from .test_revocation import ALLOW_LOOPBACK, LOOPBACK, HttpLab, Route, aia

NOW = at("2026-03-01T12:00:00Z")
HOST = "www.example.com"


@pytest.fixture(autouse=True)
def fresh_fetch_cache() -> Iterator[None]:
    SHARED_CACHE.clear()
    yield
    SHARED_CACHE.clear()


@pytest.fixture
def web() -> Iterator[HttpLab]:
    with HttpLab() as lab:
        yield lab


@pytest.fixture(scope="module")
def hier() -> dict[str, Any]:
    pki = PKI(now=NOW)
    root = pki.root("AIA Root")
    inter = root.intermediate("AIA CA")
    return {"root": root, "inter": inter, "leaf": inter.leaf(HOST)}


def profiles(root: CA) -> tuple[Profile, Profile]:
    store = Store("corp", (root.cert,))
    return Profile("browsers", store, aia=True), Profile("curl", store)


def der(cert: Cert) -> bytes:
    return cert.parsed.public_bytes(serialization.Encoding.DER)


# -- the analysis --------------------------------------------------------------------------


def test_profile_aia_is_off_unless_asked() -> None:
    store = Store("s", ())
    assert Profile("p", store).aia is False
    assert Profile("p", store, Building.LEGACY).aia is False
    assert Profile("p", store, aia=True) != Profile("p", store)


def test_fetched_intermediate_completes_the_chain_for_fetching_profiles_only(
    hier: dict[str, Any],
) -> None:
    leaf, inter, root = hier["leaf"], hier["inter"], hier["root"]
    browsers, curl = profiles(root)
    report = analyze(leaf.chain(), [browsers, curl], at=NOW, host=HOST, fetched=[inter.cert])
    by_spec = {r.profile: r for r in report.profiles}
    assert by_spec["browsers"].trusted
    assert by_spec["browsers"].path == (leaf.cert.sha256, inter.cert.sha256, root.cert.sha256)
    assert not by_spec["curl"].trusted and by_spec["curl"].error is PathError.NO_PATH
    # The fetched certificate is not presented: the chain is what the server sent.
    assert report.chain == (leaf.cert,)
    assert report.status is Status.CRITICAL
    incomplete = {f.profile: f for f in report.findings
                  if f.code is FindingCode.CHAIN_INCOMPLETE}
    assert incomplete["curl"].severity is Severity.CRITICAL
    assert incomplete["browsers"].severity is Severity.CRITICAL  # the server is still wrong
    expected = ("the served chain stops at CN=www.example.com: its issuer CN=AIA CA is "
                "neither served nor an anchor of {}; serve the missing intermediate: clients "
                "that fetch it via AIA (profile browsers) still succeed, clients that do not "
                "fetch (profile curl) fail")
    assert incomplete["curl"].message == expected.format("curl")
    assert incomplete["browsers"].message == expected.format("browsers")
    assert {f.code for f in report.findings} == {
        FindingCode.UNTRUSTED, FindingCode.CHAIN_INCOMPLETE}


def test_fetching_profiles_alone_still_flag_the_server(hier: dict[str, Any]) -> None:
    browsers, _ = profiles(hier["root"])
    report = analyze(hier["leaf"].chain(), [browsers], at=NOW, host=HOST,
                     fetched=[hier["inter"].cert])
    assert report.profiles[0].trusted  # browsers cope by fetching ...
    assert report.status is Status.CRITICAL  # ... but the served chain is incomplete
    (finding,) = report.findings
    assert finding.code is FindingCode.CHAIN_INCOMPLETE
    assert finding.severity is Severity.CRITICAL
    assert finding.message.endswith("clients that fetch it via AIA (profile browsers) "
                                    "still succeed")
    assert report.days_left is not None and report.days_left > 30


def test_fetch_that_does_not_help(hier: dict[str, Any]) -> None:
    browsers, curl = profiles(hier["root"])
    stranger = PKI(now=NOW).root("Stranger").intermediate("AIA CA")  # same name, other key
    report = analyze(hier["leaf"].chain(), [browsers, curl], at=NOW, host=HOST,
                     fetched=[stranger.cert])
    assert not any(r.trusted for r in report.profiles)
    messages = [f.message for f in report.findings if f.code is FindingCode.CHAIN_INCOMPLETE]
    assert len(messages) == 2
    assert all(m.endswith(": fetching via AIA does not help profile browsers, clients that "
                          "do not fetch (profile curl) fail") for m in messages)


def test_fetched_certificates_matter_only_to_fetching_profiles(hier: dict[str, Any]) -> None:
    leaf, inter = hier["leaf"], hier["inter"]
    _, curl = profiles(hier["root"])
    plain = analyze(leaf.chain(), [curl], at=NOW, host=HOST)
    offered = analyze(leaf.chain(), [curl], at=NOW, host=HOST, fetched=[inter.cert])
    assert offered == plain
    (incomplete,) = [f for f in plain.findings if f.code is FindingCode.CHAIN_INCOMPLETE]
    assert incomplete.message.endswith("; serve the missing intermediate")
    # A served intermediate also fetched changes nothing either.
    complete = analyze(leaf.chain(inter), list(profiles(hier["root"])), at=NOW, host=HOST,
                       fetched=[inter.cert])
    assert complete.status is Status.OK and complete.findings == ()


def test_caches_tell_fetched_from_not_fetched(hier: dict[str, Any]) -> None:
    leaf, inter, root = hier["leaf"], hier["inter"], hier["root"]
    browsers, _ = profiles(root)
    before = analyze(leaf.chain(), [browsers], at=NOW, host=HOST)
    after = analyze(leaf.chain(), [browsers], at=NOW, host=HOST, fetched=[inter.cert])
    again = analyze(leaf.chain(), [browsers], at=NOW, host=HOST)
    assert not before.profiles[0].trusted and after.profiles[0].trusted
    assert again == before
    store = browsers.store
    assert not structure(leaf.chain(), store, Building.MODERN).paths
    assert structure(leaf.chain(), store, Building.MODERN, [inter.cert]).paths
    # The same spec and store without aia: a different profile, a different cache entry.
    not_fetching = dataclasses.replace(browsers, aia=False)
    assert not analyze(leaf.chain(), [not_fetching], at=NOW, host=HOST,
                       fetched=[inter.cert]).profiles[0].trusted


# -- parsing what caIssuers serve ---------------------------------------------------------


def test_parse_certificates_in_every_caissuers_format(hier: dict[str, Any]) -> None:
    inter, root = hier["inter"].cert, hier["root"].cert
    p7_der = pkcs7.serialize_certificates([inter.parsed, root.parsed],
                                          serialization.Encoding.DER)
    p7_pem = pkcs7.serialize_certificates([inter.parsed], serialization.Encoding.PEM)
    assert parse_certificates(der(inter)) == (inter,)
    assert parse_certificates(pem_of(inter, root)) == (inter, root)
    assert set(parse_certificates(p7_der)) == {inter, root}
    assert parse_certificates(p7_pem) == (inter,)
    garbage = parse_certificates(b"<html>moved</html>")
    assert isinstance(garbage, str) and garbage.startswith("not a certificate, PKCS#7 bundle")


# -- fetching, end to end against a loopback HTTP server ----------------------------------


def fetch(chain: tuple[Cert, ...], stores: tuple[Store, ...] = (), **kw: Any) -> AiaResult:
    async def go() -> AiaResult:
        limits = FetchLimits(timeout=kw.pop("timeout", 5), allow_private=LOOPBACK)
        async with Fetcher(limits) as fetcher:
            return await fetch_issuers(chain, fetcher=fetcher, stores=stores, **kw)

    return asyncio.run(go())


def test_fetches_the_missing_intermediate_and_stops_at_an_anchor(web: HttpLab) -> None:
    pki = PKI(now=NOW)
    root = pki.root("Web Root")
    inter = root.intermediate("Web CA", extra=[aia(ca_issuers=web.url("/root.p7c"))])
    leaf = inter.leaf(HOST, extra=[aia(ca_issuers=web.url("/inter.cer"))])
    web.routes["/inter.cer"] = Route(body=der(inter.cert), content_type="application/pkix-cert")
    web.routes["/root.p7c"] = Route(body=pkcs7.serialize_certificates(
        [root.cert.parsed], serialization.Encoding.DER))
    anchored = fetch(leaf.chain(), (Store("web", (root.cert,)),))
    assert anchored.certs == (inter.cert,)
    assert anchored.notes == (f"{web.url('/inter.cer')}: fetched CN=Web CA",)
    assert web.hits == {"/inter.cer": 1}
    # Without the anchor in sight, it goes on to the root (a PKCS#7 bundle), then stops:
    # a self-signed certificate has no issuer to fetch.
    SHARED_CACHE.clear()
    unanchored = fetch(leaf.chain())
    assert unanchored.certs == (inter.cert, root.cert)
    assert web.hits == {"/inter.cer": 2, "/root.p7c": 1}
    # A complete chain needs nothing.
    assert fetch(leaf.chain(inter), (Store("web", (root.cert,)),)) == AiaResult()
    assert web.hits == {"/inter.cer": 2, "/root.p7c": 1}


def test_hops_are_bounded(web: HttpLab) -> None:
    pki = PKI(now=NOW)
    ca = pki.root("Deep Root")
    cas = [ca]
    for n in range(5):
        ca = ca.intermediate(f"Deep CA {n}",
                             extra=[aia(ca_issuers=web.url(f"/ca{n - 1}.cer"))] if n else [])
        cas.append(ca)
    for n, ca in enumerate(cas[1:]):
        web.routes[f"/ca{n}.cer"] = Route(body=der(ca.cert))
    leaf = cas[-1].leaf(HOST, extra=[aia(ca_issuers=web.url("/ca4.cer"))])
    found = fetch(leaf.chain())
    assert [c.subject for c in found.certs] == ["CN=Deep CA 4", "CN=Deep CA 3", "CN=Deep CA 2"]
    assert sum(web.hits.values()) == 3


def test_hostile_or_broken_caissuers_yield_notes_not_errors(web: HttpLab) -> None:
    pki = PKI(now=NOW)
    root = pki.root("Broken Root")
    inter = root.intermediate("Broken CA")
    wrong = pki.root("Unrelated Root")
    web.routes["/huge.cer"] = Route(body=b"\x30" * (64 * 1024 + 1))
    web.routes["/html"] = Route(body=b"<html>moved</html>")
    web.routes["/wrong.cer"] = Route(body=der(wrong.cert))
    web.routes["/slow.cer"] = Route(hang=True)
    cases = {
        "/missing.cer": f"{web.url('/missing.cer')}: HTTP 404 Not Found",
        "/huge.cer": f"{web.url('/huge.cer')}: answer of 65537 bytes exceeds 64 KiB",
        "/html": f"{web.url('/html')}: not a certificate, PKCS#7 bundle or PEM",
        "/wrong.cer": f"{web.url('/wrong.cer')}: 1 certificate(s), none the issuer of "
                      f"CN={HOST}",
        "/slow.cer": f"{web.url('/slow.cer')}: timeout after 0.5s",
    }
    for path, note in cases.items():
        leaf = inter.leaf(HOST, extra=[aia(ca_issuers=web.url(path))])
        result = fetch(leaf.chain(), timeout=0.5)
        assert result.certs == ()
        (got,) = result.notes
        assert got.startswith(note), (path, got)
    ldap = inter.leaf(HOST, extra=[aia(ca_issuers="ldap://ldap.example.com/cn=CA")])
    assert fetch(ldap.chain()).notes == (
        "ldap://ldap.example.com/cn=CA: not an http(s) URL (ldap)",)
    bare = inter.leaf(HOST)
    assert fetch(bare.chain()).notes == (f"CN={HOST} names no caIssuers URL: nothing to fetch",)


# -- check --aia ---------------------------------------------------------------------------


@pytest.fixture
def tls() -> Iterator[srv.ServerLoop]:
    with srv.ServerLoop() as loop:
        yield loop


def test_check_aia_against_a_server_that_omits_its_intermediate(
    cli: Callable[..., tuple[int, str, str]], web: HttpLab, tls: srv.ServerLoop,
    tmp_path: Path,
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    pki = PKI(now=now)
    root = pki.root("Check AIA Root")
    inter = root.intermediate("Check AIA CA")
    leaf = inter.leaf(HOST, extra=[aia(ca_issuers=web.url("/inter.cer"))])
    web.routes["/inter.cer"] = Route(body=der(inter.cert))
    ep = tls.serve(srv.tls_handler(srv.server_context(leaf.chain(), leaf.key, tmp_path)))
    trust = tmp_path / "trust.pem"
    trust.write_bytes(pem_of(root.cert))
    modern, legacy = f"file:{trust}", f"legacy:file:{trust}"
    args = ("check", *ALLOW_LOOPBACK, ep.hostport, "--sni", HOST, "--profile", modern,
            "--profile", legacy)

    code, out, err = cli(*args, "--aia", "--format", "json")
    assert (code, err) == (2, "")
    report = json.loads(out)
    verdicts = {p["profile"]: p for p in report["profiles"]}
    assert verdicts[modern]["trusted"] is True
    assert verdicts[modern]["path"] == [leaf.cert.sha256, inter.cert.sha256, root.cert.sha256]
    assert verdicts[legacy]["trusted"] is False
    assert [c["sha256"] for c in report["chain"]] == [leaf.cert.sha256]
    assert [c["sha256"] for c in report["aia_fetched"]] == [inter.cert.sha256]
    incomplete = [f for f in report["findings"] if f["code"] == "CHAIN_INCOMPLETE"]
    assert {f["profile"]: f["severity"] for f in incomplete} == {
        modern: "critical", legacy: "critical"}
    for finding in incomplete:
        assert finding["message"].endswith(
            f"clients that fetch it via AIA (profile {modern}) still succeed, clients that "
            f"do not fetch (profile {legacy}) fail")
    assert web.hits["/inter.cer"] == 1

    code, out, _ = cli(*args, "--aia")
    assert code == 2
    assert f"AIA: {web.url('/inter.cer')}: fetched CN=Check AIA CA" in out

    # Negative control: without --aia nothing is fetched and both profiles fail.
    hits = sum(web.hits.values())
    code, out, _ = cli(*args, "--format", "json")
    report = json.loads(out)
    assert code == 2 and "aia_fetched" not in report
    assert not any(p["trusted"] for p in report["profiles"])
    assert sum(web.hits.values()) == hits


def test_caissuers_found_for_a_leaf_issued_by_an_unserved_root(web: HttpLab) -> None:
    """A leaf whose issuer is an anchor needs no fetch even when nothing else is served."""
    pki = PKI(now=NOW)
    root = pki.root("Direct Root")
    leaf = root.leaf(HOST, extra=[aia(ca_issuers=web.url("/root.cer"))])
    web.routes["/root.cer"] = Route(body=der(root.cert))
    assert fetch(leaf.chain(), (Store("direct", (root.cert,)),)) == AiaResult()
    assert web.hits == {}
    extensions = [e.oid for e in leaf.cert.parsed.extensions]
    assert x509.oid.ExtensionOID.AUTHORITY_INFORMATION_ACCESS in extensions
