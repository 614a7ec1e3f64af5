"""Hostile input files are bounded in the work they cause.

- PEM is scanned in linear time: megabytes of BEGIN lines without END lines are refused
  at once (the old backtracking scan took ~27 s at 256 KiB, hours at 2 MiB);
- only regular files are read, FIFOs are opened without blocking, every read (bundles,
  keys, ``file:`` trust stores) stops at the bundle cap;
- a PKCS#12 file asking for more key-derivation iterations than the cap is refused
  before ``cryptography`` starts deriving.

The tests that would hang or eat memory against a regression run the CLI in a
subprocess with a time cap (and an address-space cap), so the suite fails instead.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from chainwatch.errors import BundleError
from chainwatch.model import Cert
from chainwatch.model.bundle import (
    MAX_BUNDLE_BYTES,
    MAX_PKCS12_ITERATIONS,
    load_private_key,
    parse_bundle,
    read_source,
)

from .pki import PKI, Leaf, at, pem_of

Cli = Callable[..., tuple[int, str, str]]

SAFETY_SECONDS = 120  # a run that takes this long has regressed (they take ~1 s)
ADDRESS_SPACE = 4 << 30  # a regression reading /dev/zero dies at 4 GiB, not at the machine's


@pytest.fixture(scope="module")
def leaf() -> Leaf:
    pki = PKI(now=at("2026-01-01"))
    return pki.root("Hardening Root").intermediate("Hardening CA").leaf("app.example.com")


def served(leaf: Leaf) -> tuple[Cert, ...]:
    """The leaf and its issuing CA, as a server sends them."""
    assert leaf.issuer is not None
    return leaf.chain(leaf.issuer)


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def chainwatch(*args: str | os.PathLike[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process, stopped (and the test failed) if it hangs."""
    code = "import sys; from chainwatch.cli import run; sys.exit(run(sys.argv[1:]))"
    try:
        return subprocess.run(
            [sys.executable, "-c", code, *map(str, args)], cwd=cwd, capture_output=True,
            text=True, timeout=SAFETY_SECONDS, preexec_fn=_limits, stdin=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "200"}, check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"chainwatch {' '.join(map(str, args))} did not finish in {SAFETY_SECONDS}s")


