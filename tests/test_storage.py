"""Storage against SQLite and PostgreSQL: round trips with real chains, certificates
stored once, failed probes kept as history, ordering, retention, migrations, and
crash safety (a writer killed with SIGKILL never leaves half an observation).

PostgreSQL tests use a database created for this run on 127.0.0.1:5432 and a schema
per test. With ``CHAINWATCH_REQUIRE_SERVICES=1`` they fail when the server cannot be
reached; otherwise they skip, saying why.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from chainwatch.analysis.engine import analyze, probe_failed_report
from chainwatch.model import Cert, Profile, Report, Status, Store, Target
from chainwatch.probe import FailureReason, Observation
from chainwatch.render.codec import report_json
from chainwatch.storage import Database, normalize_url
from chainwatch.storage import db as storage_db
from chainwatch.storage import repo as storage_repo
from chainwatch.storage.models import Base

from .pki import CA, PKI, at

NOW = at("2024-03-01T12:00:00Z")


# -- fixtures (postgres_database and pg_url are in conftest.py) -------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chainwatch.sqlite'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    try:
        yield database
    finally:
        database.close()


class Lab:
    """A small hierarchy and a trusting profile, to make real observations and reports."""

    def __init__(self) -> None:
        self.pki = PKI(now=NOW)
        self.root = self.pki.root("Storage Root")
        self.inter: CA = self.root.intermediate("Storage CA")
        self.profile = Profile("lab", Store("lab", (self.root.cert,)))

    def chain(self, host: str, **kw: Any) -> tuple[Cert, ...]:
        return self.inter.leaf(host, **kw).chain(self.inter)

    def served(
        self, target: Target, when: dt.datetime, chain: tuple[Cert, ...] | None = None
    ) -> tuple[Observation, Report]:
        chain = chain if chain is not None else self.chain(target.host)
        report = analyze(chain, [self.profile], at=when, host=target.host).with_target(target)
        observation = Observation(
            target=target,
            observed_at=when,
            chain=tuple(c.der for c in chain),
            tls_version="TLSv1.3",
            cipher="TLS_AES_128_GCM_SHA256",
            elapsed=0.042,
        )
        return observation, report

    @staticmethod
    def failed(target: Target, when: dt.datetime) -> tuple[Observation, Report]:
        message = f"{target.host}:{target.port}: connection refused"
        observation = Observation(
            target, when, failure=FailureReason.REFUSED, message=message, elapsed=0.001
        )
        return observation, probe_failed_report(target, message, when)


@pytest.fixture(scope="module")
def lab() -> Lab:
    return Lab()


LINKS = ("(SELECT o.id AS observation_id, c.position, c.sha256 FROM observations o "
         "JOIN chain_certs c ON c.chain_id = o.chain_id) AS links")
"""Each observation's served chain, one row per certificate (as ``count``'s table)."""


def count(database: Database, table: str) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


# -- migrations -------------------------------------------------------------------------------


def test_migrations_upgrade_from_empty(db_url: str) -> None:
    engine = storage_db.make_engine(storage_db.normalize_url(db_url))
    try:
        assert storage_db.current_revision(engine) is None
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()

    with Database(db_url) as database:
        assert storage_db.current_revision(database.engine) == storage_db.head_revision()
        tables = set(inspect(database.engine).get_table_names())
        assert tables == {"alembic_version", "certificates", "targets", "observations",
                          "chains", "chain_certs", "heartbeats", "alert_state", "outbox",
                          "acks", "monitor_counters", "batches", "report_documents",
                          "ct_names", "report_series"}
        # The migrations build exactly what the ORM models describe.
        with database.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []

    with Database(db_url) as again:  # opening an up-to-date database changes nothing
        assert storage_db.current_revision(again.engine) == storage_db.head_revision()


def test_migration_scripts_are_numbered_in_one_chain() -> None:
    """The open-time check reads the head from the file names (no Alembic): every script
    must be ``NNNN_what.py`` with ``revision = "NNNN"`` following the one before."""
    scripts = sorted((storage_db.MIGRATIONS / "versions").glob("[0-9]*.py"))
    assert scripts
    previous = None
    for script in scripts:
        number = script.name[:4]
        assert re.fullmatch(r"\d{4}_\w+\.py", script.name), script.name
        source = script.read_text()
        assert f'revision: str = "{number}"' in source, script.name
        down = "None" if previous is None else f'"{previous}"'
        assert f"down_revision: str | None = {down}" in source, script.name
        previous = number
    assert storage_db.named_head() == storage_db.head_revision() == previous


def test_opening_a_database_at_head_does_not_load_alembic(db_url: str) -> None:
    Database(db_url).close()  # migrated to head
    code = ("import sys; from chainwatch.storage.repo import Database; "
            f"Database({db_url!r}).close(); print('alembic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_opening_a_database_behind_head_migrates_it(db_url: str) -> None:
    Database(db_url).close()
    engine = storage_db.make_engine(storage_db.normalize_url(db_url))
    try:
        storage_db.downgrade(engine, "0009")
        assert storage_db.current_revision(engine) == "0009"
    finally:
        engine.dispose()
    with Database(db_url) as database:
        assert storage_db.current_revision(database.engine) == storage_db.head_revision()
        assert "chains" in inspect(database.engine).get_table_names()


def test_migrations_ship_with_the_package() -> None:
    assert (storage_db.MIGRATIONS / "env.py").is_file()
    assert (storage_db.MIGRATIONS / "script.py.mako").is_file()
    assert list((storage_db.MIGRATIONS / "versions").glob("0001_*.py"))


# -- round trips ------------------------------------------------------------------------------


def test_observation_round_trip(db: Database, lab: Lab) -> None:
    target = Target("www.example.com", 443, ip="127.0.0.1", sni="alt.example.com")
    chain = lab.chain("www.example.com", expires=NOW + dt.timedelta(days=20))
    # An observation taken in another time zone is the same instant in UTC.
    when = NOW.astimezone(dt.timezone(dt.timedelta(hours=2)))
    observation, report = lab.served(target, when, chain)
    observation = dataclasses.replace(observation, ocsp_staple=b"\x30\x03staple")
    oid = db.record(observation, report)

    (stored,) = db.observations_for(target)
    assert stored.id == oid
    assert stored.target == target
    assert stored.observed_at == NOW and stored.observed_at.tzinfo == dt.UTC
    assert stored.status is Status.WARNING and report.status is Status.WARNING
    assert stored.breaks_at == report.breaks_at and stored.breaks_at is not None
    assert stored.breaks_at.tzinfo == dt.UTC
    assert stored.days_left == report.days_left == 20
    assert stored.chain == tuple(c.sha256 for c in chain)
    assert stored.leaf_sha256 == chain[0].sha256
    assert stored.findings == tuple(f.code.value for f in report.findings)
    assert "EXPIRES_SOON" in stored.findings
    assert (stored.tls_version, stored.cipher, stored.elapsed) == (
        "TLSv1.3", "TLS_AES_128_GCM_SHA256", 0.042
    )
    assert stored.ocsp_staple == b"\x30\x03staple"
    assert stored.failure is None and stored.message is None
    assert stored.report == report_json(report)
    assert stored.report["target"]["sni"] == "alt.example.com"

    for cert in chain:
        row = db.certificate(cert.sha256)
        assert row is not None
        assert row.der == cert.der and row.cert() == cert
        assert (row.subject, row.issuer) == (cert.subject, cert.issuer)
        assert (row.not_before, row.not_after) == (cert.not_before, cert.not_after)
        assert row.first_seen == NOW
    assert db.certificate("0" * 64) is None
    assert db.targets() == [target]


def test_report_without_target_gets_the_observations(db: Database, lab: Lab) -> None:
    target = Target("bare.example.com", 8443)
    chain = lab.chain(target.host)
    report = analyze(chain, [lab.profile], at=NOW, host=target.host)
    assert report.target is None
    db.record(Observation(target, NOW, tuple(c.der for c in chain)), report)
    (stored,) = db.history("bare.example.com")
    assert stored.report["target"] == {"host": "bare.example.com", "port": 8443, "ip": None,
                                       "sni": None, "starttls": None}


def test_certificates_are_stored_once(
    db: Database, lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = lab.chain("shared.example.com")
    later = NOW + dt.timedelta(hours=1)
    for i, target in enumerate([Target("a.example.com"), Target("b.example.com")]):
        for when in (later, NOW):
            db.record(*lab.served(target, when + dt.timedelta(seconds=i), chain))
    # A second Database (another process, say) knows nothing of the first one's cache;
    # it finds the certificates stored and does not parse them again to insert nothing.
    parsed: list[str] = []
    real_row = storage_repo._cert_row
    monkeypatch.setattr(storage_repo, "_cert_row",
                        lambda der, sha, seen, cert=None: parsed.append(sha)
                        or real_row(der, sha, seen, cert))
    with Database(db.url) as other:
        other.record(*lab.served(Target("c.example.com"), NOW, chain))
    assert parsed == []
    assert count(db, "certificates") == 2
    assert count(db, "observations") == 5
    assert count(db, LINKS) == 10
    assert count(db, "chains") == 1 and count(db, "chain_certs") == 2  # one served chain
    assert count(db, "targets") == 3
    leaf = db.certificate(chain[0].sha256)
    assert leaf is not None and leaf.first_seen == later  # written first, kept since


def test_new_certificates_are_stored_from_the_reports_parse(
    db: Database, lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report carries its chain parsed: its new certificates' rows come from that, not
    from their DER parsed again (in a scan of 100,000 targets the leaves have left the
    parse table long before they are stored: every one was parsed twice)."""
    from chainwatch.analysis.engine import clear_caches

    items = [lab.served(Target(f"fresh{i}.example.com"), NOW) for i in range(3)]
    clear_caches()  # the parse table forgets them, as thousands of other chains make it
    parses: list[bytes] = []
    real = Cert.parse
    monkeypatch.setattr(Cert, "parse", classmethod(
        lambda cls, der: parses.append(der) or real(der)))
    db.record_many(items)
    assert parses == []
    for _, report in items:
        for cert in report.chain:
            row = db.certificate(cert.sha256)
            assert row is not None and row.der == cert.der
            assert (row.subject, row.issuer) == (cert.subject, cert.issuer)
            assert (row.not_before, row.not_after) == (cert.not_before, cert.not_after)
    # Without a parsed chain (a failed probe's report) the DER is parsed, as before.
    junk_free = lab.chain("bare.example.com")
    report = probe_failed_report(Target("bare.example.com"), "refused", NOW)
    db.record(Observation(Target("bare.example.com"), NOW,
                          chain=tuple(c.der for c in junk_free),
                          failure=FailureReason.OTHER), report)
    assert len(parses) == 1  # the leaf; the intermediate was stored above
    row = db.certificate(junk_free[0].sha256)
    assert row is not None and row.subject == junk_free[0].subject


