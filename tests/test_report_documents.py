"""Revision 0006: a report document is stored once per change, observations refer to it.
On SQLite and PostgreSQL: a database made by the previous schema (revision 0002) with
observations in it upgrades with nothing lost and reads the same; steady observations
after it share their target's document, and every reader gets the whole report back."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, insert, text

from chainwatch.analysis.engine import analyze
from chainwatch.model import Profile, Store, Target, sha256_hex
from chainwatch.probe import Observation
from chainwatch.render.codec import report_json
from chainwatch.storage import Database
from chainwatch.storage import db as storage_db
from chainwatch.storage import repo as storage_repo

from .pki import PKI, at

NOW = at("2026-03-01T12:00:00Z")
HOSTS = ("a.example.com", "b.example.com")


class Lab:
    def __init__(self) -> None:
        pki = PKI(now=NOW)
        root = pki.root("Documents Root")
        self.inter = root.intermediate("Documents CA")
        self.profile = Profile("lab", Store("lab", (root.cert,)))
        self.chains = {h: self.inter.leaf(h).chain(self.inter) for h in HOSTS}

    def served(self, host: str, when: dt.datetime) -> tuple[Observation, Any]:
        target = Target(host, 443, ip="127.0.0.1")
        chain = self.chains[host]
        report = analyze(chain, [self.profile], at=when, host=host).with_target(target)
        return Observation(target=target, observed_at=when, chain=tuple(c.der for c in chain),
                           tls_version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256",
                           elapsed=0.01), report


def write_previous_schema(url: str, lab: Lab) -> dict[tuple[str, dt.datetime], dict[str, Any]]:
    """A database at revision 0002 with observations written as that schema stored them
    (the whole report in ``observations.report``); returns the reports written."""
    engine = storage_db.make_engine(storage_db.normalize_url(url))
    written: dict[tuple[str, dt.datetime], dict[str, Any]] = {}
    try:
        storage_db.upgrade(engine, "0002")
        meta = MetaData()
        meta.reflect(engine)
        tables = {name: Table(name, meta) for name in
                  ("certificates", "targets", "observations", "observation_certs")}
        with engine.begin() as conn:
            for ca in {c.sha256: c for chain in lab.chains.values() for c in chain}.values():
                conn.execute(insert(tables["certificates"]),
                             storage_repo._cert_row(ca.der, ca.sha256, NOW))
            for host in HOSTS:
                # Ids from the table's own sequence, as that schema's writer took them.
                target_id = conn.execute(insert(tables["targets"]).returning(
                    tables["targets"].c.id), {"host": host, "port": 443, "ip": "127.0.0.1",
                                              "sni": "", "starttls": ""}).scalar_one()
                for day in range(3):
                    when = NOW + dt.timedelta(days=day)
                    obs, report = lab.served(host, when)
                    doc = report_json(report)
                    oid = conn.execute(insert(tables["observations"]).returning(
                        tables["observations"].c.id), {
                        "target_id": target_id, "observed_at": when, "status": doc["status"],
                        "breaks_at": report.breaks_at, "days_left": report.days_left,
                        "leaf_sha256": sha256_hex(obs.chain[0]), "tls_version": "TLSv1.3",
                        "cipher": "TLS_AES_128_GCM_SHA256", "ocsp_staple": None,
                        "failure": None, "message": None, "elapsed": 0.01,
                        "findings": [f["code"] for f in doc["findings"]], "report": doc,
                    }).scalar_one()
                    conn.execute(insert(tables["observation_certs"]), [
                        {"observation_id": oid, "position": i, "sha256": sha256_hex(der)}
                        for i, der in enumerate(obs.chain)])
                    written[(host, when)] = doc
    finally:
        engine.dispose()
    return written


def test_previous_schema_upgrades_and_reads_the_same(url: str) -> None:
    lab = Lab()
    written = write_previous_schema(url, lab)
    with Database(url) as database:  # migrates to head
        assert storage_db.current_revision(database.engine) == storage_db.head_revision()
        assert database.count_observations() == len(written)
        for host in HOSTS:
            rows = database.history(host, 443, limit=None)
            assert len(rows) == 3
            for row in rows:
                assert dict(row.report) == written[(host, row.observed_at)]
            assert database.reports_of([r.id for r in rows]) == {
                r.id: written[(host, r.observed_at)] for r in rows}

        # Steady observations after the upgrade: one document per target while nothing
        # served changes, and each reads back as the whole report it was.
        recorded: dict[int, dict[str, Any]] = {}
        for minute in range(5):
            when = NOW + dt.timedelta(days=3, minutes=minute)
            batch = [lab.served(host, when) for host in HOSTS]
            for oid, (_, report) in zip(database.record_many(batch), batch, strict=True):
                recorded[oid] = report_json(report)
        with database.engine.connect() as conn:
            documents = conn.execute(text("SELECT count(*) FROM report_documents")).scalar_one()
            empty = conn.execute(text(
                "SELECT count(*) FROM observations WHERE document_id IS NOT NULL")).scalar_one()
        assert documents == len(HOSTS)
        assert empty == len(recorded)
        assert database.reports_of(recorded) == recorded
        newest = database.history(HOSTS[0], 443, limit=1)[0]
        assert dict(newest.report) == recorded[newest.id]
        assert newest.report["evaluated_at"] == "2026-03-04T12:04:00Z"
        assert list(newest.report) == list(recorded[newest.id])  # the same key order

    with Database(url) as again:  # a new process: documents are found, not stored again
        when = NOW + dt.timedelta(days=3, minutes=10)
        again.record_many([lab.served(host, when) for host in HOSTS])
        with again.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM report_documents")).scalar_one() \
                == len(HOSTS)


def test_a_changed_report_gets_a_new_document(tmp_path: Path) -> None:
    lab = Lab()
    with Database(f"sqlite:///{tmp_path / 'db.sqlite'}") as database:
        host = HOSTS[0]
        database.record(*lab.served(host, NOW))
        lab.chains[host] = lab.inter.leaf(host).chain(lab.inter)  # renewed
        database.record(*lab.served(host, NOW + dt.timedelta(hours=1)))
        database.record(*lab.served(host, NOW + dt.timedelta(hours=2)))
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM report_documents")).scalar_one() == 2
        rows = database.history(host, 443, limit=None)
        assert [r.report["chain"][0]["sha256"] for r in rows] == [
            r.leaf_sha256 for r in rows]