def one_line_error(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 3, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for text in expected:
        assert text in lines[0], lines[0]


# -- PEM: one linear pass --------------------------------------------------------------------

BEGIN = b"-----BEGIN CERTIFICATE-----\n"


def test_megabytes_of_begin_lines_without_end_are_refused_at_once() -> None:
    # 2 MiB: ~75,000 BEGIN lines. The backtracking scan looked for an END line from each of
    # them to the end of the file: ~75,000 x 1 MiB of scanning, hours (27 s at 256 KiB).
    data = BEGIN * (2 * 1024 * 1024 // len(BEGIN))
    with pytest.raises(BundleError, match="truncated PEM: a BEGIN line has no matching END"):
        parse_bundle(data, "begins.pem")


def test_begin_lines_closed_by_one_end_line_are_truncated() -> None:
    data = BEGIN * (2 * 1024 * 1024 // len(BEGIN)) + b"-----END CERTIFICATE-----\n"
    with pytest.raises(BundleError, match="truncated PEM"):
        parse_bundle(data, "begins.pem")


@pytest.mark.parametrize(
    "data",
    [
        b"-----BEGIN CERTIFICATE-----no line break",
        BEGIN + b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        BEGIN + b"AAAA\n-----END PRIVATE KEY-----\n",
    ],
    ids=["no-line-break", "begin-inside-a-block", "other-end-label"],
)
def test_every_begin_line_must_start_a_block(data: bytes) -> None:
    with pytest.raises(BundleError, match="truncated PEM"):
        parse_bundle(data, "odd.pem")


def test_many_blocks_parse_in_order(leaf: Leaf) -> None:
    chain = served(leaf)
    key_block = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\r\n"
    data = (pem_of(*chain) + key_block + b"text between blocks\n") * 1500  # ~3.5 MiB
    certs = parse_bundle(data, "many.pem")
    assert len(certs) == 1500 * len(chain)
    assert certs[: len(chain)] == chain


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("crash-lazy-issuer-name.pem", "PEM certificate #1 is malformed: error parsing asn1"),
        ("crash-x509-version-6.pem", "PEM certificate #1 is malformed: 6 is not a valid X509"),
        ("crash-x509-version-6.der", "DER certificate is malformed: not an X.509 v1, v2 or v3"),
        ("crash-name-attribute-type.der", "DER certificate is malformed: malformed name (oid"),
    ],
)
def test_certificates_that_fail_after_loading_are_bundle_errors(cli: Cli, name: str,
                                                                expected: str) -> None:
    # Found by fuzzing: cryptography decodes names lazily (a ValueError, or a TypeError for
    # an attribute of the wrong type, on first use after the load succeeded), and an
    # unknown version is an InvalidVersion: none of these was caught.
    path = Path(__file__).parent / "fuzz" / "corpus" / "bundle" / name
    code, out, err = cli("check-bundle", path)
    lines = err.strip().splitlines()
    assert code == 3 and out == "" and len(lines) == 1, err
    assert f"{path}: {expected}" in lines[0]


# -- only regular files, every read capped -----------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.pem"
    os.mkfifo(path)
    return path


def test_check_bundle_refuses_a_character_device(tmp_path: Path) -> None:
    # /dev/zero reports size 0: the old reader read it until memory ran out.
    one_line_error(chainwatch("check-bundle", "/dev/zero", cwd=tmp_path),
                   "/dev/zero", "not a regular file (a character device)")


def test_check_bundle_refuses_a_fifo_without_blocking(tmp_path: Path, fifo: Path) -> None:
    # Nobody writes to the FIFO: opening it for reading used to block forever.
    one_line_error(chainwatch("check-bundle", fifo, cwd=tmp_path),
                   str(fifo), "not a regular file (a FIFO)")


def test_key_that_is_a_fifo_is_refused(tmp_path: Path, fifo: Path, leaf: Leaf) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pem_of(*served(leaf)))
    one_line_error(chainwatch("check-bundle", bundle, "--key", fifo, cwd=tmp_path),
                   str(fifo), "not a regular file (a FIFO)")


def test_scan_reports_a_fifo_matched_by_a_files_glob(tmp_path: Path, fifo: Path,
                                                     leaf: Leaf) -> None:
    (tmp_path / "good.pem").write_bytes(pem_of(*served(leaf)))
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text('files:\n  - {path: "*.pem"}\n', encoding="utf-8")
    done = chainwatch("scan", inventory, "--db", f"sqlite:///{tmp_path / 'cw.sqlite'}",
                      "--format", "json", cwd=tmp_path)
    assert done.returncode == 3, done.stderr  # the unreadable file is unknown
    reports = {r["target"]["host"]: r for r in json.loads(done.stdout)["reports"]}
    assert set(reports) == {f"file:{tmp_path / 'good.pem'}", f"file:{fifo}"}
    bad = reports[f"file:{fifo}"]
    assert bad["status"] == "unknown" and bad["chain"] == []
    assert [f["code"] for f in bad["findings"]] == ["PROBE_FAILED"]
    assert "not a regular file (a FIFO)" in bad["findings"][0]["message"]
    assert reports[f"file:{tmp_path / 'good.pem'}"]["chain"]


def test_read_source_refuses_special_files(tmp_path: Path) -> None:
    # (FIFOs only in a subprocess, above: a regression would hang this process.)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "listening.pem"))
    with server:
        for path, kind in ((Path("/dev/null"), "a character device"),
                           (tmp_path / "listening.pem", "a socket")):
            with pytest.raises(BundleError, match=rf"{path}: not a regular file \({kind}\)"):
                read_source(path)
    with pytest.raises(BundleError, match="is a directory"):
        read_source(tmp_path)


def test_read_source_caps_what_it_reads(tmp_path: Path) -> None:
    path = tmp_path / "big.pem"
    path.write_bytes(b"x" * 2048)
    assert read_source(path, limit=2048) == b"x" * 2048
    with pytest.raises(BundleError, match="larger than 2047 bytes"):
        read_source(path, limit=2047)


