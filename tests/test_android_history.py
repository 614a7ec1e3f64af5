"""The shipped Android system-store data: its integrity, the loader, ``android@VERSION``
profiles, known real facts, a real chain, and the generator script (on synthetic git
repositories, offline)."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography import x509

from chainwatch import analyze
from chainwatch.errors import ProfileError, StoreError
from chainwatch.model import Building, Cert
from chainwatch.model.bundle import load_bundle_file
from chainwatch.stores import android, resolve_profile

from .pki import PKI

ROOT = Path(__file__).resolve().parent.parent
DATA = resources.files("chainwatch") / "data" / "android_history"
REAL = Path(__file__).parent / "data" / "realchains"
Cli = Callable[..., tuple[int, str, str]]

# Releases the shipped data must cover (brief: 4.4 to 14, whatever the mirrors held).
EXPECTED = ["4.4.1", "4.4.3", "5.1", "6.0.1", "7.0", "7.1", "7.1.1", "7.1.2", "8.0", "8.1",
            "9", "10", "11", "12", "12.1", "13", "14", "15"]


def real(name: str) -> Cert:
    (cert,) = load_bundle_file(REAL / name)
    return cert


ISRG_X1 = real("isrg_root_x1.pem")
DST_X3 = real("dst_root_ca_x3.pem")


# ------------------------------------------------------------------ raw data, read directly


@cache
def raw_index() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / "index.json").read_bytes())
    return loaded


@cache
def raw_certs() -> dict[str, bytes]:
    blob = gzip.decompress((DATA / "roots.der.gz").read_bytes())
    out: dict[str, bytes] = {}
    offset = 0
    while offset < len(blob):
        size = int.from_bytes(blob[offset : offset + 4], "big")
        der = blob[offset + 4 : offset + 4 + size]
        assert len(der) == size, f"truncated record at {offset}"
        out[hashlib.sha256(der).hexdigest()] = der
        offset += 4 + size
    return out


def members(name: str) -> set[str]:
    """SHA-256 of the certificates the index lists for release ``name``."""
    (entry,) = [r for r in raw_index()["releases"] if r["release"] == name]
    shas = [c["sha256"] for c in raw_index()["certs"]]
    return {shas[i] for i in entry["certs"]}


def store_has(spec: str, cert: Cert) -> bool:
    """Whether the store of ``spec`` holds ``cert``: by whole-certificate SHA-256."""
    return cert.sha256 in resolve_profile(spec).store.fingerprints


def store_has_key(spec: str, cert: Cert) -> bool:
    """Whether the store holds a certificate with ``cert``'s subject and public key."""
    return (cert.subject_key, cert.spki) in resolve_profile(spec).store.identities


# ---------------------------------------------------------------------------- integrity


def test_index_header() -> None:
    index = raw_index()
    assert index["format"] == 1
    assert index["generated_by"] == "scripts/build_android_history.py"
    assert dt.date.fromisoformat(index["made"])
    assert set(index["origins"]) <= {
        "platform/libcore", "platform/system/ca-certificates", "platform/external/conscrypt"
    }


def test_every_indexed_cert_has_der_with_that_hash() -> None:
    indexed = [c["sha256"] for c in raw_index()["certs"]]
    assert indexed == sorted(indexed)
    assert len(set(indexed)) == len(indexed)
    assert set(raw_certs()) == set(indexed)


