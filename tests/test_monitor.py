"""The monitor end to end: real TLS servers on loopback, a real database (SQLite and
PostgreSQL), an inventory on disk, and the change tracking no single check can do."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chainwatch.config.inventory import load_inventory
from chainwatch.model import FindingCode, Status
from chainwatch.service.collect import collect
from chainwatch.service.cycle import scan
from chainwatch.storage.repo import Database

from . import servers as srv
from .pki import CA, PKI, Leaf, pem_of
from .servers import ServerLoop, server_context

Cli = Callable[..., tuple[int, str, str]]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


class Swappable:
    """A TLS handler whose certificate can be replaced between connections."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.tls_handler(self.ctx)(reader, writer)


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    pki = PKI(now=NOW)
    old_root = pki.root("Lab Old Root")
    new_root = pki.root("Lab New Root")
    old_ca = old_root.intermediate("Lab Old CA")
    new_ca = new_root.intermediate("Lab New CA")
    return {"pki": pki, "old_root": old_root, "new_root": new_root, "old_ca": old_ca,
            "new_ca": new_ca}


@pytest.fixture
def servers() -> Iterator[ServerLoop]:
    with ServerLoop() as loop:
        yield loop


def leaf_of(ca: CA, name: str, *, days: int = 90, issued_days_ago: int = 1) -> Leaf:
    return ca.leaf(name, not_before=NOW - dt.timedelta(days=issued_days_ago),
                   expires=NOW + dt.timedelta(days=days))


def serve(servers: ServerLoop, tmp: Path, leaf: Leaf, *cas: CA,
          host: str = "127.0.0.1", port: int = 0) -> tuple[Swappable, int]:
    handler = Swappable(server_context(leaf.chain(*cas), leaf.key, tmp))
    endpoint = servers.serve(handler, host=host, port=port)
    return handler, endpoint.port


def write_inventory(tmp: Path, world: dict[str, Any], endpoints: list[dict[str, Any]]) -> Path:
    (tmp / "old-trust.pem").write_bytes(pem_of(world["old_root"].cert))
    (tmp / "all-trust.pem").write_bytes(pem_of(world["old_root"].cert, world["new_root"].cert))
    lines = [
        "defaults: {profiles: [everyone], warn_days: 30, crit_days: 7, interval: 1h, timeout: 5s}",
        "profiles:",
        '  everyone: {trust: ["file:all-trust.pem"], building: modern}',
        '  backend: {trust: ["file:old-trust.pem"], building: modern}',
        "endpoints:",
    ]
    lines += [f"  - {json.dumps(e)}" for e in endpoints]
    path = tmp / "inventory.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def codes_of(report: Any) -> set[str]:
    return {f.code.value for f in report.findings}


def test_scan_stores_observations(servers: ServerLoop, tmp_path: Path, world: dict[str, Any],
                                  db_url: str) -> None:
    leaf = leaf_of(world["old_ca"], "www.lab.test")
    _, port = serve(servers, tmp_path, leaf, world["old_ca"])
    soon = leaf_of(world["old_ca"], "api.lab.test", days=10)
    _, port2 = serve(servers, tmp_path, soon, world["old_ca"])
    inv = load_inventory(write_inventory(tmp_path, world, [
        {"host": "www.lab.test", "port": port, "ip": "127.0.0.1"},
        {"host": "api.lab.test", "port": port2, "ip": "127.0.0.1"},
    ]))
    with Database(db_url) as db:
        result = scan(inv, db)
        assert [r.status for r in result.reports] == [Status.OK, Status.WARNING]
        assert result.status is Status.WARNING
        assert all(r.target is not None and r.target.ip == "127.0.0.1" for r in result.reports)
        latest = {o.target.host: o for o in db.latest_per_target()}
        assert latest["www.lab.test"].leaf_sha256 == leaf.cert.sha256
        assert latest["www.lab.test"].chain == (leaf.cert.sha256, world["old_ca"].cert.sha256)
        assert latest["api.lab.test"].days_left in (9, 10)  # NOW was taken at import
        assert db.certificate(leaf.cert.sha256) is not None
        assert db.last_beat("scan") is not None
        ticks: list[tuple[int, int]] = []
        scan(inv, db, progress=lambda n, total: ticks.append((n, total)))
        assert db.count_observations() == 4
        # Progress while probing (one tick per address as it arrives), then per report.
        assert ticks[:2] == [(1, 2), (2, 2)] and ticks[-1] == (2, 2)
        # Where the time went (serve logs it; bench/scan.py reports storage's share).
        phases = ("probe", "analysis", "track", "store")
        assert set(result.timings) == {*phases, "total"}
        assert all(result.timings[p] >= 0 for p in phases) and result.timings["store"] > 0
        assert sum(result.timings[p] for p in phases) <= result.timings["total"] + 1e-6
    assert collect(inv, None).timings["store"] < 0.01  # nothing to read back or write


