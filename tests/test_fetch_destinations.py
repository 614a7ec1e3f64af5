"""Where certificate-driven fetches may go: public destinations only, unless allowed.

A served certificate names the caIssuers, OCSP and CRL URLs chainwatch fetches, and an
ACME answer names the renewalInfo URL: without a check, any endpoint could make
chainwatch send requests to its loopback, its private networks or a cloud metadata
service. Each hop is resolved first and refused, before any connection, when it points at
a non-public address outside ``allow_private``; the connection then goes to the checked
address, never to a second resolution. The loopback listeners here count connections:
a refusal must leave them at zero."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from chainwatch.probe.http import (
    FetchCache,
    Fetched,
    Fetcher,
    FetchFailure,
    FetchKind,
    FetchLimits,
    Resolver,
    allow_networks,
)

from . import servers as srv
from .pki import PKI, pem_of
from .servers import Handler, ServerLoop
from .test_revocation import aia, crl_dp

GUARD = 30.0
LOOPBACK = allow_networks(["127.0.0.0/8"])


@pytest.fixture
def lab() -> Iterator[ServerLoop]:
    with ServerLoop() as servers:
        yield servers


# -- tiny HTTP servers ---------------------------------------------------------------------


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
    """The request line and headers (the body, if any, is read and dropped)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    size = int(headers.get("content-length", "0") or 0)
    if size:
        await reader.readexactly(min(size, 1 << 20))
    return lines[0], headers


