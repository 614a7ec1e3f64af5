"""Channels against real loopback receivers: the webhook payload as DESIGN.md gives it,
PagerDuty trigger/resolve under one dedup key, one issue per cycle on GitHub, GitLab
and Jira (updated, not duplicated; closed on resolve), Apprise mail to a local SMTP
server, and errors that say what failed without a secret or a query string in them."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from chainwatch.alerts.channels import (
    AppriseSender,
    DeliveryError,
    GitHubIssues,
    GitLabIssues,
    JiraIssues,
    PagerDutySender,
    WebhookSender,
    build_channel,
    redact,
)
from chainwatch.alerts.channels.jira import dedup_label
from chainwatch.alerts.channels.pagerduty import pd_dedup_key
from chainwatch.config.inventory import GitHubChannel, PagerDutyChannel, Secret, WebhookChannel

from .conftest import Receiver, SMTPServer, free_port

HOOK_SECRET = "hK7-t0ps3cret-path"
TOKEN = "ghp_T0KEN-never-shown"
ROUTING = "R0UT1NG-KEY-never-shown"
DEDUP = "chainwatch:app.example.com:443:0123456789abcdef"


def payload(event: str = "page", **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": 1,
        "event": event,
        "dedup_key": DEDUP,
        "target": {"key": "app.example.com:443", "host": "app.example.com", "port": 443,
                   "ip": None, "sni": None, "starttls": None},
        "breaks_at": "2026-03-01T00:00:00Z",
        "days_left": 6,
        "status": "critical",
        "findings": [{"code": "EXPIRES_SOON"}],
        "message": "app.example.com:443: trust breaks in 6 days (2026-03-01T00:00:00Z)",
        "step": "days:7",
        "sent_at": "2026-02-22T00:00:00Z",
    }
    base.update(kw)
    return base


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


# -- redaction ------------------------------------------------------------------------------


def test_redact_removes_secrets_and_query_strings() -> None:
    url = "https://hooks.example.net/services/T000/B000/XXXXsecretXXXX?token=abc123&x=1"
    text = f"POST {url} failed; see https://status.example.net/x?session=zzz9"
    out = redact(text, [url])
    assert "XXXXsecretXXXX" not in out and "abc123" not in out and "zzz9" not in out
    assert "status.example.net/x?…" in out
    # Apprise URLs carry tokens in the host part; URL-encoded forms are caught too.
    tg = "tgram://123456789:AAH-bot-t0ken/987654"
    out = redact(f"failed {tg} and AAH-bot-t0ken and 123456789%3AAAH-bot-t0ken", [tg])
    assert "t0ken" not in out
    assert redact("a\nb\r\n  c") == "a b c"


# -- webhook --------------------------------------------------------------------------------


def test_webhook_posts_the_designed_payload(receiver: Receiver) -> None:
    hook = WebhookSender("hook", f"{receiver.url}/hook/{HOOK_SECRET}?key=s3cr3t-q")
    hook.send(payload())
    (req,) = receiver.to("/hook")
    assert req.method == "POST"
    assert req.headers["content-type"] == "application/json"
    assert req.query == {"key": ["s3cr3t-q"]}
    body = req.json()
    assert set(body) == {"schema", "event", "dedup_key", "target", "breaks_at", "days_left",
                         "status", "findings", "message", "sent_at", "step"}
    assert body == payload()


@pytest.mark.parametrize(("status", "retryable"), [
    (500, True), (503, True), (429, True), (408, True), (404, False), (400, False), (401, False),
])
def test_webhook_http_errors(receiver: Receiver, status: int, retryable: bool) -> None:
    url = f"{receiver.url}/hook/{HOOK_SECRET}?key=s3cr3t-q"
    receiver.status = status
    receiver.error_body = f"upstream said no to {url} " + "x" * 5000
    with pytest.raises(DeliveryError) as caught:
        WebhookSender("hook", url).send(payload())
    message = str(caught.value)
    assert caught.value.retryable is retryable
    assert message.startswith(f"hook: POST webhook: {receiver.url} answered HTTP {status}")
    assert HOOK_SECRET not in message and "s3cr3t-q" not in message
    assert len(message) < 400  # the body is quoted truncated
    assert "\n" not in message


def test_webhook_refused_and_timeout(silent_port: int) -> None:
    closed = free_port()
    with pytest.raises(DeliveryError) as refused:
        WebhookSender("hook", f"http://127.0.0.1:{closed}/{HOOK_SECRET}").send(payload())
    assert refused.value.retryable
    assert HOOK_SECRET not in str(refused.value)
    assert f"127.0.0.1:{closed}" in str(refused.value)

    with pytest.raises(DeliveryError) as slow:
        WebhookSender("hook", f"http://127.0.0.1:{silent_port}/{HOOK_SECRET}?k=v",
                      timeout=0.3).send(payload())
    assert slow.value.retryable
    assert "timed out after 0.3s" in str(slow.value)
    assert HOOK_SECRET not in str(slow.value) and "k=v" not in str(slow.value)


def test_bad_urls_are_not_retried() -> None:
    with pytest.raises(DeliveryError) as caught:
        WebhookSender("hook", "gopher://127.0.0.1/secret").send(payload())
    assert not caught.value.retryable and "secret" not in str(caught.value)


def test_missing_secret_is_retryable_and_named() -> None:
    config = WebhookChannel(name="hook", url=Secret.env("CW_TEST_HOOK_URL"))
    with pytest.raises(DeliveryError, match="hook: environment variable CW_TEST_HOOK_URL is not "
                                            "set") as caught:
        build_channel(config, environ={})
    assert caught.value.retryable
    sender = build_channel(config, environ={"CW_TEST_HOOK_URL": "http://127.0.0.1:9/x"})
    assert "127.0.0.1" not in repr(sender)


# -- PagerDuty ------------------------------------------------------------------------------


def test_pagerduty_trigger_and_resolve_share_the_dedup_key(receiver: Receiver) -> None:
    config = PagerDutyChannel(name="oncall", routing_key=Secret.env("PD"),
                              api_url=f"{receiver.url}/v2/enqueue")
    pd = build_channel(config, environ={"PD": ROUTING})
    pd.send(payload("page"))
    pd.send(payload("resolve", step="resolve"))
    trigger, resolve = (r.json() for r in receiver.to("/v2/enqueue"))
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == DEDUP
    assert trigger["routing_key"] == resolve["routing_key"] == ROUTING
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["source"] == "app.example.com:443"
    assert trigger["payload"]["timestamp"] == "2026-02-22T00:00:00Z"
    assert "trust breaks in 6 days" in trigger["payload"]["summary"]
    assert trigger["payload"]["custom_details"]["days_left"] == 6
    assert "payload" not in resolve


def test_pagerduty_events_by_kind(receiver: Receiver) -> None:
    pd = PagerDutySender("oncall", ROUTING, api_url=f"{receiver.url}/v2/enqueue")
    pd.send(payload("notify", step="days:14"))
    pd.send(payload("test", dedup_key="chainwatch:test:oncall:x"))
    notify, test_trigger, test_resolve = (r.json() for r in receiver.to("/v2/enqueue"))
    assert (notify["event_action"], notify["payload"]["severity"]) == ("trigger", "warning")
    assert (test_trigger["event_action"], test_trigger["payload"]["severity"]) == (
        "trigger", "info")
    assert test_resolve["event_action"] == "resolve"
    assert test_trigger["dedup_key"] == test_resolve["dedup_key"] == "chainwatch:test:oncall:x"


def test_pagerduty_errors_hide_the_routing_key(receiver: Receiver) -> None:
    receiver.status = 400
    receiver.error_body = f'{{"status":"invalid event","errors":["bad key {ROUTING}"]}}'
    pd = PagerDutySender("oncall", ROUTING, api_url=f"{receiver.url}/v2/enqueue")
    with pytest.raises(DeliveryError) as caught:
        pd.send(payload())
    assert not caught.value.retryable
    assert ROUTING not in str(caught.value) and "HTTP 400" in str(caught.value)


def test_pagerduty_dedup_keys_fit() -> None:
    long = "chainwatch:file:/" + "d/" * 200 + ":abc"
    short = pd_dedup_key(long)
    assert len(short) <= 255 and short == pd_dedup_key(long) and short != pd_dedup_key(long + "x")
    assert pd_dedup_key(DEDUP) == DEDUP


# -- issue trackers -------------------------------------------------------------------------


def test_github_one_issue_per_cycle(receiver: Receiver) -> None:
    config = GitHubChannel(name="tickets", repo="acme/ops", token=Secret.env("GH"),
                           api_url=receiver.url, labels=("certs",))
    gh = build_channel(config, environ={"GH": TOKEN})
    gh.send(payload("ticket", step="days:30"))
    gh.send(payload("notify", step="days:14"))
    gh.send(payload("page"))
    assert len(receiver.github) == 1
    issue = receiver.github[1]
    assert issue["state"] == "open"
    assert [lb["name"] for lb in issue["labels"]] == ["chainwatch", "certs"]
    assert "app.example.com:443" in issue["title"]
    assert f"<!-- chainwatch-dedup-key: {DEDUP} -->" in issue["body"]
    assert len(issue["comments"]) == 2 and "trust breaks in 6 days" in issue["comments"][1]

    gh.send(payload("resolve", step="resolve", message="renewed"))
    assert receiver.github[1]["state"] == "closed"
    gh.send(payload("resolve", step="resolve"))  # a repeated resolve changes nothing
    assert len(receiver.github[1]["comments"]) == 3

    # The next renewal cycle gets its own issue; the closed one is left alone.
    gh.send(payload("ticket", dedup_key="chainwatch:app.example.com:443:fedcba9876543210"))
    assert len(receiver.github) == 2 and receiver.github[1]["state"] == "closed"
    # A message for a closed issue's cycle reopens it instead of duplicating it.
    gh.send(payload("page"))
    assert len(receiver.github) == 2 and receiver.github[1]["state"] == "open"

    auth = {r.headers["authorization"] for r in receiver.to("/repos/acme/ops/issues")}
    assert auth == {f"Bearer {TOKEN}"}


def test_github_resolve_without_issue_opens_nothing(receiver: Receiver) -> None:
    GitHubIssues("tickets", "acme/ops", TOKEN, api_url=receiver.url).send(
        payload("resolve", step="resolve"))
    assert receiver.github == {}
    assert [r.method for r in receiver.requests] == ["GET"]


def test_github_lost_answer_is_not_a_duplicate(receiver: Receiver) -> None:
    """A create whose answer was lost (receiver error after it acted) is retried by
    finding the issue it made."""
    gh = GitHubIssues("tickets", "acme/ops", TOKEN, api_url=receiver.url)
    gh.send(payload("ticket"))
    gh.send(payload("ticket"))  # the outbox retrying the same message
    assert len(receiver.github) == 1 and len(receiver.github[1]["comments"]) == 1


def test_github_errors_hide_the_token(receiver: Receiver) -> None:
    receiver.status = 401
    receiver.error_body = f'{{"message": "Bad credentials: {TOKEN}"}}'
    with pytest.raises(DeliveryError) as caught:
        GitHubIssues("tickets", "acme/ops", TOKEN, api_url=receiver.url).send(payload())
    assert not caught.value.retryable
    assert TOKEN not in str(caught.value) and "list issues" in str(caught.value)


def test_gitlab_one_issue_per_cycle(receiver: Receiver) -> None:
    gl = GitLabIssues("tickets", "acme/ops", TOKEN, url=receiver.url)
    gl.send(payload("ticket", step="days:30"))
    gl.send(payload("page"))
    assert len(receiver.gitlab) == 1
    issue = receiver.gitlab[1]
    assert issue["project"] == "acme/ops" and issue["labels"] == ["chainwatch"]
    assert f"<!-- chainwatch-dedup-key: {DEDUP} -->" in issue["description"]
    assert len(issue["notes"]) == 1
    gl.send(payload("resolve", step="resolve"))
    assert issue["state"] == "closed" and len(issue["notes"]) == 2
    assert {r.headers["private-token"] for r in receiver.to("/api/v4/")} == {TOKEN}
    assert all(r.path.startswith("/api/v4/projects/acme%2Fops/issues")
               for r in receiver.to("/api/v4/"))


@pytest.mark.parametrize("cloud", [True, False], ids=["cloud", "data-center"])
def test_jira_one_issue_per_cycle(receiver: Receiver, cloud: bool) -> None:
    receiver.jira_cloud = cloud
    jira = JiraIssues("jira", receiver.url, "OPS", TOKEN, user="bot@acme.io")
    jira.send(payload("ticket", step="days:30"))
    jira.send(payload("notify", step="days:14"))
    assert list(receiver.jira) == ["OPS-1"]
    issue = receiver.jira["OPS-1"]
    assert issue["fields"]["issuetype"] == {"name": "Task"}
    assert issue["fields"]["labels"] == ["chainwatch", dedup_label(DEDUP)]
    assert len(issue["comments"]) == 1
    jira.send(payload("resolve", step="resolve"))
    assert issue["fields"]["status"]["statusCategory"]["key"] == "done"
    jira.send(payload("page"))  # the same cycle again: reopened, not duplicated
    assert list(receiver.jira) == ["OPS-1"]
    assert issue["fields"]["status"]["statusCategory"]["key"] == "new"
    auth = {r.headers["authorization"] for r in receiver.to("/rest/api/2/")}
    assert len(auth) == 1 and auth.pop().startswith("Basic ")


def test_issue_trackers_test_event_opens_and_closes(receiver: Receiver) -> None:
    test = payload("test", dedup_key="chainwatch:test:tickets:20260101T000000Z")
    GitHubIssues("gh", "acme/ops", TOKEN, api_url=receiver.url).send(test)
    GitLabIssues("gl", "7", TOKEN, url=receiver.url).send(test)
    JiraIssues("jira", receiver.url, "OPS", TOKEN).send(test)
    assert receiver.github[1]["state"] == "closed" and "TEST" in receiver.github[1]["title"]
    assert receiver.gitlab[1]["state"] == "closed"
    assert receiver.jira["OPS-1"]["fields"]["status"]["name"] == "Done"
    bearer = {r.headers["authorization"] for r in receiver.to("/rest/api/2/")}
    assert bearer == {f"Bearer {TOKEN}"}


# -- Apprise --------------------------------------------------------------------------------


def test_apprise_mail_through_local_smtp(smtp_server: SMTPServer) -> None:
    AppriseSender("mail", smtp_server.apprise_url()).send(payload())
    (mail,) = smtp_server.mailbox.messages
    assert mail["Subject"] == "[chainwatch] CERTIFICATE ALERT: app.example.com:443"
    assert mail["To"] == "oncall@example.org"
    text = next(part.get_payload(decode=True).decode()  # type: ignore[union-attr]
                for part in mail.walk() if part.get_content_type() == "text/plain")
    assert "trust breaks in 6 days" in text and DEDUP in text


def test_apprise_failures_hide_the_url(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there
    url = f"mailto://cwbot:Sm7p-S3cret@127.0.0.1:{port}?from=a@example.org&to=b@example.org"
    with pytest.raises(DeliveryError) as caught:
        AppriseSender("mail", url).send(payload())
    assert caught.value.retryable
    assert "Sm7p-S3cret" not in str(caught.value) and "mailto:// notification failed" in str(
        caught.value)
    assert "Sm7p-S3cret" not in caplog.text

    with pytest.raises(DeliveryError) as bad:
        AppriseSender("chat", "nosuchscheme://tok3n-value@x/y").send(payload())
    assert not bad.value.retryable and "tok3n" not in str(bad.value)


def test_file_channel_appends_lines_and_creates_its_directory(tmp_path: Any) -> None:
    from chainwatch.alerts.channels.file import FileSender

    path = tmp_path / "new" / "dir" / "deliveries.jsonl"
    sender = FileSender("journal", path)
    sender.send({"event": "trigger", "target": "a.example:443"})
    sender.send({"event": "resolve", "target": "a.example:443"})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["trigger", "resolve"]
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