def test_renewal_on_one_address_is_stale_deployment_on_the_other(
    servers: ServerLoop, tmp_path: Path, world: dict[str, Any], sqlite_url: str
) -> None:
    """crates.io / Hourfleet: the renewed certificate reached one address, not the other."""
    old = leaf_of(world["old_ca"], "app.lab.test", days=20, issued_days_ago=70)
    h1, port = serve(servers, tmp_path, old, world["old_ca"], host="127.0.0.1")
    # The same name and port on two addresses, as behind DNS round-robin.
    h2, _ = serve(servers, tmp_path, old, world["old_ca"], host="127.0.0.2", port=port)
    inv = load_inventory(write_inventory(tmp_path, world, [
        {"host": "app.lab.test", "port": port, "ip": "127.0.0.1"},
        {"host": "app.lab.test", "port": port, "ip": "127.0.0.2"},
    ]))
    with Database(sqlite_url) as db:
        first = scan(inv, db)
        assert all(FindingCode.STALE_DEPLOYMENT not in {f.code for f in r.findings}
                   for r in first.reports)
        renewed = leaf_of(world["old_ca"], "app.lab.test", days=90)
        h2.ctx = server_context(renewed.chain(world["old_ca"]), renewed.key, tmp_path)
        second = scan(inv, db)
    by_ip = {r.target.ip: r for r in second.reports if r.target is not None}
    stale = [f for f in by_ip["127.0.0.1"].findings if f.code is FindingCode.STALE_DEPLOYMENT]
    assert len(stale) == 1
    assert "127.0.0.1" in stale[0].message
    assert by_ip["127.0.0.1"].status is Status.WARNING
    assert "STALE_DEPLOYMENT" not in codes_of(by_ip["127.0.0.2"])
    assert [(r.target.ip, r.old_leaf, r.new_leaf) for r in second.renewals] == [
        ("127.0.0.2", old.cert.sha256, renewed.cert.sha256)
    ]
    (sit,) = second.situations
    assert sit.broken  # STALE_DEPLOYMENT goes through the `broken` alert rule
    assert sit.cycle == old.cert.sha256  # the cycle ends only when every address is renewed
    del h1


def test_new_hierarchy_is_ca_changed_naming_the_profile_that_loses_trust(
    servers: ServerLoop, tmp_path: Path, world: dict[str, Any], sqlite_url: str
) -> None:
    old = leaf_of(world["old_ca"], "pay.lab.test")
    handler, port = serve(servers, tmp_path, old, world["old_ca"])
    inv = load_inventory(write_inventory(tmp_path, world, [
        {"host": "pay.lab.test", "port": port, "ip": "127.0.0.1",
         "profiles": ["everyone", "backend"]},
    ]))
    with Database(sqlite_url) as db:
        assert scan(inv, db).status is Status.OK
        moved = leaf_of(world["new_ca"], "pay.lab.test")
        handler.ctx = server_context(moved.chain(world["new_ca"]), moved.key, tmp_path)
        (report,) = scan(inv, db).reports
    changed = [f for f in report.findings if f.code is FindingCode.CA_CHANGED]
    assert len(changed) == 1
    assert "profiles that lose trust: backend" in changed[0].message
    assert "UNTRUSTED" in codes_of(report)
    assert report.status is Status.CRITICAL


