from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chainwatch.analysis.engine import clear_caches
from chainwatch.cli import run
from chainwatch.model import Cert

from .pki import pem_of


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's trust settings must not leak into tests."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    clear_caches()


@pytest.fixture
def write_pem(tmp_path: Path) -> Callable[..., Path]:
    """Write certificates (in the order given) to a PEM file under tmp_path."""

    def write(name: str, *certs: Cert) -> Path:
        path = tmp_path / name
        path.write_bytes(pem_of(*certs))
        return path

    return write


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run the chainwatch CLI in-process; returns (exit status, stdout, stderr)."""

    def invoke(*args: str | os.PathLike[str]) -> tuple[int, str, str]:
        code = run([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture
def cli_json(cli: Callable[..., tuple[int, str, str]]) -> Callable[..., tuple[int, Any]]:
    """Run the CLI with ``--format json`` and parse stdout."""

    def invoke(*args: str | os.PathLike[str]) -> tuple[int, Any]:
        code, out, err = cli(*args, "--format", "json")
        assert out, f"no JSON on stdout; stderr: {err}"
        return code, json.loads(out)

    return invoke
