"""Per-population handshakes: a population that states its ClientHello is judged on the
chain a real dual-certificate server (nginx with an ECDSA and an RSA certificate, on
loopback) serves that hello."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chainwatch.analysis.populations import analyze_served, hellos_needed
from chainwatch.config import load_inventory
from chainwatch.errors import InventoryError
from chainwatch.model import ClientHello, FindingCode, Profile, Target
from chainwatch.probe.handshake import Limits, probe_endpoint
from chainwatch.probe.parallel import probe_hellos
from chainwatch.stores import file_store

from .pki import CA, PKI, Leaf, pem_of
from .servers import nginx_binary, nginx_server
from .services import free_port, unavailable

Cli = Callable[..., tuple[int, str, str]]
NAME = "dual.lab.test"


class Dual:
    """An ECDSA chain under one root and an RSA chain under another, for one name."""

    def __init__(self) -> None:
        pki = PKI(now=dt.datetime.now(dt.UTC).replace(microsecond=0))
        self.ec_root = pki.root("Dual EC Root")
        self.rsa_root = pki.root("Dual RSA Root", key="rsa2048")
        self.ec_ca = self.ec_root.intermediate("Dual EC Issuing CA")
        self.rsa_ca = self.rsa_root.intermediate("Dual RSA Issuing CA", key="rsa2048")
        self.ec_leaf = self.ec_ca.leaf(NAME)
        self.rsa_leaf = self.rsa_ca.leaf(NAME, key="rsa2048")


@pytest.fixture(scope="module")
def dual() -> Dual:
    return Dual()


@pytest.fixture
def nginx(tmp_path: Path, dual: Dual) -> Iterator[int]:
    binary = nginx_binary()
    if binary is None:
        unavailable("nginx is not installed (Debian: nginx-light)")
    certs = [
        (pem_of(*dual.ec_leaf.chain(dual.ec_ca)), dual.ec_leaf.key_pem()),
        (pem_of(*dual.rsa_leaf.chain(dual.rsa_ca)), dual.rsa_leaf.key_pem()),
    ]
    with nginx_server(binary, tmp_path, free_port(), certs) as port:
        yield port


def leaf_of(der_chain: tuple[bytes, ...], leaf: Leaf) -> bool:
    return der_chain[0] == leaf.cert.der


def test_the_probe_sends_each_population_s_hello(nginx: int, dual: Dual) -> None:
    target = Target(host=NAME, port=nginx, ip="127.0.0.1")
    default = asyncio.run(probe_endpoint(target, limits=Limits(timeout=10)))
    assert default.ok, default.message
    assert default.client_hello is None and default.tls_version == "TLSv1.3"
    assert leaf_of(default.chain, dual.ec_leaf)  # every sigalg offered: nginx prefers ECDSA
    hellos = [ClientHello("TLSv1.2", "rsa"), ClientHello(signature="rsa"),
              ClientHello("TLSv1.2", "ecdsa"), ClientHello(max_version="TLSv1.2")]
    got = probe_hellos([(target, h, Limits(timeout=10)) for h in hellos])
    assert [o.client_hello for o in got] == hellos
    assert all(o.ok for o in got), [o.message for o in got]
    rsa12, rsa13, ec12, any12 = got
    assert leaf_of(rsa12.chain, dual.rsa_leaf) and rsa12.tls_version == "TLSv1.2"
    assert rsa12.cipher is not None and "ECDSA" not in rsa12.cipher
    assert leaf_of(rsa13.chain, dual.rsa_leaf) and rsa13.tls_version == "TLSv1.3"
    assert leaf_of(ec12.chain, dual.ec_leaf) and ec12.tls_version == "TLSv1.2"
    assert any12.tls_version == "TLSv1.2"


def write_inventory(tmp_path: Path, port: int, dual: Dual, *, hello: bool) -> Path:
    (tmp_path / "ec-root.pem").write_bytes(dual.ec_root.pem)
    (tmp_path / "rsa-root.pem").write_bytes(dual.rsa_root.pem)
    hello_line = "    client_hello: {max_version: TLSv1.2, signature: rsa}\n" if hello else ""
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "profiles:\n"
        "  browsers:\n"
        "    trust: [\"file:ec-root.pem\"]\n"
        "  old-devices:\n"
        "    trust: [\"file:rsa-root.pem\"]\n"
        "    building: legacy\n"
        + hello_line +
        "endpoints:\n"
        f"  - {{host: {NAME}, ip: 127.0.0.1, port: {port}, "
        "profiles: [browsers, old-devices]}\n"
    )
    return inventory


def scan(cli: Cli, tmp_path: Path, inventory: Path) -> dict[str, Any]:
    code, out, err = cli("scan", inventory, "--db", f"sqlite:///{tmp_path / 'cw.sqlite'}",
                         "--format", "json")
    assert out, err
    doc = json.loads(out)
    (report,) = doc["reports"]
    report["exit"] = code
    return report  # type: ignore[no-any-return]


def test_rsa_only_population_is_judged_on_the_rsa_chain(cli: Cli, tmp_path: Path,
                                                        nginx: int, dual: Dual) -> None:
    # Without its ClientHello, the RSA-only population is judged on the ECDSA chain the
    # default handshake gets, and wrongly called untrusted.
    blind = scan(cli, tmp_path, write_inventory(tmp_path, nginx, dual, hello=False))
    profiles = {p["profile"]: p for p in blind["profiles"]}
    assert profiles["browsers"]["trusted"] is True
    assert profiles["old-devices"]["trusted"] is False
    assert "handshakes" not in blind and "leaf" not in profiles["browsers"]

    report = scan(cli, tmp_path, write_inventory(tmp_path, nginx, dual, hello=True))
    profiles = {p["profile"]: p for p in report["profiles"]}
    assert profiles["browsers"]["trusted"] is True
    assert profiles["browsers"]["leaf"] == dual.ec_leaf.cert.sha256
    old = profiles["old-devices"]
    assert old["trusted"] is True, old
    assert old["leaf"] == dual.rsa_leaf.cert.sha256
    assert old["path"] == [dual.rsa_leaf.cert.sha256, dual.rsa_ca.cert.sha256,
                           dual.rsa_root.cert.sha256]
    assert report["chain"][0]["sha256"] == dual.ec_leaf.cert.sha256  # the default's chain
    assert report["status"] == "ok" and report["exit"] == 0

    diverges = [f for f in report["findings"] if f["code"] == "CHAIN_DIVERGES"]
    assert len(diverges) == 1
    (finding,) = diverges
    assert finding["severity"] == "info" and finding["cert"] == dual.rsa_leaf.cert.sha256
    assert "TLSv1.2/rsa clients (old-devices)" in finding["message"]
    assert "RSA 2048" in finding["message"] and "EC 256" in finding["message"]

    hs = report["handshakes"]
    assert [h["client_hello"] for h in hs] == [
        None, {"max_version": "TLSv1.2", "signature": "rsa"}]
    assert hs[0]["profiles"] == ["browsers"] and hs[1]["profiles"] == ["old-devices"]
    assert hs[1]["chain"] == [dual.rsa_leaf.cert.sha256, dual.rsa_ca.cert.sha256]
    assert all(h["error"] is None for h in hs)


def test_same_chain_for_every_hello_does_not_diverge(cli: Cli, tmp_path: Path,
                                                     dual: Dual) -> None:
    """A single-certificate server sends the same chain to every hello: no finding."""
    binary = nginx_binary()
    if binary is None:
        unavailable("nginx is not installed (Debian: nginx-light)")
    certs = [(pem_of(*dual.rsa_leaf.chain(dual.rsa_ca)), dual.rsa_leaf.key_pem())]
    with nginx_server(binary, tmp_path, free_port(), certs) as port:
        (tmp_path / "ec-root.pem").write_bytes(dual.ec_root.pem)
        report = scan(cli, tmp_path, write_inventory(tmp_path, port, dual, hello=True))
    assert not [f for f in report["findings"] if f["code"] == "CHAIN_DIVERGES"]
    profiles = {p["profile"]: p for p in report["profiles"]}
    assert profiles["old-devices"]["trusted"] is True
    assert profiles["browsers"]["trusted"] is False  # its root signs nothing served here


def test_a_failed_population_handshake_is_that_population_s_verdict(dual: Dual) -> None:
    """Pure: the ECDSA-only handshake failed (say, the server has no ECDSA certificate);
    the population that needs it is untrusted, the others keep their verdicts."""
    browsers = Profile("browsers", file_store_of(dual.rsa_root))
    ec_only = Profile("ec-only", file_store_of(dual.rsa_root),
                      client_hello=ClientHello(signature="ecdsa"))
    assert hellos_needed([browsers, ec_only, ec_only]) == (ClientHello(signature="ecdsa"),)
    chain = dual.rsa_leaf.chain(dual.rsa_ca)
    report = analyze_served(
        {None: chain, ClientHello(signature="ecdsa"):
            f"{NAME}:443: tls_alert: the server sent a fatal TLS alert handshake_failure (40)"},
        [browsers, ec_only], at=dual_now(dual), host=NAME,
    )
    by_spec = {r.profile: r for r in report.profiles}
    assert by_spec["browsers"].trusted is True
    assert by_spec["ec-only"].trusted is False
    assert by_spec["ec-only"].reason is not None
    assert "ecdsa handshake failed" in by_spec["ec-only"].reason
    assert "handshake_failure" in by_spec["ec-only"].reason
    codes = {(f.code, f.profile) for f in report.findings}
    assert (FindingCode.UNTRUSTED, "ec-only") in codes
    assert report.status.value == "critical"
    assert [h.error is None for h in report.handshakes] == [True, False]


def dual_now(dual: Dual) -> dt.datetime:
    return dual.ec_leaf.cert.not_before + dt.timedelta(days=2)


def file_store_of(ca: CA) -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "root.pem"
        path.write_bytes(ca.pem)
        return file_store(path)


@pytest.mark.parametrize(
    ("hello", "message"),
    [
        ("{max_version: TLSv1.4}", "inv.yaml:4: profiles.old.client_hello.max_version: "
                                   "must be one of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3"),
        ("{signature: dsa}", "inv.yaml:4: profiles.old.client_hello.signature: "
                             "must be one of rsa, ecdsa"),
        ("{cipher: RC4}", "inv.yaml:4: profiles.old.client_hello"),
        ("{}", "inv.yaml:4: profiles.old.client_hello: give max_version and/or signature"),
    ],
)
def test_client_hello_schema_errors(tmp_path: Path, hello: str, message: str) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "profiles:\n  old:\n    trust: [mozilla]\n"
        f"    client_hello: {hello}\n"
        "endpoints: [{host: a.example, profiles: [old]}]\n"
    )
    with pytest.raises(InventoryError) as caught:
        load_inventory(inventory)
    shown = str(caught.value).replace(f"{tmp_path}/", "")
    assert shown.startswith(message), shown


def test_client_hello_in_the_inventory(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "profiles:\n  old:\n    trust: [mozilla]\n"
        "    client_hello: {max_version: tlsv1.2, signature: RSA}\n"
        "endpoints: [{host: a.example, profiles: [old, mozilla]}]\n"
    )
    (endpoint,) = load_inventory(inventory).endpoints
    old, moz = endpoint.profiles
    assert old.client_hello == ClientHello("TLSv1.2", "rsa")
    assert moz.client_hello is None


def test_the_exporter_judges_each_population_on_its_own_handshake(
    tmp_path: Path, nginx: int, dual: Dual,
) -> None:
    """``chainwatch exporter`` probes in its server's worker threads, each on an event loop
    of its own: the extra handshake of a population with a ClientHello is made from there
    too, on every probe the thread makes."""
    import threading

    from chainwatch.config.exporter import parse_exporter_config
    from chainwatch.service.exporter import Exporter

    (tmp_path / "ec-root.pem").write_bytes(dual.ec_root.pem)
    (tmp_path / "rsa-root.pem").write_bytes(dual.rsa_root.pem)
    ec, rsa = (json.dumps(f"file:{tmp_path / name}") for name in ("ec-root.pem", "rsa-root.pem"))
    config = tmp_path / "exporter.yaml"
    config.write_text(
        "profiles:\n"
        f"  browsers: {{trust: [{ec}]}}\n"
        f"  old-devices: {{trust: [{rsa}], "
        "building: legacy, client_hello: {max_version: TLSv1.2, signature: rsa}}\n"
        "modules:\n"
        f"  dual: {{profiles: [browsers, old-devices], sni: {NAME}}}\n")
    exporter = Exporter(parse_exporter_config(config.read_text(), path=config))
    answers = []

    def worker() -> None:
        for _ in range(2):
            answers.append(exporter.probe(f"127.0.0.1:{nginx}", "dual"))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive() and len(answers) == 2
    for answer in answers:
        [report] = answer.reports
        profiles = {p.profile: p for p in report.profiles}
        assert set(profiles) == {"browsers", "old-devices"}
        assert all(p.trusted for p in report.profiles), [p.error for p in report.profiles]
        assert profiles["old-devices"].leaf == dual.rsa_leaf.cert.sha256
        assert report.chain[0].sha256 == dual.ec_leaf.cert.sha256