def test_failed_probe_is_history(db: Database, lab: Lab) -> None:
    target = Target("down.example.com", 25, starttls="smtp")
    db.record(*lab.served(target, NOW))
    oid = db.record(*lab.failed(target, NOW + dt.timedelta(hours=1)))
    latest, earlier = db.observations_for(target)
    assert latest.id == oid
    assert latest.status is Status.UNKNOWN
    assert latest.chain == () and latest.leaf_sha256 is None
    assert latest.breaks_at is None and latest.days_left is None
    assert latest.failure == "refused"
    assert latest.message == "down.example.com:25: connection refused"
    assert latest.findings == ("PROBE_FAILED",)
    assert latest.report["chain"] == [] and latest.report["status"] == "unknown"
    assert earlier.status is Status.OK and len(earlier.chain) == 2


def test_unparsable_certificate_is_kept(db: Database) -> None:
    target = Target("garbage.example.com")
    junk = b"\x30\x03\x02\x01\x00"
    report = probe_failed_report(target, "the server sent no parsable certificate", NOW)
    db.record(Observation(target, NOW, chain=(junk,), failure=FailureReason.OTHER), report)
    (stored,) = db.observations_for(target)
    assert len(stored.chain) == 1
    row = db.certificate(stored.chain[0])
    assert row is not None and row.der == junk and row.subject is None and row.not_after is None


