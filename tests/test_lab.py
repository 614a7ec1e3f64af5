"""The incident lab: it serves every scenario on loopback as declared, writes a valid
inventory with its trust bundles, lets tests swap what an endpoint serves (renewals,
hierarchy changes, one address of two), and ``chainwatch lab`` runs until SIGTERM."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chainwatch.config.inventory import load_inventory
from chainwatch.model import Status, Target, sha256_hex
from chainwatch.model.times import parse_instant
from chainwatch.probe import Observation
from chainwatch.probe.handshake import Limits
from chainwatch.probe.parallel import probe_all
from chainwatch.service.observe import report_for
from chainwatch.testing.lab import Lab, LabError
from chainwatch.testing.lab.core import second_address_of
from chainwatch.testing.lab.servers import ServerLoop, SniRouter, server_context, tls_handler

from .pki import PKI
from .servers import der_of

Cli = Callable[..., tuple[int, str, str]]
LIMITS = Limits(timeout=5, retry_delay=0.05)
SCENARIOS = [
    "healthy", "crates-expired", "expiring-5d", "expiring-20d", "hourfleet", "dst-cross-sign",
    "addtrust-cross-sign", "hellosign-www", "hellosign-app", "logdna-missing-intermediate",
    "wrong-host", "self-signed", "incomplete-chain", "sha1", "rsa1024", "smtp-starttls",
    "stale",
]


def can_bind(address: str) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((address, 0))
    except OSError:
        return False
    return True


SECOND = can_bind("127.0.0.2")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab") / "chainwatch-lab", port_base=0) as running:
        yield running


@pytest.fixture
def fresh_lab(tmp_path: Path) -> Iterator[Lab]:
    """A lab of its own, for tests that change what it serves."""
    with Lab(tmp_path / "lab", port_base=0) as running:
        yield running


def observe(lab: Lab, name: str, ip: str | None = None) -> Observation:
    ep = lab.endpoint(name, ip=ip)
    target = Target(host=ep.sni, port=ep.port, ip=ep.ip, sni=ep.sni, starttls=ep.starttls)
    [observation] = probe_all([target], limits=LIMITS)
    assert observation.ok, observation.message
    return observation


def leaf_sha(observation: Observation) -> str:
    return sha256_hex(observation.chain[0])


def check_json(cli: Cli, lab: Lab, name: str, ip: str | None = None
               ) -> tuple[int, dict[str, Any]]:
    args = lab.endpoint(name, ip=ip).check_args(lab.profile_specs())
    code, out, err = cli(*args, "--timeout", "5", "--format", "json")
    assert err == ""
    return code, json.loads(out)


# -- the files -------------------------------------------------------------------------------


def test_every_scenario_is_served_and_named_in_a_valid_inventory(lab: Lab) -> None:
    names = [e.name for e in lab.endpoints]
    assert list(dict.fromkeys(names)) == SCENARIOS
    inv = load_inventory(lab.inventory_path)
    assert len(inv.endpoints) == len(lab.endpoints) == len(SCENARIOS) + (1 if SECOND else 0)
    for entry, ep in zip(inv.endpoints, lab.endpoints, strict=True):
        assert (entry.host, entry.port, entry.ip, entry.starttls) == (
            ep.sni, ep.port, ep.ip, ep.starttls)
        assert ipaddress.ip_address(entry.ip).is_loopback
        assert tuple(p.spec for p in entry.profiles) == ep.profiles
    assert set(inv.profiles) == {"lab", "legacy-clients", "backend", "old-devices"}
    backend = inv.profiles["backend"].store.anchors
    lab_roots = inv.profiles["lab"].store.anchors
    assert len(backend) == 1 and backend[0] in lab_roots
    for name in ("inventory.yaml", "README.txt", "trust/lab-roots.pem", "trust/backend.pem",
                 "trust/old-devices.pem", "bundles/hourfleet.pem"):
        assert (lab.directory / name).is_file(), name
    readme = (lab.directory / "README.txt").read_text()
    assert f"chainwatch scan {lab.inventory_path}" in readme
    assert "chainwatch check 127.0.0.1:" in readme


def test_every_endpoint_reports_what_the_lab_declares(lab: Lab) -> None:
    """The whole inventory, probed and judged with each endpoint's own profiles."""
    inv = load_inventory(lab.inventory_path)
    observations = probe_all([e.target for e in inv.endpoints], limits=LIMITS)
    now = dt.datetime.now(dt.UTC)
    for entry, ep, observation in zip(inv.endpoints, lab.endpoints, observations, strict=True):
        report = report_for(observation, entry.profiles, at=now, host=entry.sni or entry.host,
                            warn_days=entry.warn_days, crit_days=entry.crit_days)
        found = {f.code.value for f in report.findings}
        assert (ep.name, report.status) == (ep.name, ep.status), found
        assert ep.codes <= found, (ep.name, found)