def test_scan_cli_json_and_exit_status(servers: ServerLoop, tmp_path: Path,
                                       world: dict[str, Any], cli: Cli) -> None:
    leaf = leaf_of(world["old_ca"], "www.lab.test", days=5)
    _, port = serve(servers, tmp_path, leaf, world["old_ca"])
    with srv.closed_port() as dead:
        inv = write_inventory(tmp_path, world, [
            {"host": "www.lab.test", "port": port, "ip": "127.0.0.1"},
            {"host": "down.lab.test", "port": dead, "ip": "127.0.0.1"},
        ])
        db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
        code, out, err = cli("scan", inv, "--db", db, "--format", "json")
    assert code == 3, err  # unknown (a probe failed) outranks critical
    data = json.loads(out)
    assert data["schema"] == 1
    assert len(data["reports"]) == 2
    assert all("target" in r for r in data["reports"])
    by_host = {r["target"]["host"]: r for r in data["reports"]}
    assert by_host["www.lab.test"]["status"] == "critical"
    assert by_host["down.lab.test"]["status"] == "unknown"
    assert by_host["down.lab.test"]["findings"][0]["code"] == "PROBE_FAILED"
    code, out, _ = cli("history", "www.lab.test", "--db", db, "--format", "json")
    assert code == 0
    assert json.loads(out)["observations"][0]["leaf_sha256"] == leaf.cert.sha256


