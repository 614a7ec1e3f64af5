"""The live probe against real TLS servers on loopback: the chain is captured exactly as
served (bytes and order), over direct TLS and every STARTTLS protocol, TLS 1.2 and 1.3,
IPv4 and IPv6; hostile servers end in the right failure reason, never a hang or a
traceback; batches keep their order and their concurrency bounds."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import multiprocessing
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from chainwatch.errors import ProbeError
from chainwatch.model import Cert, FindingCode, Status, Target
from chainwatch.probe import FailureReason, Observation
from chainwatch.probe import handshake as handshake_module
from chainwatch.probe import parallel as parallel_module
from chainwatch.probe.handshake import Limits, probe_endpoint
from chainwatch.probe.parallel import probe_all, probe_targets
from chainwatch.probe.starttls import PROTOCOLS
from chainwatch.probe.targets import resolve
from chainwatch.service.observe import report_for
from chainwatch.stores import resolve_profile

from . import servers as srv
from .pki import CA, PKI, Leaf, at, pem_of
from .servers import ServerLoop, der_of, server_context

NOW = at("2026-01-15T12:00:00Z")
SHORT = Limits(timeout=2, retry_delay=0.05)
GUARD = 60.0
"""Hang guard for a whole batch (a hang fails the test instead of stalling the suite)."""


@pytest.fixture(scope="module")
def pki() -> dict[str, Any]:
    p = PKI(now=NOW)
    root = p.root("Probe Root")
    inter = root.intermediate("Probe CA")
    leaf = inter.leaf("www.example.com", "localhost", "127.0.0.1", "::1")
    return {"root": root, "inter": inter, "leaf": leaf}


@pytest.fixture
def lab() -> Iterator[ServerLoop]:
    with ServerLoop() as servers:
        yield servers


def probe(target: Target, limits: Limits = SHORT) -> Observation:
    async def go() -> Observation:
        async with asyncio.timeout(GUARD):
            return await probe_endpoint(target, limits=limits)

    return asyncio.run(go())


def ctx_for(pki: dict[str, Any], tmp: Path, *cas: CA, **kw: Any) -> ssl.SSLContext:
    leaf: Leaf = pki["leaf"]
    return server_context(leaf.chain(*cas), leaf.key, tmp, **kw)


def ders(*certs: Cert) -> tuple[bytes, ...]:
    return tuple(der_of(c) for c in certs)


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def assert_one_line_naming(obs: Observation, endpoint: srv.Endpoint) -> None:
    assert obs.message is not None and "\n" not in obs.message
    assert f":{endpoint.port}" in obs.message
    assert obs.failure is not None and f": {obs.failure.value}: " in obs.message


# -- the chain as served ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("maximum", "minimum", "version"),
    [
        (ssl.TLSVersion.TLSv1_2, None, "TLSv1.2"),
        (None, ssl.TLSVersion.TLSv1_3, "TLSv1.3"),
    ],
    ids=["tls1.2-only", "tls1.3-only"],
)
def test_captures_a_misordered_chain_byte_for_byte(
    lab: ServerLoop, pki: dict[str, Any], tmp_path: Path,
    maximum: ssl.TLSVersion | None, minimum: ssl.TLSVersion | None, version: str,
) -> None:
    leaf, inter, root = pki["leaf"], pki["inter"], pki["root"]
    # Deliberately wrong: the root before the intermediate that it issued.
    ctx = ctx_for(pki, tmp_path, root, inter, maximum=maximum, minimum=minimum)
    ep = lab.serve(srv.tls_handler(ctx))
    obs = probe(ep.target(host="www.example.com"))
    assert obs.ok, obs.message
    assert obs.chain == ders(leaf.cert, root.cert, inter.cert)
    assert obs.tls_version == version
    assert obs.cipher
    assert obs.target.ip == "127.0.0.1"
    assert obs.ocsp_staple is None


def test_leaf_only_chain(lab: ServerLoop, pki: dict[str, Any], tmp_path: Path) -> None:
    ep = lab.serve(srv.tls_handler(ctx_for(pki, tmp_path)))
    assert probe(ep.target()).chain == ders(pki["leaf"].cert)


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no ::1")
def test_ipv6_loopback(lab: ServerLoop, pki: dict[str, Any], tmp_path: Path) -> None:
    ep = lab.serve(srv.tls_handler(ctx_for(pki, tmp_path, pki["inter"])), host="::1")
    obs = probe(ep.target(host="www.example.com"))
    assert obs.ok, obs.message
    assert obs.target.ip == "::1"
    assert obs.chain == ders(pki["leaf"].cert, pki["inter"].cert)


def _client_hello_groups(hello: bytes) -> tuple[list[int], list[int]]:
    """(key share groups, supported groups) of a ClientHello record."""
    assert hello[0] == 22 and hello[5] == 1, "not a ClientHello"
    body = hello[9:]
    at = 2 + 32  # legacy_version, random
    at += 1 + body[at]  # session id
    at += 2 + int.from_bytes(body[at:at + 2], "big")  # cipher suites
    at += 1 + body[at]  # compression methods
    end = at + 2 + int.from_bytes(body[at:at + 2], "big")
    at += 2
    shares: list[int] = []
    supported: list[int] = []
    while at < end:
        kind = int.from_bytes(body[at:at + 2], "big")
        size = int.from_bytes(body[at + 2:at + 4], "big")
        data = body[at + 4:at + 4 + size]
        if kind == 10:  # supported_groups
            supported = [int.from_bytes(data[i:i + 2], "big") for i in range(2, len(data), 2)]
        elif kind == 51:  # key_share: (group, key) entries
            i = 2
            while i < len(data):
                shares.append(int.from_bytes(data[i:i + 2], "big"))
                i += 4 + int.from_bytes(data[i + 2:i + 4], "big")
        at += 4 + size
    return shares, supported


def test_one_key_share_offered_every_group_supported(lab: ServerLoop) -> None:
    hellos: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readexactly(5)
        hellos.append(head + await reader.readexactly(int.from_bytes(head[3:5], "big")))
        writer.close()

    ep = lab.serve(record)
    probe(ep.target(host="www.example.com"), Limits(timeout=2, retries=0))
    assert len(hellos) == 1
    shares, supported = _client_hello_groups(hellos[0])
    assert shares == [0x001D]  # X25519 alone: no post-quantum share to generate
    assert {0x001D, 0x0017, 0x0018} <= set(supported)  # X25519, P-256, P-384 all offered


def test_server_without_x25519_gets_another_key_share(
    lab: ServerLoop, pki: dict[str, Any], tmp_path: Path
) -> None:
    ctx = ctx_for(pki, tmp_path, pki["inter"], minimum=ssl.TLSVersion.TLSv1_3)
    ctx.set_ecdh_curve("secp384r1")  # the server's only group: the client must retry
    ep = lab.serve(srv.tls_handler(ctx))
    obs = probe(ep.target(host="www.example.com"))
    assert obs.ok, obs.message
    assert obs.tls_version == "TLSv1.3"
    assert obs.chain == ders(pki["leaf"].cert, pki["inter"].cert)


def test_stapled_ocsp_response_is_recorded(lab: ServerLoop, pki: dict[str, Any]) -> None:
    leaf, inter = pki["leaf"], pki["inter"]
    staple = srv.ocsp_response(leaf.cert, inter)
    ep = lab.serve(srv.pyopenssl_handler(
        srv.pyopenssl_context(leaf.chain(inter), leaf.key, ocsp=staple)
    ))
    obs = probe(ep.target(host="www.example.com"))
    assert obs.ok, obs.message
    assert obs.ocsp_staple == staple
    assert obs.chain == ders(leaf.cert, inter.cert)


def test_sni_is_the_host_or_the_override(
    lab: ServerLoop, pki: dict[str, Any], tmp_path: Path
) -> None:
    seen: list[str | None] = []
    ep = lab.serve(srv.tls_handler(ctx_for(pki, tmp_path, sni=["www.example.com"],
                                           seen_sni=seen)))
    assert probe(ep.target(host="www.example.com")).ok
    assert probe(ep.target(host="127.0.0.1", sni="www.example.com")).ok
    # An IP-literal host sends no SNI at all (RFC 6066 section 3): this server refuses that.
    assert probe(ep.target(host="127.0.0.1")).failure is FailureReason.TLS_ALERT
    assert seen == ["www.example.com", "www.example.com", None]
    # A name the server does not serve: its unrecognized_name alert is named.
    wrong = probe(ep.target(host="other.example.com"))
    assert wrong.failure is FailureReason.TLS_ALERT
    assert wrong.message is not None and "unrecognized_name (112)" in wrong.message
    assert_one_line_naming(wrong, ep)


# -- STARTTLS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_starttls_upgrade_then_chain(
    lab: ServerLoop, pki: dict[str, Any], tmp_path: Path, protocol: str
) -> None:
    leaf, inter, root = pki["leaf"], pki["inter"], pki["root"]
    ctx = ctx_for(pki, tmp_path, inter, root)
    ep = lab.serve(srv.STARTTLS_SERVERS[protocol](ctx))
    obs = probe(ep.target(host="www.example.com", starttls=protocol))
    assert obs.ok, obs.message
    assert obs.chain == ders(leaf.cert, inter.cert, root.cert)
    assert obs.target.starttls == protocol


def test_xmpp_names_the_server_in_the_stream_header(
    lab: ServerLoop, pki: dict[str, Any], tmp_path: Path
) -> None:
    ep = lab.serve(srv.xmpp_handler(ctx_for(pki, tmp_path), expect_to="chat.example.com"))
    assert probe(ep.target(host="127.0.0.1", sni="chat.example.com", starttls="xmpp")).ok
    refused = probe(ep.target(host="other.example.com", starttls="xmpp"))
    assert refused.failure is FailureReason.STARTTLS_REFUSED


@pytest.mark.parametrize(
    ("protocol", "handler", "reason", "words"),
    [
        ("smtp", lambda c: srv.smtp_handler(c, offer=False), "starttls_unsupported", "EHLO"),
        ("smtp", lambda c: srv.smtp_handler(c, answer=454), "starttls_refused", "454"),
        ("imap", lambda c: srv.imap_handler(c, answer="NO"), "starttls_refused", "NO"),
        ("imap", lambda c: srv.imap_handler(c, answer="BAD"), "starttls_unsupported", "BAD"),
        ("ftp", lambda c: srv.ftp_handler(c, answer=534), "starttls_refused", "534"),
        ("ftp", lambda c: srv.ftp_handler(c, answer=502), "starttls_unsupported", "502"),
        ("ldap", lambda c: srv.ldap_handler(c, result_code=52), "starttls_refused", "52"),
        ("ldap", lambda c: srv.ldap_handler(c, result_code=2), "starttls_unsupported", "2"),
        ("xmpp", lambda c: srv.xmpp_handler(c, offer=False), "starttls_unsupported", "starttls"),
        ("postgres", lambda c: srv.postgres_handler(c, answer=b"N"), "starttls_refused", "N"),
    ],
)
def test_starttls_refusals(
    lab: ServerLoop, pki: dict[str, Any], tmp_path: Path,
    protocol: str, handler: Any, reason: str, words: str,
) -> None:
    ep = lab.serve(handler(ctx_for(pki, tmp_path)))
    obs = probe(ep.target(starttls=protocol))
    assert obs.failure == reason, obs.message
    assert obs.message is not None and words in obs.message
    assert_one_line_naming(obs, ep)
    assert ep.connections == 1  # a refusal is an answer: not retried


def test_starttls_against_a_server_speaking_something_else(
    lab: ServerLoop, pki: dict[str, Any], tmp_path: Path
) -> None:
    ep = lab.serve(srv.tls_handler(ctx_for(pki, tmp_path)))  # waits for a ClientHello
    obs = probe(ep.target(starttls="smtp"), Limits(timeout=1))
    assert obs.failure is FailureReason.TIMEOUT
    assert obs.message is not None and "STARTTLS (smtp)" in obs.message
    http = lab.serve(srv.garbage_first)
    obs = probe(http.target(starttls="smtp"))
    assert obs.failure is FailureReason.STARTTLS_REFUSED
    assert obs.message is not None and "does not speak SMTP" in obs.message


def test_starttls_endless_line_is_cut_off(lab: ServerLoop) -> None:
    ep = lab.serve(srv.endless_line)
    obs = probe(ep.target(starttls="pop3"))
    assert obs.failure is FailureReason.TOO_LARGE
    assert obs.message is not None and "line longer than" in obs.message


def test_what_the_kernel_does_not_take_is_sent_when_the_socket_is_writable() -> None:
    # A handshake flight larger than the socket buffer (a peer that is slow to read):
    # the rest waits for writability, in order, and the writer is dropped once sent.
    payload = os.urandom(4 << 20)

    async def go() -> bytes:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            ours.setblocking(False)
            theirs.setblocking(False)
            handshake = handshake_module._Handshake(Target("127.0.0.1", 443, ip="127.0.0.1"), SHORT)
            handshake.sock = ours
            handshake._send(payload)
            assert handshake._unsent and handshake._writing  # the kernel took only part
            loop = asyncio.get_running_loop()
            got = bytearray()
            async with asyncio.timeout(GUARD):
                while len(got) < len(payload):
                    got += await loop.sock_recv(theirs, 1 << 16)
            for _ in range(100):  # bounded: the writer goes once the last bytes are out
                if not handshake._writing:
                    break
                await asyncio.sleep(0.01)
            assert not handshake._unsent and not handshake._writing
            handshake.abandon()
            return bytes(got)

    assert asyncio.run(go()) == payload


def test_unknown_starttls_protocol_is_a_failed_observation() -> None:
    obs = probe(Target("127.0.0.1", 1, ip="127.0.0.1", starttls="gopher"))
    assert obs.failure is FailureReason.OTHER
    assert obs.message is not None and "gopher" in obs.message


# -- hostile and broken servers ----------------------------------------------------------------


def test_refused(lab: ServerLoop) -> None:
    with srv.closed_port() as port:
        obs = probe(Target("127.0.0.1", port, ip="127.0.0.1"))
    assert obs.failure is FailureReason.REFUSED
    assert obs.message == f"127.0.0.1:{port}: refused: connection refused"


def test_silent_server_times_out_in_the_handshake(lab: ServerLoop) -> None:
    ep = lab.serve(srv.silent)
    obs = probe(ep.target(host="www.example.com"), Limits(timeout=1))
    assert obs.failure is FailureReason.TIMEOUT
    assert obs.message is not None and "TLS handshake" in obs.message
    assert_one_line_naming(obs, ep)
    assert "[127.0.0.1]" in obs.message
    assert ep.connections == 1  # a stalled handshake is not retried


def test_hang_up_mid_handshake_is_closed_and_retried_once(lab: ServerLoop) -> None:
    ep = lab.serve(srv.hangs_up_mid_handshake)
    obs = probe(ep.target())
    assert obs.failure is FailureReason.CLOSED
    assert obs.message is not None and "mid-handshake" in obs.message
    assert_one_line_naming(obs, ep)
    assert ep.connections == 2


def test_transient_hang_up_recovers_on_retry(
    lab: ServerLoop, pki: dict[str, Any], tmp_path: Path
) -> None:
    ep = lab.serve(srv.flaky_handler(ctx_for(pki, tmp_path), failures=1))
    obs = probe(ep.target())
    assert obs.ok, obs.message
    assert ep.connections == 2
    once = lab.serve(srv.flaky_handler(ctx_for(pki, tmp_path), failures=1))
    assert probe(once.target(), Limits(timeout=2, retries=0)).failure is FailureReason.CLOSED
    assert once.connections == 1


def test_garbage_is_not_tls(lab: ServerLoop) -> None:
    ep = lab.serve(srv.garbage)
    obs = probe(ep.target())
    assert obs.failure is FailureReason.NOT_TLS
    assert obs.message is not None and "HTTP/1.1 400" in obs.message
    assert_one_line_naming(obs, ep)


def test_raw_alert_is_named(lab: ServerLoop) -> None:
    ep = lab.serve(srv.raw_alert(40))
    obs = probe(ep.target())
    assert obs.failure is FailureReason.TLS_ALERT
    assert obs.message is not None and "handshake_failure (40)" in obs.message
    assert_one_line_naming(obs, ep)


def test_client_certificate_required(
    lab: ServerLoop, pki: dict[str, Any], tmp_path: Path
) -> None:
    """TLS 1.2: the server refuses the handshake with an alert. TLS 1.3: the client's
    handshake completes before the server judges the (absent) client certificate, so the
    chain is seen, which is what a monitor wants."""
    tls12 = lab.serve(srv.tls_handler(ctx_for(
        pki, tmp_path, client_ca=pki["root"].cert, maximum=ssl.TLSVersion.TLSv1_2
    )))
    obs = probe(tls12.target())
    assert obs.failure is FailureReason.TLS_ALERT
    assert obs.message is not None and "handshake_failure" in obs.message
    tls13 = lab.serve(srv.tls_handler(ctx_for(
        pki, tmp_path, client_ca=pki["root"].cert, minimum=ssl.TLSVersion.TLSv1_3
    )))
    assert probe(tls13.target()).chain == ders(pki["leaf"].cert)


def test_no_shared_cipher_alert(lab: ServerLoop, pki: dict[str, Any], tmp_path: Path) -> None:
    # The test certificate is EC: an RSA-authenticated suite cannot be negotiated with it.
    ep = lab.serve(srv.tls_handler(ctx_for(
        pki, tmp_path, maximum=ssl.TLSVersion.TLSv1_2, ciphers="aRSA"
    )))
    obs = probe(ep.target())
    assert obs.failure is FailureReason.TLS_ALERT
    assert obs.message is not None and "handshake_failure" in obs.message


def test_anonymous_suite_has_no_certificate(lab: ServerLoop) -> None:
    ep = lab.serve(srv.tls_handler(srv.anonymous_context()))
    obs = probe(ep.target())
    assert obs.failure is FailureReason.NO_CERTIFICATE
    assert_one_line_naming(obs, ep)


def test_oversized_chain_is_cut_off(lab: ServerLoop, pki: dict[str, Any], tmp_path: Path) -> None:
    big = pki["inter"].leaf(
        "www.example.com",
        extra=[x509.UnrecognizedExtension(
            x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x04\x83\x11\x00\x00" + bytes(0x110000)
        )],
    )
    assert len(der_of(big.cert)) > 1 << 20
    ep = lab.serve(srv.tls_handler(server_context(big.chain(pki["inter"]), big.key, tmp_path)))
    obs = probe(ep.target())
    assert obs.failure is FailureReason.TOO_LARGE
    assert_one_line_naming(obs, ep)


def test_endless_handshake_records_hit_the_byte_limit(lab: ServerLoop) -> None:
    ep = lab.serve(srv.endless_records(3 << 20))
    obs = probe(ep.target())
    assert obs.failure is FailureReason.TOO_LARGE
    assert obs.message is not None and f"more than {1 << 20} bytes" in obs.message
    small = lab.serve(srv.endless_records(64 << 10))
    tight = Limits(timeout=2, max_handshake_bytes=16 << 10)
    assert probe(small.target(), tight).failure is FailureReason.TOO_LARGE


def test_connect_timeout_is_retried() -> None:
    """A listener whose accept queue is full drops further SYNs: the connect times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                s = socket.socket()
                s.setblocking(False)
                fillers.append(s)
                with contextlib.suppress(BlockingIOError):
                    s.connect(("127.0.0.1", port))
            obs = probe(Target("127.0.0.1", port, ip="127.0.0.1"),
                        Limits(timeout=0.5, retry_delay=0))
        finally:
            for s in fillers:
                s.close()
    if obs.failure is not FailureReason.TIMEOUT:
        pytest.skip(f"this kernel accepted the connection anyway ({obs.failure})")
    assert obs.message is not None and "(connect)" in obs.message


