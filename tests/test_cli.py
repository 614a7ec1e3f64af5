"""The check-bundle command line contract: exit codes, summary line, JSON schema 1, and
bad input that must end in one line on stderr and exit 3, never a traceback."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

from chainwatch.testing.pki import key_pem

from .pki import PKI, at

Cli = Callable[..., tuple[int, str, str]]
NOW = at("2024-03-01T12:00:00Z")
HEX64 = set("0123456789abcdef")


@pytest.fixture
def hierarchy(write_pem: Callable[..., Path]) -> dict[str, Any]:
    pki = PKI(now=NOW)
    root = pki.root("CLI Root")
    inter = root.intermediate("CLI CA")
    leaf = inter.leaf("www.example.com", expires=NOW + dt.timedelta(days=20))
    return {
        "root": root,
        "inter": inter,
        "leaf": leaf,
        "bundle": write_pem("bundle.pem", *leaf.chain(inter)),
        "trust": write_pem("trust.pem", root.cert),
    }


def test_json_report_schema(cli: Cli, hierarchy: dict[str, Any]) -> None:
    code, out, err = cli(
        "check-bundle", hierarchy["bundle"], "--host", "www.example.com",
        "--at", "2024-03-01T12:00:00", "--profile", f"file:{hierarchy['trust']}",
        "--format", "json",
    )
    assert err == ""
    report = json.loads(out)
    assert code == 1
    assert set(report) == {
        "schema", "status", "evaluated_at", "host", "breaks_at", "days_left", "chain",
        "profiles", "findings",
    }
    assert report["schema"] == 1
    assert report["status"] == "warning"
    assert report["evaluated_at"] == "2024-03-01T12:00:00Z"
    assert report["host"] == "www.example.com"
    assert report["days_left"] == 20
    chain = report["chain"]
    assert [c["index"] for c in chain] == [0, 1]
    for cert in chain:
        assert set(cert) == {"index", "subject", "issuer", "sha256", "not_before", "not_after",
                             "is_ca", "self_signed"}
        assert len(cert["sha256"]) == 64 and set(cert["sha256"]) <= HEX64
        assert cert["not_after"].endswith("Z")
    assert chain[0]["is_ca"] is False and chain[1]["is_ca"] is True
    (profile,) = report["profiles"]
    assert {"profile", "trusted", "error", "path", "breaks_at"} <= set(profile)
    assert profile["path"][-1] == hierarchy["root"].cert.sha256  # anchor included
    assert profile["path"][0] == chain[0]["sha256"]
    (finding,) = report["findings"]
    assert set(finding) == {"code", "severity", "message", "profile", "cert"}
    assert finding["code"] == "EXPIRES_SOON"


def test_text_first_line_is_a_plugin_summary(cli: Cli, hierarchy: dict[str, Any]) -> None:
    code, out, _ = cli(
        "check-bundle", hierarchy["bundle"], "--host", "www.example.com",
        "--at", "2024-03-01T12:00:00Z", "--profile", f"file:{hierarchy['trust']}",
    )
    first = out.splitlines()[0]
    assert code == 1
    assert first.startswith("CHAINWATCH WARNING - www.example.com: trust breaks in 20 days")
    assert first.endswith("| days_left=20;30;7")
    assert "Client profiles" in out and "Findings" in out


def test_exit_codes_ok_and_critical(cli: Cli, hierarchy: dict[str, Any]) -> None:
    base = ["check-bundle", hierarchy["bundle"], "--profile", f"file:{hierarchy['trust']}"]
    assert cli(*base, "--at", "2024-03-01", "--warn-days", "10")[0] == 0
    assert cli(*base, "--at", "2024-03-01", "--host", "other.example.net")[0] == 2
    assert cli(*base, "--at", "2030-01-01")[0] == 2


def test_der_and_pkcs12_bundles(cli: Cli, tmp_path: Path, hierarchy: dict[str, Any]) -> None:
    leaf, inter = hierarchy["leaf"], hierarchy["inter"]
    der = tmp_path / "leaf.der"
    der.write_bytes(leaf.cert.der)
    p12 = tmp_path / "bundle.p12"
    p12.write_bytes(pkcs12.serialize_key_and_certificates(
        b"www", leaf.key, leaf.cert.parsed, [inter.cert.parsed], NoEncryption()
    ))
    trust = f"file:{hierarchy['trust']}"
    code, out, _ = cli("check-bundle", p12, "--profile", trust, "--at", "2024-03-01",
                       "--format", "json")
    assert code == 1, out
    assert len(json.loads(out)["chain"]) == 2
    code, out, _ = cli("check-bundle", der, "--profile", trust, "--at", "2024-03-01",
                       "--format", "json")
    assert [f["code"] for f in json.loads(out)["findings"]][:2] == ["UNTRUSTED",
                                                                     "CHAIN_INCOMPLETE"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "file is empty"),
        (os.urandom(64) + b"\x00garbage", "not a certificate"),
        (b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ\n", "truncated PEM"),
        (b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
         "malformed"),
    ],
    ids=["empty", "random", "truncated", "bad-base64-der"],
)
def test_bad_bundles_exit_3_with_one_line(cli: Cli, tmp_path: Path, content: bytes,
                                          expected: str) -> None:
    path = tmp_path / "bad.pem"
    path.write_bytes(content)
    code, out, err = cli("check-bundle", path)
    assert code == 3
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert str(path) in err
    assert expected in err
    assert "Traceback" not in err


def test_private_key_only_pem(cli: Cli, tmp_path: Path, hierarchy: dict[str, Any]) -> None:
    path = tmp_path / "key-only.pem"
    path.write_bytes(key_pem(hierarchy["leaf"].key))
    code, _, err = cli("check-bundle", path)
    assert code == 3
    assert str(path) in err and "PRIVATE KEY" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--at", "yesterday"], "--at 'yesterday'"),
        (["--profile", "nosuch"], "unknown profile 'nosuch'"),
        (["--profile", "file:/nonexistent/ca.pem"], "/nonexistent/ca.pem"),
        (["--profile", "mozilla@2016-13-45"], "not a calendar date"),
        (["--format", "yaml"], "yaml"),
        (["--key", "/nonexistent.key"], "/nonexistent.key: no such file"),
    ],
)
def test_bad_options_exit_3(cli: Cli, hierarchy: dict[str, Any], args: list[str],
                            expected: str) -> None:
    code, _, err = cli("check-bundle", hierarchy["bundle"], *args)
    assert code == 3
    assert expected in err
    assert "Traceback" not in err


def test_missing_file_exit_3(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("check-bundle", tmp_path / "nope.pem")
    assert code == 3
    assert "nope.pem: no such file" in err


def test_installed_entry_point_runs(hierarchy: dict[str, Any]) -> None:
    """The console script as a user runs it: a separate process, exit status intact."""
    exe = Path(sys.executable).with_name("chainwatch")
    proc = subprocess.run(
        [str(exe), "check-bundle", str(hierarchy["bundle"]), "--at", "2024-03-01",
         "--profile", f"file:{hierarchy['trust']}", "--host", "www.example.com"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("CHAINWATCH WARNING")