def test_file_store_under_the_home_of_no_user(cli: Cli, tmp_path: Path, leaf: Leaf) -> None:
    # Found by fuzzing the inventory: Path.expanduser raised RuntimeError for ~nobody-here.
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pem_of(*served(leaf)))
    code, out, err = cli("check-bundle", bundle, "--profile", "file:~no-such-user-here/ca.pem")
    assert code == 3 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "profile store 'file:~no-such-user-here/ca.pem'" in err
    assert "~no-such-user-here names no user here" in err


@pytest.mark.parametrize("kind", ["fifo", "device", "sparse", "directory"])
def test_file_store_refuses_what_is_not_a_bundle(cli: Cli, tmp_path: Path, fifo: Path,
                                                 leaf: Leaf, kind: str) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pem_of(*served(leaf)))
    if kind == "fifo":
        store, expected = fifo, "not a regular file (a FIFO)"
    elif kind == "device":
        store, expected = Path("/dev/zero"), "not a regular file (a character device)"
    elif kind == "sparse":  # one byte over the cap, no disk used
        store, expected = tmp_path / "huge.pem", f"larger than {MAX_BUNDLE_BYTES} bytes"
        with store.open("wb") as f:
            f.truncate(MAX_BUNDLE_BYTES + 1)
    else:
        store, expected = tmp_path, "is a directory"
    code, out, err = cli("check-bundle", bundle, "--profile", f"file:{store}")
    assert code == 3 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert f"profile store 'file:{store}'" in err and expected in err, err


# -- PKCS#12: iteration counts read before cryptography derives ---------------------------


@dataclass
class Tlv:
    """A DER element as a tree; OCTET STRINGs holding DER are opened as well."""

    tag: int
    value: bytes | list[Tlv]
    wrapped: bool = False  # an OCTET STRING whose contents are the one element in value

    @classmethod
    def parse(cls, data: bytes) -> Tlv:
        node, end = cls._parse(data, 0)
        assert end == len(data)
        return node

    @classmethod
    def _parse(cls, data: bytes, pos: int) -> tuple[Tlv, int]:
        tag, first = data[pos], data[pos + 1]
        pos += 2
        if first & 0x80:
            count = first & 0x7F
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        else:
            length = first
        body, end = data[pos : pos + length], pos + length
        if tag & 0x20:
            children, inner = [], 0
            while inner < len(body):
                child, inner = cls._parse(body, inner)
                children.append(child)
            return cls(tag, children), end
        if tag == 0x04 and body[:1] == b"\x30":
            try:
                inner_node, inner_end = cls._parse(body, 0)
            except IndexError:
                inner_end = -1
            if inner_end == len(body) and inner_node.encode() == body:
                return cls(tag, [inner_node], wrapped=True), end
        return cls(tag, body), end

    def encode(self, *, ber: bool = False) -> bytes:
        if isinstance(self.value, bytes):
            body = self.value
        else:
            body = b"".join(child.encode(ber=ber) for child in self.value)
        if ber and self.tag == 0x04 and len(body) > 16:  # constructed, in 16-byte pieces
            pieces = b"".join(Tlv(0x04, body[i : i + 16]).encode()
                              for i in range(0, len(body), 16))
            return b"\x24\x80" + pieces + b"\x00\x00"
        if ber and self.tag & 0x20:
            return bytes([self.tag, 0x80]) + body + b"\x00\x00"
        n = len(body)
        if n < 0x80:
            length = bytes([n])
        else:
            raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
            length = bytes([0x80 | len(raw)]) + raw
        return bytes([self.tag]) + length + body

    def integers(self) -> list[Tlv]:
        if self.tag == 0x02:
            return [self]
        if isinstance(self.value, bytes):
            return []
        return [i for child in self.value for i in child.integers()]

    def set_integer(self, n: int) -> None:
        self.value = n.to_bytes((n.bit_length() + 8) // 8, "big")


ROUNDS = 4099  # a count no other INTEGER of the file has


def p12(leaf: Leaf, algorithm: pkcs12.PBES = pkcs12.PBES.PBESv2SHA256AndAES256CBC) -> bytes:
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(ROUNDS).key_cert_algorithm(algorithm).hmac_hash(hashes.SHA256())
        .build(b"secret")
    )
    ca = served(leaf)[1:]
    return pkcs12.serialize_key_and_certificates(
        b"app", leaf.key, leaf.cert.parsed, [c.parsed for c in ca], encryption
    )