@pytest.mark.parametrize("starttls", [None, "smtp"])
def test_unreachable_is_mapped(monkeypatch: pytest.MonkeyPatch, starttls: str | None) -> None:
    class NoRoute(socket.socket):
        def connect_ex(self, address: Any) -> int:
            return errno.ENETUNREACH

    # The socket-level connect, under both the direct and the STARTTLS connection.
    monkeypatch.setattr(socket, "socket", NoRoute)
    obs = probe(Target("www.example.com", 443, ip="127.0.0.1", starttls=starttls))
    assert obs.failure is FailureReason.UNREACHABLE
    assert obs.message == "www.example.com:443 [127.0.0.1]: unreachable: Network is unreachable"


def test_no_socket_to_be_had_is_a_failed_observation(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.socket

    class Exhausted(real):  # type: ignore[misc, valid-type]
        def __init__(self, family: int = -1, *args: Any, **kwargs: Any) -> None:
            if family in (socket.AF_INET, socket.AF_INET6):
                raise OSError(errno.EMFILE, "Too many open files")
            super().__init__(family, *args, **kwargs)

    monkeypatch.setattr(socket, "socket", Exhausted)
    obs = probe(Target("www.example.com", 443, ip="127.0.0.1"))
    assert obs.failure is FailureReason.OTHER
    assert obs.message == "www.example.com:443 [127.0.0.1]: other: no socket: Too many open files"


def test_no_exception_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(handshake_module, "_attempt", broken)
    obs = probe(Target("127.0.0.1", 443, ip="127.0.0.1"))
    assert obs.failure is FailureReason.OTHER
    assert obs.message is not None and "internal error: RuntimeError: boom" in obs.message


def test_cancelling_a_probe_closes_its_socket(lab: ServerLoop) -> None:
    seen = srv.Watch()
    ep = lab.serve(seen.handler)

    async def go() -> None:
        task = asyncio.create_task(probe_endpoint(ep.target(), limits=Limits(timeout=30)))
        for _ in range(500):
            if seen.connected.is_set():
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert seen.connected.is_set()
    assert seen.closed.wait(10), "the probe's socket stayed open after cancellation"


def test_probe_endpoint_needs_an_address() -> None:
    with pytest.raises(ValueError, match=r"target\.ip"):
        probe(Target("www.example.com"))


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Limits(timeout=0)
    with pytest.raises(ValueError, match="retries"):
        Limits(retries=-1)
    limits = Limits(timeout=3, handshake_timeout=7)
    assert (limits.connect, limits.starttls, limits.handshake) == (3, 3, 7)


# -- resolution and batches -----------------------------------------------------------------


def fake_dns(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> None:
    """Answer getaddrinfo from ``table`` (never the real resolver)."""

    async def getaddrinfo(self: object, host: str, port: int, **_: object) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
             (ip, port))
            for ip in table[host]
        ]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)


