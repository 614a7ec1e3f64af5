"""Names as the user writes them: internationalised names under IDNA 2008 (UTS 46,
non-transitional) everywhere a name is converted; server text quoted once; file globs
that meet directories, FIFOs and symbolic-link loops."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chainwatch.analysis.hostname import normalize_dns
from chainwatch.config.inventory import load_inventory
from chainwatch.model import FindingCode, Status, sha256_hex
from chainwatch.model.names import to_ascii
from chainwatch.service.collect import collect
from chainwatch.testing.lab.servers import SniRouter, server_context, tls_handler

from .pki import PKI, pem_of
from .servers import ServerLoop, der_of

Cli = Callable[..., tuple[int, str, str]]
A_LABEL = "xn--strae-oqa.lab.test"


@pytest.fixture
def servers() -> Iterator[ServerLoop]:
    with ServerLoop() as loop:
        yield loop


def test_idna_2008_keeps_sharp_s() -> None:
    assert to_ascii("straße.lab.test") == A_LABEL
    assert to_ascii("STRASSE.lab.test") == "strasse.lab.test"
    assert normalize_dns("straße.lab.test.") == A_LABEL
    with pytest.raises(ValueError, match="not a valid internationalised name"):
        to_ascii("a\u200db.lab.test")  # a joiner where IDNA 2008 does not allow one


def test_an_idn_endpoint_is_probed_and_matched_as_its_a_label(
        servers: ServerLoop, tmp_path: Path, cli: Cli) -> None:
    ca = PKI().root("IDN Root").intermediate("IDN CA")
    assert ca.issuer is not None
    right = ca.leaf(A_LABEL)
    wrong = ca.leaf("strasse.lab.test")  # what IDNA 2003 would have made of it
    router = SniRouter(server_context(wrong.chain(ca), wrong.key, tmp_path),
                       {A_LABEL: server_context(right.chain(ca), right.key, tmp_path)})
    port = servers.serve(tls_handler(router)).port
    (tmp_path / "trust.pem").write_bytes(pem_of(ca.issuer.cert))
    inv = tmp_path / "inv.yaml"
    inv.write_text("defaults: {profiles: ['file:trust.pem']}\n"
                   f"endpoints: [{{host: straße.lab.test, port: {port}, ip: 127.0.0.1}}]\n",
                   encoding="utf-8")
    (endpoint,) = load_inventory(inv).endpoints
    assert endpoint.host == A_LABEL
    (report,) = collect(load_inventory(inv)).reports
    assert report.status is Status.OK, report.findings
    assert report.chain[0].sha256 == sha256_hex(der_of(right.cert))
    # The same through `check`, name given in its U-label form.
    code, out, _ = cli("check", f"straße.lab.test:{port}", "--ip", "127.0.0.1", "--profile",
                       f"file:{tmp_path / 'trust.pem'}", "--format", "json")
    assert code == 0, out
    assert json.loads(out)["chain"][0]["sha256"] == sha256_hex(der_of(right.cert))
    # strasse.lab.test is a different domain: its certificate does not cover ours.
    router.set(server_context(wrong.chain(ca), wrong.key, tmp_path), A_LABEL)
    (report,) = collect(load_inventory(inv)).reports
    assert FindingCode.HOSTNAME_MISMATCH in {f.code for f in report.findings}


def test_not_tls_text_is_escaped_once(servers: ServerLoop, cli: Cli) -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nServer: nginx/1.22\r\n\r\n")
        await writer.drain()
        writer.close()

    port = servers.serve(http).port
    code, out, _ = cli("check", f"127.0.0.1:{port}", "--format", "json", "--timeout", "5")
    assert code == 3
    message = json.loads(out)["findings"][0]["message"]
    assert r"'HTTP/1.1 400 Bad Request\r\nServer: nginx/" in message
    assert r"\\r" not in message


def test_file_globs_skip_directories_and_do_not_follow_link_loops(tmp_path: Path) -> None:
    ca = PKI().root("Files Root")
    leaf = ca.leaf("files.lab.test")
    certs = tmp_path / "certs"
    (certs / "sub" / "deeper").mkdir(parents=True)
    (certs / "a.pem").write_bytes(pem_of(leaf.cert))
    (certs / "sub" / "deeper" / "b.pem").write_bytes(pem_of(leaf.cert))
    (certs / "dir.pem").mkdir()  # a directory whose name matches the glob
    os.symlink("..", certs / "sub" / "up")  # a loop
    os.symlink("../..", certs / "sub" / "deeper" / "top")  # and another
    (tmp_path / "trust.pem").write_bytes(pem_of(ca.cert))
    inv = tmp_path / "inv.yaml"
    inv.write_text("defaults: {profiles: ['file:trust.pem']}\n"
                   "files: [{path: 'certs/**/*.pem'}, {path: 'certs/*.pem'}]\n")
    inventory = load_inventory(inv)
    assert [p.name for p in inventory.files[0].paths()] == ["a.pem", "b.pem"]
    assert [p.name for p in inventory.files[1].paths()] == ["a.pem"]
    reports = collect(inventory).reports
    assert len(reports) == 3
    assert all(r.status is not Status.UNKNOWN for r in reports), [r.findings for r in reports]


def test_a_huge_host_name_is_not_echoed_whole(tmp_path: Path) -> None:
    from chainwatch.errors import InventoryError

    inv = tmp_path / "inv.yaml"
    inv.write_text("endpoints: [{host: '" + "a_b" * 40_000 + "'}]\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(inv)
    assert len(str(caught.value)) < 400
    assert "(120000 chars)" in str(caught.value)
