"""Revision 0010: served chains stored once (``chains``, ``chain_certs``) instead of chain
rows per observation, and the downgrades of 0010 and 0006 (report documents) putting back
what they take away. On SQLite and PostgreSQL, from databases made by the previous schema
with observations in them: nothing is lost either way, and every reader reads the same."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import MetaData, inspect, text

from chainwatch.analysis.engine import probe_failed_report
from chainwatch.model import Target
from chainwatch.probe import FailureReason, Observation
from chainwatch.render.codec import report_json
from chainwatch.storage import Database
from chainwatch.storage import db as storage_db
from chainwatch.storage import repo as storage_repo

from .test_report_documents import HOSTS, NOW, Lab, write_previous_schema


def downgrade(url: str, revision: str) -> None:
    engine = storage_db.make_engine(storage_db.normalize_url(url))
    try:
        storage_db.downgrade(engine, revision)
        assert storage_db.current_revision(engine) == revision
    finally:
        engine.dispose()


def migrate(url: str, revision: str) -> None:
    engine = storage_db.make_engine(storage_db.normalize_url(url))
    try:
        storage_db.upgrade(engine, revision)
    finally:
        engine.dispose()


def tables_of(url: str) -> set[str]:
    engine = storage_db.make_engine(storage_db.normalize_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def raw_rows(url: str) -> tuple[dict[int, Any], dict[int, list[str]]]:
    """At revision 0005 or earlier: each observation's own ``report`` column and its
    ``observation_certs`` rows in position order, read with plain SQL."""
    engine = storage_db.make_engine(storage_db.normalize_url(url))
    try:
        meta = MetaData()
        meta.reflect(engine, only=["observations", "observation_certs"])
        obs, links = meta.tables["observations"], meta.tables["observation_certs"]
        with engine.connect() as conn:
            reports = {int(oid): report for oid, report in conn.execute(
                obs.select().with_only_columns(obs.c.id, obs.c.report))}
            chains: dict[int, list[str]] = {}
            for oid, sha in conn.execute(
                    links.select().with_only_columns(links.c.observation_id, links.c.sha256)
                    .order_by(links.c.observation_id, links.c.position)):
                chains.setdefault(int(oid), []).append(sha)
        return reports, chains
    finally:
        engine.dispose()


def read_back(url: str) -> tuple[dict[int, Mapping[str, Any]], dict[int, tuple[str, ...]]]:
    """At head, through the repository: every observation's report and served chain."""
    with Database(url) as database:
        rows = [r for host in (*HOSTS, "down.example.com")
                for r in database.history(host, 443, limit=None)]
        reports = database.reports_of(r.id for r in rows)
        assert {r.id: dict(r.report) for r in rows} == reports
        return reports, {r.id: r.chain for r in rows}


def test_previous_schema_upgrades_to_shared_chains(url: str) -> None:
    lab = Lab()
    written = write_previous_schema(url, lab)
    migrate(url, "0007")
    expected = {host: tuple(c.sha256 for c in lab.chains[host]) for host in HOSTS}
    # Rebuilding ``observations`` on SQLite (revision 0006) kept its chain rows: foreign
    # keys are not enforced while migrating, so the DROP of the old table cascades nowhere.
    _, links = raw_rows(url)
    assert {oid: tuple(shas) for oid, shas in links.items()} == {
        oid: expected[host] for oid, host in zip(range(1, 7), sorted(HOSTS * 3), strict=True)}
    with Database(url) as database:  # migrates to head
        assert storage_db.current_revision(database.engine) == storage_db.head_revision()
        assert "observation_certs" not in inspect(database.engine).get_table_names()
        for host in HOSTS:
            rows = database.history(host, 443, limit=None)
            assert len(rows) == 3
            for row in rows:
                assert row.chain == expected[host]
                assert row.leaf_sha256 == expected[host][0]
                assert dict(row.report) == written[(host, row.observed_at)]
        with database.engine.connect() as conn:
            # Three observations of each host, one chain each, its certificates once.
            assert conn.execute(text("SELECT count(*) FROM chains")).scalar_one() == len(HOSTS)
            assert conn.execute(text("SELECT count(*) FROM chain_certs")).scalar_one() == \
                2 * len(HOSTS)
            keys = set(conn.execute(text("SELECT sha256 FROM chains")).scalars())
        assert keys == {storage_repo.chain_key(shas) for shas in expected.values()}

        # New observations of the same chains refer to the migrated rows, store none.
        later = NOW + dt.timedelta(days=5)
        database.record_many([lab.served(host, later) for host in HOSTS])
        database.record_many([lab.served(host, later + dt.timedelta(hours=1))
                              for host in HOSTS], slot="20260306T130000Z")
        # The slot index, now partial, still makes a redelivered batch a no-op.
        database.record_many([lab.served(host, later + dt.timedelta(hours=1))
                              for host in HOSTS], slot="20260306T130000Z")
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM chains")).scalar_one() == len(HOSTS)
        assert database.count_observations() == len(written) + 2 * len(HOSTS)
        assert [o.chain for o in database.latest_per_target()] == [
            expected[host] for host in HOSTS]


