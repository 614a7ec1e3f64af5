"""Private service instances for tests that must stop, break or restart a service:
a PostgreSQL cluster of the test's own and a ``redis-server`` of its own, each on a
free loopback port, never the shared servers on 5432/6379.

::

    with PrivatePostgres.create() as pg:     # initdb + pg_ctl start
        url = pg.url                         # postgresql+psycopg://postgres@127.0.0.1:PORT/postgres
        pg.stop(); pg.start()                # same port, same data
    with PrivateRedis.create() as redis:
        assert redis.ping()
        redis.stop(); redis.start()

A missing binary skips the test, or fails it under ``CHAINWATCH_REQUIRE_SERVICES=1``
(:func:`unavailable`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import pytest

REQUIRE_ENV = "CHAINWATCH_REQUIRE_SERVICES"
START_TIMEOUT = 30.0
"""Seconds a service may take to start or stop before the test fails."""
UNPRIVILEGED_USER = "nobody"


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it when services are required (CI)."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- PostgreSQL -----------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``: what ``pg_config
    --bindir`` says (Debian's ``pg_config`` may belong to the client package only, so
    the directory must hold ``initdb``), else the newest ``/usr/lib/postgresql/*/bin``,
    else wherever ``initdb`` is on ``PATH``."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
            if out:
                candidates.append(Path(out))

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                           key=version, reverse=True)]
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).resolve().parent)
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


class PrivatePostgres:
    """A PostgreSQL cluster of its own in a temporary directory: trust authentication,
    user ``postgres``, listening on 127.0.0.1 only on a free port, its unix socket in
    the same directory, removed by :meth:`close`.

    Running as root: ``initdb`` (and ``postgres``) refuse to run as root. The cluster
    is then run as the unprivileged user ``nobody`` through :mod:`subprocess`'s own
    ``user=``/``group=``/``extra_groups=[]`` (setuid/setgid in the child before exec,
    no ``runuser``/``sudo`` needed). Its directory is made with :func:`tempfile.mkdtemp`
    directly under the system temporary directory (``/tmp`` is world-traversable,
    pytest's ``tmp_path`` is not: it lives under a mode-0700 root directory) and
    chowned to that user. Removal runs as root, so nothing is left behind. As any other
    user the binaries simply run as that user.
    """

    def __init__(self, bindir: Path, base: Path, port: int, user: pwd.struct_passwd | None) -> None:
        self.bindir = bindir
        self.base = base
        self.data = base / "data"
        self.log = base / "postgres.log"
        self.port = port
        self._user = user
        self.running = False

    @classmethod
    def create(cls) -> PrivatePostgres:
        """A new cluster, initialised and started (skips or fails when PostgreSQL's
        server binaries are not installed)."""
        bindir = postgres_bindir()
        if bindir is None:
            unavailable("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: "
                        "install postgresql")
        user = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(UNPRIVILEGED_USER)
            except KeyError:
                unavailable(f"running as root and there is no user {UNPRIVILEGED_USER!r} "
                            "to run PostgreSQL as")
        base = Path(tempfile.mkdtemp(prefix="cw-pg-", dir=tempfile.gettempdir()))
        pg = cls(bindir, base, free_port(), user)
        try:
            if user is not None:
                os.chown(base, user.pw_uid, user.pw_gid)
            pg._initdb()
            pg._start_on_a_free_port()
        except BaseException:
            pg.close()
            raise
        return pg

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's ``postgres`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {}
        if self._user is not None:
            extra = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
               "HOME": str(self.base), "TZ": "UTC"}
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=self.base, check=False, **extra)

    def _initdb(self) -> None:
        done = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                         "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync",
                         timeout=120)
        if done.returncode != 0:
            pytest.fail(f"initdb failed ({done.returncode}): {done.stderr.strip()[-2000:]}",
                        pytrace=False)

    def _start_on_a_free_port(self) -> None:
        for attempt in range(3):  # another process may take the free port first
            if self._try_start():
                return
            if attempt < 2:
                self.port = free_port()
        pytest.fail(f"PostgreSQL did not start; log:\n{_tail(self.log)}", pytrace=False)

    def _try_start(self) -> bool:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   f"-c unix_socket_directories={self.base} -c fsync=off "
                   "-c full_page_writes=off -c max_connections=50 -c shared_buffers=16MB")
        done = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                         "-w", "-t", str(int(START_TIMEOUT)), "-o", options, "start",
                         timeout=START_TIMEOUT + 10)
        self.running = done.returncode == 0
        return self.running

    def start(self) -> None:
        """Start the (stopped) cluster again, on the same port with the same data."""
        if not self._try_start():
            pytest.fail(f"PostgreSQL did not restart on port {self.port}; log:\n"
                        f"{_tail(self.log)}", pytrace=False)

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster: ``fast`` (default) disconnects every client and shuts down
        cleanly, ``immediate`` is a crash (recovery on the next start)."""
        done = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                         "-t", str(int(START_TIMEOUT)), "stop", timeout=START_TIMEOUT + 10)
        if done.returncode != 0:
            pytest.fail(f"PostgreSQL did not stop: {done.stderr.strip()}", pytrace=False)
        self.running = False

    def close(self) -> None:
        """Stop (immediately) if running and remove the cluster's directory."""
        try:
            if self.running and (self.data / "postmaster.pid").exists():
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "-t", str(int(START_TIMEOUT)), "stop", timeout=START_TIMEOUT + 10)
                self.running = False
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# -- Redis ----------------------------------------------------------------------------------


def redis_ping(port: int, timeout: float = 2.0) -> bool:
    """Whether a Redis server answers ``PING`` on 127.0.0.1:``port`` (raw RESP, no client
    library)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            answer = b""
            while not answer.endswith(b"\r\n") and len(answer) < 64:
                chunk = sock.recv(64)
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return False
    return answer == b"+PONG\r\n"


class PrivateRedis:
    """A ``redis-server`` of its own on 127.0.0.1 and a free port, without persistence
    (no RDB snapshots, no AOF), in the foreground under the test's control: :meth:`stop`
    ends it, :meth:`start` starts a fresh one on the same port."""

    def __init__(self, binary: str, base: Path, port: int) -> None:
        self.binary = binary
        self.base = base
        self.port = port
        self.log = base / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server not found: install redis-server")
        base = Path(tempfile.mkdtemp(prefix="cw-redis-", dir=tempfile.gettempdir()))
        redis = cls(binary, base, free_port())
        try:
            for attempt in range(3):  # another process may take the free port first
                if redis._try_start():
                    return redis
                if attempt < 2:
                    redis.port = free_port()
            pytest.fail(f"redis-server did not start; log:\n{_tail(redis.log)}", pytrace=False)
        except BaseException:
            redis.close()
            raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _try_start(self) -> bool:
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.base),
                 "--daemonize", "no", "--protected-mode", "yes"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                return False  # exited: the port was taken, or a bad option
            if redis_ping(self.port, timeout=0.5):
                return True
            time.sleep(0.05)
        self._kill()
        return False

    def ping(self) -> bool:
        return redis_ping(self.port)

    def start(self) -> None:
        """Start it again on the same port (after :meth:`stop`)."""
        if self.running:
            return
        if not self._try_start():
            pytest.fail(f"redis-server did not restart on port {self.port}; log:\n"
                        f"{_tail(self.log)}", pytrace=False)

    def stop(self) -> None:
        """End the server (SIGTERM, SIGKILL after :data:`START_TIMEOUT`)."""
        self._kill()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def close(self) -> None:
        try:
            self._kill()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
