"""Prometheus: ``/metrics`` from a database a real ``chainwatch scan`` of the incident lab
filled, ``chainwatch exporter`` as a real process, the shipped rules and dashboard, all
checked by the real tools (Debian's ``prometheus`` and ``promtool``).

The lab's netPark endpoint is the case Prometheus users miss: its leaf is fine for 80
days, but clients that build legacy paths go through a cross-sign whose root (not
presented) expires in 3 days. ``probe_ssl_earliest_cert_expiry`` says 80 days, the
earliest presented certificate; chainwatch says ``profile="legacy:..."`` breaks in 3 days,
and the modern profile at the leaf.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from chainwatch.config.exporter import parse_exporter_config
from chainwatch.config.inventory import load_inventory, parse_inventory
from chainwatch.model.names import StartTLS
from chainwatch.service.cycle import scan
from chainwatch.service.exporter import Exporter, ProbeRequestError, parse_target
from chainwatch.service.metrics import exposition
from chainwatch.storage import db as storage_db
from chainwatch.storage.alerts_repo import AlertsRepo, OutboxRow, OutboxStatus
from chainwatch.storage.metrics_repo import MetricsRepo
from chainwatch.storage.repo import Database
from chainwatch.testing.lab import Lab

from .prometheus import (
    MetricsListener,
    PrometheusServer,
    exporter_process,
    promtool,
    scrape_job,
)
from .services import free_port

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "docs" / "prometheus" / "rules.yml"
RULES_TEST = ROOT / "tests" / "prometheus" / "rules_test.yml"
DASHBOARD = ROOT / "docs" / "grafana" / "chainwatch.json"
CLI = [str(Path(sys.executable).with_name("chainwatch"))]
NETPARK = "dst-cross-sign"

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(body: bytes) -> tuple[Samples, dict[str, str]]:
    """Samples by sample name, and each family's type."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(body.decode()):
        types[family.name] = family.type
        for s in family.samples:
            samples.setdefault(s.name, []).append((dict(s.labels), s.value))
    return samples, types