# -- chainwatch check against the lab ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "exit_code", "code", "profile"),
    [
        ("healthy", 0, None, None),
        ("crates-expired", 2, "LEAF_EXPIRED", None),
        ("expiring-5d", 2, "EXPIRES_SOON", None),
        ("expiring-20d", 1, "EXPIRES_SOON", None),
        ("hourfleet", 2, "UNTRUSTED", "backend.pem"),
        ("dst-cross-sign", 2, "PROFILE_BREAKS", "legacy:file:"),
        ("addtrust-cross-sign", 2, "UNTRUSTED", "legacy:file:"),
        ("logdna-missing-intermediate", 2, "CHAIN_INCOMPLETE", None),
        ("wrong-host", 2, "HOSTNAME_MISMATCH", None),
        ("self-signed", 2, "SELF_SIGNED_LEAF", None),
        ("incomplete-chain", 2, "CHAIN_INCOMPLETE", None),
        ("sha1", 2, "WEAK_SIGNATURE", None),
        ("rsa1024", 2, "WEAK_KEY", None),
        ("smtp-starttls", 0, None, None),
    ],
)
def test_check_finds_each_scenario(
    lab: Lab, cli: Cli, name: str, exit_code: int, code: str | None, profile: str | None
) -> None:
    status, doc = check_json(cli, lab, name)
    assert status == exit_code, doc["findings"]
    assert doc["status"] == lab.endpoint(name).status.value
    if code is None:
        assert doc["findings"] == []
        return
    hits = [f for f in doc["findings"] if f["code"] == code]
    assert hits, doc["findings"]
    if profile is not None:
        assert any(profile in (f["profile"] or "") for f in hits), hits


def test_check_dst_breaks_for_legacy_clients_when_the_old_root_expires(
    lab: Lab, cli: Cli
) -> None:
    _, doc = check_json(cli, lab, "dst-cross-sign")
    by_profile = {p["profile"]: p for p in doc["profiles"]}
    legacy = next(p for spec, p in by_profile.items() if spec.startswith("legacy:"))
    modern = by_profile[lab.profile_specs()["lab"]]
    assert legacy["trusted"] and modern["trusted"]
    assert legacy["breaks_at"] == doc["breaks_at"]
    assert modern["breaks_at"] > legacy["breaks_at"]  # X1 carries modern clients on
    # The old root expires 3 days after the lab was built: whole days left, counted from
    # the check's own instant (a check a second later has 2 days and 23:59:59 left).
    assert lab.world is not None
    breaks = lab.world.roots["dst-old"].cert.not_after + dt.timedelta(seconds=1)
    assert parse_instant(legacy["breaks_at"]) == breaks  # the first second it is invalid
    left = breaks - parse_instant(doc["evaluated_at"])
    assert doc["days_left"] == left.days and left.days in (2, 3)


def test_hellosign_www_and_app_get_different_certificates_on_one_port(
    lab: Lab, cli: Cli
) -> None:
    www, app = lab.endpoint("hellosign-www"), lab.endpoint("hellosign-app")
    assert www.port == app.port
    www_code, www_doc = check_json(cli, lab, "hellosign-www")
    app_code, app_doc = check_json(cli, lab, "hellosign-app")
    assert (www_code, app_code) == (0, 2)
    assert www_doc["chain"][0]["sha256"] != app_doc["chain"][0]["sha256"]
    assert www_doc["chain"][0]["issuer"] != app_doc["chain"][0]["issuer"]