def test_history_ordering(db: Database, lab: Lab) -> None:
    https, alt = Target("svc.example.com", 443), Target("svc.example.com", 8443)
    hours = [5, 1, 3, 2, 4]  # written out of time order on purpose
    for h in hours:
        db.record(*lab.served(https, NOW + dt.timedelta(hours=h)))
    db.record(*lab.served(alt, NOW + dt.timedelta(hours=10)))
    # Two observations at the same instant: the later write is the newer.
    tie_a = db.record(*lab.served(https, NOW + dt.timedelta(hours=6)))
    tie_b = db.record(*lab.served(https, NOW + dt.timedelta(hours=6)))
    db.record(*lab.served(Target("other.example.com"), NOW + dt.timedelta(hours=20)))

    both = db.history("SVC.example.com")
    assert [o.observed_at for o in both] == [
        NOW + dt.timedelta(hours=h) for h in (10, 6, 6, 5, 4, 3, 2, 1)
    ]
    assert [o.id for o in both[1:3]] == [tie_b, tie_a]
    only_https = db.history("svc.example.com", 443, limit=3)
    assert [o.observed_at for o in only_https] == [
        NOW + dt.timedelta(hours=h) for h in (6, 6, 5)
    ]
    assert all(o.target == https for o in only_https)
    assert db.history("nothing.example.com") == []
    assert len(db.observations_for(https, limit=2)) == 2