def test_scan_at_rehearses_a_date_while_probing_now(
    servers: ServerLoop, tmp_path: Path, world: dict[str, Any], cli: Cli
) -> None:
    leaf = leaf_of(world["old_ca"], "www.lab.test", days=60)
    _, port = serve(servers, tmp_path, leaf, world["old_ca"])
    inv = write_inventory(tmp_path, world, [{"host": "www.lab.test", "port": port,
                                             "ip": "127.0.0.1"}])
    db = f"sqlite:///{tmp_path / 'at.sqlite'}"
    when = (NOW + dt.timedelta(days=55)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, out, _ = cli("scan", inv, "--db", db, "--at", when, "--format", "json")
    (report,) = json.loads(out)["reports"]
    assert report["evaluated_at"] == when
    assert report["days_left"] == 5
    assert code == 2


def test_scan_text_is_sorted_by_breaks_at_and_lists_uncovered_names(
    servers: ServerLoop, tmp_path: Path, world: dict[str, Any], cli: Cli
) -> None:
    late = world["old_ca"].leaf("www.lab.test", "app.lab.test",
                                expires=NOW + dt.timedelta(days=80))
    early = leaf_of(world["old_ca"], "api.lab.test", days=40)
    _, p1 = serve(servers, tmp_path, late, world["old_ca"])
    _, p2 = serve(servers, tmp_path, early, world["old_ca"])
    inv = write_inventory(tmp_path, world, [
        {"host": "www.lab.test", "port": p1, "ip": "127.0.0.1"},
        {"host": "api.lab.test", "port": p2, "ip": "127.0.0.1"},
    ])
    code, out, _ = cli("scan", inv, "--db", f"sqlite:///{tmp_path / 't.sqlite'}")
    assert code == 0
    assert out.splitlines()[0].startswith("CHAINWATCH OK - 2 targets")
    assert out.index("api.lab.test") < out.index("www.lab.test")
    assert "app.lab.test" in out.split("no endpoint watches:")[1]  # HelloSign's app.*


def test_malformed_inventory_is_exit_3_naming_line_and_field(tmp_path: Path, cli: Cli) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("endpoints:\n  - {host: www.example.com, port: 70000}\n")
    code, out, err = cli("scan", bad, "--db", f"sqlite:///{tmp_path / 'x.sqlite'}")
    assert code == 3
    assert out == ""
    assert f"{bad}:2:" in err and "port" in err
    assert "Traceback" not in err


def test_discover_ct_lists_names_without_endpoints(tmp_path: Path, cli: Cli) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text("endpoints:\n  - www.example.com\n  - {host: api.example.com}\n")
    export = tmp_path / "crtsh.json"
    export.write_text(json.dumps([
        {"name_value": "www.example.com\nexample.com"},
        {"name_value": "app.example.com"},
        {"name_value": "*.example.com"},
        {"name_value": "*.internal.example.com"},
        {"name_value": "API.example.com"},
    ]))
    code, out, _ = cli("discover", "ct", export, "--inventory", inv)
    assert code == 0
    assert out.splitlines() == ["*.internal.example.com", "app.example.com", "example.com"]
    code, out, _ = cli("discover", "ct", export, "--inventory", inv, "--format", "json")
    assert json.loads(out) == ["*.internal.example.com", "app.example.com", "example.com"]
    export.write_text("{not json")
    code, _, err = cli("discover", "ct", export, "--inventory", inv)
    assert code == 3 and "crtsh.json:1" in err


def test_kill_9_during_serve_leaves_a_consistent_database(
    servers: ServerLoop, tmp_path: Path, world: dict[str, Any]
) -> None:
    leaves = [leaf_of(world["old_ca"], f"h{i}.lab.test") for i in range(4)]
    ports = [serve(servers, tmp_path, leaf, world["old_ca"])[1] for leaf in leaves]
    inv = write_inventory(tmp_path, world, [
        {"host": f"h{i}.lab.test", "port": p, "ip": "127.0.0.1", "interval": "1s"}
        for i, p in enumerate(ports)
    ])
    text = inv.read_text().replace("interval: 1h", "interval: 1s")
    inv.write_text(text)
    db_path = tmp_path / "kill.sqlite"
    exe = Path(sys.executable).with_name("chainwatch")
    for round_ in range(3):
        proc = subprocess.Popen(
            [str(exe), "serve", str(inv), "--no-web", "--db", f"sqlite:///{db_path}",
             "--max-batches", "500"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # bounded: until some rows exist, then kill
            if db_path.exists() and _rows(db_path) > round_ * 4:
                break
            time.sleep(0.05)
        time.sleep(0.1 * (round_ + 1))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        incomplete = conn.execute(
            "SELECT o.id FROM observations o WHERE o.leaf_sha256 IS NOT NULL AND "
            "(SELECT count(*) FROM chain_certs c WHERE c.chain_id = o.chain_id) != 2"
        ).fetchall()
        assert incomplete == []
    with Database(f"sqlite:///{db_path}") as db:
        assert db.count_observations() >= 4
        scan(load_inventory(inv), db)  # the database is still usable


def _rows(path: Path) -> int:
    try:
        with sqlite3.connect(path, timeout=1) as conn:
            return int(conn.execute("SELECT count(*) FROM observations").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chainwatch.sqlite'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


def test_retention_keeps_only_recent_observations(
    servers: ServerLoop, tmp_path: Path, world: dict[str, Any], sqlite_url: str
) -> None:
    leaf = leaf_of(world["old_ca"], "www.lab.test")
    _, port = serve(servers, tmp_path, leaf, world["old_ca"])
    path = write_inventory(tmp_path, world, [{"host": "www.lab.test", "port": port,
                                              "ip": "127.0.0.1"}])
    path.write_text(path.read_text().replace("timeout: 5s}", "timeout: 5s, retention: 1s}"))
    inv = load_inventory(path)
    assert inv.defaults.retention == dt.timedelta(seconds=1)
    with Database(sqlite_url) as db:
        scan(inv, db)
        time.sleep(1.5)  # the first observation is now older than the retention
        scan(inv, db)
        assert db.count_observations() == 1  # the latest is always kept


def test_scan_checks_revocation_when_the_inventory_asks(
    servers: ServerLoop, tmp_path: Path, world: dict[str, Any]
) -> None:
    """A revoked leaf, stapled by the server: REVOKED, and the target is broken."""
    from cryptography import x509
    from cryptography.x509.ocsp import OCSPCertStatus

    from .test_revocation import ocsp_der

    now = dt.datetime.now(dt.UTC)
    leaf = leaf_of(world["old_ca"], "revoked.lab.test")
    staple = ocsp_der(leaf.cert, world["old_ca"], status=OCSPCertStatus.REVOKED,
        this_update=now - dt.timedelta(hours=1), next_update=now + dt.timedelta(days=1),
        revoked_at=now - dt.timedelta(hours=2), reason=x509.ReasonFlags.key_compromise)
    ctx = srv.pyopenssl_context(leaf.chain(world["old_ca"]), leaf.key, ocsp=staple)
    port = servers.serve(srv.pyopenssl_handler(ctx)).port
    path = write_inventory(tmp_path, world, [
        {"host": "revoked.lab.test", "port": port, "ip": "127.0.0.1", "revocation": True},
        {"host": "unchecked.lab.test", "port": port, "ip": "127.0.0.1",
         "sni": "revoked.lab.test"},
    ])
    checked, unchecked = collect(load_inventory(path), None).reports
    assert "REVOKED" in codes_of(checked)
    assert checked.status is Status.CRITICAL
    assert "REVOKED" not in codes_of(unchecked)  # revocation is opt-in per endpoint


def test_scan_json_is_written_a_report_at_a_time(
    servers: ServerLoop, tmp_path: Path, world: dict[str, Any], sqlite_url: str
) -> None:
    """``scan --format json`` writes what ``dumps(scan_json(...))`` would, byte for byte,
    without holding the whole document: at 100,000 targets that document and the
    encoder's pieces of it took more memory than everything else the scan kept."""
    import dataclasses
    import tracemalloc

    from chainwatch.render.codec import dumps, scan_document, scan_json, write_json

    def scan_json_chunks(case: Any, more: dict[str, Any] | None = None) -> list[str]:
        """The pieces ``scan`` writes (``write_json`` of the lazy document)."""
        pieces: list[str] = []
        write_json({**scan_document(case), **(more or {})}, pieces.append)
        return pieces

    old = leaf_of(world["old_ca"], "app.lab.test", days=20, issued_days_ago=70)
    handler, port = serve(servers, tmp_path, old, world["old_ca"])
    with srv.closed_port() as dead:
        inv = load_inventory(write_inventory(tmp_path, world, [
            {"host": "app.lab.test", "port": port, "ip": "127.0.0.1"},
            {"host": "down.lab.test", "port": dead, "ip": "127.0.0.1"},
        ]))
        with Database(sqlite_url) as db:
            scan(inv, db)
            # A renewal and a name no endpoint covers: every part of the document.
            renewed = world["old_ca"].leaf("app.lab.test", "xn--n-dha.other.lab.test",
                                           expires=NOW + dt.timedelta(days=90))
            handler.ctx = server_context(renewed.chain(world["old_ca"]), renewed.key,
                                         tmp_path)
            result = scan(inv, db)
    assert result.renewals and result.uncovered
    extra = {"rehearsal": [{"event": "broken", "message": "ü \"quoted\"\nline"}]}
    empty = dataclasses.replace(result, reports=(), renewals=(), uncovered=(), notes=())
    for case, more in ((result, {}), (result, extra), (empty, {}), (empty, extra)):
        assert "".join(scan_json_chunks(case, more)) == dumps({**scan_json(case), **more}) + "\n"

    # Many reports: the pieces come one report at a time, so the writing needs memory
    # for one report's document (and the order of the reports), not for the document.
    many = dataclasses.replace(result, reports=result.reports * 1000)

    def peak_of(write: Callable[[], int]) -> tuple[int, int]:
        tracemalloc.start()
        try:
            size = write()
            return size, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def streaming() -> int:
        size = 0

        def count(piece: str) -> None:
            nonlocal size
            size += len(piece)

        write_json(scan_document(many), count)
        return size

    written, streamed = peak_of(streaming)
    whole, at_once = peak_of(lambda: len(dumps(scan_json(many)) + "\n"))
    assert written == whole
    assert streamed < whole / 4 and streamed < at_once / 10
