"""``chainwatch check`` imports only what it uses (a monitoring plugin runs it thousands of
times per interval): not the database, migration, HTTP, notification or YAML libraries,
nor Typer and pydantic (its arguments are read without them) or rich (for JSON output),
nor the other commands' modules."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

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