def test_latest_per_target(db: Database, lab: Lab) -> None:
    a, b, c = Target("a.example.com"), Target("b.example.com"), Target("a.example.com", 993)
    newest_a = db.record(*lab.served(a, NOW + dt.timedelta(hours=2)))
    db.record(*lab.served(a, NOW))  # written later, observed earlier: not the latest
    db.record(*lab.served(b, NOW))
    newest_b = db.record(*lab.failed(b, NOW + dt.timedelta(minutes=5)))
    newest_c = db.record(*lab.served(c, NOW))
    latest = db.latest_per_target()
    assert [(o.target, o.id) for o in latest] == [(a, newest_a), (c, newest_c), (b, newest_b)]
    assert latest[2].status is Status.UNKNOWN


def test_latest_leaves_skip_failed_probes(db: Database, lab: Lab) -> None:
    """Change tracking compares with what a target last *served*: a timeout in between
    must not hide a renewal or a change of CA."""
    a, b, never = Target("a.example.com"), Target("b.example.com"), Target("c.example.com")
    db.record(*lab.served(a, NOW))
    db.record(*lab.served(a, NOW + dt.timedelta(hours=1)))
    db.record(*lab.failed(a, NOW + dt.timedelta(hours=2)))
    db.record(*lab.served(b, NOW))
    db.record(*lab.failed(never, NOW))
    latest = {row.target: row for row in db.latest_leaves()}
    assert set(latest) == {a, b}
    assert latest[a].observed_at == NOW + dt.timedelta(hours=1)
    (served_a,) = [o for o in db.observations_for(a) if o.observed_at == latest[a].observed_at]
    assert latest[a].leaf_sha256 == served_a.leaf_sha256
    assert latest[a].observation_id == served_a.id
    assert db.reports_of([served_a.id, 10**9]) == {served_a.id: served_a.report}


def test_retention_takes_the_report_documents_only_old_observations_used(
        db: Database, db_url: str, lab: Lab) -> None:
    """A renewal stores a new report document; once retention has deleted every observation
    of the old one, the old document goes too (growth stays bounded by retention). A writer
    that still remembers the pruned document's id (another process) stores its next
    observation all the same."""
    t = Target("renewed.example.com")
    old_chain, new_chain = lab.chain(t.host), lab.chain(t.host)
    other = Database(db_url)
    try:
        other.record(*lab.served(t, NOW - dt.timedelta(days=100), old_chain))
        assert count(db, "report_documents") == 1
        db.record(*lab.served(t, NOW, new_chain))
        assert count(db, "report_documents") == 2
        assert db.prune(dt.timedelta(days=30), now=NOW) == 1
        assert count(db, "report_documents") == 1  # the old chain's document is gone
        (latest,) = db.latest_per_target()
        assert latest.leaf_sha256 == new_chain[0].sha256
        # ``other`` remembers the old document's id: the server went back to the old chain.
        then = NOW - dt.timedelta(days=100)
        observation, report = lab.served(t, then, old_chain)  # the very document pruned
        later = dataclasses.replace(observation, observed_at=NOW + dt.timedelta(hours=1))
        other.record(later, report)
        assert count(db, "report_documents") == 2
        (back,) = db.latest_per_target()
        assert back.leaf_sha256 == old_chain[0].sha256
        assert back.report["chain"][0]["sha256"] == old_chain[0].sha256
    finally:
        other.close()


