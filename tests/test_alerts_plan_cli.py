"""``alerts plan`` through the CLI agrees with ``scan --at`` rehearsals at the instants it
lists: a real loopback TLS endpoint, a real database, a real webhook receiver.

A rehearsal decides from the *stored* state (it carries nothing forward), so at each
planned instant it must fire exactly what the plan says; between planned instants it is
only silent where the stored state already says so (during an acknowledgement, before a
step begins)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import servers as srv
from .conftest import Receiver
from .pki import PKI, pem_of
from .servers import ServerLoop, server_context

Cli = Callable[..., tuple[int, str, str]]
SECOND = dt.timedelta(seconds=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def z(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_z(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture
def servers() -> Iterator[ServerLoop]:
    with ServerLoop() as loop:
        yield loop


@pytest.fixture
def endpoint(servers: ServerLoop, tmp_path: Path, receiver: Receiver
             ) -> Callable[[dt.datetime, dt.datetime], dict[str, Any]]:
    """Serve a leaf valid from ``not_before`` to ``expires`` on loopback, with an inventory
    (DESIGN.md's default steps, one webhook) and a database to go with it."""

    def make(not_before: dt.datetime, expires: dt.datetime) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        ca = PKI(now=now).root("Plan Root").intermediate("Plan CA")
        assert ca.issuer is not None
        leaf = ca.leaf("plan.lab.test", not_before=not_before, expires=expires)
        port = servers.serve(srv.tls_handler(server_context(leaf.chain(ca), leaf.key,
                                                            tmp_path))).port
        (tmp_path / "trust.pem").write_bytes(pem_of(ca.issuer.cert))
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(
            "defaults: {profiles: ['file:trust.pem'], interval: 1h}\n"
            "endpoints:\n"
            f"  - {{host: plan.lab.test, port: {port}, ip: 127.0.0.1}}\n"
            "alerts:\n"
            "  channels:\n"
            f"    hook: {{type: webhook, url: '{receiver.url}/hook'}}\n"
        )
        return {"inventory": inventory, "db": f"sqlite:///{tmp_path / 'plan.sqlite'}",
                "key": f"plan.lab.test:{port}", "breaks_at": expires + SECOND}

    return make


def plan_rows(cli: Cli, setup: dict[str, Any], until: dt.datetime) -> list[dict[str, Any]]:
    code, out, err = cli("alerts", "plan", setup["inventory"], "--db", setup["db"],
                         "--until", z(until), "--format", "json")
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)["plan"]
    assert all(r["target"] == setup["key"] for r in rows)
    return rows


def rehearsal(cli: Cli, setup: dict[str, Any], when: str) -> list[tuple[str, str]]:
    code, out, err = cli("scan", setup["inventory"], "--db", setup["db"], "--at", when,
                         "--format", "json")
    assert code in (0, 1, 2), err
    return [(r["event"], r["step"]) for r in json.loads(out)["rehearsal"]]


def assert_rehearsals_agree(cli: Cli, setup: dict[str, Any], rows: list[dict[str, Any]],
                            quiet: list[dt.datetime]) -> None:
    by_instant: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        by_instant.setdefault(r["at"], []).append((r["event"], r["step"]))
    for when, planned in by_instant.items():
        assert rehearsal(cli, setup, when) == planned, when
    for when in quiet:
        assert z(when) not in by_instant
        assert rehearsal(cli, setup, z(when)) == [], z(when)


def test_plan_after_acknowledging_a_page(
    cli: Cli, endpoint: Callable[..., dict[str, Any]], receiver: Receiver
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    setup = endpoint(now - 300 * DAY, now + 5 * DAY + 18 * HOUR)
    breaks = setup["breaks_at"]
    cli("scan", setup["inventory"], "--db", setup["db"])  # the real page, delivered
    assert [(p.json()["event"], p.json()["step"]) for p in receiver.to("/hook")] == [
        ("page", "days:7")]
    code, out, err = cli("alerts", "ack", setup["key"], setup["inventory"], "--db", setup["db"],
                         "--for", "3d", "--why", "CA order placed", "--by", "dana")
    assert code == 0, err
    code, out, _ = cli("alerts", "list", setup["inventory"], "--db", setup["db"],
                       "--format", "json")
    until = parse_z(json.loads(out)["alerts"][0]["ack"]["until"])

    rows = plan_rows(cli, setup, breaks + 2 * HOUR)
    steps = [(r["event"], r["step"]) for r in rows]
    # The daily page again when the acknowledgement expires, the last-days pages every
    # 4 hours (not ackable), then hourly broken pages.
    assert steps == [("page", "days:7")] + [("page", "days:2")] * 12 + [("page", "broken")] * 3
    assert until <= parse_z(rows[0]["at"]) <= until + SECOND
    assert parse_z(rows[1]["at"]) == breaks - 2 * DAY + SECOND
    assert parse_z(rows[-3]["at"]) == breaks
    assert receiver.to("/hook")[1:] == []  # the plan sends nothing

    code, out, _ = cli("alerts", "plan", setup["inventory"], "--db", setup["db"],
                       "--until", z(breaks))
    assert "nothing would fire" not in out and out.count(" page ") == 14

    # Silent during the acknowledgement; at each planned instant, what the plan says.
    quiet = [now + 12 * HOUR, now + 2 * DAY, until - SECOND]
    assert_rehearsals_agree(cli, setup, rows, quiet)
    assert receiver.to("/hook")[1:] == []


def test_plan_of_a_90_day_certificate_at_day_68(
    cli: Cli, endpoint: Callable[..., dict[str, Any]], receiver: Receiver
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    issued = now - 68 * DAY
    setup = endpoint(issued, issued + 90 * DAY)
    breaks = setup["breaks_at"]
    cli("scan", setup["inventory"], "--db", setup["db"])  # day 68: nothing is due yet
    assert receiver.to("/hook") == []

    rows = plan_rows(cli, setup, breaks + HOUR)
    steps = [(r["event"], r["step"]) for r in rows]
    assert steps[0] == ("notify", "overdue")
    assert steps.count(("notify", "overdue")) == 1
    assert ("page", "remaining:10%") in steps and ("page", "remaining:3%") in steps
    assert steps[-2:] == [("page", "broken")] * 2
    # renew_at = 2/3 of the lifetime (90 days and a second) after issue, overdue 10% later:
    # day 69 and a fraction of a second, shown as the first whole second after it.
    assert parse_z(rows[0]["at"]) == issued + 69 * DAY + SECOND

    quiet = [now + 12 * HOUR, parse_z(rows[0]["at"]) - SECOND]
    assert_rehearsals_agree(cli, setup, rows, quiet)
    assert receiver.to("/hook") == []