def with_mac_iterations(data: bytes, n: int) -> bytes:
    pfx = Tlv.parse(data)
    assert isinstance(pfx.value, list)
    mac_data = pfx.value[2]
    assert isinstance(mac_data.value, list) and mac_data.value[2].tag == 0x02
    mac_data.value[2].set_integer(n)
    return pfx.encode()


def with_kdf_iterations(data: bytes, n: int) -> bytes:
    pfx = Tlv.parse(data)
    found = [i for i in pfx.integers() if i.value == ROUNDS.to_bytes(2, "big")]
    assert len(found) == 2  # the certificates' encryption and the shrouded key's
    for integer in found:
        integer.set_integer(n)
    return pfx.encode()


@pytest.mark.parametrize("algorithm", list(pkcs12.PBES))
def test_pkcs12_files_of_common_tools_still_load(leaf: Leaf, algorithm: pkcs12.PBES) -> None:
    data = p12(leaf, algorithm)
    expected = served(leaf)
    assert parse_bundle(data, "a.p12", password=b"secret") == expected
    unencrypted = pkcs12.serialize_key_and_certificates(
        b"app", leaf.key, leaf.cert.parsed, None, serialization.NoEncryption()
    )
    assert parse_bundle(unencrypted, "plain.p12") == (leaf.cert,)


def test_pkcs12_mac_iterations_above_the_cap_are_refused(tmp_path: Path, leaf: Leaf) -> None:
    # 2^31-1 MAC iterations: ~11 minutes of key derivation per file before the fix.
    evil = with_mac_iterations(p12(leaf), 2**31 - 1)
    with pytest.raises(BundleError, match=r"asks for 2,147,\d{3},\d{3} key-derivation "
                                          r"iterations \(MAC: 2,147,483,647\)"):
        parse_bundle(evil, "evil.p12", password=b"secret")
    path = tmp_path / "evil.p12"
    path.write_bytes(evil)
    with pytest.raises(BundleError, match="refuses more than 10,000,000"):
        load_private_key(path, b"secret")


def test_pkcs12_iterations_are_read_from_ber_too(leaf: Leaf) -> None:
    # Indefinite lengths and constructed OCTET STRINGs (BER, as some Windows exports have
    # them) hide no iteration count (cryptography 50 does not load this encoding of the
    # file; what counts is that no count hides in it).
    pfx = Tlv.parse(with_mac_iterations(p12(leaf), 2**31 - 1))
    ber = pfx.encode(ber=True)
    assert b"\x24\x80" in ber and ber.startswith(b"\x30\x80")
    with pytest.raises(BundleError, match=r"\(MAC: 2,147,483,647\)"):
        parse_bundle(ber, "ber.p12", password=b"secret")
    kdf = Tlv.parse(with_kdf_iterations(p12(leaf), MAX_PKCS12_ITERATIONS)).encode(ber=True)
    with pytest.raises(BundleError, match="key-derivation iterations"):
        parse_bundle(kdf, "ber.p12", password=b"secret")


def test_pkcs12_with_bytes_after_it_loads_without_a_warning(leaf: Leaf) -> None:
    # Found by fuzzing: cryptography then falls back to BER with a UserWarning, which
    # reached the terminal (and is an error under this suite's filterwarnings = error).
    assert parse_bundle(p12(leaf) + b"\x00\x00", "extra.p12", password=b"secret") == served(leaf)


