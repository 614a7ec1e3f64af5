"""Hostile input files are bounded in the work they cause.

- PEM is scanned in linear time: megabytes of BEGIN lines without END lines are refused
  at once (the old backtracking scan took ~27 s at 256 KiB, hours at 2 MiB);
- only regular files are read, FIFOs are opened without blocking, every read (bundles,
  keys, ``file:`` trust stores) stops at the bundle cap.

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
from pathlib import Path

import pytest

from chainwatch.errors import BundleError
from chainwatch.model import Cert
from chainwatch.parsing import (
    MAX_BUNDLE_BYTES,
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
