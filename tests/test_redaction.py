"""Secrets never leave chainwatch: not in serve's log (httpx's request lines silenced, every
configured secret masked, encoded forms included), not in delivery errors a receiver
echoes back, and redaction masks whole secrets, not the hosts and words around them."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chainwatch.alerts.escalation import Situation
from chainwatch.alerts.outbox import deliver, evaluate
from chainwatch.config.inventory import load_inventory
from chainwatch.model.redaction import Redactor, basic_auth, redact
from chainwatch.service import logs
from chainwatch.storage import AlertsRepo, Database

from .conftest import Receiver

CLI = Callable[..., tuple[int, str, str]]
EXE = Path(sys.executable).with_name("chainwatch")
TOKEN = "jira-T0KEN-5ecret"
PATH_SECRET = "T0KEN-abc123def"
QUERY_SECRET = "q-s3cret-value-9"
PASSWORD = "p4ssw0rd-xyz"


@pytest.fixture
def quiet_root() -> Iterator[None]:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])


def test_whole_secrets_are_masked_words_and_hosts_are_not() -> None:
    hook = f"http://127.0.0.1:19800/hooks/{PATH_SECRET}?token={QUERY_SECRET}"
    r = Redactor([hook, f"https://bot:{PASSWORD}@chat.example.net/services/x"])
    text = (f"hook: POST http://127.0.0.1:19800 failed; {PATH_SECRET} {QUERY_SECRET} "
            f"{PASSWORD} chat.example.net/services pager500: HTTP 500")
    out = r(text)
    assert PATH_SECRET not in out and QUERY_SECRET not in out and PASSWORD not in out
    # Hosts, ports, path words and other channels' names stay readable.
    assert "http://127.0.0.1:19800 failed" in out
    assert "chat.example.net/services" in out
    assert "pager500: HTTP 500" in out
    assert "***" in out


def test_encoded_forms_are_masked() -> None:
    auth = basic_auth("bot@acme.io", TOKEN)
    text = (f"echo: Authorization: Basic {auth} {base64.b64encode(TOKEN.encode()).decode()} "
            f"{TOKEN.replace('-', '%2D')} https://h.example/x?sig=abc")
    out = redact(text, [TOKEN, auth])
    assert auth not in out and TOKEN not in out
    assert base64.b64encode(TOKEN.encode()).decode() not in out
    assert "sig=abc" not in out  # query strings are cut from any URL


def test_log_lines_are_masked_and_httpx_is_silent(quiet_root: None) -> None:
    stream = io.StringIO()
    logs.configure(secrets=[f"http://u:{PASSWORD}@127.0.0.1/{PATH_SECRET}"], stream=stream)
    logging.getLogger("httpx").info("HTTP Request: POST http://127.0.0.1/%s", PATH_SECRET)
    logging.getLogger("chainwatch.test").warning("failed %s with %s", PATH_SECRET, PASSWORD)
    text = stream.getvalue()
    assert "HTTP Request" not in text
    assert PATH_SECRET not in text and PASSWORD not in text
    assert "level=warning logger=chainwatch.test failed *** with ***" in text


def test_json_log_format(quiet_root: None) -> None:
    stream = io.StringIO()
    logs.configure(secrets=[QUERY_SECRET], fmt="json", stream=stream)
    logging.getLogger("chainwatch.test").error("x=%s", QUERY_SECRET)
    doc = json.loads(stream.getvalue())
    assert doc["level"] == "error" and doc["msg"] == "x=***" and doc["logger"] == "chainwatch.test"


def test_serve_logs_no_secret(tmp_path: Path, receiver: Receiver) -> None:
    """A real serve with a webhook URL holding userinfo, a secret path and ?token=, and a
    dead-man URL: its whole stderr holds none of them."""
    hook = f"http://bot:{PASSWORD}@127.0.0.1:{receiver.url.rsplit(':', 1)[1]}/hook/" \
           f"{PATH_SECRET}?token={QUERY_SECRET}"
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "defaults: {timeout: 2s}\n"
        "endpoints: [{host: nothing.lab.test, port: 1, ip: 127.0.0.1}]\n"
        "alerts:\n"
        f"  channels: {{hook: {{type: webhook, url: '{hook}'}}}}\n"
        f"  deadman: {{url: '{receiver.url}/ping/{PATH_SECRET}x'}}\n")
    proc = subprocess.run([str(EXE), "serve", str(inv), "--no-web",
                           "--db", str(tmp_path / "cw.sqlite"),
                           "--max-batches", "1"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert receiver.to("/hook/")  # the probe failed: a page went out
    assert "level=info" in proc.stderr
    for secret in (PASSWORD, PATH_SECRET, QUERY_SECRET):
        assert secret not in proc.stderr + proc.stdout


def test_an_echoed_authorization_header_is_not_stored(
        tmp_path: Path, receiver: Receiver, cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Jira receiver answering 500 with the request's headers in its error page: the
    stored error and the printed one hold neither the token nor base64(user:token)."""
    monkeypatch.setenv("CW_JIRA_TOKEN", TOKEN)
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "endpoints: [app.example.com]\n"
        "alerts:\n"
        "  channels:\n"
        f"    jira: {{type: jira, url: '{receiver.url}', project: OPS, user: bot@acme.io,"
        " token_env: CW_JIRA_TOKEN}\n")
    auth = basic_auth("bot@acme.io", TOKEN)
    receiver.status = 500
    receiver.error_body = json.dumps({"message": f"echo Authorization: Basic {auth}",
                                      "headers": {"authorization": f"Basic {auth}"}})
    code, _, err = cli("alerts", "test", "jira", inv)
    assert code == 3 and "HTTP 500" in err
    assert auth not in err and TOKEN not in err
    alerts = load_inventory(inv).alerts
    assert alerts is not None
    now = dt.datetime.now(dt.UTC)
    sit = Situation(key="app.example.com:443", cycle="c" * 64,
                    breaks_at=now + dt.timedelta(days=5), lifetime=dt.timedelta(days=398),
                    summary="the leaf expires")
    db_url = f"sqlite:///{tmp_path / 'cw.sqlite'}"
    with Database(db_url) as db:
        evaluate(db, alerts, [sit], now)
        deliver(db, alerts, now, environ={**os.environ})
        rows = AlertsRepo(db).outbox()
    errors = [r.last_error or "" for r in rows]
    assert errors and all("HTTP 500" in e for e in errors)
    assert all(auth not in e and TOKEN not in e for e in errors)
    with open(tmp_path / "cw.sqlite", "rb") as raw:
        stored = raw.read()
    assert auth.encode() not in stored and TOKEN.encode() not in stored
