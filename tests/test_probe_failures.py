"""How probing fails against servers and addresses that never answer, and what that
costs: a STARTTLS dialogue that stalls is one attempt, not two; an address that drops
every SYN costs a few connect timeouts per sweep, not one per name behind it."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from chainwatch.model import Target
from chainwatch.probe import FailureReason
from chainwatch.probe.handshake import Limits
from chainwatch.probe.parallel import probe_all

from . import servers as srv
from .servers import ServerLoop


@pytest.fixture
def lab() -> Iterator[ServerLoop]:
    with ServerLoop() as servers:
        yield servers


# -- a STARTTLS dialogue that stalls ----------------------------------------------------------


@pytest.mark.parametrize("protocol", ["smtp", "imap", "pop3", "ftp"])
def test_a_stalled_starttls_dialogue_is_a_starttls_timeout_tried_once(
    lab: ServerLoop, protocol: str
) -> None:
    """The server accepts and never says a word: the greeting never comes. That is a
    STARTTLS timeout, and a server that stalled once would stall again: one connection."""
    ep = lab.serve(srv.silent)
    target = Target("127.0.0.1", ep.port, ip="127.0.0.1", starttls=protocol)
    (obs,) = probe_all([target], limits=Limits(timeout=0.5, retry_delay=0))
    assert obs.failure is FailureReason.TIMEOUT
    assert obs.message is not None
    assert f"during the STARTTLS ({protocol})" in obs.message
    assert "(connect)" not in obs.message
    assert ep.connections == 1


# -- an address that never answers ------------------------------------------------------------


@contextlib.contextmanager
def blackholed() -> Iterator[int]:
    """A loopback port whose SYNs are dropped: a listener with backlog 0 that never
    accepts, its accept queue filled, so the kernel drops every further SYN and a
    connect hangs until the client gives up."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                filler = socket.socket()
                filler.setblocking(False)
                fillers.append(filler)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
            yield port
        finally:
            for filler in fillers:
                filler.close()


class ConnectCounter:
    """Counts the probe's connect attempts to one port (the real connect still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, port: int) -> None:
        self.attempts = 0
        lock = threading.Lock()
        counter = self
        real = socket.socket

        class Counting(real):  # type: ignore[misc, valid-type]
            def connect_ex(self, address: Any) -> int:
                if isinstance(address, tuple) and address[1] == port:
                    with lock:
                        counter.attempts += 1
                return int(super().connect_ex(address))

        monkeypatch.setattr(socket, "socket", Counting)


def test_the_blackhole_really_drops_the_syn() -> None:
    """The method the next test relies on: a connect to it times out on this kernel."""
    with blackholed() as port, socket.socket() as probe:
        probe.settimeout(0.3)
        with pytest.raises(TimeoutError):
            probe.connect(("127.0.0.1", port))


def test_names_behind_an_unresponsive_address_fail_fast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """40 names on one silent address: after the first connect timeouts, the rest of the
    address's probes fail at once, as timeouts, saying the address did not answer."""
    with blackholed() as port:
        counter = ConnectCounter(monkeypatch, port)
        targets = [Target(f"n{i}.example.com", port, ip="127.0.0.1") for i in range(40)]
        observations = probe_all(targets, limits=Limits(timeout=0.5), processes=False)
    assert [o.target for o in observations] == targets
    assert all(o.failure is FailureReason.TIMEOUT for o in observations)
    # The first wave (per_address=8) times out; nothing is retried or tried after it.
    assert counter.attempts <= 10, counter.attempts
    skipped = [o for o in observations if o.message and "not tried" in o.message]
    assert len(skipped) >= 30
    assert skipped[0].message == (
        f"n{targets.index(skipped[0].target)}.example.com:{port} [127.0.0.1]: timeout: "
        "address 127.0.0.1 unresponsive: 2 connect timeouts, no connection; not tried"
    )


def test_handshake_timeouts_do_not_write_an_address_off(lab: ServerLoop) -> None:
    """A server that accepts and stalls answered the connect: its probes all run (and
    each is tried once, a stalled handshake is not retried)."""
    ep = lab.serve(srv.silent)
    targets = [Target(f"s{i}.example.com", ep.port, ip="127.0.0.1") for i in range(12)]
    observations = probe_all(targets, limits=Limits(timeout=0.3), processes=False)
    assert all(o.failure is FailureReason.TIMEOUT for o in observations)
    assert not any(o.message and "not tried" in o.message for o in observations)
    assert ep.connections == 12


def test_a_silent_port_does_not_write_off_the_other_ports_of_its_address(
    lab: ServerLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = lab.serve(srv.raw_alert(112))
    with blackholed() as port:
        silent = [Target(f"n{i}.example.com", port, ip="127.0.0.1") for i in range(12)]
        live = [Target(f"a{i}.example.com", ep.port, ip="127.0.0.1") for i in range(4)]
        observations = probe_all(silent + live, limits=Limits(timeout=0.5), processes=False)
    assert all(o.failure is FailureReason.TIMEOUT for o in observations[:12])
    assert all(o.failure is FailureReason.TLS_ALERT for o in observations[12:])
    assert ep.connections == 4
