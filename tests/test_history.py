"""The shipped Mozilla root-store history: its integrity, the loader, known real events,
and the generator script (on a synthetic cache, offline)."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import re
import sys
import tarfile
import warnings
import zipfile
from functools import cache
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography import x509

from chainwatch.errors import StoreError
from chainwatch.stores import history
from chainwatch.stores.history import RootPresence, Snapshot

from .pki import PKI

ROOT = Path(__file__).resolve().parent.parent
DATA = resources.files("chainwatch") / "data" / "mozilla_history"

ADDTRUST = "687fa451382278fff0c8b11f8d43d576671c6eb2bceab413fb83d965d06d2ff2"
DST_X3 = "0687260331a72403d909f105e69bcf0d32e1bd2493ffc6d9206d11bcd6770739"
ISRG_X1 = "96bcec06264976f37460779acf28c5a7cfe8a3c0aae11a8ffcee05c0bddf08c6"
USERTRUST_RSA = "e793c9b02fd8aa13e21c31228accb08119643b749c898964b1746d46c3d4cbd2"


# ------------------------------------------------------------------ raw data, read directly


@cache
def raw_index() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / "index.json").read_bytes())
    return loaded


@cache
def raw_roots() -> dict[str, bytes]:
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


def version_key(version: str) -> tuple[int, ...]:
    """``2020.4.5.1`` -> (2020, 4, 5, 1, -1); a post-release ``2026.10.19.post1`` sorts
    after its base release: (2026, 10, 19, 1) with the post number last."""
    base, _, post = version.partition(".post")
    parts = tuple(int(p) for p in base.split("."))
    return (*parts, *(0,) * (4 - len(parts)), int(post) if post else -1)


def snap(version: str) -> Snapshot:
    (found,) = [s for s in history.snapshots() if s.version == version]
    return found


def root(sha256: str) -> RootPresence:
    (found,) = history.find_roots(sha256)
    return found


def present(sha256: str, version: str) -> bool:
    return raw_roots()[sha256] in history.anchors_der(snap(version))


# ---------------------------------------------------------------------------- integrity


def test_index_header() -> None:
    index = raw_index()
    assert index["format"] == 1
    assert index["generated_by"] == "scripts/build_root_history.py"
    assert "certifi" in index["source"]


def test_every_indexed_root_has_der_with_that_hash() -> None:
    indexed = [r["sha256"] for r in raw_index()["roots"]]
    assert indexed == sorted(indexed)
    assert len(set(indexed)) == len(indexed)
    assert set(raw_roots()) == set(indexed)


def test_der_parses_and_matches_index_metadata() -> None:
    for entry in raw_index()["roots"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # some old roots have non-positive serials
            cert = x509.load_der_x509_certificate(raw_roots()[entry["sha256"]])
            subject = cert.subject.rfc4514_string()
        assert entry["subject"] == subject
        assert entry["not_after"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_releases_sorted_and_dated_by_version() -> None:
    releases = raw_index()["releases"]
    versions = [r["version"] for r in releases]
    assert versions == sorted(versions, key=version_key)
    assert len(set(versions)) == len(versions)
    dates = [dt.date.fromisoformat(r["date"]) for r in releases]
    assert dates == sorted(dates)
    for release, day in zip(releases, dates, strict=True):
        year, month, mday = version_key(release["version"])[:3]
        assert day == dt.date(year, month, mday)
        assert re.fullmatch(r"[0-9a-f]{64}", release["artifact_sha256"])
        assert re.fullmatch(r"[0-9a-f]{64}", release["cacert_sha256"])
        assert release["artifact"].startswith("certifi-")
    assert dates[0].year == 2015


def test_counts_equal_roots_whose_ranges_include_the_release() -> None:
    releases = raw_index()["releases"]
    position = {r["version"]: i for i, r in enumerate(releases)}
    counts = [0] * len(releases)
    for entry in raw_index()["roots"]:
        spans = [(position[a], position[b]) for a, b in entry["ranges"]]
        assert spans, entry["sha256"]
        for (a, b), nxt in zip(spans, [*spans[1:], None], strict=True):
            assert a <= b
            if nxt is not None:
                assert nxt[0] > b + 1, "ranges must be maximal runs"
            for i in range(a, b + 1):
                counts[i] += 1
    assert counts == [r["count"] for r in releases]


def test_data_is_small() -> None:
    size = sum(len((DATA / name).read_bytes()) for name in ("index.json", "roots.der.gz"))
    size += len((DATA / "README.md").read_bytes())
    assert size < 2 * 1024 * 1024


# ------------------------------------------------------------------------------ loader


def test_snapshots_match_index() -> None:
    snaps = history.snapshots()
    assert [s.version for s in snaps] == [r["version"] for r in raw_index()["releases"]]
    assert [s.count for s in snaps] == [r["count"] for r in raw_index()["releases"]]
    assert [s.date for s in snaps] == sorted(s.date for s in snaps)


def test_anchors_der_per_snapshot() -> None:
    for s in history.snapshots():
        ders = history.anchors_der(s)
        assert len(ders) == s.count
        hashes = [hashlib.sha256(d).hexdigest() for d in ders]
        assert hashes == sorted(hashes)
    assert history.anchors_der(snap("2016.2.28")) == history.anchors_der(snap("2016.2.28"))


def test_anchors_der_rejects_unknown_snapshot() -> None:
    with pytest.raises(StoreError, match="not in the shipped history"):
        history.anchors_der(Snapshot("1999.1.1", dt.date(1999, 1, 1), 3))


def test_snapshot_for_picks_latest_on_or_before() -> None:
    assert history.snapshot_for(dt.date(2016, 2, 28)).version == "2016.2.28"
    assert history.snapshot_for(dt.date(2016, 6, 1)).version == "2016.2.28"
    assert history.snapshot_for(dt.date(2016, 8, 1)).version == "2016.2.28"
    assert history.snapshot_for(dt.date(2016, 8, 2)).version == "2016.8.2"
    # Several releases on one day: the day resolves to the last of them.
    assert history.snapshot_for(dt.date(2020, 4, 5)).version == "2020.4.5.2"
    assert history.snapshot_for(dt.date(2020, 6, 19)).version == "2020.4.5.2"
    assert history.snapshot_for(dt.datetime(2020, 6, 20, 8, tzinfo=dt.UTC)).version == "2020.6.20"


def test_snapshot_for_before_first_is_an_error() -> None:
    first = history.snapshots()[0]
    assert history.snapshot_for(first.date) == first
    with pytest.raises(StoreError, match=first.date.isoformat()) as err:
        history.snapshot_for(first.date - dt.timedelta(days=1))
    assert "2015-04-27" in str(err.value)


def test_latest_snapshot_is_today() -> None:
    latest = history.snapshots()[-1]
    assert history.snapshot_for(dt.date.today()) == latest
    assert history.snapshot_for(dt.date(9999, 12, 31)) == latest


def test_latest_matches_installed_certifi_when_same_release() -> None:
    import certifi

    # The distribution's version: a post-release (2026.10.19.post1) keeps its base
    # release's __version__ (2026.10.19).
    installed = importlib.metadata.version("certifi")
    versions = {s.version: s for s in history.snapshots()}
    if installed not in versions:
        pytest.skip(f"installed certifi {installed} is not in the shipped history")
    pem = Path(certifi.where()).read_bytes()
    blocks = re.findall(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem, re.S)
    ders = {base64.b64decode(b"".join(b.split())) for b in blocks}
    assert set(history.anchors_der(versions[installed])) == ders


# ------------------------------------------------------------------------ find_roots


def test_find_roots_by_hash() -> None:
    full = history.find_roots(ISRG_X1)
    assert [r.sha256 for r in full] == [ISRG_X1]
    assert history.find_roots(ISRG_X1[:8]) == full
    assert history.find_roots(ISRG_X1[:12].upper()) == full
    colons = ":".join(ISRG_X1[i : i + 2] for i in range(0, 64, 2)).upper()
    assert history.find_roots(colons) == full


def test_find_roots_short_prefix_is_not_a_hash_query() -> None:
    assert history.find_roots(ISRG_X1[:7]) == ()
    assert history.find_roots("   ") == ()


def test_find_roots_by_subject() -> None:
    hits = history.find_roots("isrg root x1")
    assert [r.sha256 for r in hits] == [ISRG_X1]
    assert hits[0].subject == "CN=ISRG Root X1,O=Internet Security Research Group,C=US"
    assert hits[0].not_after == dt.datetime(2035, 6, 4, 11, 4, 38, tzinfo=dt.UTC)
    many = history.find_roots("digicert")
    assert len(many) > 3
    assert [r.subject.casefold() for r in many] == sorted(r.subject.casefold() for r in many)
    assert history.find_roots("no such certification authority anywhere") == ()


# ------------------------------------------------------------------------ real history


def test_addtrust_removed_in_2020_6_20() -> None:
    assert present(ADDTRUST, "2015.4.28")
    assert present(ADDTRUST, "2020.4.5.1")
    assert present(ADDTRUST, "2020.4.5.2")
    assert not present(ADDTRUST, "2020.6.20")
    assert root(ADDTRUST).ranges == ((snap("2015.4.28"), snap("2020.6.20")),)
    assert "AddTrust External CA Root" in root(ADDTRUST).subject


def test_dst_root_ca_x3_removed_in_2022_5_18_1() -> None:
    assert present(DST_X3, "2016.2.28")
    assert present(DST_X3, "2021.10.8")
    assert not present(DST_X3, "2022.5.18.1")
    assert not present(DST_X3, history.snapshots()[-1].version)
    assert root(DST_X3).ranges == ((snap("2015.4.28"), snap("2022.5.18.1")),)
    # Expired 2021-09-30, but still shipped by the releases after that until 2022.
    assert root(DST_X3).not_after.date() == dt.date(2021, 9, 30)
    assert root(DST_X3).in_snapshot(history.snapshot_for(dt.date(2022, 1, 1)))


def test_isrg_root_x1_added_in_2016_8_8() -> None:
    assert not present(ISRG_X1, "2016.2.28")
    assert not present(ISRG_X1, "2016.8.2")
    assert present(ISRG_X1, "2016.8.8")
    assert present(ISRG_X1, "2020.4.5.1")
    assert root(ISRG_X1).ranges == ((snap("2016.8.8"), None),)


def test_usertrust_rsa_present_throughout() -> None:
    for s in history.snapshots():
        assert present(USERTRUST_RSA, s.version), s.version
    assert root(USERTRUST_RSA).ranges == ((history.snapshots()[0], None),)


def test_in_snapshot_agrees_with_anchors() -> None:
    s = snap("2020.6.20")
    members = {hashlib.sha256(d).hexdigest() for d in history.anchors_der(s)}
    for entry in raw_index()["roots"]:
        assert root(entry["sha256"]).in_snapshot(s) == (entry["sha256"] in members)


# ------------------------------------------------------------------- generator script


@pytest.fixture(scope="module")
def builder() -> ModuleType:
    path = ROOT / "scripts" / "build_root_history.py"
    spec = importlib.util.spec_from_file_location("build_root_history", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _wheel(path: Path, pem: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("certifi/__init__.py", "")
        archive.writestr("certifi/cacert.pem", pem)


def _sdist_tar(path: Path, pem: bytes, top: str) -> None:
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(f"{top}/certifi/cacert.pem")
        info.size = len(pem)
        archive.addfile(info, io.BytesIO(pem))


def _sdist_zip(path: Path, pem: bytes, top: str) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{top}/certifi/cacert.pem", pem)


def test_builder_offline_from_cache(builder: ModuleType, tmp_path: Path) -> None:
    pki = PKI(now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    a, b = pki.root("Root A"), pki.root("Root B")
    cache_dir, out = tmp_path / "cache", tmp_path / "out"
    cache_dir.mkdir()
    _wheel(cache_dir / "certifi-2019.12.1-py3-none-any.whl", a.pem)  # before --since
    _wheel(cache_dir / "certifi-2020.01.01-py2.py3-none-any.whl", a.pem + b.pem + a.pem)
    _sdist_tar(cache_dir / "certifi-2020.2.2.tar.gz", b.pem, "certifi-2020.2.2")
    zipped = b"# header\n" + b.pem + a.pem
    _sdist_zip(cache_dir / "certifi-2020.3.3.zip", zipped, "certifi-2020.3.3")
    # Both a wheel and an sdist: the wheel is the one read.
    _wheel(cache_dir / "certifi-2020.3.3.1-py3-none-any.whl", a.pem + b.pem)
    _sdist_tar(cache_dir / "certifi-2020.3.3.1.tar.gz", b.pem, "certifi-2020.3.3.1")
    # A post-release (certifi 2026.10.19.post1 exists): kept, dated by its base release.
    _wheel(cache_dir / "certifi-2020.3.5.post1-py3-none-any.whl", b.pem)
    (cache_dir / "certifi-2020.4.4.tar.gz").write_bytes(b"not a tarball")
    (cache_dir / "unrelated.txt").write_text("ignored")

    def run() -> int:
        args = ["--cache", str(cache_dir), "--offline", "--out", str(out), "--since", "2020"]
        status: int = builder.main(args)
        return status

    assert run() == 0
    index = json.loads((out / "index.json").read_bytes())
    assert [(r["version"], r["date"], r["count"], r["artifact"]) for r in index["releases"]] == [
        ("2020.1.1", "2020-01-01", 2, "certifi-2020.01.01-py2.py3-none-any.whl"),
        ("2020.2.2", "2020-02-02", 1, "certifi-2020.2.2.tar.gz"),
        ("2020.3.3", "2020-03-03", 2, "certifi-2020.3.3.zip"),
        ("2020.3.3.1", "2020-03-03", 2, "certifi-2020.3.3.1-py3-none-any.whl"),
        ("2020.3.5.post1", "2020-03-05", 1, "certifi-2020.3.5.post1-py3-none-any.whl"),
    ]
    assert [s["version"] for s in index["skipped"]] == ["2020.4.4"]
    sha_a = hashlib.sha256(a.cert.der).hexdigest()
    sha_b = hashlib.sha256(b.cert.der).hexdigest()
    ranges = {r["sha256"]: r["ranges"] for r in index["roots"]}
    assert ranges == {
        sha_a: [["2020.1.1", "2020.1.1"], ["2020.3.3", "2020.3.3.1"]],
        sha_b: [["2020.1.1", "2020.3.5.post1"]],
    }
    packed = gzip.decompress((out / "roots.der.gz").read_bytes())
    assert packed.count(a.cert.der) == 1 and packed.count(b.cert.der) == 1
    readme = (out / "README.md").read_text()
    assert "certifi 2020.4.4" in readme and "do not edit" in readme.lower()

    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert run() == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_builder_runs_are_maximal(builder: ModuleType) -> None:
    assert builder.runs([]) == []
    assert builder.runs([True, True, False, True]) == [(0, 1), (3, 3)]
    assert builder.runs([False, True, True]) == [(1, 2)]