def answer(body: bytes = b"ok", status: str = "200 OK",
           headers: Sequence[tuple[str, str]] = (), seen: list[dict[str, str]] | None = None,
           ) -> Handler:
    """Answers every request with ``body`` (and records its headers in ``seen``)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, got = await read_request(reader)
        if seen is not None:
            seen.append(got)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}"
                     "Connection: close\r\n\r\n".encode() + body)
        await writer.drain()

    return handle


def redirect(location: str | Callable[[], str]) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        where = location() if callable(location) else location
        writer.write(f"HTTP/1.1 302 Found\r\nLocation: {where}\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()

    return handle


def fetch(url: str, *, limits: FetchLimits | None = None, kind: FetchKind = FetchKind.CERT,
          post: bytes | None = None, resolver: Resolver | None = None,
          transport: httpx.AsyncBaseTransport | None = None) -> Fetched:
    async def go() -> Fetched:
        async with asyncio.timeout(GUARD), Fetcher(
            limits or FetchLimits(timeout=2), cache=FetchCache(), resolver=resolver,
            transport=transport,
        ) as fetcher:
            if post is not None:
                return await fetcher.post(url, post, kind)
            return await fetcher.get(url, kind)

    return asyncio.run(go())


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


# -- refusals ------------------------------------------------------------------------------


def test_every_form_of_a_loopback_address_is_refused_without_a_connection(
    lab: ServerLoop,
) -> None:
    ep = lab.serve(answer())
    port = ep.port
    forms = [
        f"http://127.0.0.1:{port}/r3.cer",
        f"http://2130706433:{port}/r3.cer",  # decimal
        f"http://0x7f000001:{port}/r3.cer",  # hexadecimal
        f"http://0x7f.1:{port}/r3.cer",
        f"http://127.1:{port}/r3.cer",  # short form
        f"http://127.0.0.1.:{port}/r3.cer",  # trailing dot
        f"http://[::ffff:127.0.0.1]:{port}/r3.cer",  # IPv4-mapped IPv6
        f"http://localhost:{port}/r3.cer",  # a name that resolves to loopback
    ]
    for url in forms:
        got = fetch(url)
        assert got.failure is FetchFailure.PRIVATE, (url, got)
        assert got.message.startswith(f"{url}: points at a private address (")
        assert "loopback); not fetched" in got.message, got.message
    ocsp = fetch(f"http://127.0.0.1:{port}/ocsp", kind=FetchKind.OCSP, post=b"\x30\x00")
    assert ocsp.failure is FetchFailure.PRIVATE
    assert ep.connections == 0


def test_ipv6_loopback_is_refused_without_a_connection(lab: ServerLoop) -> None:
    if not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    ep = lab.serve(answer(), host="::1")
    got = fetch(f"http://[::1]:{ep.port}/r3.cer")
    assert got.failure is FetchFailure.PRIVATE
    assert "(::1, loopback); not fetched" in got.message
    assert ep.connections == 0


@pytest.mark.parametrize(("url", "address"), [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, link-local"),
    ("http://2852039166/latest/meta-data/", "169.254.169.254, link-local"),
    ("http://0xA9FEA9FE/latest/meta-data/", "169.254.169.254, link-local"),
    ("http://0xa9.0xfe.0xa9.0xfe/", "169.254.169.254, link-local"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254"),
    ("http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe, link-local"),
    ("http://100.100.100.200/latest/meta-data/", "100.100.100.200, non-public"),
    ("http://10.1.2.3/ca.crl", "10.1.2.3"),
    ("http://192.168.1.1/ca.crl", "192.168.1.1"),
    ("http://172.16.0.1/ca.crl", "172.16.0.1"),
    ("http://[fe80::1]/ca.crl", "fe80::1, link-local"),
    ("http://224.0.0.1/ca.crl", "224.0.0.1, multicast"),
    ("http://0.0.0.0/ca.crl", "0.0.0.0, unspecified"),
    ("https://[::]/ca.crl", "::, unspecified"),
])
def test_metadata_and_private_addresses_are_refused_before_any_request(
    url: str, address: str
) -> None:
    """Refused before anything is sent: the transport here records every request that
    reaches it (it never touches the network), and none does."""
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(599)

    got = fetch(url, transport=httpx.MockTransport(record))
    assert got.failure is FetchFailure.PRIVATE, got
    assert f"points at a private address ({address}); not fetched" in got.message
    assert sent == []


def test_a_public_looking_name_that_resolves_to_a_private_address_is_refused(
    lab: ServerLoop,
) -> None:
    ep = lab.serve(answer())
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    got = fetch(f"http://crl.ca.chainwatch.invalid:{ep.port}/ca.crl", kind=FetchKind.CRL,
                resolver=resolver)
    assert got.failure is FetchFailure.PRIVATE
    assert "(127.0.0.1, loopback); not fetched" in got.message
    assert asked == ["crl.ca.chainwatch.invalid"]
    assert ep.connections == 0


def test_allowed_networks_are_fetched_from_and_the_connection_goes_to_the_checked_address(
    lab: ServerLoop,
) -> None:
    """The name does not resolve anywhere but through this resolver, which is asked once:
    the connection goes to the address it gave and was checked, and the request still
    names the host."""
    seen: list[dict[str, str]] = []
    ep = lab.serve(answer(b"certificate bytes", seen=seen))
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    url = f"http://ca.chainwatch.invalid:{ep.port}/r3.cer"
    got = fetch(url, limits=FetchLimits(timeout=2, allow_private=LOOPBACK), resolver=resolver)
    assert got.ok and got.body == b"certificate bytes"
    assert asked == ["ca.chainwatch.invalid"]
    assert seen[0]["host"] == f"ca.chainwatch.invalid:{ep.port}"
    assert ep.connections == 1


def test_a_name_with_a_public_and_a_private_address_connects_only_to_the_allowed_one(
    lab: ServerLoop,
) -> None:
    """Of the answers, only the allowed address is connected to (127.0.0.2 here, which no
    listener serves, would be refused)."""
    ep = lab.serve(answer(b"fine"))

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.2", "127.0.0.1"]

    limits = FetchLimits(timeout=2, allow_private=allow_networks(["127.0.0.1/32"]))
    got = fetch(f"http://ca.chainwatch.invalid:{ep.port}/r3.cer", limits=limits,
                resolver=resolver)
    assert got.ok and got.body == b"fine"
    assert ep.connections == 1


# -- redirects -----------------------------------------------------------------------------


def test_a_redirect_to_a_private_address_is_refused_at_the_hop(lab: ServerLoop) -> None:
    target = lab.serve(answer(b"secret"), host="127.0.0.2")
    hop = f"http://127.0.0.2:{target.port}/latest/meta-data/"
    start = lab.serve(redirect(hop), host="127.0.0.1")
    url = f"http://127.0.0.1:{start.port}/r3.cer"
    limits = FetchLimits(timeout=2, allow_private=allow_networks(["127.0.0.1/32"]))
    got = fetch(url, limits=limits)
    assert got.failure is FetchFailure.PRIVATE
    assert got.message == (
        f"{url}: redirected to {hop}, which points at a private address (127.0.0.2, "
        "loopback); not fetched (fetch: allow_private lists networks to fetch from)"
    )
    assert start.connections == 1
    assert target.connections == 0


def test_allowed_redirects_are_followed_each_hop_checked_and_bounded(lab: ServerLoop) -> None:
    final = lab.serve(answer(b"the CRL"))
    middle = lab.serve(redirect(f"http://127.0.0.1:{final.port}/ca.crl"))
    start = lab.serve(redirect(f"http://localhost:{middle.port}/moved"))
    limits = FetchLimits(timeout=2, allow_private=LOOPBACK)
    got = fetch(f"http://127.0.0.1:{start.port}/ca.crl", limits=limits, kind=FetchKind.CRL)
    assert got.ok and got.body == b"the CRL"
    assert (start.connections, middle.connections, final.connections) == (1, 1, 1)

    loop_port: list[int] = []
    loop = lab.serve(redirect(lambda: f"http://127.0.0.1:{loop_port[0]}/again"))
    loop_port.append(loop.port)
    endless = fetch(f"http://127.0.0.1:{loop.port}/again", limits=limits)
    assert endless.failure is FetchFailure.OTHER
    assert endless.message.endswith("more than 3 redirects")
    assert loop.connections == 4  # the first request and three redirects, no more

    to_file = lab.serve(redirect("file:///etc/passwd"))
    got = fetch(f"http://127.0.0.1:{to_file.port}/x", limits=limits)
    assert got.failure is FetchFailure.BAD_URL
    assert "redirected to an unsupported URL" in got.message


def test_allow_networks_names_what_is_not_a_network() -> None:
    assert [str(n) for n in allow_networks(["10.0.0.0/8", "fd00::/8", "192.168.1.7"])] == [
        "10.0.0.0/8", "fd00::/8", "192.168.1.7/32"]
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not an IP network"):
        allow_networks(["10.0.0.0/33"])


# -- what people see -----------------------------------------------------------------------


@pytest.fixture
def tls() -> Iterator[ServerLoop]:
    with ServerLoop() as loop:
        yield loop


def test_check_notes_refused_aia_ocsp_and_crl_urls_and_connects_to_none(
    cli: Callable[..., tuple[int, str, str]], lab: ServerLoop, tls: ServerLoop,
    tmp_path: Path,
) -> None:
    """A leaf pointing its caIssuers, OCSP responder and CRL at loopback: ``check --aia``
    and ``check --revocation`` say so in a note and a finding, fetch nothing, and still
    judge the chain; with ``--allow-private`` they do fetch."""
    web = lab.serve(answer(b"not a certificate"))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    pki = PKI(now=now)
    root = pki.root("Refusing Root")
    inter = root.intermediate("Refusing CA")
    base = f"http://127.0.0.1:{web.port}"
    leaf = inter.leaf("www.example.com", extra=[
        aia(ocsp_url=f"{base}/ocsp", ca_issuers=f"{base}/ca.cer"), crl_dp(f"{base}/ca.crl")])
    alone = tls.serve(srv.tls_handler(srv.server_context(leaf.chain(), leaf.key, tmp_path)))
    whole = tls.serve(srv.tls_handler(srv.server_context(leaf.chain(inter), leaf.key,
                                                           tmp_path)))
    trust = tmp_path / "trust.pem"
    trust.write_bytes(pem_of(root.cert))
    common = ("--sni", "www.example.com", "--profile", f"file:{trust}")

    code, out, err = cli("check", whole.hostport, *common, "--revocation", "--format", "json")
    assert (code, err) == (0, "")
    (unknown,) = [f for f in json.loads(out)["findings"] if f["code"] == "REVOCATION_UNKNOWN"]
    for what, path in (("OCSP", "/ocsp"), ("CRL", "/ca.crl")):
        assert (f"{what} {base}{path}: points at a private address (127.0.0.1, loopback); "
                "not fetched") in unknown["message"]

    code, out, err = cli("check", alone.hostport, *common, "--aia")
    assert (code, err) == (2, "")  # the intermediate is missing: critical, not an error
    assert (f"AIA: {base}/ca.cer: points at a private address (127.0.0.1, loopback); not "
            "fetched") in " ".join(out.split())
    assert web.connections == 0

    code, out, _ = cli("check", alone.hostport, *common, "--aia", "--allow-private",
                       "127.0.0.0/8")
    assert f"AIA: {base}/ca.cer: not a certificate" in " ".join(out.split())
    assert web.connections == 1
    code, _, err = cli("check", alone.hostport, *common, "--aia", "--allow-private", "nope")
    assert code == 3
    assert "--allow-private: 'nope' is not an IP network" in err


def test_the_inventorys_fetch_allow_private_opens_only_what_it_lists(
    cli: Callable[..., tuple[int, str, str]], lab: ServerLoop, tls: ServerLoop,
    tmp_path: Path,
) -> None:
    """``scan`` of an endpoint whose leaf points its caIssuers at loopback, judged by a
    profile with ``aia: true``: without ``fetch:`` the URL is a note and nothing connects;
    ``fetch: {allow_private: [127.0.0.0/8]}`` in the inventory lets the fetch through,
    and a list without loopback does not."""
    web = lab.serve(answer(b"not a certificate"))
    pki = PKI(now=dt.datetime.now(dt.UTC).replace(microsecond=0))
    root = pki.root("Inventory Root")
    inter = root.intermediate("Inventory CA")
    url = f"http://127.0.0.1:{web.port}/ca.cer"
    leaf = inter.leaf("www.example.com", extra=[aia(ca_issuers=url)])
    alone = tls.serve(srv.tls_handler(srv.server_context(leaf.chain(), leaf.key, tmp_path)))
    (tmp_path / "trust.pem").write_bytes(pem_of(root.cert))
    refused = f"{url}: points at a private address (127.0.0.1, loopback); not fetched"

    def scan(fetch: str) -> str:
        inv = tmp_path / "inv.yaml"
        inv.write_text(
            fetch + "profiles:\n  corp: {trust: ['file:trust.pem'], aia: true}\n"
            "defaults: {profiles: [corp]}\n"
            f"endpoints: [{{host: www.example.com, port: {alone.port}, ip: 127.0.0.1}}]\n")
        code, out, err = cli("scan", inv, "--db", tmp_path / "cw.sqlite", "--format", "json")
        assert code == 2 and "Traceback" not in err, err  # critical: the chain is incomplete
        return out

    assert refused in scan("")
    assert refused in scan("fetch: {allow_private: [10.0.0.0/8]}\n")
    assert web.connections == 0
    out = scan("fetch: {allow_private: [127.0.0.0/8]}\n")
    assert refused not in out and "not a certificate" in out
    assert web.connections == 1