@pytest.mark.skipif(not SECOND, reason="127.0.0.2 cannot be bound on this system")
def test_stale_serves_one_name_on_two_addresses_with_different_certificates(
    lab: Lab, cli: Cli
) -> None:
    first, second = lab.endpoint("stale", ip="127.0.0.1"), lab.endpoint("stale", ip="127.0.0.2")
    assert (first.sni, first.port) == (second.sni, second.port)
    assert leaf_sha(observe(lab, "stale", "127.0.0.1")) != leaf_sha(
        observe(lab, "stale", "127.0.0.2"))
    assert check_json(cli, lab, "stale", "127.0.0.2")[0] == 1


# -- changing what the lab serves -------------------------------------------------------------


def test_renewal_installed_is_served_to_new_connections(fresh_lab: Lab, cli: Cli) -> None:
    before = observe(fresh_lab, "crates-expired")
    assert check_json(cli, fresh_lab, "crates-expired")[0] == 2
    renewed = fresh_lab.renew("crates-expired")
    after = observe(fresh_lab, "crates-expired")
    assert leaf_sha(after) != leaf_sha(before)
    assert after.chain == tuple(der_of(c) for c in renewed.chain)
    assert fresh_lab.served("crates-expired") == renewed.chain
    code, doc = check_json(cli, fresh_lab, "crates-expired")
    assert (code, doc["findings"]) == (0, [])


def test_replace_certificate_serves_any_chain_in_the_order_given(fresh_lab: Lab) -> None:
    world = fresh_lab.world
    assert world is not None
    ca = world.issuers["lab"]
    leaf = ca.leaf("healthy.lab.test")
    chain = leaf.chain(world.roots["lab"], ca)  # wrong order, root included: as given
    fresh_lab.replace_certificate("healthy", chain, leaf.key)
    assert observe(fresh_lab, "healthy").chain == tuple(der_of(c) for c in chain)


def test_replace_certificate_on_one_name_of_a_shared_port_leaves_the_other(
    fresh_lab: Lab,
) -> None:
    www_before = leaf_sha(observe(fresh_lab, "hellosign-www"))
    fresh_lab.renew("hellosign-app")
    assert leaf_sha(observe(fresh_lab, "hellosign-www")) == www_before


@pytest.mark.skipif(not SECOND, reason="127.0.0.2 cannot be bound on this system")
def test_addresses_of_one_name_are_replaced_independently(fresh_lab: Lab) -> None:
    first = leaf_sha(observe(fresh_lab, "stale", "127.0.0.1"))
    renewed = fresh_lab.renew("stale", ip="127.0.0.2")
    assert leaf_sha(observe(fresh_lab, "stale", "127.0.0.1")) == first
    assert observe(fresh_lab, "stale", "127.0.0.2").chain[0] == der_of(renewed.chain[0])
    both = fresh_lab.renew("stale")
    for ip in ("127.0.0.1", "127.0.0.2"):
        assert observe(fresh_lab, "stale", ip).chain[0] == der_of(both.chain[0])


def test_swap_hierarchy_serves_a_chain_from_another_ca(fresh_lab: Lab, cli: Cli) -> None:
    before = observe(fresh_lab, "healthy")
    swapped = fresh_lab.swap_hierarchy("healthy")
    after = observe(fresh_lab, "healthy")
    assert swapped.hierarchy == "alt"
    assert after.chain == tuple(der_of(c) for c in swapped.chain)
    assert before.chain[1] != after.chain[1]  # another issuing CA
    # Still publicly trusted, but not by the devices whose store predates the new CA.
    code, doc = check_json(cli, fresh_lab, "healthy")
    trusted = {p["profile"]: p["trusted"] for p in doc["profiles"]}
    specs = fresh_lab.profile_specs()
    assert trusted == {specs["lab"]: True, specs["legacy-clients"]: True,
                       specs["old-devices"]: False}
    assert code == 2
    assert fresh_lab.swap_hierarchy("healthy").hierarchy == "lab"


def test_unknown_endpoint_is_a_key_error_naming_the_endpoints(fresh_lab: Lab) -> None:
    with pytest.raises(KeyError, match="crates-expired"):
        fresh_lab.renew("no-such-endpoint")


# -- start-up rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["192.0.2.1", "0.0.0.0", "localhost", "::"])
def test_the_lab_listens_only_on_loopback(address: str, tmp_path: Path) -> None:
    with pytest.raises(LabError, match="loopback"):
        Lab(tmp_path, listen=address)


