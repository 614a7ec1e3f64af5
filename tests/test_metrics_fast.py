"""``/metrics``' fast render (stored per-document summaries, migration 0009, and
prometheus-client's own line shapes) answers byte for byte what the plain render
(every stored report decoded, every sample built and formatted by prometheus-client)
answers, on SQLite and PostgreSQL, over a fleet with a bit of everything: several
profiles (trusted, untrusted, broken at the instant of evaluation), findings, probe
failures, certificate files, IPv6, label values that need escaping, duplicate
(target, address) pairs, rows written before report documents, and with an inventory
(filter, per-certificate series, per-endpoint renewal policies)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import delete, func, select, update

from chainwatch.config.inventory import load_inventory
from chainwatch.model import Profile, Store, Target
from chainwatch.probe import FailureReason, Observation
from chainwatch.render.codec import report_json
from chainwatch.service import metrics
from chainwatch.service.metrics import render_stored, render_stored_plain
from chainwatch.service.observe import report_for
from chainwatch.storage import Database
from chainwatch.storage import db as storage_db
from chainwatch.storage.models import ObservationRow, ReportDocumentRow, ReportSeriesRow
from chainwatch.storage.series import read_series, series_of, summarize

from .pki import PKI, at, pem_of

NOW = at("2026-03-01T12:00:00Z")
ODD = 'q"uo\\te\nnl %(a)s %s é'  # every character the text format escapes, and % signs
ESCAPED = 'q\\"uo\\\\te\\nnl %(a)s %s é'  # as a label value in the text format


class Fleet:
    """A throwaway hierarchy and the observations of a varied fleet."""

    def __init__(self, tmp: Path) -> None:
        pki = PKI(now=NOW)
        root = pki.root("Fast Root")
        other = pki.root("Other Root")
        inter = root.intermediate("Fast CA")
        self.root_pem = tmp / "root.pem"
        self.root_pem.write_bytes(pem_of(root.cert))
        self.profiles = [
            Profile(f"file:{self.root_pem}", Store("lab", (root.cert,))),
            Profile(f"odd {ODD}", Store("odd", (root.cert,))),
            Profile("other", Store("other", (other.cert,))),  # never trusts: broken now
        ]
        self.inter = inter
        self.chains = {
            "ok": inter.leaf("a.example.com").chain(inter),
            "odd": inter.leaf("odd.example.com", common_name=f"CN {ODD}").chain(inter),
            "expired": inter.leaf("old.example.com", not_before=NOW - dt.timedelta(days=90),
                                  expires=NOW - dt.timedelta(days=1)).chain(inter),
            "late": inter.leaf("late.example.com", not_before=NOW - dt.timedelta(days=80),
                               expires=NOW + dt.timedelta(days=10)).chain(inter),
        }

    def observation(self, target: Target, chain: str | None, when: dt.datetime,
                    host: str | None = None) -> tuple[Observation, Any]:
        if chain is None:
            obs = Observation(target=target, observed_at=when, chain=(),
                              failure=FailureReason.TIMEOUT, message="timed out")
        else:
            certs = self.chains[chain]
            obs = Observation(target=target, observed_at=when,
                              chain=tuple(c.der for c in certs), tls_version="TLSv1.3")
        report = report_for(obs, self.profiles, at=when, host=host or target.host)
        return obs, report

    def items(self) -> list[tuple[Observation, Any]]:
        # Microseconds on purpose: the untrusted profiles break at evaluated_at as the
        # report states it (to the second).
        t0 = NOW.replace(microsecond=250_000)
        t1 = t0 + dt.timedelta(hours=1, microseconds=333)
        out = []
        for when in (t0, t1):  # two scans: the newest observation of each counts
            out += [
                self.observation(Target("a.example.com", 443, ip="127.0.0.1"), "ok", when),
                self.observation(Target("a.example.com", 443, ip="2001:db8::1"), "ok", when),
                # Same host, port and address, another SNI: the same series, first wins.
                self.observation(Target("a.example.com", 443, ip="127.0.0.1",
                                        sni="b.example.com"), "late", when),
                self.observation(Target("a.example.com", 443, ip="127.0.0.1",
                                        starttls="smtp"), "odd", when),
                self.observation(Target("2001:db8::7", 8443, ip="2001:db8::7"), "ok", when),
                self.observation(Target("mismatch.example.com", 443, ip="127.0.0.2"), "ok",
                                 when),
                self.observation(Target("odd.example.com", 443, ip="127.0.0.3"), "odd", when),
                self.observation(Target(f"we{ODD}ird", 443, ip=f"10.0.0.{ODD}"), "ok", when),
                self.observation(Target("old.example.com", 443, ip="127.0.0.4"), "expired",
                                 when),
                self.observation(Target("late.example.com", 443, ip="127.0.0.5"), "late",
                                 when),
                self.observation(Target("down.example.com", 443, ip="127.0.0.6"), None, when),
                self.observation(Target("never.example.com", 443), None, when),
                self.observation(Target.file(f"/certs/{ODD}.pem"), "ok", when,
                                 host="a.example.com"),
                self.observation(Target.file("/certs/plain.pem"), "late", when,
                                 host="late.example.com"),
            ]
        return out

    def inventory(self, tmp: Path, *, per_cert: bool) -> Path:
        spec = json.dumps(f"file:{self.root_pem}")
        path = tmp / "inventory.yaml"
        path.write_text(
            f"defaults: {{profiles: [{spec}], renew_at: 50%}}\n"
            "endpoints:\n"
            "  - {host: a.example.com, ip: 127.0.0.1}\n"
            "  - {host: a.example.com, ip: '2001:db8::1', renew_at: 10d}\n"
            "  - {host: late.example.com, ip: 127.0.0.5, renew_at: 75%}\n"
            "  - {host: old.example.com, ip: 127.0.0.4}\n"
            "  - {host: down.example.com, ip: 127.0.0.6}\n"
            "files:\n"
            "  - {path: /certs/plain.pem}\n"
            + ("metrics: {per_cert: true}\n" if per_cert else ""),
            encoding="utf-8")
        return path


def fill(url: str, tmp: Path) -> Fleet:
    fleet = Fleet(tmp)
    with Database(url) as db:
        db.record_many(fleet.items())
        with db.engine.begin() as conn:
            # One newest observation as an older version stored it: its whole report on
            # the row, no document (also what a distributed stale-deployment rewrite does).
            newest = conn.execute(select(func.max(ObservationRow.id))).scalar_one()
            row = conn.execute(select(ObservationRow.document_id, ObservationRow.evaluated_at,
                                      ObservationRow.days_left)
                               .where(ObservationRow.id == newest)).one()
            body = conn.execute(select(ReportDocumentRow.body).where(
                ReportDocumentRow.id == row.document_id)).scalar_one()
            whole = {**body, "evaluated_at": row.evaluated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "days_left": row.days_left}
            conn.execute(update(ObservationRow).where(ObservationRow.id == newest)
                         .values(report=whole, document_id=None))
            # And one document without its summary (read from its body instead).
            some = conn.execute(select(func.min(ReportSeriesRow.document_id))).scalar_one()
            conn.execute(delete(ReportSeriesRow).where(ReportSeriesRow.document_id == some))
    return fleet


def both(db: Database, inventory: Any = None) -> tuple[bytes, bytes]:
    return render_stored(db, inventory), render_stored_plain(db, inventory)


def test_the_fast_render_is_the_plain_render(url: str, tmp_path: Path) -> None:
    fleet = fill(url, tmp_path)
    assert metrics._shapes() is not None  # this prometheus-client: the fast path is used
    with Database(url) as db:
        fast, plain = both(db)
        assert fast == plain
        text = fast.decode()
        # The fleet has what it is meant to have.
        assert f'profile="odd {ESCAPED}"' in text
        assert f'address="10.0.0.{ESCAPED}"' in text
        assert 'target="[2001:db8::7]:8443"' in text
        assert 'address="2001:db8::1"' in text
        assert 'severity=' in text and 'chainwatch_findings{' in text
        assert f'target="file:/certs/{ESCAPED}.pem"' in text
        assert 'target="file:/certs/' in text
        assert text.count('chainwatch_target_status{address="127.0.0.1",'
                          'target="a.example.com:443"}') == 1  # duplicates: the first only
        for per_cert in (False, True):
            inventory = load_inventory(fleet.inventory(tmp_path, per_cert=per_cert))
            fast, plain = both(db, inventory)
            assert fast == plain
            assert (b"chainwatch_cert_not_after_timestamp_seconds{" in fast) is per_cert
            assert b"mismatch.example.com" not in fast  # not in the inventory


def test_the_fast_render_is_the_plain_render_page_by_page(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Written a few addresses a page, the fleet's pages meet every way a page is
    written (one template per family, one leaf line each, templates of other fields)."""
    fleet = fill(url, tmp_path)
    assert metrics._shapes() is not None  # the fast path is used
    with Database(url) as db:
        for page in (1, 2, 3, 5):
            monkeypatch.setattr(metrics, "_PAGE", page)
            fast, plain = both(db)
            assert fast == plain
            inventory = load_inventory(fleet.inventory(tmp_path, per_cert=True))
            fast, plain = both(db, inventory)
            assert fast == plain