def test_pkcs12_encryption_iterations_above_the_cap_are_refused(leaf: Leaf) -> None:
    # Each of the two PBKDF2 derivations just over half the cap: the sum is what counts.
    # Before the fix cryptography derived them (~3 s) and the wrong key failed to decrypt.
    evil = with_kdf_iterations(p12(leaf), MAX_PKCS12_ITERATIONS // 2 + 1)
    with pytest.raises(BundleError, match="key-derivation iterations"):
        parse_bundle(evil, "evil.p12", password=b"secret")


def test_check_bundle_key_pkcs12_above_the_cap(tmp_path: Path, leaf: Leaf) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pem_of(*served(leaf)))
    key = tmp_path / "key.p12"
    key.write_bytes(with_mac_iterations(p12(leaf), 2**31 - 1))
    one_line_error(chainwatch("check-bundle", bundle, "--key", key, cwd=tmp_path),
                   str(key), "MAC: 2,147,483,647")


def test_a_der_private_key_is_not_taken_for_pkcs12(tmp_path: Path, leaf: Leaf) -> None:
    path = tmp_path / "key.der"
    path.write_bytes(serialization.load_pem_private_key(leaf.key_pem(), None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    with pytest.raises(BundleError, match="neither PEM, DER nor PKCS#12"):
        parse_bundle(path.read_bytes(), str(path))


# -- configuration files: the inventory, secret files, exports ------------------------------


def test_an_inventory_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path,
                                                                  fifo: Path) -> None:
    # Nobody writes to the FIFO: load_inventory used to block in open() forever.
    one_line_error(chainwatch("scan", fifo, "--db", tmp_path / "cw.sqlite", cwd=tmp_path),
                   str(fifo), "not a regular file (a FIFO)")


def test_an_inventory_that_is_a_device_is_refused(tmp_path: Path) -> None:
    # /dev/zero has size 0, so the size check passed and read_text() grew without end.
    one_line_error(chainwatch("scan", "/dev/zero", "--db", tmp_path / "cw.sqlite", cwd=tmp_path),
                   "/dev/zero", "not a regular file (a character device)")


@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "directory"])
def test_a_secret_file_that_is_not_a_regular_file_is_a_field_error(
        tmp_path: Path, fifo: Path, target: str) -> None:
    path = {"fifo": str(fifo), "directory": str(tmp_path)}.get(target, target)
    inv = tmp_path / "inv.yaml"
    inv.write_text("endpoints: [{host: a.example}]\n"
                   "alerts:\n  channels:\n"
                   f"    hook: {{type: webhook, url_file: '{path}'}}\n")
    one_line_error(chainwatch("scan", inv, "--db", tmp_path / "cw.sqlite", cwd=tmp_path),
                   f"{inv}:4: alerts.channels.hook.url_file:", path, "regular file")


@pytest.mark.parametrize("target", ["fifo", "/dev/zero"])
def test_revealing_a_secret_that_became_a_fifo_or_a_device_is_an_input_error(
        tmp_path: Path, fifo: Path, target: str) -> None:
    # The file is checked at load time; what it is when a delivery reads it is checked
    # again (it may have been swapped since). reveal() used to block or grow.
    path = str(fifo) if target == "fifo" else target
    code = ("import sys\nfrom chainwatch.alerts.config import Secret\n"
            "from chainwatch.errors import InputError\n"
            "try:\n    Secret.file(sys.argv[1]).reveal()\n"
            "except InputError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                          timeout=SAFETY_SECONDS, preexec_fn=_limits, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"secret file {path}: not a regular file " + (
        "(a FIFO)" if target == "fifo" else "(a character device)")


def test_a_secret_file_larger_than_the_cap_is_refused(tmp_path: Path) -> None:
    from chainwatch.alerts.config import MAX_SECRET_BYTES, Secret
    from chainwatch.errors import InputError

    big = tmp_path / "token"
    big.write_text("x" * (MAX_SECRET_BYTES + 1))
    with pytest.raises(InputError, match=f"larger than {MAX_SECRET_BYTES} bytes"):
        Secret.file(big).reveal()


def test_a_ct_export_that_is_a_fifo_is_refused(tmp_path: Path, fifo: Path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text("endpoints: [{host: a.example}]\n")
    one_line_error(chainwatch("discover", "ct", fifo, "--inventory", inv, cwd=tmp_path),
                   str(fifo), "not a regular file (a FIFO)")
