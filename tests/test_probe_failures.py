"""How probing fails against servers and addresses that never answer, and what that
costs: a STARTTLS dialogue that stalls is one attempt, not two; an address that drops
every SYN costs a few connect timeouts per sweep, not one per name behind it."""

from __future__ import annotations

from collections.abc import Iterator

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