def test_resolve_every_address(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"dual.test": ["127.0.0.1", "::1", "127.0.0.1"]})
    got = asyncio.run(resolve(Target("dual.test", 8443, sni="x")))
    assert [t.ip for t in got] == ["127.0.0.1", "::1"]
    assert all(t.host == "dual.test" and t.port == 8443 and t.sni == "x" for t in got)


def test_resolve_keeps_literals_and_pinned_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {})
    assert asyncio.run(resolve(Target("::1"))) == [Target("::1", ip="::1")]
    pinned = Target("www.example.com", ip="127.0.0.9")
    assert asyncio.run(resolve(pinned)) == [pinned]


def test_resolve_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {})
    with pytest.raises(ProbeError) as caught:
        asyncio.run(resolve(Target("nowhere.test")))
    assert caught.value.reason == FailureReason.RESOLVE
    assert str(caught.value) == "nowhere.test:443: resolve: Name or service not known"


def test_batch_of_good_and_hostile_endpoints(
    lab: ServerLoop, pki: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"good.test": ["127.0.0.1"]})
    ctx = ctx_for(pki, tmp_path, pki["inter"])
    good = lab.serve(srv.tls_handler(ctx))
    smtp = lab.serve(srv.smtp_handler(ctx))
    refusing = lab.serve(srv.smtp_handler(ctx, answer=454))
    silent = lab.serve(srv.silent)
    junk = lab.serve(srv.garbage)
    alert = lab.serve(srv.raw_alert(112))
    with srv.closed_port() as closed:
        targets = [
            Target("good.test", good.port),
            silent.target(),
            Target("nowhere.test", 443),
            junk.target(),
            smtp.target(starttls="smtp"),
            Target("127.0.0.1", closed),
            alert.target(),
            refusing.target(starttls="smtp"),
            good.target(sni="www.example.com"),
        ]

        async def go() -> list[Observation]:
            async with asyncio.timeout(GUARD):
                return await probe_targets(targets, limits=Limits(timeout=1, retry_delay=0))

        observations = asyncio.run(go())
    assert [o.failure for o in observations] == [
        None,
        FailureReason.TIMEOUT,
        FailureReason.RESOLVE,
        FailureReason.NOT_TLS,
        None,
        FailureReason.REFUSED,
        FailureReason.TLS_ALERT,
        FailureReason.STARTTLS_REFUSED,
        None,
    ]
    assert [o.target.host for o in observations] == [t.host for t in targets]
    assert observations[0].target.ip == "127.0.0.1"
    assert observations[2].target.ip is None
    assert observations[6].message is not None and "unrecognized_name" in observations[6].message
    for obs in observations:
        if obs.ok:
            assert obs.chain == ders(pki["leaf"].cert, pki["inter"].cert)
        else:
            assert obs.message is not None and "\n" not in obs.message