def test_a_port_in_use_is_a_clear_error_and_nothing_is_left_listening(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        lab = Lab(tmp_path, port_base=port)
        with pytest.raises(LabError, match=f"127.0.0.1:{port}.*--port-base"):
            lab.start()
        assert not lab.running


def test_without_a_second_address_the_stale_copy_is_left_out(tmp_path: Path) -> None:
    with Lab(tmp_path, port_base=0, second_address=None) as lab:
        assert [e.ip for e in lab.endpoints if e.name == "stale"] == ["127.0.0.1"]
        assert len(load_inventory(lab.inventory_path).endpoints) == len(SCENARIOS)


def test_second_address_is_the_next_ipv4_loopback_address() -> None:
    assert second_address_of("127.0.0.1") == "127.0.0.2"
    assert second_address_of("127.255.255.255") is None
    assert second_address_of("::1") is None


def test_sni_router_serves_the_default_for_unknown_names(tmp_path: Path) -> None:
    pki = PKI()
    ca = pki.root("Router Root").intermediate("Router CA")
    a, b = ca.leaf("a.lab.test"), ca.leaf("b.lab.test")
    router = SniRouter(server_context(a.chain(ca), a.key),
                       {"b.lab.test": server_context(b.chain(ca), b.key)})
    with ServerLoop() as loop:
        ep = loop.serve(tls_handler(router))
        targets = [ep.target(host=n, sni=n) for n in ("a.lab.test", "b.lab.test", "c.lab.test")]
        got = [o.chain[0] for o in probe_all(targets, limits=LIMITS)]
    assert got == [der_of(a.cert), der_of(b.cert), der_of(a.cert)]


# -- the command --------------------------------------------------------------------------------


def test_cli_rejects_a_non_loopback_listen_address(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("lab", "--listen", "192.0.2.1", "--dir", tmp_path)
    assert code == 3
    assert "loopback" in err


def _lines(stream: Any, sink: queue.Queue[str | None]) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def test_chainwatch_lab_serves_until_sigterm(tmp_path: Path) -> None:
    directory = tmp_path / "cli-lab"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from chainwatch.cli import main; main()",
         "lab", "--port-base", "0", "--dir", str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    out: list[str] = []
    try:
        deadline = time.monotonic() + 60
        for _ in range(10_000):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                break
            out.append(line)
            if line.startswith("Serving until"):
                break
        text = "".join(out)
        assert "Serving until Ctrl-C or SIGTERM" in text, text + proc.stderr.read()
        assert f"chainwatch scan {directory / 'inventory.yaml'}" in text
        assert "chainwatch check 127.0.0.1:" in text
        assert load_inventory(directory / "inventory.yaml").endpoints
        # It really serves: the healthy endpoint's address comes from the printed table.
        match = re.search(r"^  healthy\s+(127\.0\.0\.1):(\d+)\s", text, re.MULTILINE)
        assert match is not None, text
        target = Target(host="healthy.lab.test", port=int(match.group(2)), ip=match.group(1))
        assert probe_all([target], limits=LIMITS)[0].ok
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        for _ in range(100):  # the rest of stdout, up to the end marker
            line = lines.get(timeout=10)
            if line is None:
                break
            out.append(line)
        assert "chainwatch lab: stopping" in "".join(out)
        with socket.socket() as s:  # the port is closed again
            assert s.connect_ex(("127.0.0.1", int(match.group(2)))) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_the_lab_is_dated_from_now(lab: Lab) -> None:
    world = lab.world
    assert world is not None
    assert abs(world.now - dt.datetime.now(dt.UTC)) < dt.timedelta(days=1)
    assert lab.endpoint("crates-expired").status is Status.CRITICAL


def test_lab_serve_runs_the_monitor_on_the_lab(tmp_path: Path) -> None:
    """`make run`: the lab and `chainwatch serve` in one process, first sweep shown."""
    exe = Path(sys.executable).with_name("chainwatch")
    proc = subprocess.run(
        [str(exe), "lab", "--serve", "--no-web", "--dir", str(tmp_path / "lab"), "--port-base", "0",
         "--db", f"sqlite:///{tmp_path / 'lab.sqlite'}", "--max-batches", "1"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "CHAINWATCH CRITICAL" in proc.stdout  # the first sweep's summary line
    assert "STALE_DEPLOYMENT" in proc.stdout
    assert "chainwatch lab: stopping" in proc.stdout
    assert (tmp_path / "lab.sqlite").exists()
