"""The service layer as users meet it: ``scan --at`` writes nothing; a real ``serve`` and a
real ``lab --serve`` run the one alert cycle end to end (policy, outbox, delivery,
watchdog, dead-man ping); storage failures are one line naming ``--db``; the layering
holds."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from chainwatch.render.text import summary_line
from chainwatch.service.cycle import Cycle
from chainwatch.storage.repo import Database

from . import servers as srv
from .conftest import Receiver
from .pki import PKI, pem_of
from .servers import ServerLoop, server_context

Cli = Callable[..., tuple[int, str, str]]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
EXE = Path(sys.executable).with_name("chainwatch")


@pytest.fixture
def servers() -> Iterator[ServerLoop]:
    with ServerLoop() as loop:
        yield loop


@pytest.fixture
def paging(servers: ServerLoop, tmp_path: Path, receiver: Receiver) -> dict[str, Any]:
    """A certificate 5 days 18 hours from expiry (inside the 7-day page step), an
    inventory whose alerts go to a loopback webhook, and a dead-man URL on it."""
    ca = PKI(now=NOW).root("Service Root").intermediate("Service CA")
    assert ca.issuer is not None
    leaf = ca.leaf("pay.lab.test", not_before=NOW - dt.timedelta(days=300),
                   expires=NOW + dt.timedelta(days=5, hours=18))
    port = servers.serve(srv.tls_handler(server_context(leaf.chain(ca), leaf.key,
                                                        tmp_path))).port
    (tmp_path / "trust.pem").write_bytes(pem_of(ca.issuer.cert))
    inv = tmp_path / "inventory.yaml"
    inv.write_text(
        "defaults: {profiles: ['file:trust.pem'], interval: 1h, timeout: 5s}\n"
        "endpoints:\n"
        f"  - {{host: pay.lab.test, port: {port}, ip: 127.0.0.1}}\n"
        "alerts:\n"
        "  channels:\n"
        f"    hook: {{type: webhook, url: '{receiver.url}/hook'}}\n"
        f"  deadman: {{url: '{receiver.url}/ping/s3cr3t-check-id'}}\n"
        "  short_lived: null\n"
    )
    return {"inventory": inv, "db": f"sqlite:///{tmp_path / 'cw.sqlite'}"}


def table_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                    for t in inspect(conn).get_table_names()}
    finally:
        engine.dispose()


def beats(url: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                text("SELECT component, last_beat, info FROM heartbeats ORDER BY component"))]
    finally:
        engine.dispose()


# -- scan --at: a rehearsal writes nothing --------------------------------------------------


def test_scan_at_leaves_the_database_untouched(paging: dict[str, Any], cli: Cli,
                                               receiver: Receiver) -> None:
    code, _, err = cli("scan", paging["inventory"], "--db", paging["db"])
    assert code == 2, err  # 5 days left: critical
    before, beat_before = table_counts(paging["db"]), beats(paging["db"])
    assert before["observations"] == 1 and beat_before
    sent = len(receiver.requests)
    for when in ("2099-01-01", (NOW + dt.timedelta(days=3)).date().isoformat()):
        code, out, _ = cli("scan", paging["inventory"], "--db", paging["db"], "--at", when,
                           "--format", "json")
        assert code == 2
        assert json.loads(out)["reports"][0]["days_left"] in (0, 1, 2, 3)
    assert table_counts(paging["db"]) == before
    assert beats(paging["db"]) == beat_before
    assert len(receiver.requests) == sent  # no delivery, no dead-man ping
    code, out, _ = cli("history", "pay.lab.test", "--db", paging["db"], "--format", "json")
    assert code == 0
    assert len(json.loads(out)["observations"]) == 1


def test_scan_at_without_alerts_stores_nothing_either(paging: dict[str, Any],
                                                      cli: Cli, tmp_path: Path) -> None:
    inv = tmp_path / "plain.yaml"
    inv.write_text(paging["inventory"].read_text().split("alerts:")[0])
    db = f"sqlite:///{tmp_path / 'plain.sqlite'}"
    code, out, _ = cli("scan", inv, "--db", db, "--at", "2099-01-01")
    assert code == 2
    assert "nothing stored" in out
    assert table_counts(db)["observations"] == 0
    assert beats(db) == []


# -- a real serve: page once, watchdog, dead-man ----------------------------------------------


def run_serve(inventory: Path, db: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), "serve", str(inventory), "--no-web", "--db", db, *extra],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "CHAINWATCH_DEBUG": "1"})


def test_serve_pages_once_pings_the_deadman_and_reports_the_gap(
        paging: dict[str, Any], receiver: Receiver) -> None:
    # The monitor was down for 3 hours (interval 1 h): serve's first look says so.
    with Database(paging["db"]) as db:
        db.beat("scan", at=NOW - dt.timedelta(hours=3))
    first = run_serve(paging["inventory"], paging["db"], "--max-batches", "1")
    assert first.returncode == 0, first.stderr
    events = [(p.json()["event"], p.json().get("step")) for p in receiver.to("/hook")]
    assert ("watchdog", "watchdog") in events
    assert events.count(("page", "days:7")) == 1
    assert len(receiver.to("/ping/")) == 1
    # A second serve (the same batch again): the page step is not due again for 24 h.
    second = run_serve(paging["inventory"], paging["db"], "--max-batches", "1")
    assert second.returncode == 0, second.stderr
    events = [(p.json()["event"], p.json().get("step")) for p in receiver.to("/hook")]
    assert events.count(("page", "days:7")) == 1
    assert ("resolve", "resolve") in events  # the scan gap is over
    assert len(receiver.to("/ping/")) == 2
    for run in (first, second):  # no secret in serve's log
        assert "s3cr3t-check-id" not in run.stderr + run.stdout


def test_a_failing_deadman_ping_is_a_warning_not_a_lost_scan(
        paging: dict[str, Any], cli: Cli, receiver: Receiver) -> None:
    receiver.fail["/ping/"] = 500
    code, out, err = cli("scan", paging["inventory"], "--db", paging["db"], "--format", "json")
    assert code == 2  # the scan's own verdict, not 3
    assert json.loads(out)["reports"][0]["status"] == "critical"
    assert "warning: dead-man ping failed" in err
    assert "s3cr3t-check-id" not in err


# -- lab --serve: `make run` shows the escalation end to end --------------------------------


def test_lab_serve_delivers_the_labs_alerts_to_its_own_file(tmp_path: Path) -> None:
    directory = tmp_path / "lab"
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_DATA_HOME",)}
    env["XDG_DATA_HOME"] = str(tmp_path / "home-data")  # where the real default db would go
    proc = subprocess.run(
        [str(EXE), "lab", "--serve", "--no-web", "--dir", str(directory), "--port-base", "0",
         "--max-batches", "1"],
        capture_output=True, text=True, timeout=180, check=False, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert (directory / "lab.sqlite").exists()
    assert not (tmp_path / "home-data").exists()  # the user's default database untouched
    lines = (directory / "deliveries.jsonl").read_text().splitlines()
    sent = [json.loads(line) for line in lines]
    by_target: dict[str, set[str]] = {}
    for p in sent:
        assert p["schema"] == 1 and p["dedup_key"]
        by_target.setdefault(p["target"]["key"], set()).add(p["event"])
    events = {k.split(":")[0]: ev for k, ev in by_target.items()}
    assert events["crates.lab.test"] == {"page"}  # expired: broken now
    assert events["soon.lab.test"] == {"page"}  # 5 days left: the 7-day page
    assert "healthy.lab.test" not in events  # nothing to say about a healthy endpoint
    assert len(sent) == len(by_target)  # one delivery per target, none twice
    assert "deliveries.jsonl" in proc.stdout
    # lab --serve logs through serve's one configuration: structured key=value lines.
    assert "level=info logger=chainwatch." in proc.stderr
    code = subprocess.run([str(EXE), "alerts", "list", str(directory / "inventory.yaml"),
                           "--db", str(directory / "lab.sqlite")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert code.returncode == 0, code.stderr


# -- the cycle in-process ---------------------------------------------------------------------


def test_cycle_rehearsal_and_batch(paging: dict[str, Any]) -> None:
    from chainwatch.config.inventory import load_inventory

    inv = load_inventory(paging["inventory"])
    with Database(paging["db"]) as db, Cycle(db) as cycle:
        rehearsal = cycle.batch(inv, at=NOW + dt.timedelta(days=5))
        assert not rehearsal.recorded
        assert [d.event for d in rehearsal.rehearsal] == ["page"]
        assert db.last_beat("scan") is None
        done = cycle.batch(inv)
        assert done.recorded and done.warnings == ()
        assert db.last_beat("scan") is not None


# -- storage failures: one line, exit 3, --db named, no password -----------------------------


@pytest.mark.parametrize(("url", "expect"), [
    ("postgresql+psycopg://chainwatch:hunter2pw@127.0.0.1:1/nothing", "server is running"),
    ("mysql://chainwatch:hunter2pw@127.0.0.1/x", "unsupported database"),
    ("oracle+cx_oracle://u:hunter2pw@h/x", "unsupported database"),
    ("no-such-scheme://u:hunter2pw@", "not a database URL"),
])
def test_database_errors_are_one_line(url: str, expect: str, paging: dict[str, Any],
                                      cli: Cli) -> None:
    for args in (("scan", paging["inventory"]), ("history", "pay.lab.test")):
        code, out, err = cli(*args, "--db", url)
        assert code == 3
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith("chainwatch: error: --db ")
        assert expect in err
        assert "hunter2pw" not in err + out
        assert "Traceback" not in err and "sqlalche.me" not in err


def test_an_unwritable_sqlite_path_names_the_database(paging: dict[str, Any], cli: Cli,
                                                      tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for url in (str(blocker / "db.sqlite"), f"sqlite:///{blocker / 'sub' / 'db.sqlite'}"):
        code, _, err = cli("scan", paging["inventory"], "--db", url)
        assert code == 3
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith("chainwatch: error: --db sqlite:///")
        assert "a-file" in err


def test_internal_errors_show_a_traceback_only_when_asked(
        monkeypatch: pytest.MonkeyPatch, cli: Cli, tmp_path: Path) -> None:
    import chainwatch.cli.check as check

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(check, "load_bundle_file", boom)
    code, _, err = cli("check-bundle", tmp_path / "x.pem")
    assert code == 3
    assert "internal error: RuntimeError: a bug" in err and "Traceback" not in err
    monkeypatch.setenv("CHAINWATCH_DEBUG", "1")
    code, _, err = cli("check-bundle", tmp_path / "x.pem")
    assert code == 3 and "Traceback" in err


# -- small things ---------------------------------------------------------------------------


def test_version_flag(cli: Cli) -> None:
    from importlib.metadata import version

    code, out, _ = cli("--version")
    assert code == 0
    assert out.strip() == f"chainwatch {version('chainwatch')}"
    import chainwatch

    assert chainwatch.__version__ == version("chainwatch")


def test_summary_line_names_an_address_once() -> None:
    from chainwatch.analysis.engine import probe_failed_report
    from chainwatch.model import Target

    report = probe_failed_report(
        Target(host="127.0.0.1", port=443, ip="127.0.0.1"), "refused: nothing listens",
        at=NOW)
    line = summary_line(report, 30, 7)
    assert "127.0.0.1:443:" in line and "[127.0.0.1]" not in line
    named = probe_failed_report(Target(host="a.lab.test", port=443, ip="127.0.0.1"),
                                "refused", at=NOW)
    assert "a.lab.test:443 [127.0.0.1]" in summary_line(named, 30, 7)


def test_the_last_delivery_pass_runs_after_a_stop_that_came_mid_pass(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``serve --max-batches 1`` ends with ``stop()``: when the deliverer is still in the
    pass the watchdog tick started, the page the batch enqueued meanwhile must still get
    a pass of its own before the thread ends (it was lost under load)."""
    import threading

    from chainwatch.alerts.config import AlertsConfig
    from chainwatch.service import cycle as cycle_module

    real = cycle_module.outbox.deliver
    passes: list[float] = []
    in_first_pass, release = threading.Event(), threading.Event()

    def deliver(db: Database, alerts: AlertsConfig, at: dt.datetime) -> Any:
        passes.append(len(passes))
        if len(passes) == 1:
            in_first_pass.set()
            release.wait(10)
        return real(db, alerts, at)

    monkeypatch.setattr(cycle_module.outbox, "deliver", deliver)
    with Database(f"sqlite:///{tmp_path / 'd.sqlite'}") as db:
        deliverer = cycle_module._Deliverer(db, lambda: dt.datetime.now(dt.UTC))
        alerts = AlertsConfig(channels={})
        deliverer.poke(alerts)  # the watchdog tick's pass
        assert in_first_pass.wait(10)
        deliverer.poke(alerts)  # the batch enqueued a page meanwhile
        stopper = threading.Thread(target=deliverer.stop)
        stopper.start()
        release.set()
        stopper.join(20)
        assert not stopper.is_alive()
    assert len(passes) == 2