def test_probe_all_keeps_input_order_across_shards(
    lab: ServerLoop, pki: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"two.test": ["127.0.0.1", "127.0.0.2"]})
    ctx = ctx_for(pki, tmp_path)
    one = lab.serve(srv.tls_handler(ctx), host="127.0.0.1")
    two = lab.serve(srv.tls_handler(ctx), host="127.0.0.2")
    with srv.closed_port("127.0.0.3") as closed:
        targets = [
            one.target(), two.target(), Target("127.0.0.3", closed),
            Target("two.test", one.port), one.target(), two.target(),
        ]
        observations = probe_all(targets, workers=2, limits=Limits(timeout=2, retry_delay=0))
    assert [(o.target.ip, o.target.port) for o in observations] == [
        ("127.0.0.1", one.port), ("127.0.0.2", two.port), ("127.0.0.3", closed),
        ("127.0.0.1", one.port), ("127.0.0.2", one.port),  # two.test expands in place
        ("127.0.0.1", one.port), ("127.0.0.2", two.port),
    ]
    assert [o.failure for o in observations] == [
        None, None, FailureReason.REFUSED, None, FailureReason.REFUSED, None, None,
    ]
    assert probe_all([], workers=2) == []


@pytest.mark.parametrize("workers", [1, 3])
def test_concurrency_bounds(monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    """At most ``per_address`` probes per IP and ``concurrency`` overall are in flight."""
    active: dict[str, int] = {}
    peak: dict[str, int] = {}
    total = {"now": 0, "peak": 0}
    lock = threading.Lock()

    async def fake(target: Target, *, limits: Limits | None = None, **_: object) -> Observation:
        assert target.ip is not None
        with lock:
            active[target.ip] = active.get(target.ip, 0) + 1
            peak[target.ip] = max(peak.get(target.ip, 0), active[target.ip])
            total["now"] += 1
            total["peak"] = max(total["peak"], total["now"])
        for _ in range(3):
            await asyncio.sleep(0.005)
        with lock:
            active[target.ip] -= 1
            total["now"] -= 1
        return Observation(target=target, observed_at=NOW)

    monkeypatch.setattr(parallel_module, "probe_endpoint", fake)
    targets = [Target("x", 443, ip=f"127.0.0.{1 + i % 4}") for i in range(40)]
    out = probe_all(targets, concurrency=6, per_address=2, workers=workers)
    assert [o.target for o in out] == targets
    assert max(peak.values()) <= 2
    assert total["peak"] <= 6


def test_probe_all_in_processes_matches_threads(
    lab: ServerLoop, pki: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"two.test": ["127.0.0.1", "127.0.0.2"]})  # resolved here
    ctx = ctx_for(pki, tmp_path, pki["inter"])
    one = lab.serve(srv.tls_handler(ctx), host="127.0.0.1")
    two = lab.serve(srv.tls_handler(ctx), host="127.0.0.2")
    alert = lab.serve(srv.raw_alert(112), host="127.0.0.3")
    with srv.closed_port("127.0.0.4") as closed:
        targets = [
            one.target(), Target("nowhere.test", 443), two.target(),
            Target("127.0.0.4", closed), Target("two.test", one.port), alert.target(),
            one.target(sni="www.example.com"), two.target(),
        ]
        limits = Limits(timeout=2, retry_delay=0)
        threads = probe_all(targets, workers=2, processes=False, limits=limits)
        calls: list[int] = []
        processes = probe_all(
            targets, workers=2, processes=True, limits=limits,
            on_result=lambda i, _: calls.append(i),
        )
    assert sorted(calls) == list(range(len(processes)))
    assert [(o.target, o.failure, o.chain, o.tls_version) for o in processes] == [
        (o.target, o.failure, o.chain, o.tls_version) for o in threads
    ]
    assert [o.failure for o in processes] == [
        None, FailureReason.RESOLVE, None, FailureReason.REFUSED, None, FailureReason.REFUSED,
        FailureReason.TLS_ALERT, None, None,
    ]
    assert processes[0].chain == ders(pki["leaf"].cert, pki["inter"].cert)
    assert multiprocessing.active_children() == []


