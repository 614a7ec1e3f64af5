"""SQLite on a full disk: ``chainwatch scan`` whose database write fails (the file size
limit, RLIMIT_FSIZE, stands in for a full file system) says so in one line naming the
database, exits 3 (unknown) without a traceback, and the database still opens with
every row stored before."""

from __future__ import annotations

import datetime as dt
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from . import servers as srv
from .pki import PKI, pem_of
from .servers import ServerLoop, server_context

EXE = Path(sys.executable).with_name("chainwatch")
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
TARGETS = 40
LIMIT = 32 * 1024
"""Bytes any file may grow to: room for SQLite's WAL index (``-shm``, 32 KiB), not for
the write-ahead log of a batch of TARGETS observations."""


@pytest.fixture
def servers() -> Iterator[ServerLoop]:
    with ServerLoop() as loop:
        yield loop


def file_size_limit(limit: int) -> Callable[[], None]:
    """For ``preexec_fn``: files may not grow past ``limit`` bytes, and exceeding it is
    an error (EFBIG) rather than the default SIGXFSZ, which would kill the process."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def observations(db: Path) -> int:
    with closing(sqlite3.connect(db, timeout=5)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return int(conn.execute("SELECT count(*) FROM observations").fetchone()[0])


def test_scan_on_a_full_disk_fails_in_one_line_and_keeps_what_was_stored(
    tmp_path: Path, servers: ServerLoop
) -> None:
    ca = PKI(now=NOW).root("Disk Root").intermediate("Disk CA")
    assert ca.issuer is not None
    leaf = ca.leaf("*.lab.test", not_before=NOW - dt.timedelta(days=1),
                   expires=NOW + dt.timedelta(days=90))
    port = servers.serve(srv.tls_handler(server_context(leaf.chain(ca), leaf.key,
                                                        tmp_path))).port
    hosts = [f"h{n}.lab.test" for n in range(TARGETS)]
    (tmp_path / "trust.pem").write_bytes(pem_of(ca.issuer.cert))
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "defaults: {profiles: ['file:trust.pem']}\nendpoints:\n" + "".join(
            f"  - {{host: {h}, port: {port}, ip: 127.0.0.1}}\n" for h in hosts))
    db = tmp_path / "full.sqlite"
    command = [str(EXE), "scan", str(inventory), "--db", f"sqlite:///{db}"]

    first = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    assert observations(db) == TARGETS

    full = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                          preexec_fn=file_size_limit(LIMIT))
    assert full.returncode == 3, (full.stdout, full.stderr)
    assert "Traceback" not in full.stderr
    lines = full.stderr.splitlines()
    assert len(lines) == 1, full.stderr
    assert lines[0].startswith("chainwatch: error: ")
    assert str(db) in lines[0]
    # A full file system says "database or disk is full" (ENOSPC); the size limit makes
    # the write fail with EFBIG, which SQLite reports as an I/O error.
    assert lines[0].startswith("chainwatch: error: --db sqlite:///")
    assert ("OperationalError: database or disk is full" in lines[0]
            or "OperationalError: disk I/O error" in lines[0]), lines[0]
    assert "disk not full" in lines[0]  # and what to check
    assert "INSERT" not in lines[0]  # the reason, not the SQL and its data

    assert observations(db) == TARGETS  # what was stored before is intact
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert observations(db) == 2 * TARGETS