def test_retention_keeps_the_latest(db: Database, lab: Lab) -> None:
    quiet, busy = Target("quiet.example.com"), Target("busy.example.com")
    for day in range(5):  # quiet: observed only long ago
        db.record(*lab.served(quiet, NOW - dt.timedelta(days=100 + day)))
    for day in range(10):  # busy: every day up to now
        db.record(*lab.served(busy, NOW - dt.timedelta(days=day)))
    certs_before = count(db, "certificates")
    chains_before = count(db, "chains")

    deleted = db.prune(dt.timedelta(days=30), now=NOW)
    assert deleted == 4  # quiet's four older ones; busy has nothing older than 30 days
    (kept,) = db.observations_for(quiet)
    assert kept.observed_at == NOW - dt.timedelta(days=100)
    assert len(db.observations_for(busy)) == 10

    assert db.prune(dt.timedelta(days=3), now=NOW) == 6
    assert [o.observed_at for o in db.observations_for(busy)] == [
        NOW - dt.timedelta(days=d) for d in range(4)
    ]
    assert len(db.observations_for(quiet)) == 1  # never deletes a target's latest
    assert db.prune(dt.timedelta(0), now=NOW + dt.timedelta(days=1)) == 3
    assert {o.target for o in db.latest_per_target()} == {quiet, busy}
    # Served chains stay, like certificates; the kept observations still read theirs.
    assert count(db, LINKS) == 2 * count(db, "observations") == 4
    assert count(db, "certificates") == certs_before
    assert count(db, "chains") == chains_before
    assert all(len(o.chain) == 2 for o in db.latest_per_target())


def test_record_many_batches(db: Database, lab: Lab) -> None:
    chain = lab.chain("batch.example.com")
    items = [
        lab.served(Target(f"h{i % 17}.example.com"), NOW + dt.timedelta(seconds=i), chain)
        for i in range(1100)
    ]
    ids = db.record_many(items, batch_size=250)
    assert len(ids) == 1100 and ids == sorted(ids) and len(set(ids)) == 1100
    assert count(db, "observations") == 1100
    assert count(db, "targets") == 17
    assert count(db, "certificates") == 2
    assert db.record_many([]) == []