def test_the_forkserver_preloads_the_chainwatch_modules_already_imported() -> None:
    # A probe process imports the program's main module again: for the chainwatch
    # command, chainwatch.cli, which the forkserver must already hold.
    import chainwatch.cli  # noqa: F401

    preload = parallel_module._preload()
    assert {"chainwatch.probe.parallel", "chainwatch.cli", "chainwatch.model"} <= set(preload)
    assert all(name.startswith("chainwatch.") for name in preload)


def test_an_on_result_error_ends_the_probe_processes(
    lab: ServerLoop, pki: dict[str, Any], tmp_path: Path
) -> None:
    ctx = ctx_for(pki, tmp_path)
    good = lab.serve(srv.tls_handler(ctx), host="127.0.0.1")
    silent = lab.serve(srv.silent, host="127.0.0.2")
    targets = [silent.target(), good.target(), silent.target()]
    pids: list[int] = []

    def explode(index: int, observation: Observation) -> None:
        pids.extend(p.pid for p in multiprocessing.active_children() if p.pid is not None)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        probe_all(targets, workers=2, processes=True, limits=Limits(timeout=30),
                  on_result=explode)  # long before the silent server times out
    assert multiprocessing.active_children() == []
    assert pids
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_shards_get_about_as_many_probes_each() -> None:
    # Four addresses of 250 endpoints: two per shard, whatever their hashes.
    ips = [f"127.0.0.{1 + n % 4}" for n in range(1000)]
    placed = parallel_module._assign_shards(ips, 2)
    load = [sum(1 for ip in ips if placed[ip] == shard) for shard in (0, 1)]
    assert load == [500, 500]
    # Busiest first, each to the least loaded shard; one address never spans shards.
    uneven = ["a"] * 6 + ["b"] * 3 + ["c"] * 3 + ["d"] * 1
    placed = parallel_module._assign_shards(uneven, 2)
    assert placed == {"a": 0, "b": 1, "c": 1, "d": 0}
    assert parallel_module._assign_shards(["x", "y"], 3) == {"x": 0, "y": 1}


