"""A dead-man's switch that fails (HTTP 500, or nothing listening) is a warning on
stderr: ``scan`` still prints its report and exits with the scan's own status, so a
Nagios-style caller still sees the critical finding. The warning names the receiver
by scheme, host and port only: the ping URL's path and query are secrets."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from . import servers as srv
from .conftest import Receiver, free_port
from .pki import PKI, pem_of
from .servers import ServerLoop, server_context

Cli = Callable[..., tuple[int, str, str]]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
TOKEN = "dm-5ecret-t0ken"


@pytest.fixture
def servers() -> Iterator[ServerLoop]:
    with ServerLoop() as loop:
        yield loop


def inventory(tmp_path: Path, servers: ServerLoop, ping_url: str) -> Path:
    """One endpoint whose certificate expires in 3 days (critical), alerts with a
    dead-man's switch at ``ping_url`` and no channel."""
    ca = PKI(now=NOW).root("Deadman Root").intermediate("Deadman CA")
    assert ca.issuer is not None
    leaf = ca.leaf("pay.lab.test", not_before=NOW - dt.timedelta(days=80),
                   expires=NOW + dt.timedelta(days=3))
    port = servers.serve(srv.tls_handler(server_context(leaf.chain(ca), leaf.key,
                                                        tmp_path))).port
    (tmp_path / "trust.pem").write_bytes(pem_of(ca.issuer.cert))
    path = tmp_path / "inventory.yaml"
    path.write_text(
        "defaults: {profiles: ['file:trust.pem'], interval: 1h}\n"
        f"endpoints:\n  - {{host: pay.lab.test, port: {port}, ip: 127.0.0.1}}\n"
        f"alerts:\n  channels: {{}}\n  deadman: {{url: '{ping_url}'}}\n"
    )
    return path


@pytest.mark.parametrize("output", ["text", "json"])
def test_a_failing_deadman_ping_is_a_warning_and_the_scan_result_stands(
    output: str, tmp_path: Path, servers: ServerLoop, receiver: Receiver, cli: Cli
) -> None:
    receiver.status = 500
    receiver.error_body = f"no check for /ping/{TOKEN}"
    inv = inventory(tmp_path, servers, f"{receiver.url}/ping/{TOKEN}?k={TOKEN}")
    code, out, err = cli("scan", inv, "--db", f"sqlite:///{tmp_path / 'cw.sqlite'}",
                         "--format", output)
    assert code == 2, err  # critical: 3 days left, as if no ping had been configured
    if output == "json":
        (report,) = json.loads(out)["reports"]
        assert report["status"] == "critical"
        assert report["days_left"] in (2, 3)
    else:
        assert out.startswith("CHAINWATCH CRITICAL - 1 targets")
    assert len(receiver.to("/ping")) == 1  # it was tried
    assert err == (f"chainwatch: warning: dead-man ping failed: deadman: ping: {receiver.url} "
                   "answered HTTP 500 Internal Server Error\n")  # a raw body is never quoted
    assert TOKEN not in err


def test_an_unreachable_deadman_is_a_warning_too(
    tmp_path: Path, servers: ServerLoop, cli: Cli
) -> None:
    closed = free_port()
    inv = inventory(tmp_path, servers, f"http://127.0.0.1:{closed}/ping/{TOKEN}")
    code, out, err = cli("scan", inv, "--db", f"sqlite:///{tmp_path / 'cw.sqlite'}")
    assert code == 2 and out.startswith("CHAINWATCH CRITICAL - 1 targets")
    assert err.startswith(f"chainwatch: warning: dead-man ping failed: deadman: ping: "
                          f"http://127.0.0.1:{closed}: ")
    assert err.count("\n") == 1 and TOKEN not in err