def test_a_failing_batch_leaves_nothing_behind(
    db: Database, lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = Target("atomic.example.com")
    item = lab.served(target, NOW)
    real_insert = db._insert

    def failing_insert(table: Any) -> Any:
        if getattr(table, "__tablename__", None) == "chain_certs":
            raise RuntimeError("the disk caught fire")
        return real_insert(table)

    monkeypatch.setattr(db, "_insert", failing_insert)
    with pytest.raises(RuntimeError, match="caught fire"):
        db.record(*item)
    for table in ("certificates", "targets", "observations", "chains", "chain_certs"):
        assert count(db, table) == 0, table

    monkeypatch.setattr(db, "_insert", real_insert)  # what was rolled back is not "known"
    db.record(*item)
    assert count(db, "certificates") == 2 and count(db, "chain_certs") == 2
    assert count(db, LINKS) == 2


def test_timestamps_must_be_aware(db: Database, lab: Lab) -> None:
    observation, report = lab.served(Target("naive.example.com"), NOW)
    naive = dataclasses.replace(observation, observed_at=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="timezone-aware"):
        db.record(naive, report)
    with pytest.raises(ValueError, match="timezone-aware"):
        db.beat("scheduler", at=NOW.replace(tzinfo=None))
    assert count(db, "observations") == 0


def test_heartbeats(db: Database) -> None:
    assert db.last_beat("scheduler") is None
    db.beat("scheduler", {"targets": 3}, at=NOW)
    db.beat("scheduler", {"targets": 4}, at=NOW + dt.timedelta(minutes=1))
    db.beat("worker@dc-east", at=NOW)
    beat = db.last_beat("scheduler")
    assert beat is not None
    assert beat.last_beat == NOW + dt.timedelta(minutes=1) and beat.info == {"targets": 4}
    other = db.last_beat("worker@dc-east")
    assert other is not None and other.info == {}
    before = dt.datetime.now(dt.UTC)
    db.beat("web")
    web = db.last_beat("web")
    assert web is not None and web.last_beat >= before - dt.timedelta(seconds=1)


# -- SQLite specifics -------------------------------------------------------------------------


def test_urls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert normalize_url(None) == f"sqlite:///{tmp_path}/xdg/chainwatch/chainwatch.sqlite"
    assert normalize_url(tmp_path / "a.db") == f"sqlite:///{tmp_path}/a.db"
    assert normalize_url("postgresql://u:p@db/cw") == "postgresql+psycopg://u:p@db/cw"
    assert normalize_url("postgres://db/cw") == "postgresql+psycopg://db/cw"
    assert normalize_url("sqlite:///:memory:") == "sqlite:///:memory:"
    with Database() as default:  # creates the data directory
        assert (tmp_path / "xdg" / "chainwatch" / "chainwatch.sqlite").is_file()
        assert repr(default) == f"Database('{normalize_url(None)}')"
    assert storage_db.redacted("postgresql+psycopg://u:hunter2@db/cw") == (
        "postgresql+psycopg://u:***@db/cw"
    )


def test_sqlite_pragmas(sqlite_url: str) -> None:
    with Database(sqlite_url) as database, database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_concurrent_writers_share_a_database(db_url: str, lab: Lab) -> None:
    """Two processes' worth of writers (two Databases, two threads each) on one database,
    writing batches: SQLite's BEGIN IMMEDIATE and busy timeout make them queue, never
    fail; on both backends every observation gets its own id and its served chain."""
    errors: list[BaseException] = []
    served = [lab.chain(f"c{i}.example.com") for i in range(5)]  # the writers race on them
    items = [lab.served(Target(f"c{i % 5}.example.com"), NOW + dt.timedelta(seconds=i),
                        served[i % 5])
             for i in range(400)]
    databases = [Database(db_url), Database(db_url)]
    ids: list[list[int]] = [[] for _ in range(4)]

    def write(database: Database, part: int) -> None:
        try:
            mine = items[part::4]
            for start in range(0, len(mine), 25):
                ids[part].extend(database.record_many(mine[start : start + 25], batch_size=10))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(databases[n % 2], n)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for database in databases:
        database.close()
    assert errors == []
    every = [i for part in ids for i in part]
    assert len(every) == len(set(every)) == 400
    with Database(db_url) as database:
        assert database.count_observations() == 400
        assert count(database, "targets") == 5
        assert count(database, LINKS) == 2 * 400
        # Writers racing to store the same chain store it once, with its certificates once.
        assert count(database, "chains") == 5 and count(database, "chain_certs") == 2 * 5
        by_time = {  # observation times are distinct: they name the rows
            o.observed_at: o.id for i in range(5)
            for o in database.observations_for(Target(f"c{i}.example.com"))
        }
        for part in range(4):  # each id is the row its writer wrote
            for (observation, _), oid in zip(items[part::4], ids[part], strict=True):
                assert by_time[observation.observed_at] == oid


# -- crash safety -----------------------------------------------------------------------------

WRITER = r"""
import datetime as dt
import itertools
import sys

from chainwatch.analysis.engine import analyze, probe_failed_report
from chainwatch.model import Profile, Store, Target
from chainwatch.testing.pki import PKI
from chainwatch.probe import FailureReason, Observation
from chainwatch.storage import Database

url, limit = sys.argv[1], int(sys.argv[2])
start = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
pki = PKI(now=start)
root = pki.root("Kill Root")
inter = root.intermediate("Kill CA")
profile = Profile("kill", Store("kill", (root.cert,)))


def item(i):
    when = start + dt.timedelta(seconds=i)
    target = Target(f"host{i % 7}.example.com", 443)
    if i % 11 == 0:
        message = "connect timed out"
        return (Observation(target, when, failure=FailureReason.TIMEOUT, message=message),
                probe_failed_report(target, message, when))
    chain = inter.leaf(target.host).chain(inter)  # a new leaf each time: new certificate rows
    report = analyze(chain, [profile], at=when, host=target.host)
    return Observation(target, when, tuple(c.der for c in chain), "TLSv1.3"), report


# Everything but the writing is done up front, so that the writer spends its time
# inside write transactions and the kill lands in one more often than not.
items = itertools.cycle([item(i) for i in range(150)])
db = Database(url)
print("ready", flush=True)
written = 0
while written < limit:
    if (written // 20) % 2:
        ids = db.record_many([next(items) for _ in range(20)], batch_size=20)
    else:
        ids = [db.record(*next(items))]
    print(*ids, flush=True)  # only after the commit returned
    written += len(ids)
"""


def kill_writer_midway(url: str, after: int, delay: float) -> set[int]:
    """Start the writer, let it commit at least ``after`` observations, SIGKILL it
    ``delay`` seconds later; return the ids it reported committed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, "100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    committed: set[int] = set()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        stdout, stderr = proc.stdout, proc.stderr
        assert stdout.readline().strip() == "ready", stderr.read()
        while len(committed) < after:
            line = stdout.readline()
            assert line, f"writer stopped early: {stderr.read()}"
            committed.update(int(x) for x in line.split())
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # pragma: no cover - only when an assertion failed above
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, err
    committed.update(int(x) for line in rest.splitlines() for x in line.split())
    return committed


def assert_whole(database: Database, committed: set[int]) -> int:
    """Every observation present is complete, and every committed one is present."""
    with database.engine.connect() as conn:
        observations = conn.execute(
            text("SELECT id, leaf_sha256, failure, report FROM observations")
        ).all()
        links: dict[int, list[tuple[int, str]]] = {}
        for oid, pos, sha in conn.execute(
            text(f"SELECT observation_id, position, sha256 FROM {LINKS}")
        ):
            links.setdefault(oid, []).append((pos, sha))
        certs = {sha for (sha,) in conn.execute(text("SELECT sha256 FROM certificates"))}
    present = {row.id for row in observations}
    assert committed <= present, f"lost committed observations: {sorted(committed - present)}"
    assert set(links) <= present, "chain rows without their observation"
    # The stored report as every reader gets it (its document joined with its row).
    reports = database.reports_of(present)
    for oid, leaf, failure, _ in observations:
        report = reports[oid]
        chain = [sha for _, sha in sorted(links.get(oid, []))]
        assert sorted(pos for pos, _ in links.get(oid, [])) == list(range(len(chain)))
        assert chain == [c["sha256"] for c in report["chain"]], f"observation {oid} is partial"
        assert set(chain) <= certs, f"observation {oid} lacks certificates"
        assert leaf == (chain[0] if chain else None)
        assert (failure is None) == bool(chain)
    return len(present)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_killed_writer_leaves_no_half_observation(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    committed: set[int] = set()
    seen = 0
    # Three crashes at different moments, into the same database.
    for after, delay in [(30, 0.0), (45, 0.013), (60, 0.037)]:
        committed |= kill_writer_midway(url, after=after, delay=delay)
        with Database(url) as database:  # opens cleanly (and is already at head)
            if backend == "sqlite":
                with database.engine.connect() as conn:
                    assert conn.exec_driver_sql("PRAGMA integrity_check").all() == [("ok",)]
                    assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            total = assert_whole(database, committed)
            assert total > seen
            seen = total
    with Database(url) as database:  # and it is still writable
        lab = Lab()
        database.record(*lab.served(Target("after.example.com"), NOW))
        assert database.count_observations() == seen + 1


# -- distributed mode: idempotent writes per scan slot, batches, zone health -----------------


def test_writes_with_a_slot_are_idempotent_per_target(db: Database, lab: Lab) -> None:
    """A batch redelivered after its worker died is written again: (target, slot) is
    unique, so each observation is stored once, with its chain reference once."""
    a, b = Target("a.lab.test", 443, ip="127.0.0.1"), Target("b.lab.test", 443, ip="127.0.0.1")
    batch = [lab.served(a, NOW), lab.failed(b, NOW)]
    first = db.record_many(batch, slot="20240301T120000Z")
    again = db.record_many(batch, slot="20240301T120000Z")
    assert again == first
    assert count(db, "observations") == 2 and count(db, LINKS) == 2
    # Half of a batch written before (another writer, or an earlier attempt): the rest
    # goes in, nothing twice.
    c = Target("c.lab.test", 443, ip="127.0.0.1")
    db.record_many([lab.served(c, NOW), *batch], slot="20240301T120000Z")
    assert count(db, "observations") == 3
    # Another slot is another observation; without a slot nothing is constrained.
    db.record_many(batch, slot="20240301T130000Z")
    db.record_many(batch)
    db.record_many(batch)
    assert count(db, "observations") == 3 + 2 + 4
    assert [len(o.chain) for o in db.latest_per_target()] == [2, 0, 2]


def test_zone_health_reads_workers_queue_depth_and_last_result(db: Database) -> None:
    from chainwatch.storage.batches import BatchesRepo, worker_component, zone_health

    repo = BatchesRepo(db)
    now = NOW
    for n, zone in enumerate(["dc-east", "dc-east", "dc-west"]):
        repo.dispatched(f"b{n}", zone=zone, queue=f"chainwatch.{zone}", slot="s1", targets=10,
                        at=now)
    repo.done("b0", worker="east-1", observations=10, status="warning",
              at=now + dt.timedelta(seconds=5))
    repo.done("b0", worker="east-2", observations=99, status="ok",  # a redelivery: ignored
              at=now + dt.timedelta(seconds=9))
    db.beat(worker_component("dc-east", "east-1"), at=now)
    db.beat(worker_component("dc-west", "west-1"), at=now - dt.timedelta(minutes=10))
    health = {h.name: h for h in zone_health(db, now=now + dt.timedelta(seconds=10),
                                             zones=["dc-north"])}
    assert set(health) == {"dc-east", "dc-west", "dc-north"}
    east, west, north = health["dc-east"], health["dc-west"], health["dc-north"]
    assert east.workers == ("east-1",) and east.queue_depth == 1
    assert east.last_result is not None
    assert (east.last_result.worker, east.last_result.observations,
            east.last_result.status) == ("east-1", 10, "warning")
    assert west.workers == () and west.queue_depth == 1 and west.oldest_pending == now
    assert west.last_worker_beat == now - dt.timedelta(minutes=10)
    assert north.workers == () and north.queue_depth == 0 and north.last_result is None
    assert [b.id for b in repo.to_evaluate()] == ["b0"]
    repo.evaluated(["b0"], now)
    assert repo.to_evaluate() == []
    repo.give_up(["b2"], now, status="no_worker")
    assert [b.id for b in repo.pending()] == ["b1"]


def test_stored_report_decodes_to_the_report(db: Database, lab: Lab) -> None:
    """What the distributed scheduler reads back to track across zones: the stored
    schema-1 document gives the same report (paths' candidates aside, not stored)."""
    from chainwatch.render.codec import report_from_json

    target = Target("d.lab.test", 443, ip="127.0.0.1")
    observation, report = lab.served(target, NOW)
    db.record(observation, report)
    (row,) = db.latest_per_target()
    decoded = report_from_json(row.report, db.parsed_certificates(row.chain))
    assert report_json(decoded) == report_json(report)
    assert decoded.chain == report.chain and decoded.target == target
    failed_obs, failed = lab.failed(Target("e.lab.test", 443, ip="127.0.0.1"), NOW)
    db.record(failed_obs, failed)
    row = next(r for r in db.latest_per_target() if r.target.host == "e.lab.test")
    assert report_json(report_from_json(row.report, {})) == report_json(failed)