def test_downgrades_put_back_chains_and_whole_reports(url: str) -> None:
    """Down to 0005: every observation gets its chain rows and its whole report back in its
    own row (those written at head referred to a shared chain and document); up again, the
    repository reads what it read before."""
    lab = Lab()
    written = write_previous_schema(url, lab)  # rows with their whole report (before 0006)
    recorded: dict[int, dict[str, Any]] = {}
    failed = Target("down.example.com", 443, ip="127.0.0.1")
    with Database(url) as database:
        for hour in range(3):  # steady observations: shared documents and chains
            when = NOW + dt.timedelta(days=4, hours=hour)
            batch = [lab.served(host, when) for host in HOSTS]
            for oid, (_, report) in zip(database.record_many(batch), batch, strict=True):
                recorded[oid] = report_json(report)
        when = NOW + dt.timedelta(days=5)
        message = "down.example.com:443: connection refused"
        refused = probe_failed_report(failed, message, when)
        oid = database.record(Observation(failed, when, failure=FailureReason.REFUSED,
                                          message=message), refused)
        recorded[oid] = report_json(refused)
    before_reports, before_chains = read_back(url)
    assert len(before_reports) == len(written) + len(recorded)

    downgrade(url, "0007")
    assert {"chains", "chain_certs"}.isdisjoint(tables_of(url))
    assert "observation_certs" in tables_of(url)
    downgrade(url, "0005")
    assert {"report_documents", "chains", "chain_certs"}.isdisjoint(tables_of(url))
    reports, chains = raw_rows(url)
    for oid, chain in before_chains.items():
        assert tuple(chains.get(oid, ())) == chain, oid
        assert reports[oid] == before_reports[oid], oid
    for oid, report in recorded.items():
        assert reports[oid] == report, oid
    assert chains.get(max(recorded), []) == []  # the failed probe served nothing
    assert len(reports) == len(written) + len(recorded)

    migrate(url, "head")
    assert read_back(url) == (before_reports, before_chains)
    with Database(url) as database:
        assert database.reports_of(recorded) == recorded


def test_chain_rows_lost_to_the_0006_rebuild_are_recovered_from_the_reports(url: str) -> None:
    """SQLite databases that went through revision 0006 before migrations ran with foreign
    keys unenforced lost every older observation's chain rows (the table rebuild cascaded
    to them). Revision 0010 gives those observations their chain back from their reports;
    a report that does not match its row's leaf, or names a certificate not stored, is
    left without one rather than guessed."""
    lab = Lab()
    written = write_previous_schema(url, lab)
    migrate(url, "0007")
    engine = storage_db.make_engine(storage_db.normalize_url(url))
    try:
        with engine.begin() as conn:  # the state the rebuild left
            conn.execute(text("DELETE FROM observation_certs"))
            # One report that does not fit its row: its chain starts with another leaf.
            conn.execute(text("UPDATE observations SET leaf_sha256 = (SELECT sha256 FROM "
                              "certificates WHERE sha256 <> observations.leaf_sha256 "
                              "ORDER BY sha256 LIMIT 1) WHERE id = 6"))
    finally:
        engine.dispose()
    expected = {host: tuple(c.sha256 for c in lab.chains[host]) for host in HOSTS}
    with Database(url) as database:
        chains = {r.id: r.chain for host in HOSTS
                  for r in database.history(host, 443, limit=None)}
        assert chains == {oid: () if oid == 6 else expected[HOSTS[(oid - 1) // 3]]
                          for oid in range(1, 7)}
        assert database.count_observations() == len(written)
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM chains")).scalar_one() == len(HOSTS)