def test_a_stale_summary_would_show(tmp_path: Path) -> None:
    """Negative control: the comparison sees a summary that disagrees with its document."""
    url = f"sqlite:///{tmp_path / 'fleet.sqlite'}"
    fill(url, tmp_path)
    with Database(url) as db:
        with db.engine.begin() as conn:
            for doc_id, text in conn.execute(select(ReportSeriesRow.document_id,
                                                    ReportSeriesRow.series)).all():
                data = json.loads(text)
                data["p"] = [[spec, not trusted, at_] for spec, trusted, at_ in data["p"]]
                conn.execute(update(ReportSeriesRow)
                             .where(ReportSeriesRow.document_id == doc_id)
                             .values(series=json.dumps(data)))
        fast, plain = both(db)
        assert fast != plain


def test_a_summary_is_written_once_per_document(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.sqlite'}"
    fleet = Fleet(tmp_path)
    # Trusting profiles only: a broken one breaks "now", which changes the document.
    fleet.profiles = fleet.profiles[:2]
    target = Target("a.example.com", 443, ip="127.0.0.1")
    with Database(url) as db:
        for minute in range(3):  # a steady target: one document, one summary
            db.record(*fleet.observation(target, "ok", NOW + dt.timedelta(minutes=minute)))
        db.record(*fleet.observation(target, "late", NOW + dt.timedelta(minutes=5)))
        with db.engine.connect() as conn:
            rows = conn.execute(select(ReportDocumentRow.body, ReportSeriesRow.series).join(
                ReportSeriesRow, ReportSeriesRow.document_id == ReportDocumentRow.id)).all()
        assert len(rows) == 2
        for body, text in rows:
            assert text == series_of(body)
            assert read_series(text) == summarize(body)
        # Retention takes the summaries with their documents.
        db.prune(dt.timedelta(0), now=NOW + dt.timedelta(days=1))
        with db.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(ReportSeriesRow)) \
                .scalar_one() == 1
            assert conn.execute(select(func.count()).select_from(ReportDocumentRow)) \
                .scalar_one() == 1


