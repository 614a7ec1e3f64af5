"""``chainwatch serve`` on PostgreSQL while the database goes away and comes back: a
real ``serve`` process, real loopback TLS endpoints probed every second, a private
PostgreSQL cluster (:class:`tests.services.PrivatePostgres`) stopped and started again
mid-run, and a loopback webhook receiver for the watchdog.

What "nothing lost, nothing duplicated" means here, precisely:

* every batch ``serve`` reports as done ("batch of N targets" / "sweep of N targets" in
  its log) is in the database: the rows stored are at least the targets of those
  batches, and at most that plus the targets of the batches it reports as failed (a
  batch can fail after its rows were committed, e.g. at the heartbeat; it is not retried
  with its old results, its endpoints are probed again);
* no observation is stored twice: (target, observed_at) is unique, and each row has its
  whole chain linked (batches are atomic);
* nothing probed while the database was down is stored afterwards with its stale
  timestamp: no observed_at falls between the moment the cluster had stopped and the
  moment it was started again;
* after the restart every target is observed again (serve reconnected by itself);
* the watchdog reports the gap: the webhook receives one ``watchdog`` alert for the
  ``scan`` heartbeat ("no scan has completed ...") and then its ``resolve``.
"""

from __future__ import annotations

import datetime as dt
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from . import servers as srv
from .conftest import Receiver
from .pki import PKI, pem_of
from .servers import ServerLoop, server_context
from .services import PrivatePostgres

EXE = Path(sys.executable).with_name("chainwatch")
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
HOSTS = ("a.lab.test", "b.lab.test")
WAIT = 60.0
"""Seconds any one wait may take before the test fails (with serve's log)."""


@pytest.fixture
def servers() -> Iterator[ServerLoop]:
    with ServerLoop() as loop:
        yield loop


def wait_for(what: str, check: Callable[[], bool], log: Path, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    lines = log.read_text().splitlines()
    notable = [line for line in lines if not re.search(r"INFO (batch|sweep) of", line)]
    pytest.fail(f"timed out waiting for {what}; serve log without routine batches:\n"
                + "\n".join(notable[-60:]) + "\nlast lines:\n" + "\n".join(lines[-5:]))


def observed(engine: Engine) -> dict[str, list[dt.datetime]]:
    """observed_at of every stored observation, per host, in id order ({} while the
    database is down or the schema not there yet)."""
    out: dict[str, list[dt.datetime]] = {h: [] for h in HOSTS}
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT t.host, o.observed_at FROM observations o "
                "JOIN targets t ON t.id = o.target_id ORDER BY o.id")).all()
    except SQLAlchemyError:
        return {}
    for host, when in rows:
        out[host].append(when if when.tzinfo else when.replace(tzinfo=dt.UTC))
    return out


def test_serve_rides_out_a_postgresql_restart(
    tmp_path: Path, servers: ServerLoop, receiver: Receiver, private_postgres: PrivatePostgres
) -> None:
    ca = PKI(now=NOW).root("Outage Root").intermediate("Outage CA")
    assert ca.issuer is not None
    leaf = ca.leaf("*.lab.test", not_before=NOW - dt.timedelta(days=1),
                   expires=NOW + dt.timedelta(days=397))
    port = servers.serve(srv.tls_handler(server_context(leaf.chain(ca), leaf.key,
                                                        tmp_path))).port
    (tmp_path / "trust.pem").write_bytes(pem_of(ca.issuer.cert))
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "defaults: {profiles: ['file:trust.pem'], interval: 1s, timeout: 5s}\n"
        "endpoints:\n" + "".join(
            f"  - {{host: {h}, port: {port}, ip: 127.0.0.1, interval: 1s}}\n" for h in HOSTS)
        + f"alerts:\n  channels:\n    hook: {{type: webhook, url: '{receiver.url}/hook'}}\n")
    log = tmp_path / "serve.log"
    engine = create_engine(private_postgres.url, poolclass=NullPool,
                           connect_args={"connect_timeout": 5})
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(EXE), "serve", str(inventory), "--no-web", "--db", private_postgres.url],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        wait_for("two scans of each endpoint",
                 lambda: all(len(v) >= 2 for v in observed(engine).values() or [[]]), log)

        private_postgres.stop()  # fast shutdown: serve's connections are cut
        stopped = dt.datetime.now(dt.UTC)
        engine.dispose()

        def failures() -> int:  # passes of serve's loop that met the outage
            return len(re.findall(r"scan failed: database error|database still unreachable",
                                  log.read_text()))

        before = failures()
        wait_for("serve to notice the outage three times", lambda: failures() >= before + 3,
                 log)
        assert proc.poll() is None  # still running
        restarting = dt.datetime.now(dt.UTC)
        private_postgres.start()

        def fresh() -> bool:
            rows = observed(engine)
            return bool(rows) and all(any(t > restarting for t in v) for v in rows.values())

        wait_for("every endpoint observed after the restart", fresh, log)
        wait_for("the watchdog's alert and its resolve",
                 lambda: [r.json()["event"] for r in receiver.to("/hook")][-2:]
                 == ["watchdog", "resolve"], log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text_log = log.read_text()
    assert "Traceback" not in text_log

    done = [int(n) for n in re.findall(r"(?:batch|sweep) of (\d+) targets", text_log)]
    failed = len(re.findall(r"scan failed: database error", text_log))
    rows = observed(engine)
    stored = sum(len(v) for v in rows.values())
    assert sum(done) <= stored <= sum(done) + len(HOSTS) * failed
    for host, times in rows.items():
        assert len(set(times)) == len(times), host  # nothing stored twice
        assert times == sorted(times), host  # nothing back-dated
        assert not [t for t in times if stopped < t < restarting], host  # no stale replay
        assert any(t > restarting for t in times)
    with engine.connect() as conn:
        incomplete = conn.execute(text(
            "SELECT count(*) FROM observations o WHERE o.leaf_sha256 IS NOT NULL AND "
            "(SELECT count(*) FROM chain_certs c WHERE c.chain_id = o.chain_id) <> 2"
        )).scalar_one()
    assert incomplete == 0  # every stored observation has its whole chain (leaf + CA)

    hooks = [r.json() for r in receiver.to("/hook")]
    assert [h["event"] for h in hooks] == ["watchdog", "resolve"]
    watchdog, resolve = hooks
    assert watchdog["target"] == {"key": "watchdog:scan"}
    assert "no scan has completed" in watchdog["message"]
    assert resolve["dedup_key"] == watchdog["dedup_key"]
    engine.dispose()