def only(samples: Samples, name: str, **labels: str) -> float:
    found = [v for lab, v in samples.get(name, []) if all(lab.get(k) == x
                                                          for k, x in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def lab_inventory(lab: Lab, path: Path, *, per_cert: bool = True,
                  extra: list[dict[str, Any]] | None = None) -> Path:
    """The lab's endpoints, judged with profile specs (so that labels read
    ``legacy:file:...``), its file channel for alerts, ``metrics: {per_cert: ...}``."""
    specs = lab.profile_specs()
    endpoints: list[dict[str, Any]] = []
    for e in lab.endpoints:
        entry = e.inventory_entry()
        entry["profiles"] = [specs[p] for p in e.profiles]
        endpoints.append(entry)
    doc: dict[str, Any] = {
        "defaults": {"warn_days": 30, "crit_days": 7, "timeout": "5s"},
        "fetch": {"allow_private": ["127.0.0.0/8"]},
        "endpoints": endpoints + (extra or []),
        "alerts": {"channels": {"log": {"type": "file", "path": str(path.parent / "sent.jsonl")}},
                   "steps": [{"days": 30, "action": "ticket"}, {"days": 7, "action": "page"}]},
    }
    if per_cert:
        doc["metrics"] = {"per_cert": True}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("promlab") / "lab", port_base=0) as running:
        yield running


@pytest.fixture(scope="module")
def scanned(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(inventory, SQLite file) after one real ``chainwatch scan`` process."""
    directory = tmp_path_factory.mktemp("promscan")
    closed = free_port()  # nothing listens there: a refused probe
    inventory = lab_inventory(lab, directory / "inventory.yaml", extra=[
        {"host": "refused.lab.test", "ip": "127.0.0.1", "port": closed}])
    database = directory / "chainwatch.sqlite"
    done = subprocess.run([*CLI, "scan", str(inventory), "--db", str(database),
                           "--format", "json"], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 3, done.stderr  # unknown: the refused endpoint
    return inventory, database


@pytest.fixture(scope="module")
def body(scanned: tuple[Path, Path]) -> bytes:
    inventory, database = scanned
    with Database(str(database)) as db:
        text, content_type = exposition(db, load_inventory(inventory))
    assert content_type.startswith("text/plain; version=0.0.4")
    return text


def netpark_target(lab: Lab) -> str:
    e = lab.endpoint(NETPARK)
    return f"{e.sni}:{e.port}"


# -- /metrics from the stored state ---------------------------------------------------------


def test_netpark_legacy_profile_breaks_before_the_leaf(lab: Lab, body: bytes) -> None:
    samples, types = parse(body)
    target = netpark_target(lab)
    served = lab.served(NETPARK)
    legacy = [(labels, v) for labels, v in samples["chainwatch_breaks_at_timestamp_seconds"]
              if labels["target"] == target and labels["profile"].startswith("legacy:")]
    modern = [(labels, v) for labels, v in samples["chainwatch_breaks_at_timestamp_seconds"]
              if labels["target"] == target and labels["profile"] == lab.profile_specs()["lab"]]
    assert len(legacy) == 1 and len(modern) == 1
    leaf_expiry = only(samples, "chainwatch_cert_not_after_timestamp_seconds", target=target,
                       position="0")
    assert leaf_expiry == served[0].not_after.timestamp()
    assert legacy[0][1] < leaf_expiry  # the cross-sign's root expires first
    assert modern[0][1] == leaf_expiry + 1  # modern clients go on to the leaf's expiry
    assert only(samples, "chainwatch_target_breaks_at_timestamp_seconds",
                target=target) == legacy[0][1]
    assert only(samples, "chainwatch_profile_trusted", target=target,
                profile=legacy[0][0]["profile"]) == 1
    assert only(samples, "chainwatch_findings", target=target, code="PROFILE_BREAKS",
                severity="warning") >= 1
    assert types["chainwatch_breaks_at_timestamp_seconds"] == "gauge"


def test_series_of_each_scenario(lab: Lab, body: bytes) -> None:
    samples, types = parse(body)
    healthy = lab.endpoint("healthy")
    crates = lab.endpoint("crates-expired")
    h = f"{healthy.sni}:{healthy.port}"
    c = f"{crates.sni}:{crates.port}"
    assert only(samples, "chainwatch_target_status", target=h, address="127.0.0.1") == 0
    assert only(samples, "chainwatch_target_status", target=c) == 2
    assert only(samples, "chainwatch_findings", target=c, code="LEAF_EXPIRED",
                severity="critical") == 1
    [profile] = [lab_ for lab_, _ in samples["chainwatch_profile_trusted"]
                 if lab_["target"] == c]
    assert only(samples, "chainwatch_profile_trusted", **profile) == 0
    leaf = lab.served("healthy")[0]
    info = [lab_ for lab_, v in samples["chainwatch_leaf_info"] if lab_["target"] == h]
    assert info == [{"target": h, "address": "127.0.0.1", "sha256": leaf.sha256,
                     "serial": format(leaf.parsed.serial_number, "x"), "issuer": leaf.issuer,
                     "subject": leaf.subject}]
    renew = only(samples, "chainwatch_renew_at_timestamp_seconds", target=h)
    assert leaf.not_before.timestamp() < renew < leaf.not_after.timestamp()
    assert only(samples, "chainwatch_renewal_overdue", target=h) == 0
    # Only _info series carry fingerprints, serials or names.
    for name, rows in samples.items():
        if name != "chainwatch_leaf_info":
            assert all(not {"sha256", "serial", "subject", "issuer"} & set(lab_)
                       for lab_, _ in rows), name
    assert {types[n] for n in ("chainwatch_target_status", "chainwatch_findings",
                               "chainwatch_leaf_info")} == {"gauge"}


def test_monitor_series_come_from_the_database(scanned: tuple[Path, Path], body: bytes) -> None:
    """The scan process is gone: everything below was read back from the file, by a
    process that never scanned (as ``chainwatch web`` would)."""
    samples, types = parse(body)
    inventory, database = scanned
    with Database(str(database)) as db:
        beat = db.last_beat("scan")
    assert beat is not None
    assert only(samples, "chainwatch_last_scan_timestamp_seconds") == beat.last_beat.timestamp()
    assert types["chainwatch_scan_duration_seconds"] == "histogram"
    assert only(samples, "chainwatch_scan_duration_seconds_count") == 1
    assert only(samples, "chainwatch_scan_duration_seconds_bucket", le="+Inf") == 1
    assert only(samples, "chainwatch_scan_duration_seconds_sum") > 0
    assert types["chainwatch_probe_failures"] == "counter"
    assert only(samples, "chainwatch_probe_failures_total", reason="refused") == 1
    assert types["chainwatch_deliveries"] == "counter"
    sent = (inventory.parent / "sent.jsonl").read_text().splitlines()
    assert sent and only(samples, "chainwatch_deliveries_total", channel="log",
                         result="delivered") == len(sent)
    assert only(samples, "chainwatch_deliveries_total", channel="log", result="failed") == 0
    assert only(samples, "chainwatch_outbox_pending") == 0
    opened = {labels["action"]: v for labels, v in samples["chainwatch_alerts_open"]}
    assert opened.get("page", 0) >= 1  # the lab's broken endpoints page
    assert only(samples, "chainwatch_watchdog_firing") == 0

    # Another process, reading only: the same answer, byte for byte.
    code = ("import sys\nfrom chainwatch.config.inventory import load_inventory\n"
            "from chainwatch.service.metrics import exposition\n"
            "from chainwatch.storage.repo import Database\n"
            "with Database(sys.argv[1]) as db:\n"
            "    sys.stdout.buffer.write(exposition(db, load_inventory(sys.argv[2]))[0])\n")
    other = subprocess.run([sys.executable, "-c", code, str(database), str(inventory)],
                           capture_output=True, timeout=120, check=True)
    assert other.stdout == body


def test_promtool_check_metrics_passes(body: bytes) -> None:
    done = promtool("check", "metrics", stdin=body.decode())
    assert done.returncode == 0, done.stdout + done.stderr


def test_per_cert_series_are_opt_in(lab: Lab, scanned: tuple[Path, Path]) -> None:
    inventory, database = scanned
    plain = lab_inventory(lab, inventory.parent / "plain.yaml", per_cert=False)
    with Database(str(database)) as db:
        without, _ = parse(exposition(db, load_inventory(plain))[0])
        unfiltered, _ = parse(exposition(db)[0])
    assert "chainwatch_cert_not_after_timestamp_seconds" not in without
    assert "chainwatch_cert_not_after_timestamp_seconds" not in unfiltered
    assert without["chainwatch_breaks_at_timestamp_seconds"]


def test_an_inventory_limits_the_targets_shown(lab: Lab, scanned: tuple[Path, Path]) -> None:
    inventory, database = scanned
    healthy = lab.endpoint("healthy")
    one = parse_inventory(yaml.safe_dump({"endpoints": [
        {"host": healthy.sni, "ip": healthy.ip, "port": healthy.port}]}),
        path=inventory.parent / "one.yaml")
    with Database(str(database)) as db:
        samples, _ = parse(exposition(db, one)[0])
        everything, _ = parse(exposition(db)[0])
    assert {lab_["target"] for lab_, _ in samples["chainwatch_target_status"]} == {
        f"{healthy.sni}:{healthy.port}"}
    assert len({lab_["target"] for lab_, _ in everything["chainwatch_target_status"]}) > 10


def test_labels_stay_the_same_across_a_renewal(tmp_path: Path) -> None:
    with Lab(tmp_path / "lab", port_base=0) as lab, Database(str(tmp_path / "db.sqlite")) as db:
        inventory = load_inventory(lab_inventory(lab, tmp_path / "inventory.yaml"))
        healthy = [e for e in inventory.endpoints if e.host == lab.endpoint("healthy").sni]
        scan(inventory, db, endpoints=healthy, sweep=False)
        before, _ = parse(exposition(db, inventory)[0])
        old = lab.served("healthy")[0]
        new = lab.renew("healthy").chain[0]
        scan(inventory, db, endpoints=healthy, sweep=False)
        after, _ = parse(exposition(db, inventory)[0])
    def label_sets(samples: Samples, name: str) -> list[dict[str, str]]:
        return sorted((lab_ for lab_, _ in samples.get(name, [])), key=lambda d: sorted(d.items()))
    for name in before:
        if name == "chainwatch_leaf_info" or name.startswith("chainwatch_scan_duration"):
            continue
        assert label_sets(before, name) == label_sets(after, name), name
    assert [lab_["sha256"] for lab_, _ in before["chainwatch_leaf_info"]] == [old.sha256]
    assert [lab_["sha256"] for lab_, _ in after["chainwatch_leaf_info"]] == [new.sha256]
    assert only(after, "chainwatch_scan_duration_seconds_count") == 2


def test_migration_0003_backfills_serials(tmp_path: Path, lab: Lab) -> None:
    from alembic import command

    url = str(tmp_path / "db.sqlite")
    inventory = load_inventory(lab_inventory(lab, tmp_path / "inventory.yaml"))
    with Database(url) as db:
        scan(inventory, db, endpoints=inventory.endpoints[:3], sweep=False)
        engine = db.engine
        with engine.connect() as conn:
            command.downgrade(storage_db._config(conn), "0002")
            conn.commit()
        assert storage_db.current_revision(engine) == "0002"
    with Database(url) as db:  # opening migrates to head: serials read from the DER again
        samples, _ = parse(exposition(db, inventory)[0])
        assert storage_db.current_revision(db.engine) == storage_db.head_revision()
    serials = {lab_["serial"] for lab_, _ in samples["chainwatch_leaf_info"]}
    assert serials and all(re.fullmatch(r"[0-9a-f]+", s) for s in serials)


# -- the exporter ---------------------------------------------------------------------------


def exporter_config(lab: Lab, path: Path, extra: str = "") -> Path:
    specs = lab.profile_specs()
    e = lab.endpoint(NETPARK)
    path.write_text(
        "profiles:\n"
        f"  lab-roots: {{trust: [{json.dumps(specs['lab'])}]}}\n"
        "modules:\n"
        f"  netpark: {{profiles: [lab-roots, {json.dumps(specs['legacy-clients'])}], "
        f"sni: {e.sni}, timeout: 5s}}\n"
        f"  lab: {{profiles: [lab-roots], timeout: 5s}}\n" + extra,
        encoding="utf-8")
    return path


def test_exporter_answers_blackbox_and_chainwatch_series(lab: Lab, tmp_path: Path) -> None:
    config = exporter_config(lab, tmp_path / "exporter.yaml")
    e = lab.endpoint(NETPARK)
    served = lab.served(NETPARK)
    with exporter_process(CLI, config) as address:
        answer = httpx.get(f"http://{address}/probe",
                           params={"target": f"{e.ip}:{e.port}", "module": "netpark"},
                           headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples, types = parse(answer.content)
        bad = httpx.get(f"http://{address}/probe", params={"target": "https://x/",
                                                            "module": "lab"}, timeout=10)
        unknown = httpx.get(f"http://{address}/probe",
                            params={"target": f"{e.ip}:{e.port}", "module": "nope"}, timeout=10)
    assert only(samples, "probe_success") == 1  # legacy clients still work: 3 days left
    earliest = only(samples, "probe_ssl_earliest_cert_expiry")
    assert earliest == min(c.not_after.timestamp() for c in served)
    assert earliest == served[0].not_after.timestamp()  # the expiring root is not presented
    assert only(samples, "probe_ssl_last_chain_expiry_timestamp_seconds") == (
        served[0].not_after.timestamp())
    assert [lab_ for lab_, _ in samples["probe_tls_version_info"]] == [{"version": "TLS 1.3"}]
    target = f"{e.ip}:{e.port}"
    legacy = [v for lab_, v in samples["chainwatch_breaks_at_timestamp_seconds"]
              if lab_["profile"].startswith("legacy:") and lab_["target"] == target]
    assert legacy and legacy[0] < earliest  # what blackbox's series cannot say
    assert only(samples, "chainwatch_cert_not_after_timestamp_seconds", position="0") == (
        served[0].not_after.timestamp())
    assert types["probe_success"] == "gauge"
    assert bad.status_code == 400 and bad.text.count("\n") == 1 and "HOST:PORT" in bad.text
    assert unknown.status_code == 400 and "unknown module 'nope'" in unknown.text
    done = promtool("check", "metrics", stdin=answer.text)
    assert done.returncode == 0, done.stdout + done.stderr


def test_exporter_refuses_malformed_requests(lab: Lab, tmp_path: Path) -> None:
    exporter = Exporter(parse_exporter_config(
        exporter_config(lab, tmp_path / "e.yaml", "allow: [10.0.0.0/8]\n").read_text(),
        path=tmp_path / "e.yaml"))
    module = exporter.module("lab")
    assert parse_target("[::1]:8443", module) == ("::1", 8443)
    assert parse_target("Example.COM", module) == ("example.com", 443)
    for target, why in [("", "missing"), ("a b:1", "not a URL"), ("host:99999", "port"),
                        ("[::1", "IPV6"), ("http://x", "not a URL")]:
        with pytest.raises(ProbeRequestError, match=why) as caught:
            exporter.probe(target, "lab")
        assert caught.value.status == 400
    with pytest.raises(ProbeRequestError, match="Scrape-Timeout") as caught:
        exporter.probe("127.0.0.1:443", "lab", "soon")
    assert caught.value.status == 400
    with pytest.raises(ProbeRequestError, match="not in the exporter's allow list") as caught:
        exporter.probe(f"127.0.0.1:{lab.endpoint('healthy').port}", "lab")
    assert caught.value.status == 403
    smtp = parse_exporter_config("modules: {mail: {starttls: smtp}}\n",
                                 path=tmp_path / "m.yaml").modules["mail"]
    assert smtp.starttls is StartTLS.SMTP
    assert parse_target("mail.example", smtp) == ("mail.example", 25)


def test_the_scrape_timeout_caps_the_probe(tmp_path: Path) -> None:
    """A server that accepts and never answers: the module allows 60 s per phase, the
    scrape 1 s; the answer is a timed-out probe, not a hung scrape."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        exporter = Exporter(parse_exporter_config("modules: {slow: {timeout: 60s}}\n",
                                                  path=tmp_path / "e.yaml"))
        found = exporter.probe(f"127.0.0.1:{port}", "slow", "1")
    [report] = found.reports
    assert [f.code.value for f in report.findings] == ["PROBE_FAILED"]
    assert "timeout" in report.findings[0].message