def test_a_summary_reads_as_the_document(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    _, report = fleet.observation(Target("old.example.com", 443), "expired", NOW)
    doc = report_json(report)
    s = read_series(series_of(doc))
    assert s == summarize(doc)
    assert [trusted for _, trusted, _ in s.profiles] == [False, False, False]
    assert all(at_ is None for _, _, at_ in s.profiles)  # broken: at the evaluation
    assert s.findings and all(n >= 1 for _, n in s.findings)
    assert len(s.not_after) == 2
    assert summarize({"profiles": ["junk", {"profile": None, "trusted": "yes"}],
                      "findings": [3], "chain": [{"not_after": "not a date"}]}) \
        == read_series(series_of({"profiles": [{"profile": None, "trusted": "yes"}]}))


def test_upgrade_from_0008_fills_the_summaries(url: str, tmp_path: Path) -> None:
    """A database made by revision 0008 (documents, no summaries) upgrades: every
    document gets its summary, and the fast render still equals the plain one."""
    fill(url, tmp_path)
    with Database(url) as db:
        with db.engine.connect() as conn:
            command.downgrade(storage_db._config(conn), "0008")
            conn.commit()
        assert storage_db.current_revision(db.engine) == "0008"
    with Database(url) as db:  # opening migrates to head: 0009 fills report_series
        assert storage_db.current_revision(db.engine) == storage_db.head_revision()
        with db.engine.connect() as conn:
            docs = conn.execute(select(ReportDocumentRow.id, ReportDocumentRow.body)).all()
            series = dict(conn.execute(select(ReportSeriesRow.document_id,
                                              ReportSeriesRow.series)).all())
        assert docs and {i for i, _ in docs} == set(series)
        assert all(series[i] == series_of(body) for i, body in docs)
        fast, plain = both(db)
        assert fast == plain
