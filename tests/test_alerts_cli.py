"""``chainwatch alerts list|ack|test`` in-process, against loopback receivers: ids that
``ack`` takes, exit statuses, one-line redacted failures, secrets in no output."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from chainwatch.alerts.escalation import Situation
from chainwatch.alerts.outbox import evaluate
from chainwatch.config.inventory import load_inventory
from chainwatch.storage import AlertsRepo, Database

from .conftest import Receiver, SMTPServer, free_port

CLI = Callable[..., tuple[int, str, str]]
HOOK_SECRET = "cli-H00K-s3cret"
PD_KEY = "cli-PD-r0uting"


@pytest.fixture
def inventory(tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CW_HOOK_URL", f"{receiver.url}/hook/{HOOK_SECRET}?sig={HOOK_SECRET}")
    monkeypatch.setenv("CW_PD_KEY", PD_KEY)
    path = tmp_path / "inventory.yaml"
    path.write_text(f"""
endpoints: [app.example.com]
alerts:
  channels:
    hook:   {{type: webhook, url_env: CW_HOOK_URL}}
    oncall: {{type: pagerduty, routing_key_env: CW_PD_KEY, api_url: "{receiver.url}/v2/enqueue"}}
    mail:   {{type: apprise, url_env: CW_MAIL_URL}}
""", encoding="utf-8")
    return path


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.sqlite'}"


def firing(inventory: Path, db_url: str) -> str:
    """Let the policy fire a page for a target expiring in 5 days; returns its key."""
    alerts = load_inventory(inventory).alerts
    assert alerts is not None
    now = dt.datetime.now(dt.UTC)
    sit = Situation(key="app.example.com:443", cycle="c" * 64, breaks_at=now + dt.timedelta(days=5),
                    lifetime=dt.timedelta(days=398), summary="the leaf expires")
    with Database(db_url) as db:
        evaluate(db, alerts, [sit], now)
    return sit.key


def test_alerts_test_sends_a_marked_message(cli: CLI, inventory: Path, receiver: Receiver) -> None:
    code, out, err = cli("alerts", "test", "hook", inventory)
    assert (code, err) == (0, "")
    assert out == "test message sent through hook (webhook)\n"
    (req,) = receiver.to("/hook")
    body = req.json()
    assert body["event"] == "test" and body["schema"] == 1
    assert "TEST" in body["message"] and "Nothing is wrong" in body["message"]

    code, out, err = cli("alerts", "test", "oncall", inventory)
    assert code == 0
    actions = [r.json()["event_action"] for r in receiver.to("/v2/enqueue")]
    assert actions == ["trigger", "resolve"]


def test_alerts_test_failure_is_one_redacted_line(
    cli: CLI, inventory: Path, receiver: Receiver
) -> None:
    receiver.status = 502
    receiver.error_body = f"bad gateway for {HOOK_SECRET} and {PD_KEY}"
    for channel in ("hook", "oncall"):
        code, out, err = cli("alerts", "test", channel, inventory)
        assert code == 3 and out == ""
        assert err.count("\n") == 1 and "HTTP 502" in err
        assert err.startswith(f"chainwatch: error: {channel}: ")
        assert HOOK_SECRET not in err and PD_KEY not in err

    code, _, err = cli("alerts", "test", "mail", inventory)  # CW_MAIL_URL is not set
    assert code == 3 and "mail: environment variable CW_MAIL_URL is not set" in err
    code, _, err = cli("alerts", "test", "pager", inventory)
    assert code == 3 and "unknown channel 'pager' (alerts.channels: hook, oncall, mail)" in err


def test_alerts_test_by_mail(
    cli: CLI, inventory: Path, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CW_MAIL_URL", smtp_server.apprise_url())
    code, out, err = cli("alerts", "test", "mail", inventory)
    assert (code, err) == (0, "")
    (mail,) = smtp_server.mailbox.messages
    assert mail["Subject"] == "[chainwatch] TEST message"

    port = free_port()  # nothing listens there
    monkeypatch.setenv("CW_MAIL_URL", smtp_server.apprise_url().replace(
        f":{smtp_server.port}?", f":{port}?"))
    code, out, err = cli("alerts", "test", "mail", inventory)
    assert code == 3 and "mail: mailto:// notification failed" in err
    assert smtp_server.password not in err + out


def test_alerts_list_and_ack(
    cli: CLI, inventory: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = cli("alerts", "list", inventory, "--db", db_url)
    assert (code, out) == (0, "no open alerts\n")
    key = firing(inventory, db_url)

    code, out, _ = cli("alerts", "list", inventory, "--db", db_url, "--format", "json")
    assert code == 0
    (alert,) = json.loads(out)["alerts"]
    assert (alert["id"], alert["step"], alert["ackable"], alert["days_left"]) == (
        key, "days:7", True, 4)  # 5 days from when it fired: 4 days and 23 h now
    assert alert["ack"] is None

    monkeypatch.setenv("USER", "dana")
    code, out, err = cli("alerts", "ack", alert["id"], inventory, "--db", db_url, "--for", "3d",
                         "--why", "CA order #123 placed")
    assert (code, err) == (0, "")
    assert out.startswith(f"acknowledged {key} step days:7 until ") and "(by dana)" in out

    code, out, _ = cli("alerts", "list", inventory, "--db", db_url)
    assert code == 0
    assert f"id: {key}" in out and "acknowledged by dana until" in out
    assert "CA order #123 placed" in out
    with Database(db_url) as db:
        (ack,) = AlertsRepo(db).acks()
    assert (ack.by, ack.why, ack.until - ack.created_at) == (
        "dana", "CA order #123 placed", dt.timedelta(days=3))

    code, _, err = cli("alerts", "ack", "nope:443", inventory, "--db", db_url, "--for", "1d",
                       "--why", "x")
    assert code == 3 and "no alert for 'nope:443'" in err
    code, _, err = cli("alerts", "ack", key, inventory, "--db", db_url, "--for", "soon",
                       "--why", "x")
    assert code == 3 and "--for: must be a duration" in err
    code, _, err = cli("alerts", "ack", key, inventory, "--db", db_url, "--for", "1d")
    assert code == 3 and "--why" in err


def test_alerts_need_an_alerts_section(cli: CLI, tmp_path: Path) -> None:
    path = tmp_path / "bare.yaml"
    path.write_text("endpoints: [a.example.com]\n", encoding="utf-8")
    code, _, err = cli("alerts", "list", path, "--db", f"sqlite:///{tmp_path / 'x.sqlite'}")
    assert code == 3 and "has no alerts section" in err


def test_no_secret_in_any_output(
    cli: CLI, inventory: Path, db_url: str, receiver: Receiver
) -> None:
    firing(inventory, db_url)
    outputs = []
    for args in (("alerts", "list", inventory, "--db", db_url),
                 ("alerts", "list", inventory, "--db", db_url, "--format", "json"),
                 ("alerts", "test", "hook", inventory)):
        _, out, err = cli(*args)
        outputs.append(out + err)
    receiver.status = 500
    outputs.append("".join(cli("alerts", "test", "oncall", inventory)[1:]))
    for text in outputs:
        assert HOOK_SECRET not in text and PD_KEY not in text