@pytest.mark.parametrize(("text", "message"), [
    ("modules: {a: {profiles: [nope]}}\n", r"e\.yaml:1: modules\.a\.profiles\[0\]: unknown "
                                           r"profile 'nope'"),
    ("modules:\n  a: {timeout: soon}\n", r"e\.yaml:2: modules\.a\.timeout: must be a duration"),
    ("allow: [not-a-net]\n", r"e\.yaml:1: allow\[0\]: 'not-a-net' is not an IP network"),
    ("modules: {a: {startls: smtp}}\n", r"e\.yaml:1: modules\.a\.startls: unknown key"),
    ("concurrency: 0\n", r"e\.yaml:1: concurrency: must be 1-1024"),
])
def test_a_bad_exporter_config_is_one_line_and_exit_3(
    tmp_path: Path, cli: Callable[..., tuple[int, str, str]], text: str, message: str,
) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(text, encoding="utf-8")
    code, _, err = cli("exporter", "--config", str(path), "--listen", "127.0.0.1:0")
    assert code == 3
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chainwatch: error: "), err
    assert re.search(message, lines[0]), lines[0]


def test_exporter_listen_must_be_an_address(cli: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = cli("exporter", "--listen", "localhost")
    assert code == 3 and "expected IP:PORT" in err


# -- rules, dashboard, and a real Prometheus ------------------------------------------------


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    tested = promtool("test", "rules", str(RULES_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_rule_tests_use_series_chainwatch_exposes(body: bytes) -> None:
    samples, _ = parse(body)
    exposed = set(samples)
    used = set(re.findall(r"\b(chainwatch_[a-z_]+)", RULES_TEST.read_text()))
    used |= set(re.findall(r"\b(chainwatch_[a-z_]+)", RULES.read_text()))
    assert used and used <= exposed, used - exposed


def dashboard_queries() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    names = {v["name"] for v in doc["templating"]["list"]}
    assert {"warn_days", "crit_days", "target"} <= names
    out = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            out.append(target["expr"].replace("$target", ".*").replace("$warn_days", "30")
                       .replace("$crit_days", "7").replace("$__rate_interval", "1m"))
    return out


def test_prometheus_scrapes_metrics_and_the_exporter(
    lab: Lab, scanned: tuple[Path, Path], tmp_path: Path,
) -> None:
    inventory, database = scanned
    config = exporter_config(lab, tmp_path / "exporter.yaml")
    e = lab.endpoint(NETPARK)
    healthy = lab.endpoint("healthy")
    with Database(str(database)) as db, MetricsListener(db, load_inventory(inventory)) as web, \
            exporter_process(CLI, config) as exporter:
        jobs = [
            scrape_job("chainwatch", web.address),
            scrape_job("chainwatch-exporter", exporter, path="/probe",
                       params={"module": ["netpark"]}, interval="2s",
                       relabel_targets=[f"{e.ip}:{e.port}"]),
        ]
        with PrometheusServer.start(tmp_path / "prometheus", jobs, [RULES]) as prom:
            prom.wait_for_targets_up(2)
            earlier = (
                'chainwatch_breaks_at_timestamp_seconds{profile=~"legacy:.*"} '
                '< on (job, target, address) group_left '
                'chainwatch_cert_not_after_timestamp_seconds{position="0"}'
            )
            found = prom.wait_for(earlier, minimum=2)
            by_job = {(s["metric"]["job"], s["metric"]["target"]) for s in found}
            assert ("chainwatch", netpark_target(lab)) in by_job
            assert ("chainwatch-exporter", f"{e.ip}:{e.port}") in by_job
            assert all(s["metric"]["profile"].startswith("legacy:") for s in found)
            assert not any(t == f"{healthy.sni}:{healthy.port}" for _, t in by_job)
            blackbox = prom.wait_for('probe_ssl_earliest_cert_expiry{job="chainwatch-exporter"}')
            assert float(blackbox[0]["value"][1]) == min(
                c.not_after.timestamp() for c in lab.served(NETPARK))
            # Every dashboard query and every rule is valid PromQL for this Prometheus.
            for promql in dashboard_queries():
                prom.query(promql)
            groups = prom.client.get("/api/v1/rules").json()["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            assert len(rules) == 10
            prom.wait_for('ALERTS{alertname="ChainwatchUntrusted"}')
            assert all(r["health"] != "err" for r in
                       (r for g in prom.client.get("/api/v1/rules").json()["data"]["groups"]
                        for r in g["rules"])), rules


def test_the_same_series_from_postgresql(lab: Lab, tmp_path: Path, pg_url: str) -> None:
    inventory = load_inventory(lab_inventory(lab, tmp_path / "inventory.yaml"))
    chosen = [e for e in inventory.endpoints
              if e.host in {lab.endpoint(n).sni for n in (NETPARK, "healthy", "crates-expired")}]
    sqlite_url = str(tmp_path / "db.sqlite")
    bodies = []
    for url in (pg_url, sqlite_url):
        with Database(url) as db:
            scan(inventory, db, endpoints=chosen, sweep=False)
            scan(inventory, db, endpoints=chosen, sweep=False)
            bodies.append(parse(exposition(db, inventory)[0])[0])
    on_pg, on_sqlite = bodies
    for name in ("chainwatch_leaf_info", "chainwatch_findings", "chainwatch_target_status",
                 "chainwatch_cert_not_after_timestamp_seconds"):
        assert sorted(map(str, on_pg[name])) == sorted(map(str, on_sqlite[name])), name
    # (an untrusted profile's breaks_at is its scan's instant: labels only)
    name = "chainwatch_breaks_at_timestamp_seconds"
    assert sorted(str(lab_) for lab_, _ in on_pg[name]) == sorted(
        str(lab_) for lab_, _ in on_sqlite[name])
    assert only(on_pg, "chainwatch_scan_duration_seconds_count") == 2
    assert len({lab_["target"] for lab_, _ in on_pg["chainwatch_target_status"]}) == 3


def test_probes_beyond_the_concurrency_wait_then_give_up(tmp_path: Path) -> None:
    exporter = Exporter(parse_exporter_config("concurrency: 1\n", path=tmp_path / "e.yaml"))
    assert exporter._slots.acquire(timeout=1)  # one probe in flight, holding the only slot
    try:
        with pytest.raises(ProbeRequestError, match="1 probes in flight") as caught:
            exporter.probe("127.0.0.1:443", None, "0.5")
        assert caught.value.status == 503
    finally:
        exporter._slots.release()


def test_a_thread_probes_on_one_loop_of_its_own_closed_when_the_thread_ends() -> None:
    """The exporter's worker threads keep an event loop each for all their probes (none
    made per request), and a thread that ends leaves no loop (nor its descriptors) behind."""
    import asyncio
    import gc
    import threading
    import time

    from chainwatch.service.exporter import run_here

    async def running() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    seen: list[asyncio.AbstractEventLoop] = []

    def worker() -> None:
        seen.extend(run_here(running()) for _ in range(3))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(seen) == 6
    first, second = seen[:3], seen[3:]
    assert len(set(map(id, first))) == 1 and len(set(map(id, second))) == 1
    assert first[0] is not second[0]
    for _ in range(100):  # a thread's locals go when it is gone: at most a moment later
        gc.collect()
        if all(loop.is_closed() for loop in seen):
            break
        time.sleep(0.01)
    assert all(loop.is_closed() for loop in seen)


def test_a_cached_render_is_redone_when_the_alert_tables_change(
    lab: Lab, scanned: tuple[Path, Path], tmp_path: Path,
) -> None:
    """Nothing is observed, only an outbox row is delivered and a counter grows: the
    fingerprint changes and so does the answer."""
    _, database = scanned
    copy = tmp_path / "copy.sqlite"
    shutil.copy(database, copy)
    with Database(str(copy)) as db:
        first, _ = exposition(db)
        assert exposition(db)[0] is first  # unchanged: the same render answered again
        repo = AlertsRepo(db)
        [row, *_] = repo.outbox(status=OutboxStatus.DELIVERED)
        with db._write() as conn:
            conn.execute(update(OutboxRow).where(OutboxRow.id == row.id)
                         .values(status=OutboxStatus.PENDING.value))
        pending, _ = parse(exposition(db)[0])
        assert only(pending, "chainwatch_outbox_pending") == 1
        MetricsRepo(db).add({("probe_failures_total", "reason=timeout"): 2.0})
        counted, _ = parse(exposition(db)[0])
        assert only(counted, "chainwatch_probe_failures_total", reason="timeout") == 2


def test_an_allowed_target_is_probed_at_its_checked_address(lab: Lab, tmp_path: Path) -> None:
    healthy = lab.endpoint("healthy")
    config = exporter_config(lab, tmp_path / "e.yaml", "allow: [127.0.0.0/8]\n")
    exporter = Exporter(parse_exporter_config(config.read_text(), path=config))
    found = exporter.probe(f"{healthy.ip}:{healthy.port}", "lab")
    [observation] = found.observations
    assert observation.ok and observation.target.ip == healthy.ip
    refused = Exporter(parse_exporter_config(
        config.read_text().replace("127.0.0.0/8", "127.0.0.2/32"), path=config))
    with pytest.raises(ProbeRequestError, match=r"127\.0\.0\.1 not in the exporter's allow list"):
        refused.probe(f"{healthy.ip}:{healthy.port}", "lab")


def test_zone_series_from_batches_and_worker_beats(tmp_path: Path) -> None:
    """Distributed mode's zones, from stored rows: a finished batch and a new worker beat
    each change the exposition (the render cache sees batches too)."""
    import datetime as dt

    from chainwatch.storage.batches import BatchesRepo, worker_component

    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    with Database(f"sqlite:///{tmp_path / 'zones.sqlite'}") as db:
        repo = BatchesRepo(db)
        repo.dispatched("b1", zone="dc-east", queue="chainwatch.dc-east", slot="s1", targets=3,
                        at=now)
        repo.dispatched("b2", zone="dc-west", queue="chainwatch.dc-west", slot="s1", targets=2,
                        at=now)
        db.beat(worker_component("dc-east", "east-1"), at=now)
        samples, _ = parse(exposition(db)[0])
        assert only(samples, "chainwatch_zone_queue_depth", zone="dc-east") == 1
        assert only(samples, "chainwatch_zone_oldest_pending_timestamp_seconds",
                    zone="dc-west") == now.timestamp()
        assert only(samples, "chainwatch_zone_last_worker_beat_timestamp_seconds",
                    zone="dc-east") == now.timestamp()
        assert not [s for s in samples.get("chainwatch_zone_last_worker_beat_timestamp_seconds",
                                           []) if s[0].get("zone") == "dc-west"]
        repo.done("b1", worker="east-1", observations=3, status="ok",
                  at=now + dt.timedelta(seconds=5))
        samples, _ = parse(exposition(db)[0])
        assert only(samples, "chainwatch_zone_queue_depth", zone="dc-east") == 0
        assert only(samples, "chainwatch_zone_last_result_timestamp_seconds",
                    zone="dc-east") == (now + dt.timedelta(seconds=5)).timestamp()
        done = promtool("check", "metrics", stdin=exposition(db)[0].decode())
        assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_scrapes_a_real_serve(lab: Lab, tmp_path: Path) -> None:
    """``serve``'s own listener answers ``/metrics`` beside the dashboard, and a real
    Prometheus scraping it sees netPark's legacy profile break before the leaf."""
    import os
    import signal
    import time

    inventory = lab_inventory(lab, tmp_path / "inventory.yaml")
    port = free_port()
    address = f"127.0.0.1:{port}"
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [*CLI, "serve", str(inventory), "--db", str(tmp_path / "serve.sqlite"),
             "--listen", address], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env={**os.environ}, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        body = b""
        while b"chainwatch_breaks_at_timestamp_seconds{" not in body:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            try:
                answer = httpx.get(f"http://{address}/metrics", timeout=10)
                body = answer.content if answer.status_code == 200 else b""
            except httpx.HTTPError:
                body = b""
            time.sleep(0.25)
        samples, _ = parse(body)
        target = netpark_target(lab)
        legacy = [v for labels, v in samples["chainwatch_breaks_at_timestamp_seconds"]
                  if labels["target"] == target and labels["profile"].startswith("legacy:")]
        leaf = [v for labels, v in samples["chainwatch_cert_not_after_timestamp_seconds"]
                if labels["target"] == target and labels["position"] == "0"]
        assert legacy and leaf and max(legacy) < min(leaf)
        with PrometheusServer.start(tmp_path / "prometheus",
                                    [scrape_job("chainwatch-serve", address)], [RULES]) as prom:
            prom.wait_for_targets_up(1)
            found = prom.wait_for(
                'chainwatch_breaks_at_timestamp_seconds{profile=~"legacy:.*"} '
                '< on (job, target, address) group_left '
                'chainwatch_cert_not_after_timestamp_seconds{position="0"}')
            assert target in {s["metric"]["target"] for s in found}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