def test_der_parses_and_matches_index_metadata() -> None:
    for entry in raw_index()["certs"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # some old roots have non-positive serials
            cert = x509.load_der_x509_certificate(raw_certs()[entry["sha256"]])
            subject = cert.subject.rfc4514_string()
        assert entry["subject"] == subject
        assert entry["not_after"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert entry["files"], entry["sha256"]
        assert all(re.fullmatch(r"[0-9a-f]{8}\.\d+", f) for f in entry["files"])


def test_releases_cover_the_expected_versions_with_provenance() -> None:
    releases = raw_index()["releases"]
    assert [r["release"] for r in releases] == EXPECTED
    used = set()
    for r in releases:
        assert re.fullmatch(r"[0-9a-f]{40}", r["commit"]), r
        assert r["tag"].startswith("android-") and re.search(r"_r\d+$", r["tag"]), r
        major = int(r["release"].split(".")[0])
        assert r["tag"].startswith(f"android-{major}."), r
        expected_repo, expected_path = (
            ("platform/libcore", "luni/src/main/files/cacerts") if major < 7
            else ("platform/system/ca-certificates", "files") if major < 14
            else ("platform/external/conscrypt", "apex/ca-certificates/files")
        )
        assert (r["repository"], r["path"]) == (expected_repo, expected_path), r
        assert r["found_by"] == "tag" or re.fullmatch(r"merge [0-9a-f]{40}", r["found_by"])
        assert r["certs"] == sorted(set(r["certs"])) and len(r["certs"]) == r["count"]
        assert all(0 <= i < len(raw_index()["certs"]) for i in r["certs"])
        used.update(r["certs"])
    assert used == set(range(len(raw_index()["certs"]))), "every certificate is in a release"
    assert {s["release"] for s in raw_index()["skipped"]} == {"5.0", "6.0"}


def test_every_file_name_is_the_old_openssl_subject_hash() -> None:
    # AOSP's naming rule (README.cacerts): <openssl x509 -subject_hash_old>.<n>, that is the
    # first four bytes of MD5 over the DER subject, read little-endian.
    for entry in raw_index()["certs"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            subject = x509.load_der_x509_certificate(raw_certs()[entry["sha256"]]).subject
        digest = hashlib.md5(subject.public_bytes(), usedforsecurity=False).digest()
        expected = f"{int.from_bytes(digest[:4], 'little'):08x}"
        assert {f.split(".")[0] for f in entry["files"]} == {expected}, entry["subject"]
    names = {c["sha256"]: c["files"] for c in raw_index()["certs"]}
    assert names[ISRG_X1.sha256] == ["6187b673.0"]
    assert names[DST_X3.sha256] == ["12d55845.0"]


def test_data_is_small() -> None:
    size = sum(len((DATA / n).read_bytes()) for n in ("index.json", "roots.der.gz", "README.md"))
    assert size < 512 * 1024


def test_readme_names_every_release_tag_and_commit() -> None:
    readme = (DATA / "README.md").read_text()
    assert "do not edit" in readme.lower()
    for r in raw_index()["releases"]:
        assert f"| {r['release']} | {r['tag']} | {r['repository']} | `{r['commit']}` |" in readme
    assert "android-5.0.0_r1" in readme and "android-6.0.0_r1" in readme


# ------------------------------------------------------------------------------ loader


def test_releases_match_index() -> None:
    found = android.releases()
    assert [r.name for r in found] == EXPECTED
    for release, entry in zip(found, raw_index()["releases"], strict=True):
        assert (release.tag, release.commit, release.count) == (
            entry["tag"], entry["commit"], entry["count"]
        )


def test_anchors_der_per_release() -> None:
    for release in android.releases():
        ders = android.anchors_der(release)
        hashes = [hashlib.sha256(d).hexdigest() for d in ders]
        assert hashes == sorted(hashes)
        assert set(hashes) == members(release.name)
        assert len(ders) == release.count


def test_anchors_der_rejects_unknown_release() -> None:
    fake = android.Release("3.0", "android-3.0_r1", "platform/libcore", "x", "0" * 40, 1)
    with pytest.raises(StoreError, match="not in the shipped store data"):
        android.anchors_der(fake)


def test_release_names_ignore_trailing_zeros() -> None:
    assert android.release_for("7.0").name == "7.0"
    assert android.release_for("7.0.0").name == "7.0"
    assert android.release_for("7").name == "7.0"
    assert android.release_for("9.0").name == "9"
    assert android.release_for(" 12.1.0 ").name == "12.1"


# ---------------------------------------------------------------------- android@VERSION


def test_android_profile_resolves_with_provenance() -> None:
    profile = resolve_profile("android@7.0")
    assert profile.spec == "android@7.0"
    assert profile.building is Building.MODERN
    assert profile.store.name == "android@7.0"
    assert profile.store.source == (
        "AOSP platform/system/ca-certificates android-7.0.0_r1 (c36d8eb8071d)"
    )
    assert len(profile.store.anchors) == android.release_for("7.0").count
    assert resolve_profile("android@9.0").store.name == "android@9"


def test_legacy_android_profile() -> None:
    profile = resolve_profile("legacy:android@7.1.1")
    assert profile.building is Building.LEGACY
    assert profile.store.name == "android@7.1.1"
    assert profile.store.anchors == resolve_profile("android@7.1.1").store.anchors


@pytest.mark.parametrize("spec", ["android@7.2", "android@5.0", "android@99", "android@nougat",
                                  "android@", "legacy:android@4.4"])
def test_unknown_release_is_a_profile_error_listing_known(spec: str) -> None:
    with pytest.raises(ProfileError) as err:
        resolve_profile(spec)
    message = str(err.value)
    assert "\n" not in message
    assert "4.4.1, 4.4.3, 5.1, 6.0.1, 7.0, 7.1, 7.1.1" in message and "14, 15" in message


def test_unknown_release_on_the_command_line_is_exit_3(cli: Cli, tmp_path: Path) -> None:
    bundle = tmp_path / "leaf.pem"
    bundle.write_bytes((REAL / "leaf_geoip_elastic_dev_2021.pem").read_bytes())
    code, _, err = cli("check-bundle", bundle, "--at", "2021-09-01", "--profile", "android@7.2")
    assert code == 3
    assert "android@7.2" in err and "known releases: 4.4.1" in err
    assert "Traceback" not in err


def test_stores_lists_android_releases(cli: Cli) -> None:
    code, out, _ = cli("stores", "--format", "json")
    assert code == 0
    rows = json.loads(out)["android"]
    assert [r["release"] for r in rows] == EXPECTED
    assert rows[EXPECTED.index("7.0")] == {
        "release": "7.0", "spec": "android@7.0", "tag": "android-7.0.0_r1",
        "repository": "platform/system/ca-certificates",
        "commit": "c36d8eb8071d73528993e024e73d40c6977b1d0d", "count": 148,
    }
    code, out, _ = cli("stores")
    assert code == 0
    assert "android@VERSION" in out
    assert re.search(r"^  7\.1\.1\s+android-7\.1\.1_r1\s+156 roots", out, re.M)


# --------------------------------------------------------------------------- real facts


def test_isrg_root_x1_absent_from_7_0_present_from_7_1_1() -> None:
    # Let's Encrypt's compatibility list (letsencrypt/website, content/*/docs/cert-compat.md)
    # names Android >= 7.1.1 as trusting ISRG Root X1. The 7.1.0 tag (Pixel-only) has it too.
    for version in ["4.4.1", "4.4.3", "5.1", "6.0.1", "7.0"]:
        assert not store_has(f"android@{version}", ISRG_X1), version
        assert not store_has_key(f"android@{version}", ISRG_X1), version
    for version in EXPECTED[EXPECTED.index("7.1") :]:
        assert store_has(f"android@{version}", ISRG_X1), version


def test_dst_root_ca_x3_present_from_4_4_to_13_and_gone_in_14() -> None:
    for version in EXPECTED[: EXPECTED.index("13") + 1]:
        assert store_has(f"android@{version}", DST_X3), version
    assert not store_has("android@14", DST_X3)
    assert not store_has_key("android@14", DST_X3)
    assert not store_has("android@15", DST_X3)


def test_addtrust_removed_in_12() -> None:
    addtrust = real("addtrust_external_root.pem")
    assert store_has("android@11", addtrust)
    assert not store_has("android@12", addtrust)
    assert store_has("android@12", real("usertrust_rsa_root.pem"))


def test_lets_encrypt_chain_via_dst_on_android_7_0() -> None:
    chain = [
        real("leaf_geoip_elastic_dev_2021.pem"),
        real("lets_encrypt_r3_by_dst_root_ca_x3.pem"),
        real("isrg_root_x1_by_dst_root_ca_x3.pem"),
    ]
    profiles = [resolve_profile("android@7.0"), resolve_profile("android@7.1.1")]
    report = analyze(chain, profiles, at=dt.datetime(2021, 9, 1, tzinfo=dt.UTC),
                     host="geoip.elastic.dev")
    seven, seven_one = report.profiles
    assert seven.profile == "android@7.0"
    assert seven.trusted and seven.error is None
    assert seven.path[0] == chain[0].sha256
    assert seven.path[-1] == DST_X3.sha256  # android@7.0 has no ISRG Root X1
    assert seven_one.trusted


# ------------------------------------------------------------------- generator script


@pytest.fixture(scope="module")
def builder() -> ModuleType:
    path = ROOT / "scripts" / "build_android_history.py"
    spec = importlib.util.spec_from_file_location("build_android_history", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


class Repo:
    """A throwaway git repository with fixed identities and dates (deterministic ids)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@example.invalid",
            "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@example.invalid",
            "GIT_AUTHOR_DATE": "2016-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2016-01-01T00:00:00Z",
            "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
        }
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=self.path, env=self.env, check=True,
                              capture_output=True, text=True, timeout=60)
        return proc.stdout.strip()

    def commit(self, directory: str, files: dict[str, bytes], message: str) -> str:
        target = self.path / directory
        if target.exists():
            for old in target.iterdir():
                old.unlink()
        target.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (target / name).write_bytes(data)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


def android_file(cert_pem: bytes) -> bytes:
    """An AOSP-style file: a text dump, then the PEM."""
    return b"Certificate:\n    Data:\n        Version: 3 (0x2)\n" + cert_pem


def test_builder_reads_tags_and_merged_tags(builder: ModuleType, tmp_path: Path) -> None:
    pki = PKI(now=dt.datetime(2016, 1, 1, tzinfo=dt.UTC))
    a, b, c = pki.root("Root A"), pki.root("Root B"), pki.root("Root C")

    ca = Repo(tmp_path / "ca")
    store_70 = {"aaaaaaaa.0": android_file(a.pem), "bbbbbbbb.0": android_file(b.pem),
                "README.txt": b"no certificate here"}
    first = ca.commit("files", store_70, "7.0 store")
    ca.git("tag", "-a", "-m", "7.0", "android-7.0.0_r1")
    ca.commit("google", {"roots.pem": c.pem}, "not the system store")
    second = ca.commit("files", {"bbbbbbbb.0": android_file(b.pem),
                                 "cccccccc.0": android_file(c.pem)}, "7.1.1 store")
    ca.git("tag", "android-7.1.1_r1")  # lightweight tags work too

    # libcore as a downstream fork holds it: no AOSP tags, only a merge of one.
    lib = Repo(tmp_path / "libcore")
    lib.commit("luni/src/main/files/cacerts", {"aaaaaaaa.0": android_file(a.pem)}, "base")
    lib.git("checkout", "-q", "-b", "upstream")
    upstream = lib.commit("luni/src/main/files/cacerts",
                          {"aaaaaaaa.0": android_file(a.pem), "cccccccc.0": android_file(c.pem)},
                          "upstream 6.0.1")
    lib.git("checkout", "-q", "main")
    lib.commit("other", {"x": b"fork work"}, "fork work")
    lib.git("merge", "-q", "--no-ff", "-m", "Merge tag 'android-6.0.1_r3' into cm-13.0", "upstream")
    merge = lib.git("rev-parse", "HEAD")

    out = tmp_path / "out"

    def run(*extra: str) -> int:
        status: int = builder.main([
            "--ca-certificates", str(ca.path), "--libcore", str(lib.path / ".git"),
            "--out", str(out), "--made", "2026-01-02",
            "--origin", "libcore=https://example.invalid/libcore",
            "--release", "7.0=android-7.0.0_r1", "--release", "7.1.1=android-7.1.1_r1",
            "--release", "6.0.1=android-6.0.1_r3", "--release", "6.0=android-6.0.0_r1",
            "--release", "14=android-14.0.0_r1", "--only", *extra,
        ])
        return status

    assert run() == 0
    index = json.loads((out / "index.json").read_bytes())
    shas = [x["sha256"] for x in index["certs"]]
    sha = {n: hashlib.sha256(r.cert.der).hexdigest() for n, r in (("a", a), ("b", b), ("c", c))}
    assert shas == sorted(sha.values())
    got = {r["release"]: (r["commit"], r["found_by"], {shas[i] for i in r["certs"]})
           for r in index["releases"]}
    assert list(got) == ["6.0.1", "7.0", "7.1.1"]  # in version order
    assert got["6.0.1"] == (upstream, f"merge {merge}", {sha["a"], sha["c"]})
    assert got["7.0"] == (first, "tag", {sha["a"], sha["b"]})
    assert got["7.1.1"] == (second, "tag", {sha["b"], sha["c"]})
    skipped = {s["release"]: s["reason"] for s in index["skipped"]}
    assert "not in the repository" in skipped["6.0"]
    assert "no --conscrypt git directory" in skipped["14"]
    assert index["origins"] == {"platform/libcore": "https://example.invalid/libcore"}
    files = {x["sha256"]: x["files"] for x in index["certs"]}
    assert files[sha["c"]] == ["cccccccc.0"]
    readme = (out / "README.md").read_text()
    assert f"`{first}`" in readme and "android-6.0.0_r1" in readme
    assert "README.txt: 0 PEM certificates" in readme  # the non-certificate file is noted

    packed = gzip.decompress((out / "roots.der.gz").read_bytes())
    assert all(packed.count(r.cert.der) == 1 for r in (a, b, c))

    first_bytes = {p.name: p.read_bytes() for p in out.iterdir()}
    assert run() == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first_bytes


def test_builder_release_list(builder: ModuleType, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    # Without --only, --release adds to the built-in list (or changes one tag): nothing is
    # dropped silently. No tag exists in this empty repository, so every release is skipped.
    repo = Repo(tmp_path / "ca")
    repo.commit("files", {"x.0": b"none"}, "empty")
    out = tmp_path / "out"
    args = ["--ca-certificates", str(repo.path), "--out", str(out), "--made", "2026-01-02"]
    assert builder.main([*args, "--release", "16=android-16.0.0_r1",
                         "--release", "7.0=android-7.0.0_r9"]) == 1  # nothing readable
    err = capsys.readouterr().err
    assert "skip 16: no --conscrypt git directory given" in err
    assert "skip 7.0: tag android-7.0.0_r9 " in err
    assert "skip 13: tag android-13.0.0_r1 " in err  # from the built-in list
    assert "skip 4.4.1: no --libcore git directory given" in err
    assert "no release could be read" in err
    with pytest.raises(SystemExit):
        builder.main([*args, "--only"])
    with pytest.raises(SystemExit):
        builder.main([*args, "--release", "9=android-9.0.0_r1", "--release", "9.0=android-9"])


def test_builder_release_names(builder: ModuleType) -> None:
    assert builder.version_key("9.0.0") == (9,)
    assert builder.version_key("7.1.1") == (7, 1, 1)
    assert builder.source_for("6.0.1") is builder.LIBCORE
    assert builder.source_for("13") is builder.CA_CERTIFICATES
    assert builder.source_for("14") is builder.CONSCRYPT
    with pytest.raises(SystemExit):
        builder.main(["--ca-certificates", "/nonexistent-dir", "--release", "bad"])
