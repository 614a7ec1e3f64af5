"""Names from certificates and servers cannot forge lines of output.

A subject, an issuer or a SAN is whatever the certificate's maker wrote: line breaks,
terminal escapes, Unicode line separators, Rich markup. In the CLI's text output, the
log lines of ``serve`` and the text of alerts, each of those is shown as its escape
(``\\n``, ``\\x1b``, ``\\u2028``) and markup is inert. (Before: the issuer ``[/]`` made
``check-bundle`` end in a Rich MarkupError traceback, and a CN with a line break printed
a line of its own, such as a forged ``CHAINWATCH OK`` summary.)"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chainwatch.alerts.channels._base import body, details, title
from chainwatch.alerts.channels._issues import issue_body, issue_title
from chainwatch.model.names import printable
from chainwatch.service import logs

from .pki import PKI, Leaf, at, pem_of

FORGED = "CHAINWATCH OK - all good"
EXE = Path(sys.executable).with_name("chainwatch")


@pytest.fixture(scope="module")
def hostile() -> Leaf:
    pki = PKI(now=at("2026-01-01"))
    root = pki.root(f"Root\n{FORGED}")
    ca = root.intermediate("Int [/] [bold]x\u2028y")
    return ca.leaf(f"forged\n{FORGED}.example", "ok.example",
                   common_name=f"evil\r\n{FORGED}\x1b[31m")


def run(*args: str | os.PathLike[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "COLUMNS": "400"}, check=False)


def assert_no_forged_line(text: str) -> None:
    for line in text.splitlines():
        assert FORGED not in line or "\\n" in line or "\\r" in line, line
    assert "\x1b" not in text and "\u2028" not in text and "\r" not in text


def test_printable_escapes_what_breaks_lines() -> None:
    assert printable("a\nb\r\x1b[0m\u2028\u202e\tc") == "a\\nb\\r\\x1b[0m\\u2028\\u202e\\tc"
    assert printable("ok.example — fine, é") == "ok.example — fine, é"


def test_check_bundle_text_escapes_hostile_names(tmp_path: Path, hostile: Leaf) -> None:
    assert hostile.issuer is not None
    bundle = tmp_path / "hostile.pem"
    bundle.write_bytes(pem_of(*hostile.chain(hostile.issuer)))
    done = run("check-bundle", bundle, "--host", "app.example.com", cwd=tmp_path)
    assert done.returncode == 2, done.stderr  # critical: expired, untrusted; no traceback
    assert "Traceback" not in done.stderr and done.stderr == ""
    assert done.stdout.splitlines()[0].startswith("CHAINWATCH CRITICAL - app.example.com")
    assert_no_forged_line(done.stdout)
    assert "evil\\r\\nCHAINWATCH OK" in done.stdout
    assert "Int [/] [bold]x\\u2028y" in done.stdout  # markup shown, not interpreted


def test_scan_text_and_alert_text_escape_hostile_names(tmp_path: Path,
                                                       hostile: Leaf) -> None:
    assert hostile.issuer is not None
    (tmp_path / "hostile.pem").write_bytes(pem_of(*hostile.chain(hostile.issuer)))
    alerts = tmp_path / "alerts.jsonl"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "files:\n  - {path: hostile.pem, host: 'forged.example'}\n"
        f"alerts:\n  channels:\n    log: {{type: file, path: '{alerts}'}}\n")
    done = run("scan", inventory, "--db", tmp_path / "cw.sqlite", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert_no_forged_line(done.stdout)
    assert_no_forged_line(done.stderr)
    sent = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert sent, "the broken file was not alerted on"
    for payload in sent:
        assert "\n" not in payload["message"] and "\r" not in payload["message"]
        for line in details(payload):
            assert "\n" not in line and "\x1b" not in line
        assert body(payload).count("\n") == len(details(payload)) - 1
        assert "\n" not in title(payload)


def test_channel_text_escapes_every_field() -> None:
    payload = {"event": "page", "target": {"key": "a\nb:443"}, "message": f"x\n{FORGED}",
               "status": "critical\r", "findings": [{"code": "X\nY"}], "dedup_key": "k\n"}
    assert title(payload) == "[chainwatch] CERTIFICATE ALERT: a\\nb:443"
    assert issue_title(payload).startswith("[chainwatch] TLS certificate of a\\nb:443 ")
    assert f"x\\n{FORGED}" in issue_body(payload)
    lines = details(payload)
    assert all("\n" not in line and "\r" not in line for line in lines)
    assert lines[0] == f"x\\n{FORGED}"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_log_message_with_line_breaks_stays_one_line(fmt: str) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.configure(fmt=fmt, stream=stream)
        logging.getLogger("chainwatch.test").warning("probe of %s failed",
                                                     f"evil\n{FORGED}\x1b[2J")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    out = stream.getvalue()
    assert out.count("\n") == 1 and "\x1b" not in out, out
    if fmt == "json":
        assert json.loads(out)["msg"] == f"probe of evil\n{FORGED}\x1b[2J failed"
    else:
        assert "probe of evil\\nCHAINWATCH OK - all good\\x1b[2J failed" in out
