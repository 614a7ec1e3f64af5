"""``jks:``, ``pkcs12:`` and ``dir:`` trust stores: keystores made by the JDK's own keytool
(and by pyjks for a private-key entry), directories laid out as ``openssl rehash`` does."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import jks
import pytest
from cryptography.hazmat.primitives import serialization

from chainwatch.config import load_inventory
from chainwatch.errors import InventoryError, StoreError
from chainwatch.stores import resolve_profile, resolve_store

from .pki import CA, PKI, Leaf, at, pem_of
from .services import unavailable

Cli = Callable[..., tuple[int, str, str]]
NOW = at("2026-01-10")


def keytool() -> str:
    found = shutil.which("keytool")
    if found is None:
        unavailable("keytool (a Java runtime) is not installed")
    return found


def openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        unavailable("openssl is not installed")
    return found


def import_cert(store: Path, alias: str, pem: Path, *, storetype: str, password: str) -> None:
    subprocess.run(
        [keytool(), "-importcert", "-noprompt", "-alias", alias, "-file", str(pem),
         "-keystore", str(store), "-storetype", storetype, "-storepass", password],
        check=True, capture_output=True, timeout=60,
    )


@pytest.fixture(scope="module")
def hierarchy() -> tuple[CA, CA, Leaf, CA]:
    pki = PKI(now=NOW)
    root = pki.root("Backend Root CA")
    other = pki.root("Other Root CA")
    leaf = root.intermediate("Backend Issuing CA").leaf("api.internal.example")
    assert leaf.issuer is not None
    return root, leaf.issuer, leaf, other


@pytest.fixture
def files(tmp_path: Path, hierarchy: tuple[CA, CA, Leaf, CA]) -> dict[str, Path]:
    root, issuing, leaf, other = hierarchy
    out = {"root": tmp_path / "root.pem", "other": tmp_path / "other.pem",
           "chain": tmp_path / "chain.pem"}
    out["root"].write_bytes(root.pem)
    out["other"].write_bytes(other.pem)
    out["chain"].write_bytes(pem_of(*leaf.chain(issuing)))
    return out


def check(cli: Cli, files: dict[str, Path], spec: str) -> tuple[int, str, str]:
    return cli("check-bundle", files["chain"], "--host", "api.internal.example",
               "--at", "2026-01-10", "--profile", spec)


def test_jks_truststore_made_by_keytool(cli: Cli, files: dict[str, Path], tmp_path: Path,
                                        hierarchy: tuple[CA, CA, Leaf, CA]) -> None:
    store = tmp_path / "cacerts"
    import_cert(store, "backend", files["root"], storetype="JKS", password="changeit")
    import_cert(store, "other", files["other"], storetype="JKS", password="changeit")
    loaded = resolve_store(f"jks:{store}")
    assert {a.sha256 for a in loaded.anchors} == {hierarchy[0].cert.sha256,
                                                  hierarchy[3].cert.sha256}
    assert loaded.name == f"jks:{store}" and "2 entries" in loaded.source
    code, out, err = check(cli, files, f"jks:{store}")
    assert code == 0, out + err
    code, out, _ = check(cli, files, f"java:jks:{store}")
    assert code == 0, out


def test_jks_without_the_root_is_untrusted(cli: Cli, files: dict[str, Path],
                                           tmp_path: Path) -> None:
    store = tmp_path / "other.jks"
    import_cert(store, "other", files["other"], storetype="JKS", password="changeit")
    code, out, _ = check(cli, files, f"jks:{store}")
    assert code == 2
    assert "UNTRUSTED" in out or "untrusted" in out


def test_jks_password(cli: Cli, files: dict[str, Path], tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "trust.jks"
    import_cert(store, "backend", files["root"], storetype="JKS", password="s3cret-pw")
    code, out, err = check(cli, files, f"jks:{store}")
    assert code == 3 and not out
    assert err.startswith("chainwatch: error: ") and len(err.strip().splitlines()) == 1
    assert "wrong password" in err and "changeit" in err and "s3cret-pw" not in err
    monkeypatch.setenv("CHAINWATCH_STORE_PASSWORD", "s3cret-pw")
    code, out, err = check(cli, files, f"jks:{store}")
    assert code == 0, out + err
    monkeypatch.setenv("CHAINWATCH_STORE_PASSWORD", "wrong")
    code, _, err = check(cli, files, f"jks:{store}")
    assert code == 3 and "the password given" in err and "wrong" in err


def test_pkcs12_truststore_made_by_keytool(cli: Cli, files: dict[str, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    default = tmp_path / "default.p12"
    import_cert(default, "backend", files["root"], storetype="PKCS12", password="changeit")
    code, out, err = check(cli, files, f"pkcs12:{default}")
    assert code == 0, out + err
    own = tmp_path / "own.p12"
    import_cert(own, "backend", files["root"], storetype="PKCS12", password="hunter22")
    code, _, err = check(cli, files, f"pkcs12:{own}")
    assert code == 3 and "wrong password" in err and "hunter22" not in err
    monkeypatch.setenv("CHAINWATCH_STORE_PASSWORD", "hunter22")
    code, out, err = check(cli, files, f"pkcs12:{own}")
    assert code == 0, out + err


def test_keystore_private_key_entry_trusts_its_certificate(
    files: dict[str, Path], tmp_path: Path, hierarchy: tuple[CA, CA, Leaf, CA]
) -> None:
    """As the JDK's TrustStoreUtil: a key entry's first certificate is an anchor."""
    root, issuing, _, other = hierarchy
    key = issuing.key.private_bytes(serialization.Encoding.DER,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    entry = jks.PrivateKeyEntry.new("issuing", [issuing.cert.der, root.cert.der], key)
    entry.encrypt("changeit")
    trusted = jks.TrustedCertEntry.new("other", other.cert.der)
    path = tmp_path / "keyed.jks"
    jks.KeyStore.new("jks", [entry, trusted]).save(str(path), "changeit")
    loaded = resolve_store(f"jks:{path}")
    assert {a.sha256 for a in loaded.anchors} == {issuing.cert.sha256, other.cert.sha256}


def test_keystore_errors_are_one_line(cli: Cli, files: dict[str, Path],
                                      tmp_path: Path) -> None:
    p12 = tmp_path / "trust.p12"
    import_cert(p12, "backend", files["root"], storetype="PKCS12", password="changeit")
    cases = [
        (f"jks:{tmp_path / 'missing.jks'}", "no such file"),
        (f"pkcs12:{tmp_path / 'missing.p12'}", "no such file"),
        (f"jks:{files['root']}", "not a Java keystore"),
        (f"jks:{p12}", "not a Java keystore"),
        (f"pkcs12:{files['root']}", "not a PKCS#12 file"),
        (f"jks:{tmp_path}", "is a directory"),
        ("jks:", "needs a path"),
        (f"dir:{files['root']}", "not a directory"),
        (f"dir:{tmp_path / 'nope'}", "no such directory"),
    ]
    for spec, reason in cases:
        code, out, err = check(cli, files, spec)
        assert code == 3, spec
        assert not out
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("chainwatch: error: "), err
        assert reason in err, (spec, err)


def test_truncated_jks_is_malformed(files: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "cacerts"
    import_cert(store, "backend", files["root"], storetype="JKS", password="changeit")
    cut = tmp_path / "cut.jks"
    cut.write_bytes(store.read_bytes()[:100])
    with pytest.raises(StoreError, match=r"cut\.jks"):
        resolve_store(f"jks:{cut}")


def test_dir_store_hash_links_and_pem_files(cli: Cli, files: dict[str, Path], tmp_path: Path,
                                            hierarchy: tuple[CA, CA, Leaf, CA]) -> None:
    """A CApath as ``openssl rehash`` leaves it, plus what an /etc/ssl/certs copy holds."""
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(files["root"], certs / "Backend_Root_CA.pem")
    subject_hash = subprocess.run(
        [openssl(), "x509", "-noout", "-subject_hash", "-in", str(files["root"])],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout.strip()
    (certs / f"{subject_hash}.0").symlink_to("Backend_Root_CA.pem")
    (certs / "README").write_text("not a certificate\n")
    (certs / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n")
    (certs / "0a1b2c3d.0").symlink_to("gone.pem")  # dangling
    store = resolve_store(f"dir:{certs}")
    assert [a.sha256 for a in store.anchors] == [hierarchy[0].cert.sha256]
    assert "1 skipped" in store.source and "broken.pem" in store.source
    code, out, err = check(cli, files, f"dir:{certs}")
    assert code == 0, out + err
    # a hash link alone (a CApath without the .pem names) is enough
    (certs / "Backend_Root_CA.pem").rename(certs / "kept")
    (certs / f"{subject_hash}.0").unlink()
    (certs / "kept").rename(certs / f"{subject_hash}.0")
    assert [a.sha256 for a in resolve_store(f"dir:{certs}").anchors] == [
        hierarchy[0].cert.sha256]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README").write_text("x")
    with pytest.raises(StoreError, match="holds no certificate file"):
        resolve_store(f"dir:{empty}")


def test_inventory_keystore_password(files: dict[str, Path], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "trust.jks"
    import_cert(store, "backend", files["root"], storetype="JKS", password="pw-from-env")
    p12 = tmp_path / "trust.p12"
    import_cert(p12, "backend", files["root"], storetype="PKCS12", password="pw-from-file")
    (tmp_path / "p12.pass").write_text("pw-from-file\n")
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "profiles:\n"
        "  backend:\n"
        "    trust: [\"jks:trust.jks\"]\n"
        "    building: java\n"
        "    password_env: BACKEND_TRUST_PW\n"
        "  payments:\n"
        "    trust: [\"pkcs12:trust.p12\"]\n"
        "    password_file: p12.pass\n"
        "endpoints:\n"
        "  - {host: api.internal.example, profiles: [backend, payments]}\n"
    )
    with pytest.raises(InventoryError) as missing:
        load_inventory(inventory)
    assert "inv.yaml:5" in str(missing.value) and "password_env" in str(missing.value)
    assert "BACKEND_TRUST_PW is not set" in str(missing.value)
    monkeypatch.setenv("BACKEND_TRUST_PW", "pw-from-env")
    inv = load_inventory(inventory)
    (endpoint,) = inv.endpoints
    by_name = {p.spec: p for p in endpoint.profiles}
    assert by_name["backend"].building.name == "java"
    assert len(by_name["backend"].store.anchors) == 1
    assert len(by_name["payments"].store.anchors) == 1
    monkeypatch.setenv("BACKEND_TRUST_PW", "not-it")
    with pytest.raises(InventoryError) as wrong:
        load_inventory(inventory)
    assert "inv.yaml:3" in str(wrong.value) and "wrong password" in str(wrong.value)
    assert "not-it" not in str(wrong.value)
    inventory.write_text(inventory.read_text().replace(
        "    password_file: p12.pass\n", "    password_file: p12.pass\n    password_env: X\n"))
    with pytest.raises(InventoryError, match="password_env is given already"):
        load_inventory(inventory)


def test_resolve_profile_passes_the_password(files: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "trust.jks"
    import_cert(store, "backend", files["root"], storetype="JKS", password="abc123")
    assert resolve_profile(f"java:jks:{store}", password="abc123").building.name == "java"
    with pytest.raises(StoreError, match="wrong password"):
        resolve_profile(f"jks:{store}")


def test_fifos_are_refused_without_blocking(files: dict[str, Path], tmp_path: Path,
                                            hierarchy: tuple[CA, CA, Leaf, CA]) -> None:
    import os

    fifo = tmp_path / "cacerts"
    os.mkfifo(fifo)
    with pytest.raises(StoreError, match=r"not a regular file \(a FIFO\)"):
        resolve_store(f"jks:{fifo}")
    with pytest.raises(StoreError, match=r"not a regular file \(a FIFO\)"):
        resolve_store(f"pkcs12:{fifo}")
    certs = tmp_path / "certs"
    certs.mkdir()
    os.mkfifo(certs / "0a1b2c3d.0")  # a FIFO under a hash-link name is skipped
    shutil.copy(files["root"], certs / "root.pem")
    assert [a.sha256 for a in resolve_store(f"dir:{certs}").anchors] == [
        hierarchy[0].cert.sha256]