def test_small_scans_stay_in_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []

    def record(plan: Any) -> None:
        started.append(len(plan.shard_slots))
        raise RuntimeError("processes started")

    monkeypatch.setattr(parallel_module._Plan, "start", record)
    with srv.closed_port() as closed:
        few = [Target("127.0.0.1", closed)] * 4
        assert [o.failure for o in probe_all(few, workers=2)] == [FailureReason.REFUSED] * 4
        many = [Target("127.0.0.1", closed)] * parallel_module.PROCESS_MIN_ADDRESSES
        assert len(probe_all(many, workers=1)) == len(many)  # one CPU: threads
        with pytest.raises(RuntimeError, match="processes started"):
            probe_all(many, workers=2)
    assert started == [1]


def _probe_from_a_daemon(port: int, out: Any) -> None:
    """Runs in a daemonic process (as in a Celery prefork worker), which may not start
    processes of its own."""
    observations = probe_all([Target("127.0.0.1", port)] * 3, workers=2, processes=True,
                             limits=Limits(timeout=5, retry_delay=0))
    out.put([o.failure for o in observations])


def test_a_daemonic_caller_probes_in_threads() -> None:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    with srv.closed_port() as closed:
        daemon = context.Process(target=_probe_from_a_daemon, args=(closed, results),
                                 daemon=True)
        daemon.start()
        try:
            assert results.get(timeout=60) == [FailureReason.REFUSED] * 3
        finally:
            daemon.join(30)
            if daemon.is_alive():
                daemon.kill()
                daemon.join(10)
    assert daemon.exitcode == 0


