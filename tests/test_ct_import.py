"""CT import results: ``discover ct --db`` stores every name it read (table
``ct_names``, revision 0008), and the dashboard's Discovery page and
``/api/v1/discovery`` show the last import and the names no endpoint covers. A
database made by revision 0007 upgrades on SQLite and PostgreSQL with nothing lost."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import MetaData, Table, insert, inspect, select

from chainwatch.config.inventory import load_inventory
from chainwatch.service.web import WebServer, WebSettings
from chainwatch.storage import Database
from chainwatch.storage import db as storage_db
from chainwatch.storage.discovery_repo import DiscoveryRepo

from .webclient import start_web

Cli = Callable[..., tuple[int, str, str]]
UTC = dt.UTC


@pytest.fixture
def web() -> Iterator[Callable[[WebSettings], httpx.Client]]:
    started: list[tuple[WebServer, httpx.Client]] = []

    def serve(settings: WebSettings) -> httpx.Client:
        server, client = start_web(settings)
        started.append((server, client))
        return client

    yield serve
    for server, client in started:
        client.close()
        server.stop()


def test_revision_0007_database_upgrades_with_nothing_lost(url: str) -> None:
    engine = storage_db.make_engine(storage_db.normalize_url(url))
    try:
        storage_db.upgrade(engine, "0007")
        assert "ct_names" not in inspect(engine).get_table_names()
        meta = MetaData()
        meta.reflect(engine)
        targets = Table("targets", meta)
        with engine.begin() as conn:
            conn.execute(insert(targets), {"id": 1, "host": "kept.example.com", "port": 443,
                                           "ip": "", "sni": "", "starttls": ""})
    finally:
        engine.dispose()
    with Database(url) as database:  # migrates to head
        assert storage_db.current_revision(database.engine) == storage_db.head_revision()
        with database.engine.connect() as conn:
            kept = conn.execute(select(Table("targets", MetaData(), autoload_with=conn)
                                       .c.host)).scalars().all()
        assert kept == ["kept.example.com"]
        at = dt.datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
        repo = DiscoveryRepo(database)
        assert repo.ct_import() is None
        assert repo.record_ct(["b.example.com", "a.example.com", "b.example.com"],
                              source="one.json", at=at) == 2
        later = at + dt.timedelta(days=1)
        repo.record_ct(["b.example.com", "c.example.com"], source="two.json", at=later)
        names = {n.name: n for n in repo.ct_names()}
        assert sorted(names) == ["a.example.com", "b.example.com", "c.example.com"]
        assert (names["b.example.com"].first_seen, names["b.example.com"].last_seen,
                names["b.example.com"].source) == (at, later, "two.json")
        last = repo.ct_import()
        assert last is not None and (last.at, last.source, last.names) == (later, "two.json", 2)


def test_discover_ct_stores_its_results_and_the_discovery_page_shows_them(
        tmp_path: Path, cli: Cli, web: Callable[[WebSettings], httpx.Client]) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text("endpoints:\n  - www.example.com\n  - {host: api.example.com}\n",
                   encoding="utf-8")
    export = tmp_path / "crtsh.json"
    export.write_text(json.dumps([
        {"name_value": "www.example.com\nexample.com"},
        {"name_value": "app.example.com"},
        {"name_value": "*.internal.example.com"},
        {"name_value": "<b>x</b>.example.com"},
    ]), encoding="utf-8")
    db_url = f"sqlite:///{tmp_path / 'ct.sqlite'}"
    code, out, _ = cli("discover", "ct", export, "--inventory", inv, "--db", db_url)
    assert code == 0 and "app.example.com" in out.splitlines()
    inventory = load_inventory(inv)
    with Database(db_url) as database:
        client = web(WebSettings(db=database, inventory=lambda: inventory))
        ct = client.get("/api/v1/discovery").json()["ct"]
        assert ct["last_import"]["source"] == "crtsh.json" and ct["last_import"]["names"] == 5
        uncovered = [n["name"] for n in ct["uncovered"]]
        assert "www.example.com" not in uncovered
        assert {"app.example.com", "example.com", "*.internal.example.com"} <= set(uncovered)
        page = client.get("/discovery").text
        assert page.count('<tr class="ct-name">') == len(uncovered)
        assert "<b>x</b>" not in page  # a name from an export is text, not markup
        # Without an inventory every stored name is listed.
        bare = web(WebSettings(db=database)).get("/api/v1/discovery").json()["ct"]
        assert len(bare["uncovered"]) == 5
