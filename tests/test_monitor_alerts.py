"""The monitor and the alerts together: a real scan of real loopback endpoints feeding the
escalation, delivered to a real loopback webhook; ``scan --at`` rehearsals; ``alerts plan``;
and ``serve`` noticing when scans stop."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chainwatch.config.inventory import load_inventory
from chainwatch.service.scheduler import Scheduler
from chainwatch.storage.repo import Database

from . import servers as srv
from .conftest import Receiver
from .pki import PKI, pem_of
from .servers import ServerLoop, server_context

Cli = Callable[..., tuple[int, str, str]]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def servers() -> Iterator[ServerLoop]:
    with ServerLoop() as loop:
        yield loop


@pytest.fixture
def setup(servers: ServerLoop, tmp_path: Path, receiver: Receiver) -> dict[str, Any]:
    ca = PKI(now=NOW).root("Alerts Root").intermediate("Alerts CA")
    assert ca.issuer is not None
    leaf = ca.leaf("pay.lab.test", not_before=NOW - dt.timedelta(days=300),
                   expires=NOW + dt.timedelta(days=20))
    port = servers.serve(srv.tls_handler(server_context(leaf.chain(ca), leaf.key,
                                                        tmp_path))).port
    (tmp_path / "trust.pem").write_bytes(pem_of(ca.issuer.cert))
    inv = tmp_path / "inventory.yaml"
    inv.write_text(
        "defaults: {profiles: ['file:trust.pem'], interval: 1h}\n"
        "endpoints:\n"
        f"  - {{host: pay.lab.test, port: {port}, ip: 127.0.0.1}}\n"
        "alerts:\n"
        "  channels:\n"
        f"    hook: {{type: webhook, url: '{receiver.url}/hook'}}\n"
        "  short_lived: null\n"
    )
    return {"inventory": inv, "db": f"sqlite:///{tmp_path / 'cw.sqlite'}", "leaf": leaf}


def test_scan_escalates_to_the_webhook_once(setup: dict[str, Any], cli: Cli,
                                            receiver: Receiver) -> None:
    code, _, err = cli("scan", setup["inventory"], "--db", setup["db"])
    assert code == 1, err  # 20 days left: warning
    (post,) = receiver.to("/hook")
    body = post.json()
    assert body["schema"] == 1
    assert body["event"] == "ticket"  # under 30 days: the ticket step
    assert body["target"]["host"] == "pay.lab.test"
    assert body["days_left"] in (19, 20)
    assert body["dedup_key"].startswith("chainwatch:pay.lab.test:")
    cli("scan", setup["inventory"], "--db", setup["db"])
    assert len(receiver.to("/hook")) == 1  # the same step does not fire twice
    code, out, _ = cli("alerts", "list", setup["inventory"], "--db", setup["db"],
                       "--format", "json")
    assert code == 0
    assert "pay.lab.test" in out


def test_scan_at_rehearses_without_sending_or_storing(setup: dict[str, Any], cli: Cli,
                                                      receiver: Receiver) -> None:
    when = (NOW + dt.timedelta(days=15)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, out, _ = cli("scan", setup["inventory"], "--db", setup["db"], "--at", when,
                       "--format", "json")
    assert code == 2  # 5 days left as of WHEN
    rehearsal = json.loads(out)["rehearsal"]
    assert [(r["event"], r["step"]) for r in rehearsal] == [("page", "days:7")]
    assert receiver.to("/hook") == []
    # Nothing was stored: a real scan now still starts at the ticket step.
    cli("scan", setup["inventory"], "--db", setup["db"])
    assert [p.json()["event"] for p in receiver.to("/hook")] == ["ticket"]


def test_alerts_plan_prints_the_schedule(setup: dict[str, Any], cli: Cli,
                                         receiver: Receiver) -> None:
    code, out, _ = cli("alerts", "plan", setup["inventory"], "--db", setup["db"],
                       "--format", "json")
    assert code == 0
    plan = json.loads(out)["plan"]
    steps = [p["step"] for p in plan]
    assert steps[0] == "days:30"
    assert steps.count("days:14") == 1
    assert steps.count("days:7") == 5
    assert steps.count("days:2") == 12
    assert steps[-1] == "broken"  # the leaf expires inside the 60-day window
    assert receiver.to("/hook") == []
    code, out, _ = cli("alerts", "plan", setup["inventory"], "--db", setup["db"])
    assert out.startswith("Alert plan from")


def test_serve_watchdog_reports_a_stalled_monitor(setup: dict[str, Any],
                                                  receiver: Receiver) -> None:
    inv = load_inventory(setup["inventory"])
    with Database(setup["db"]) as db:
        from chainwatch.alerts import outbox as alerting

        db.beat("scan", at=NOW - dt.timedelta(hours=3))  # last scan 3 h ago, interval 1 h
        assert inv.alerts is not None
        alerting.check_watchdog(db, inv.alerts, NOW, interval=inv.defaults.interval)
        alerting.deliver(db, inv.alerts, NOW)
        events = [p.json()["event"] for p in receiver.to("/hook")]
        assert events == ["watchdog"]
        ticks: list[int] = []
        scheduler = Scheduler(setup["inventory"], db, on_tick=lambda _: ticks.append(1))
        assert scheduler.run(max_batches=1, max_sleep=0) == 1
        assert ticks == [1]
        assert db.last_beat("scan") is not None