# -- observation -> report ---------------------------------------------------------------------


def test_report_for_an_unparsable_certificate(pki: dict[str, Any], tmp_path: Path) -> None:
    target = Target("www.example.com", 443, ip="127.0.0.1")
    obs = Observation(target=target, observed_at=NOW,
                      chain=(der_of(pki["leaf"].cert), b"\x30\x03\x02\x01\x00"))
    report = report_for(obs, [], at=NOW, host="www.example.com")
    assert report.status is Status.UNKNOWN
    assert report.chain == () and report.profiles == ()
    (finding,) = report.findings
    assert finding.code is FindingCode.PROBE_FAILED
    assert "chain certificate #1 could not be parsed" in finding.message
    assert "www.example.com:443 [127.0.0.1]" in finding.message
    assert report.target == target


def test_report_for_a_failed_and_a_good_observation(
    pki: dict[str, Any], tmp_path: Path
) -> None:
    target = Target("www.example.com", 443, ip="127.0.0.1")
    failed = Observation(target=target, observed_at=NOW, failure=FailureReason.REFUSED,
                         message="www.example.com:443 [127.0.0.1]: refused: connection refused")
    report = report_for(failed, [], at=NOW, host="www.example.com")
    assert report.status is Status.UNKNOWN
    assert report.breaks_at is None and report.days_left is None
    assert report.findings[0].message == failed.message
    trust = tmp_path / "root.pem"
    trust.write_bytes(pem_of(pki["root"].cert))
    good = Observation(target=target, observed_at=NOW,
                       chain=ders(pki["leaf"].cert, pki["inter"].cert))
    report = report_for(good, [resolve_profile(f"file:{trust}")], at=NOW,
                        host="www.example.com")
    assert report.status is Status.OK
    assert report.target == target
    assert [c.sha256 for c in report.chain] == [pki["leaf"].cert.sha256, pki["inter"].cert.sha256]
