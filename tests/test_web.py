"""The web read side: JSON API, pages, calendar feed, auth and escaping.

In-process tests run the FastAPI app over a real SQLite database filled by the real
analysis and storage; the live tests run a real ``lab --serve`` with its dashboard.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from icalendar import Calendar

from chainwatch import analyze
from chainwatch.config.inventory import load_inventory
from chainwatch.model import Target
from chainwatch.probe import Observation
from chainwatch.service.web import WebServer, WebSettings, bind
from chainwatch.storage.repo import Database
from chainwatch.storage.web_repo import Query, WebRepo
from chainwatch.stores import resolve_profile
from chainwatch.testing.pki import PKI

from .conftest import Receiver, free_port
from .webclient import start_web

UTC = dt.UTC
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TOKEN = "web-token-0123456789"
SECRET = "hunter2-SECRET-in-the-webhook-url"
EXE = Path(sys.executable).with_name("chainwatch")


_PROFILES: list[Any] = []


def _record(db: Database, host: str, chain: tuple[Any, ...], ip: str = "127.0.0.1",
            at: dt.datetime = NOW) -> None:
    report = analyze(list(chain), _PROFILES or [resolve_profile("mozilla")], at=at, host=host)
    target = Target(host=host, port=443, ip=ip)
    obs = Observation(target=target, observed_at=at, chain=tuple(c.der for c in chain))
    db.record(obs, report.with_target(target))


@pytest.fixture(params=["sqlite", "postgresql"])
def stored(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Database, Path]]:
    """Three stored targets on SQLite and on the local PostgreSQL (every read query runs
    on both backends)."""
    pki = PKI(now=NOW)
    root = pki.root("<script>alert('root')</script>")
    ca = root.intermediate("<script>alert('ca')</script>")
    (tmp_path / "root.pem").write_bytes(root.pem)
    _PROFILES[:] = [resolve_profile(f"file:{tmp_path / 'root.pem'}")]
    inv = tmp_path / "inventory.yaml"
    inv.write_text(
        "endpoints:\n"
        "  - {host: soon.web.test, owner: team-api, tags: [api]}\n"
        "  - {host: later.web.test, owner: team-web}\n"
        "  - {host: xss.web.test}\n"
        "alerts:\n"
        f"  channels: {{hook: {{type: webhook, url: 'https://hooks.example.net/{SECRET}'}}}}\n",
        encoding="utf-8")
    url = (request.getfixturevalue("pg_url") if request.param == "postgresql"
           else str(tmp_path / "web.sqlite"))
    db = Database(url)
    _record(db, "soon.web.test", ca.leaf("soon.web.test", expires=NOW + dt.timedelta(days=5))
            .chain(ca))
    _record(db, "later.web.test", ca.leaf("later.web.test", expires=NOW + dt.timedelta(days=60))
            .chain(ca))
    _record(db, "xss.web.test", ca.leaf("xss.web.test", "unwatched.web.test",
                                        expires=NOW + dt.timedelta(days=20)).chain(ca))
    yield db, inv
    db.close()


_servers: list[tuple[WebServer, httpx.Client]] = []


@pytest.fixture(autouse=True)
def _stop_servers() -> Iterator[None]:
    yield
    while _servers:
        server, client = _servers.pop()
        client.close()
        server.stop()


def _serve(settings: WebSettings) -> httpx.Client:
    """The app on a real uvicorn on a loopback port, and a client for it."""
    server, client = start_web(settings)
    _servers.append((server, client))
    return client


def _client(db: Database, inv: Path, token: str | None = TOKEN) -> httpx.Client:
    inventory = load_inventory(inv)
    return _serve(WebSettings(db=db, inventory=lambda: inventory, token=token,
                              clock=lambda: NOW))


def test_targets_are_sorted_by_breaks_at_filtered_and_paginated_in_sql(
        stored: tuple[Database, Path]) -> None:
    db, inv = stored
    client = _client(db, inv)
    data = client.get("/api/v1/targets").json()
    assert [t["key"] for t in data["targets"]] == [
        "soon.web.test:443", "xss.web.test:443", "later.web.test:443"]
    assert [t["status"] for t in data["targets"]] == ["critical", "warning", "ok"]
    assert data["counts"]["critical"] == 1 and data["total"] == 3
    page = client.get("/api/v1/targets", params={"limit": 1, "offset": 1}).json()
    assert page["total"] == 3 and [t["key"] for t in page["targets"]] == ["xss.web.test:443"]
    owned = client.get("/api/v1/targets", params={"owner": "team-api"}).json()
    assert [t["key"] for t in owned["targets"]] == ["soon.web.test:443"]
    assert client.get("/api/v1/targets", params={"status": "ok"}).json()["total"] == 1
    assert WebRepo(db).page(Query(search="LATER", limit=5)).total == 1
    assert WebRepo(db).page(Query(codes=("EXPIRES_SOON",))).total == 2
    assert WebRepo(db).page(Query(profile=f"file:{inv.parent / 'root.pem'}")).total == 3
    assert WebRepo(db).page(Query(profile="legacy:mozilla")).total == 0


def test_bad_parameters_are_422_naming_the_field(stored: tuple[Database, Path]) -> None:
    db, inv = stored
    client = _client(db, inv)
    for params, field in [({"limit": "x"}, "limit"), ({"status": "bogus"}, "status"),
                          ({"offset": -1}, "offset")]:
        r = client.get("/api/v1/targets", params=params)
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "invalid_parameter"
        assert field in r.json()["error"]["message"]
    r = client.get("/api/v1/reports/nothing.web.test:443")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_reports_are_schema_1_as_stored(stored: tuple[Database, Path]) -> None:
    db, inv = stored
    reports = _client(db, inv).get("/api/v1/reports/soon.web.test:443").json()["reports"]
    stored_report = db.history("soon.web.test", 443)[0].report
    assert reports == [stored_report]
    assert set(reports[0]) >= {"schema", "status", "evaluated_at", "host", "breaks_at",
                               "days_left", "chain", "profiles", "findings", "target"}
    assert reports[0]["schema"] == 1


def test_responses_validate_against_the_openapi_document(stored: tuple[Database, Path],
                                                          receiver: Receiver) -> None:
    db, inv = stored
    _send_alerts(db, receiver, "soon.web.test:443")
    client = _client(db, inv)
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ["/api/v1/targets", "/api/v1/reports/{key}", "/api/v1/history/{key}",
                 "/api/v1/alerts", "/api/v1/alerts/ack", "/api/v1/calendar",
                 "/api/v1/health", "/api/v1/discovery", "/calendar.ics"]:
        assert path in doc["paths"], path
    components = doc["components"]

    def check(templ: str, method: str, response: httpx.Response) -> dict[str, Any]:
        content = doc["paths"][templ][method]["responses"][str(response.status_code)][
            "content"]["application/json"]
        jsonschema.validate(response.json(), {**content["schema"], "components": components})
        return dict(content["schema"])

    checks = {"/api/v1/targets": "/api/v1/targets", "/api/v1/alerts": "/api/v1/alerts",
              "/api/v1/health": "/api/v1/health",
              "/api/v1/calendar": "/api/v1/calendar?days=400",
              "/api/v1/history/{key}": "/api/v1/history/soon.web.test:443",
              "/api/v1/reports/{key}": "/api/v1/reports/soon.web.test:443",
              "/api/v1/discovery": "/api/v1/discovery"}
    for templ, url in checks.items():
        answer = client.get(url)
        assert answer.status_code == 200, url
        # A real model with its fields, not a generic object.
        ref = check(templ, "get", answer)["$ref"].rsplit("/", 1)[1]
        assert components["schemas"][ref]["properties"], ref
        assert components["schemas"][ref].get("additionalProperties") is False, ref
    assert client.get("/api/v1/alerts").json()["alerts"]
    assert client.get("/api/v1/calendar?days=400").json()["events"]
    # The fields are checked: a report without its chain does not validate.
    report = client.get("/api/v1/reports/soon.web.test:443").json()
    del report["reports"][0]["chain"]
    schema = doc["paths"]["/api/v1/reports/{key}"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    with pytest.raises(jsonschema.ValidationError, match="chain"):
        jsonschema.validate(report, {**schema, "components": components})
    # Errors are documented as what they are.
    body = {"id": "soon.web.test:443", "for": "1d", "why": "renewing", "by": "ops"}
    ack = client.post("/api/v1/alerts/ack", json=body,
                      headers={"Authorization": f"Bearer {TOKEN}"})
    assert ack.status_code == 200
    check("/api/v1/alerts/ack", "post", ack)
    for response, templ, method in [
            (client.post("/api/v1/alerts/ack", json=body), "/api/v1/alerts/ack", "post"),
            (client.post("/api/v1/alerts/ack", json={"id": "x"},
                         headers={"Authorization": f"Bearer {TOKEN}"}),
             "/api/v1/alerts/ack", "post"),
            (client.get("/api/v1/targets", params={"limit": 0}), "/api/v1/targets", "get"),
            (client.get("/api/v1/reports/none.web.test:443"), "/api/v1/reports/{key}", "get")]:
        assert response.status_code in (401, 404, 422), response.text
        assert check(templ, method, response)["$ref"].endswith("/Error")


def test_ack_needs_the_bearer_token_and_follows_the_alerts_ack_rules(
        stored: tuple[Database, Path]) -> None:
    db, inv = stored
    client = _client(db, inv)
    body = {"id": "soon.web.test:443", "for": "1d", "why": "renewing", "by": "ops"}
    assert client.post("/api/v1/alerts/ack", json=body).status_code == 401
    assert client.post("/api/v1/alerts/ack", json=body,
                       headers={"Authorization": "Bearer wrong-token-xx"}).status_code == 401
    # Nothing fired for it yet: the same refusal as `chainwatch alerts ack`.
    r = client.post("/api/v1/alerts/ack", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 409 and "no alert" in r.json()["error"]["message"]
    # A read-only server refuses every write.
    ro = _client(db, inv, token=None)
    assert ro.post("/api/v1/alerts/ack", json=body,
                   headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    # Pages: no session, no ack.
    page = client.post("/alerts/ack", data={"alert_id": body["id"], "for": "1d", "why": "x",
                                            "by": "y", "csrf": "forged"})
    assert page.status_code == 403 and "refused" in page.text


def _send_alerts(db: Database, receiver: Receiver, key: str) -> None:
    """Alerts for ``key`` through the real policy and sender, to a loopback webhook whose
    URL holds SECRET: a page delivered, then its repeat refused by a receiver that
    echoes the URL it was called at (the stored error is the sender's, redacted)."""
    from chainwatch.alerts.escalation import Situation
    from chainwatch.alerts.outbox import deliver, evaluate
    from chainwatch.config.inventory import AlertsConfig, Secret, WebhookChannel

    url = f"{receiver.url}/hook/{SECRET}?token={SECRET}"
    cfg = AlertsConfig(channels={"hook": WebhookChannel(name="hook", url=Secret.inline(url))})
    sit = Situation(key=key, cycle="a" * 64, breaks_at=NOW + dt.timedelta(days=5),
                    lifetime=dt.timedelta(days=398), status="warning",
                    summary="the leaf expires", findings=("EXPIRES_SOON",))
    evaluate(db, cfg, [sit], NOW)
    deliver(db, cfg, NOW)
    receiver.status, receiver.error_body = 400, f"no such hook {url}"
    later = NOW + dt.timedelta(hours=25)
    evaluate(db, cfg, [sit], later)
    deliver(db, cfg, later)


def test_target_page_lists_the_alerts_sent_for_it(stored: tuple[Database, Path],
                                                  receiver: Receiver) -> None:
    db, inv = stored
    _send_alerts(db, receiver, "soon.web.test:443")
    client = _client(db, inv)
    sent = client.get("/targets/soon.web.test:443?format=json").json()["alerts_sent"]
    assert [(s["event"], s["step"], s["channel"], s["outcome"]) for s in sent] == [
        ("page", "days:7", "hook", "failed"), ("page", "days:7", "hook", "delivered")]
    assert sent[1]["delivered_at"] and sent[0]["attempts"] == 1
    # The stored error names the receiver, not the URL's secret path and query.
    assert "HTTP 400" in sent[0]["error"] and receiver.url in sent[0]["error"]
    assert SECRET not in str(sent)
    page = client.get("/targets/soon.web.test:443").text
    assert page.count('<tr class="sent" data-event="page"') == 2
    assert 'data-outcome="failed"' in page and 'data-outcome="delivered"' in page
    later = client.get("/targets/later.web.test:443?format=json").json()
    assert later["alerts_sent"] == []


def test_no_secret_in_any_response_and_subjects_are_escaped(
        stored: tuple[Database, Path], receiver: Receiver) -> None:
    db, inv = stored
    _send_alerts(db, receiver, "xss.web.test:443")
    client = _client(db, inv)
    assert len(client.get("/targets/xss.web.test:443?format=json").json()["alerts_sent"]) == 2
    urls = ["/", "/?format=json", "/targets/xss.web.test:443", "/targets/xss.web.test:443"
            "?format=json", "/calendar", "/alerts", "/discovery", "/login", "/api/v1/targets",
            "/api/v1/reports/xss.web.test:443", "/api/v1/history/xss.web.test:443",
            "/api/v1/alerts", "/api/v1/calendar?days=400", "/api/v1/health",
            "/api/v1/discovery", "/api/v1/openapi.json", "/calendar.ics",
            "/static/style.css", "/nothing-here"]
    for url in urls:
        r = client.get(url)
        assert r.status_code in (200, 404), url
        assert SECRET not in r.text, url
        assert "hooks.example.net" not in r.text, url
    page = client.get("/targets/xss.web.test:443").text
    assert "<script>alert" not in page
    assert "&lt;script\\&gt;alert(&#39;ca&#39;)" in page  # the chain diagram, as text
    assert "&lt;script\\&gt;alert(&#39;ca&#39;)" in page.split("<svg", 1)[1]  # the timeline
    discovered = client.get("/api/v1/discovery").json()
    assert [u["name"] for u in discovered["uncovered"]] == ["unwatched.web.test"]


def test_calendar_feed_parses_with_stable_uids_replaced_by_a_renewal(
        stored: tuple[Database, Path]) -> None:
    db, inv = stored
    client = _client(db, inv)
    first = Calendar.from_ical(client.get("/calendar.ics").content)
    events = {str(e["uid"]): e for e in first.walk("VEVENT")}
    soon = [e for e in events.values()
            if "soon.web.test breaks (" in str(e["summary"])]
    assert len(soon) == 1
    assert str(soon[0]["summary"]).startswith("certificate for soon.web.test breaks (file:")
    triggers = sorted(a["trigger"].dt for a in soon[0].walk("VALARM"))
    assert triggers == [dt.timedelta(days=-30), dt.timedelta(days=-7)]
    # A second scan of the same chain: the same UIDs.
    pki_chain = db.history("later.web.test", 443)[0]
    certs = db.parsed_certificates(pki_chain.chain)
    _record(db, "later.web.test", tuple(certs[s] for s in pki_chain.chain),
            at=NOW + dt.timedelta(hours=1))
    second = Calendar.from_ical(client.get("/calendar.ics").content)
    assert {str(e["uid"]) for e in second.walk("VEVENT")} == set(events)
    # A renewal of soon.web.test replaces its event.
    ca = PKI(now=NOW).root("Renewal Root").intermediate("Renewal CA")
    _record(db, "soon.web.test", ca.leaf("soon.web.test", expires=NOW + dt.timedelta(days=80))
            .chain(ca), at=NOW + dt.timedelta(hours=2))
    third = {str(e["uid"]): e for e in Calendar.from_ical(
        client.get("/calendar.ics").content).walk("VEVENT")}
    old_uid = str(soon[0]["uid"])
    assert old_uid not in third
    assert any("soon.web.test breaks" in str(e["summary"]) for e in third.values())
    owned = Calendar.from_ical(client.get("/calendar.ics", params={"owner": "team-web"}).content)
    assert {str(e["summary"]).split(" (")[0] for e in owned.walk("VEVENT")} <= {
        "certificate for later.web.test breaks",
        "certificate for later.web.test due for renewal"}


def test_feed_token_guards_the_feed(stored: tuple[Database, Path]) -> None:
    db, _ = stored
    client = _serve(WebSettings(db=db, feed_token="feed-0123456789", clock=lambda: NOW))
    assert client.get("/calendar.ics").status_code == 403
    assert client.get("/calendar.ics", params={"token": "feed-0123456789"}).status_code == 200


def test_non_loopback_listen_needs_a_token_and_a_busy_port_is_one_line(tmp_path: Path) -> None:
    from chainwatch.errors import InputError

    with pytest.raises(InputError, match="needs a token"):
        bind("0.0.0.0:0", token=None)
    sock = bind("127.0.0.1:0", token=None)
    port = sock.getsockname()[1]
    try:
        run = subprocess.run([str(EXE), "web", "--db", str(tmp_path / "x.sqlite"),
                              "--listen", f"127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=60, check=False)
    finally:
        sock.close()
    assert run.returncode == 3
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chainwatch: error:")
    assert f"127.0.0.1:{port}" in lines[0] and "Traceback" not in run.stderr


# -- a real lab --serve with its dashboard --------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``chainwatch lab --serve`` with its dashboard on a free port; its URL once the
    first sweep is stored."""
    directory = tmp_path_factory.mktemp("weblab")
    port = free_port()
    env = {**os.environ, "CHAINWATCH_WEB_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [str(EXE), "lab", "--serve", "--dir", str(directory / "lab"), "--port-base", "0",
         "--web-listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        for _ in range(600):
            if time.monotonic() > deadline or proc.poll() is not None:
                break
            try:
                health = httpx.get(f"{url}/api/v1/health", timeout=2).json()
                alerts = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["alerts"]
                if health["last_scan"] and alerts:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:  # pragma: no cover
            pytest.fail("lab --serve did not start")
        assert proc.poll() is None, "lab --serve exited"
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait(timeout=10)


def test_serve_answers_api_and_survives_a_failing_request(served: str) -> None:
    data = httpx.get(f"{served}/api/v1/targets", params={"limit": 1000}, timeout=10).json()
    breaks = [t["breaks_at"] for t in data["targets"] if t["breaks_at"]]
    assert breaks == sorted(breaks) and data["total"] >= 10
    assert httpx.get(f"{served}/api/v1/targets", params={"limit": "x"}, timeout=10
                     ).status_code == 422
    assert httpx.get(f"{served}/api/v1/health", timeout=10).json()["last_scan"]
    ics = Calendar.from_ical(httpx.get(f"{served}/calendar.ics", timeout=30).content)
    assert ics.walk("VEVENT")


# -- a real browser: Debian's chromium driven by Playwright -----------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("CHAINWATCH_ARTIFACTS", "build/test-artifacts")) / "web"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.exists():
        why = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CHAINWATCH_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{why} (CHAINWATCH_REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1000})
        try:
            yield context
        finally:
            context.close()


def _is_loopback_url(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme in ("data", "about", "blob"):
        return True
    host = parts.hostname or ""
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def test_dashboard_in_a_real_browser(served: str, browser: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    requests: list[str] = []
    page = browser.new_page()
    page.on("request", lambda r: requests.append(r.url))

    # Overview: the lab's targets in breaks_at order, with the statuses stored.
    api = httpx.get(f"{served}/api/v1/targets", params={"limit": 50}, timeout=30).json()
    page.goto(f"{served}/")
    rows = page.locator("tr.row")
    shown = [(rows.nth(i).get_attribute("data-key"), rows.nth(i).get_attribute("data-status"))
             for i in range(rows.count())]
    assert shown == [(t["key"], t["status"]) for t in api["targets"]]
    statuses = dict(shown)
    assert statuses[next(k for k in statuses if k.startswith("healthy."))] == "ok"
    assert statuses[next(k for k in statuses if k.startswith("crates."))] == "critical"
    breaks = [t["breaks_at"] for t in api["targets"] if t["breaks_at"]]
    assert breaks == sorted(breaks)
    page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)

    # Filtering by status (htmx swaps the table; the URL keeps the filter).
    page.select_option("#f-status", "ok")
    page.wait_for_url("**status=ok**")
    page.wait_for_selector("tr.row")
    filtered = page.locator("tr.row")
    assert filtered.count() >= 1
    assert {filtered.nth(i).get_attribute("data-status") for i in range(filtered.count())} == {
        "ok"}

    # netPark: the legacy profile breaks before the leaf expires, and the timeline marks it.
    netpark = next(k for k in statuses if k.startswith("devices.netpark."))
    page.goto(f"{served}/targets/{netpark}")
    report = httpx.get(f"{served}/api/v1/reports/{netpark}", timeout=30).json()["reports"][0]
    leaf_expires = report["chain"][0]["not_after"]
    legacy = page.locator('section.address tr.profile[data-profile="legacy-clients"]').first
    legacy_breaks = legacy.get_attribute("data-breaks-at")
    assert legacy_breaks and legacy_breaks < leaf_expires
    mark = page.locator('svg.timeline line.break[data-profile="legacy-clients"]').first
    assert mark.get_attribute("data-at") == legacy_breaks
    assert page.locator("svg.timeline line.now").count() >= 1
    assert page.locator("svg.timeline rect.bar").count() == len(report["chain"])
    page.screenshot(path=str(ARTIFACTS / "target.png"), full_page=True)

    # Ack through the page: refused without the token, done with it.
    alerts = httpx.get(f"{served}/api/v1/alerts", timeout=30).json()["alerts"]
    target = next(a for a in alerts if a["step"] and a["ackable"] is not False
                  and not a["id"].startswith("watchdog:"))
    row = f'tr.alert-row[data-id="{target["id"]}"]'
    page.goto(f"{served}/alerts")
    page.fill(f"{row} input[name=why]", "renewal scheduled")
    page.fill(f"{row} input[name=by]", "oncall")
    page.click(f"{row} button")
    assert "refused" in page.locator("#message").inner_text()
    page.goto(f"{served}/login")
    page.fill("#token", TOKEN)
    page.click("form button")
    page.wait_for_url("**/alerts")
    page.fill(f"{row} input[name=why]", "renewal scheduled")
    page.fill(f"{row} input[name=by]", "oncall")
    page.click(f"{row} button")
    assert "acknowledged" in page.locator("#message").inner_text()
    after = {a["id"]: a for a in httpx.get(f"{served}/api/v1/alerts", timeout=30).json()[
        "alerts"]}
    assert after[target["id"]]["ack"]["by"] == "oncall"
    page.screenshot(path=str(ARTIFACTS / "alerts.png"), full_page=True)

    for name in ("calendar", "discovery"):
        page.goto(f"{served}/{name}")
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    assert requests and any(u.endswith("htmx-2.0.4.min.js") for u in requests)
    outside = [u for u in requests if not _is_loopback_url(u)]
    assert outside == []


def test_serve_serves_the_dashboard_beside_the_scheduler(tmp_path: Path) -> None:
    port = free_port()
    inv = tmp_path / "inventory.yaml"
    # Nothing listens on this port: the scheduler records a failed probe, the web answers.
    inv.write_text(f"endpoints:\n  - {{host: 127.0.0.1, port: {free_port()}, "
                   "timeout: 1s, interval: 1h}\n", encoding="utf-8")
    proc = subprocess.Popen([str(EXE), "serve", str(inv), "--db", str(tmp_path / "s.sqlite"),
                             "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        data: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        for _ in range(240):
            if time.monotonic() > deadline or proc.poll() is not None:
                break
            try:
                data = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=2).json()
                if data.get("total"):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        assert proc.poll() is None
        assert data["targets"][0]["status"] == "unknown"
        assert "PROBE_FAILED" in data["targets"][0]["findings"]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert f"dashboard and API at http://127.0.0.1:{port}/" in err
    assert "Traceback" not in err


def test_health_shows_each_zones_workers_queue_and_last_result(
        stored: tuple[Database, Path]) -> None:
    """Distributed mode's zones in the header's health (API and page): a zone whose only
    worker stopped beating says so."""
    from chainwatch.storage.batches import BatchesRepo, worker_component

    db, inv = stored
    now = NOW  # the app's clock
    repo = BatchesRepo(db)
    repo.dispatched("zb1", zone="dc-east", queue="chainwatch.dc-east", slot="s", targets=2,
                    at=now)
    repo.dispatched("zb2", zone="dc-west", queue="chainwatch.dc-west", slot="s", targets=1,
                    at=now)
    repo.done("zb1", worker="east-1", observations=2, status="ok", at=now)
    db.beat(worker_component("dc-east", "east-1"), at=now)
    db.beat(worker_component("dc-west", "west-1"), at=now - dt.timedelta(hours=1))
    client = _client(db, inv)
    zones = {z["zone"]: z for z in client.get("/api/v1/health").json()["zones"]}
    assert zones["dc-east"]["workers"] == ["east-1"] and zones["dc-east"]["queue_depth"] == 0
    assert zones["dc-east"]["last_result"]["observations"] == 2
    assert zones["dc-west"]["workers"] == [] and zones["dc-west"]["queue_depth"] == 1
    page = client.get("/").text
    assert "zone dc-west: <b class=\"s-critical\">no worker</b>, 1 queued" in page
    assert "zone dc-east: 1 worker(s), 0 queued" in page


def test_calendar_events_read_reports_stored_on_the_row_as_from_documents(
        stored: tuple[Database, Path]) -> None:
    """The calendar reads parts of each report in SQL: from the report document, or
    from the row itself where a stale-deployment rewrite left the whole report there."""
    from sqlalchemy import select, update

    from chainwatch.service.web import views
    from chainwatch.storage.models import ObservationRow

    db, inv = stored
    index = views.InventoryIndex(load_inventory(inv))
    before = views.calendar_events(db, index, NOW, until=None)
    assert {e.host for e in before} == {"soon.web.test", "later.web.test", "xss.web.test"}
    with db.engine.connect() as conn:
        ids = list(conn.execute(select(ObservationRow.id)).scalars())
    reports = db.reports_of(ids)
    with db.engine.begin() as conn:
        for oid, report in reports.items():
            conn.execute(update(ObservationRow).where(ObservationRow.id == oid)
                         .values(report=dict(report), document_id=None))
    assert views.calendar_events(db, index, NOW, until=None) == before
