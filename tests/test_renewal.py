"""Renewal-failure detection against real loopback endpoints, in simulated time.

Certificates here are issued relative to a simulated clock; the monitor probes the real
server now and evaluates ``at`` the simulated instant (what ``scan --at`` does), and the
escalation policy runs on the situations the scan derives.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from chainwatch.alerts.escalation import AlertState, decide
from chainwatch.config.inventory import AlertsConfig, load_inventory
from chainwatch.model import FindingCode
from chainwatch.probe.ari import cert_id
from chainwatch.probe.http import allow_networks
from chainwatch.service.collect import collect

from . import servers as srv
from .pki import CA, PKI, Leaf, pem_of
from .servers import ServerLoop, server_context

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
POLICY = AlertsConfig(channels={})  # DESIGN.md defaults, short_lived included


class Swappable:
    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.tls_handler(self.ctx)(reader, writer)


@pytest.fixture(scope="module")
def ca() -> CA:
    return PKI(now=T0).root("Renewal Root").intermediate("Renewal CA")


@pytest.fixture
def servers() -> Iterator[ServerLoop]:
    with ServerLoop() as loop:
        yield loop


def issue(ca: CA, name: str, start: dt.datetime, lifetime: dt.timedelta) -> Leaf:
    return ca.leaf(name, not_before=start, expires=start + lifetime - dt.timedelta(seconds=1))


def inventory(tmp: Path, ca: CA, endpoints: list[dict[str, Any]]) -> Path:
    assert ca.issuer is not None
    (tmp / "trust.pem").write_bytes(pem_of(ca.issuer.cert))
    lines = ["defaults: {profiles: ['file:trust.pem']}", "endpoints:"]
    lines += [f"  - {json.dumps(e)}" for e in endpoints]
    path = tmp / "inventory.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def codes(result: Any) -> list[set[FindingCode]]:
    return [{f.code for f in r.findings} for r in result.reports]


def test_24h_certificates_renewed_every_16h_are_silent_then_a_stop_is_caught(
    servers: ServerLoop, tmp_path: Path, ca: CA
) -> None:
    leaf = issue(ca, "short.lab.test", T0, DAY)
    handler = Swappable(server_context(leaf.chain(ca), leaf.key, tmp_path))
    port = servers.serve(handler).port
    inv = load_inventory(inventory(tmp_path, ca, [
        {"host": "short.lab.test", "port": port, "ip": "127.0.0.1"}]))
    state = AlertState()
    sent: list[tuple[dt.datetime, str, str]] = []
    issued = T0
    week = 7 * 24
    for step in range(week + 4 * 24):  # a week of routine renewals hourly, then 15-minute steps
        now = T0 + step * HOUR if step < week else T0 + week * HOUR + (step - week) * HOUR / 4
        renewing = step < week
        if renewing and now - issued >= 16 * HOUR:
            issued = now
            leaf = issue(ca, "short.lab.test", issued, DAY)
            handler.ctx = server_context(leaf.chain(ca), leaf.key, tmp_path)
        result = collect(inv, None, at=now)
        (situation,) = result.situations
        deliveries, state = decide(POLICY, situation, state, now)
        sent += [(now, d.event, str(d.step)) for d in deliveries]
        if not renewing and now >= issued + DAY:
            break
    first_week = [s for s in sent if s[0] < T0 + week * HOUR]
    assert first_week == []  # routine renewals of 24-hour certificates: no alert at all
    after = [(e, step) for _, e, step in sent]
    assert after[0] == ("notify", "overdue")
    assert after.count(("notify", "overdue")) == 1
    assert ("page", "remaining:10%") in after
    assert ("page", "remaining:3%") in after
    overdue_at = sent[0][0]
    # renew_at = 2/3 of 24 h = 16 h after issue, overdue after 10% (2.4 h) more.
    assert issued + 16 * HOUR + 2.4 * HOUR <= overdue_at < issued + 19 * HOUR


def test_90_day_certificate_overdue_at_day_69(servers: ServerLoop, tmp_path: Path,
                                              ca: CA) -> None:
    leaf = issue(ca, "ninety.lab.test", T0, 90 * DAY)
    port = servers.serve(srv.tls_handler(server_context(leaf.chain(ca), leaf.key, tmp_path))).port
    inv = load_inventory(inventory(tmp_path, ca, [
        {"host": "ninety.lab.test", "port": port, "ip": "127.0.0.1"}]))
    day68 = collect(inv, None, at=T0 + 68 * DAY)
    day69 = collect(inv, None, at=T0 + 69 * DAY + HOUR)
    assert FindingCode.RENEWAL_OVERDUE not in codes(day68)[0]
    assert day68.situations[0].overdue_at == T0 + 69 * DAY  # what `alerts plan` projects
    assert FindingCode.RENEWAL_OVERDUE in codes(day69)[0]
    message = next(f.message for f in day69.reports[0].findings
                   if f.code is FindingCode.RENEWAL_OVERDUE)
    assert "renewal expected by 2026-03-02T00:00:00Z" in message  # day 60 = 2/3 of 90
    assert "overdue since 2026-03-11T00:00:00Z" in message  # day 69 = + 10% grace
    assert day69.reports[0].days_left == 20  # 21 days before expiry, minus the hour
    # No day-30 ticket for a 90-day certificate: the short-lived steps replace them.
    state = AlertState()
    at30 = T0 + 60 * DAY + HOUR
    sent, state = decide(POLICY, collect(inv, None, at=at30).situations[0], state, at30)
    assert sent == ()
    sent, state = decide(POLICY, day69.situations[0], state, T0 + 69 * DAY + HOUR)
    assert [(d.event, str(d.step)) for d in sent] == [("notify", "overdue")]
    late = T0 + 82 * DAY
    sent, state = decide(POLICY, collect(inv, None, at=late).situations[0], state, late)
    assert [(d.event, str(d.step)) for d in sent] == [("page", "remaining:10%")]


def test_renewal_on_one_of_two_addresses_turns_overdue_into_stale_deployment(
    servers: ServerLoop, tmp_path: Path, ca: CA
) -> None:
    old = issue(ca, "pair.lab.test", T0, 90 * DAY)
    h1 = Swappable(server_context(old.chain(ca), old.key, tmp_path))
    port = servers.serve(h1, host="127.0.0.1").port
    h2 = Swappable(server_context(old.chain(ca), old.key, tmp_path))
    servers.serve(h2, host="127.0.0.2", port=port)
    inv = load_inventory(inventory(tmp_path, ca, [
        {"host": "pair.lab.test", "port": port, "ip": "127.0.0.1"},
        {"host": "pair.lab.test", "port": port, "ip": "127.0.0.2"},
    ]))
    when = T0 + 75 * DAY
    assert all(FindingCode.RENEWAL_OVERDUE in c for c in codes(collect(inv, None, at=when)))
    renewed = issue(ca, "pair.lab.test", T0 + 74 * DAY, 90 * DAY)
    h2.ctx = server_context(renewed.chain(ca), renewed.key, tmp_path)
    after = {r.target.ip: {f.code for f in r.findings}
             for r in collect(inv, None, at=when).reports if r.target}
    assert FindingCode.STALE_DEPLOYMENT in after["127.0.0.1"]
    assert FindingCode.RENEWAL_OVERDUE not in after["127.0.0.1"]
    assert after["127.0.0.2"].isdisjoint({FindingCode.STALE_DEPLOYMENT,
                                          FindingCode.RENEWAL_OVERDUE})


LOOPBACK = allow_networks(["127.0.0.0/8"])
"""The test ACME server listens on loopback, which fetches only go to when allowed."""


class _ARI(BaseHTTPRequestHandler):
    window: dict[str, str] = {}  # noqa: RUF012 - set by the test before each scan
    paths: list[str] = []  # noqa: RUF012 - shared by the test and the server thread

    def do_GET(self) -> None:
        self.paths.append(self.path)
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path == "/directory":
            body = {"renewalInfo": f"{base}/renewal-info"}
        elif self.path.startswith("/renewal-info/"):
            body = {"suggestedWindow": self.window}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ari() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ARI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_acme_renewal_information_moves_renew_at(servers: ServerLoop, tmp_path: Path, ca: CA,
                                                 ari: ThreadingHTTPServer) -> None:
    leaf = issue(ca, "ari.lab.test", T0, 90 * DAY)
    port = servers.serve(srv.tls_handler(server_context(leaf.chain(ca), leaf.key, tmp_path))).port
    _ARI.window = {"start": "2026-01-20T00:00:00Z", "end": "2026-01-22T00:00:00Z"}
    _ARI.paths = []
    directory = f"http://127.0.0.1:{ari.server_address[1]}/directory"
    inv = load_inventory(inventory(tmp_path, ca, [
        {"host": "ari.lab.test", "port": port, "ip": "127.0.0.1", "acme": directory}]))
    # The CA asks for renewal early (a mass revocation, say): overdue after the window's
    # end plus 10% of the lifetime (9 days), long before the default day 69.
    result = collect(inv, None, at=T0 + 32 * DAY, allow_private=LOOPBACK)
    assert FindingCode.RENEWAL_OVERDUE in codes(result)[0]
    assert _ARI.paths[1] == f"/renewal-info/{cert_id(leaf.cert)}"
    early = collect(inv, None, at=T0 + 29 * DAY, allow_private=LOOPBACK)
    assert FindingCode.RENEWAL_OVERDUE not in codes(early)[0]


def test_unreachable_ari_falls_back_to_the_default_with_a_note(
    servers: ServerLoop, tmp_path: Path, ca: CA
) -> None:
    leaf = issue(ca, "noari.lab.test", T0, 90 * DAY)
    port = servers.serve(srv.tls_handler(server_context(leaf.chain(ca), leaf.key, tmp_path))).port
    with srv.closed_port() as dead:
        inv = load_inventory(inventory(tmp_path, ca, [
            {"host": "noari.lab.test", "port": port, "ip": "127.0.0.1",
             "acme": f"http://127.0.0.1:{dead}/directory"}]))
        early = collect(inv, None, at=T0 + 32 * DAY, allow_private=LOOPBACK)
        late = collect(inv, None, at=T0 + 70 * DAY, allow_private=LOOPBACK)
    assert FindingCode.RENEWAL_OVERDUE not in codes(early)[0]
    assert FindingCode.RENEWAL_OVERDUE in codes(late)[0]
    assert any("unavailable" in n and "using the default" in n for n in early.notes)
