"""``chainwatch check`` imports only what it uses (a monitoring plugin runs it thousands of
times per interval): not the database, migration, HTTP, notification or YAML libraries,
nor Typer and pydantic (its arguments are read without them) or rich (for JSON output),
nor the other commands' modules. ``chainwatch scan`` imports the HTTP client and the alert
channels only when it fetches or delivers something."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import Receiver
from .pki import PKI, at, pem_of
from .servers import ServerLoop, server_context, tls_handler

NOW = at("2026-03-01T12:00:00Z")
NOT_FOR_CHECK = ("sqlalchemy", "alembic", "httpx", "httpcore", "apprise", "yaml", "typer",
                 "pydantic", "rich",
                 "chainwatch.storage", "chainwatch.config", "chainwatch.cli.monitor",
                 "chainwatch.cli.advise", "chainwatch.service.netinputs")

PROGRAM = """
import json, sys
from chainwatch.cli import run
code = run(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def test_check_imports_only_what_it_uses(tmp_path: Path) -> None:
    pki = PKI(now=NOW)
    root = pki.root("Imports Root")
    inter = root.intermediate("Imports CA")
    leaf = inter.leaf("www.example.com", expires=NOW + dt.timedelta(days=90))
    (tmp_path / "root.pem").write_bytes(pem_of(root.cert))
    with ServerLoop() as lab:
        ep = lab.serve(tls_handler(server_context(leaf.chain(inter), leaf.key, tmp_path)))
        done = subprocess.run(
            [sys.executable, "-c", PROGRAM, "check", ep.hostport, "--sni", "www.example.com",
             "--profile", f"file:{tmp_path / 'root.pem'}", "--at", "2026-03-01T12:00:00Z",
             "--format", "json"],
            capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout)
    assert report["status"] == "ok"
    seen = json.loads(done.stderr.strip().splitlines()[-1])
    assert seen["code"] == 0
    loaded = [m for m in seen["modules"]
              if any(m == name or m.startswith(name + ".") for name in NOT_FOR_CHECK)]
    assert loaded == []


HTTP_CLIENT = ("httpx", "httpcore", "h11", "pygments", "click", "apprise",
               "chainwatch.probe.http", "chainwatch.alerts.channels")
"""What a scan that fetches nothing and sends nothing has no use for: the HTTP client
(httpx, its ``httpx._main`` pulling in click, rich.syntax and pygments), Apprise, the
fetcher and the alert channels."""


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == n or m.startswith(n + ".") for n in names)]


def _scan(tmp_path: Path, days: int, endpoint: dict[str, Any], alerts: str = "") -> Any:
    """``chainwatch scan --format json`` in a fresh interpreter, of one loopback endpoint
    serving a leaf that expires in ``days``; twice on one database (the first scan
    creates it: the migrations import what the steady state does not). Returns each
    scan's exit status, reports and modules."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    pki = PKI(now=now)
    root = pki.root("Scan Imports Root")
    inter = root.intermediate("Scan Imports CA")
    leaf = inter.leaf("www.example.com", not_before=now - dt.timedelta(days=300),
                      expires=now + dt.timedelta(days=days))
    (tmp_path / "root.pem").write_bytes(pem_of(root.cert))
    runs = []
    with ServerLoop() as lab:
        ep = lab.serve(tls_handler(server_context(leaf.chain(inter), leaf.key, tmp_path)))
        entry = {"host": "www.example.com", "ip": "127.0.0.1", "port": ep.port, **endpoint}
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text("defaults: {profiles: ['file:root.pem']}\n"
                             f"endpoints:\n  - {json.dumps(entry)}\n" + alerts)
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, "-c", PROGRAM, "scan", str(inventory),
                 "--db", f"sqlite:///{tmp_path / 'scan.sqlite'}", "--format", "json"],
                capture_output=True, text=True, timeout=120)
            seen = json.loads(done.stderr.strip().splitlines()[-1])
            runs.append((seen["code"], json.loads(done.stdout)["reports"], seen["modules"]))
    return runs


@pytest.mark.parametrize("with_alerts", [False, True], ids=["no-alerts", "nothing-due"])
def test_scan_that_fetches_and_sends_nothing_imports_no_http_client(
    tmp_path: Path, receiver: Receiver, with_alerts: bool
) -> None:
    alerts = ("alerts:\n  channels:\n"
              f"    hook: {{type: webhook, url: '{receiver.url}/hook'}}\n") if with_alerts else ""
    runs = _scan(tmp_path, 200, {}, alerts)
    for code, reports, _ in runs:
        assert code == 0
        assert [r["status"] for r in reports] == ["ok"]
    # The first scan migrated the new database (alembic's mako imports pygments); the
    # second is what every later scan imports.
    assert _loaded(runs[0][2], tuple(n for n in HTTP_CLIENT if n != "pygments")) == []
    assert _loaded(runs[1][2], HTTP_CLIENT) == []
    assert receiver.to("/hook") == []


def test_scan_that_fetches_and_delivers_still_does(tmp_path: Path, receiver: Receiver) -> None:
    """The control: the same scan asked to check revocation, of a leaf whose countdown
    has reached the ticket step, imports the client, fetches, and delivers."""
    alerts = f"alerts:\n  channels:\n    hook: {{type: webhook, url: '{receiver.url}/hook'}}\n"
    (code, reports, modules), _ = _scan(tmp_path, 20, {"revocation": True}, alerts)
    assert code == 1  # 20 days left: warning
    assert [r["status"] for r in reports] == ["warning"]
    assert {"httpx", "chainwatch.probe.http", "chainwatch.alerts.channels"} <= set(modules)
    (post,) = receiver.to("/hook")
    assert post.json()["event"] == "ticket"
