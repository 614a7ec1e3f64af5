from __future__ import annotations

import email
import email.message
import json
import os
import re
import secrets
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from chainwatch.analysis.engine import clear_caches
from chainwatch.cli import run
from chainwatch.model import Cert

from .pki import pem_of
from .services import PrivatePostgres, PrivateRedis


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's trust settings must not leak into tests."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    clear_caches()


@pytest.fixture
def write_pem(tmp_path: Path) -> Callable[..., Path]:
    """Write certificates (in the order given) to a PEM file under tmp_path."""

    def write(name: str, *certs: Cert) -> Path:
        path = tmp_path / name
        path.write_bytes(pem_of(*certs))
        return path

    return write


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run the chainwatch CLI in-process; returns (exit status, stdout, stderr)."""

    def invoke(*args: str | os.PathLike[str]) -> tuple[int, str, str]:
        code = run([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture
def cli_json(cli: Callable[..., tuple[int, str, str]]) -> Callable[..., tuple[int, Any]]:
    """Run the CLI with ``--format json`` and parse stdout."""

    def invoke(*args: str | os.PathLike[str]) -> tuple[int, Any]:
        code, out, err = cli(*args, "--format", "json")
        assert out, f"no JSON on stdout; stderr: {err}"
        return code, json.loads(out)

    return invoke


# -- PostgreSQL (shared by the storage and alerting tests) ----------------------------------

PG_ADMIN_URL = os.environ.get(
    "CHAINWATCH_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database created for this test run on the local PostgreSQL, dropped afterwards.

    The one place that decides between failing and skipping: with
    ``CHAINWATCH_REQUIRE_SERVICES=1`` an unreachable server fails the tests that need it.
    """
    admin = create_engine(
        PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        admin.dispose()
        why = " ".join(str(exc.orig).split())
        reason = f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {why}"
        if os.environ.get("CHAINWATCH_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} (CHAINWATCH_REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(reason)
    name = f"chainwatch_test_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL: each test using it runs on SQLite, then on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite'}"
    found: str = request.getfixturevalue("pg_url")
    return found


@pytest.fixture
def pg_url(postgres_database: str) -> Iterator[str]:
    """A fresh, empty schema in the run's database (selected with ``search_path``)."""
    schema = f"t_{secrets.token_hex(6)}"
    engine = create_engine(postgres_database, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{postgres_database}?options=-csearch_path%3D{schema}"
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


# -- private service instances (tests that stop and restart a server) ----------------------


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of the test's own (see :class:`tests.services.PrivatePostgres`):
    the test may stop and start it; removed afterwards."""
    with PrivatePostgres.create() as pg:
        yield pg


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A ``redis-server`` of the test's own, without persistence; stoppable, restartable."""
    with PrivateRedis.create() as redis:
        yield redis


# -- loopback receivers for alert channels ----------------------------------------------------

if sys.version_info < (3, 13):
    # Apprise's mail plugin imports the stdlib ``imghdr``, which warns that it is deprecated
    # (Python 3.11 and 3.12); warnings are errors here, and this one is not chainwatch's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import imghdr  # noqa: F401


@dataclass(frozen=True)
class Recorded:
    """One request a :class:`Receiver` got."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class Receiver:
    """A threaded HTTP server on 127.0.0.1 standing in for the generic webhook, the
    PagerDuty Events API, GitHub, GitLab and Jira issue APIs and a dead-man's switch.

    Every request is recorded. ``status`` forces one status for every request (a
    receiver that is down), ``fail`` maps a path prefix to a forced status for that
    path only; ``error_body`` is what it answers then. The issue APIs keep
    their issues in memory, so tests can check what a tracker ends up holding.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.status: int | None = None
        self.fail: dict[str, int] = {}
        self.error_body = "receiver down"
        self.jira_cloud = True  # False: no /search/jql (Jira Data Center)
        self.github: dict[int, dict[str, Any]] = {}
        self.gitlab: dict[int, dict[str, Any]] = {}
        self.jira: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a stuck client cannot hold a server thread forever

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Recorded(self.command, parts.path, parse_qs(parts.query),
                                   {k.lower(): v for k, v in self.headers.items()}, body)
                status, answer = receiver.answer(request)
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def to(self, path: str) -> list[Recorded]:
        """The requests whose path starts with ``path``."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path)]

    # -- the fake APIs ----------------------------------------------------------------------

    def answer(self, req: Recorded) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(req)
            forced = self.status
            for prefix, code in self.fail.items():
                if req.path.startswith(prefix):
                    forced = code
            if forced is not None:
                return forced, self.error_body.encode()
            path = req.path
            if path.startswith(("/hook", "/ping")):
                return 200, {}
            if path == "/v2/enqueue":
                event = req.json()
                return 202, {"status": "success", "message": "Event processed",
                             "dedup_key": event.get("dedup_key")}
            if path.startswith("/repos/"):
                return self._github(req)
            if path.startswith("/api/v4/projects/"):
                return self._gitlab(req)
            if path.startswith("/rest/api/2/"):
                return self._jira(req)
            return 404, {"message": "Not Found"}

    def _github(self, req: Recorded) -> tuple[int, Any]:
        parts = req.path.strip("/").split("/")  # repos/OWNER/NAME/issues[/N[/comments]]
        if len(parts) == 4 and req.method == "GET":
            label = req.query.get("labels", [""])[0]
            page = int(req.query.get("page", ["1"])[0])
            per_page = int(req.query.get("per_page", ["30"])[0])
            found = [i for n, i in sorted(self.github.items(), reverse=True)
                     if label in [lb["name"] for lb in i["labels"]]]
            return 200, found[(page - 1) * per_page : page * per_page]
        if len(parts) == 4 and req.method == "POST":
            data = req.json()
            number = len(self.github) + 1
            issue = {"number": number, "title": data["title"], "body": data["body"],
                     "state": "open", "labels": [{"name": n} for n in data.get("labels", [])],
                     "comments": []}
            self.github[number] = issue
            return 201, issue
        issue = self.github.get(int(parts[4]))
        if issue is None:
            return 404, {"message": "Not Found"}
        if len(parts) == 6 and req.method == "POST":
            issue["comments"].append(req.json()["body"])
            return 201, {"id": len(issue["comments"])}
        if len(parts) == 5 and req.method == "PATCH":
            issue["state"] = req.json()["state"]
            return 200, issue
        return 405, {"message": "Method Not Allowed"}

    def _gitlab(self, req: Recorded) -> tuple[int, Any]:
        parts = req.path.strip("/").split("/")  # api/v4/projects/ID/issues[/IID[/notes]]
        if len(parts) == 5 and req.method == "GET":
            label = req.query.get("labels", [""])[0]
            found = [i for n, i in sorted(self.gitlab.items(), reverse=True)
                     if label in i["labels"]]
            return 200, found
        if len(parts) == 5 and req.method == "POST":
            data = req.json()
            iid = len(self.gitlab) + 1
            issue = {"iid": iid, "project": unquote(parts[3]), "title": data["title"],
                     "description": data["description"], "state": "opened",
                     "labels": data["labels"].split(","), "notes": []}
            self.gitlab[iid] = issue
            return 201, issue
        issue = self.gitlab.get(int(parts[5]))
        if issue is None:
            return 404, {"message": "404 Not found"}
        if len(parts) == 7 and req.method == "POST":
            issue["notes"].append(req.json()["body"])
            return 201, {"id": len(issue["notes"])}
        if len(parts) == 6 and req.method == "PUT":
            event = req.json()["state_event"]
            issue["state"] = {"close": "closed", "reopen": "opened"}[event]
            return 200, issue
        return 405, {"message": "405 Method Not Allowed"}

    _TRANSITIONS: ClassVar[list[dict[str, Any]]] = [
        {"id": "11", "name": "To Do", "to": {"statusCategory": {"key": "new"}}},
        {"id": "21", "name": "In Progress", "to": {"statusCategory": {"key": "indeterminate"}}},
        {"id": "31", "name": "Done", "to": {"statusCategory": {"key": "done"}}},
    ]

    def _jira(self, req: Recorded) -> tuple[int, Any]:
        path = req.path[len("/rest/api/2/"):]
        if path in ("search/jql", "search") and req.method == "GET":
            if path == "search/jql" and not self.jira_cloud:
                return 404, {"errorMessages": ["not found"]}
            jql = req.query["jql"][0]
            label = re.search(r'labels = "([^"]+)"', jql)
            found = [i for k, i in sorted(self.jira.items(), reverse=True)
                     if label and label.group(1) in i["fields"]["labels"]]
            return 200, {"issues": found}
        if path == "issue" and req.method == "POST":
            fields = req.json()["fields"]
            key = f"{fields['project']['key']}-{len(self.jira) + 1}"
            self.jira[key] = {"key": key, "fields": {
                **fields, "status": {"name": "To Do", "statusCategory": {"key": "new"}}},
                "comments": []}
            return 201, {"id": str(len(self.jira)), "key": key}
        parts = path.split("/")  # issue/KEY/(comment|transitions)
        issue = self.jira.get(parts[1]) if len(parts) == 3 else None
        if issue is None:
            return 404, {"errorMessages": ["Issue does not exist"]}
        if parts[2] == "comment" and req.method == "POST":
            issue["comments"].append(req.json()["body"])
            return 201, {"id": str(len(issue["comments"]))}
        if parts[2] == "transitions" and req.method == "GET":
            return 200, {"transitions": self._TRANSITIONS}
        if parts[2] == "transitions" and req.method == "POST":
            chosen = req.json()["transition"]["id"]
            to = next(t for t in self._TRANSITIONS if t["id"] == chosen)
            issue["fields"]["status"] = {"name": to["name"], "statusCategory":
                                         to["to"]["statusCategory"]}
            return 204, b""
        return 405, {"errorMessages": ["Method Not Allowed"]}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A :class:`Receiver` on a free loopback port, stopped after the test."""
    server = Receiver().start()
    try:
        yield server
    finally:
        server.stop()


class Mailbox:
    """Messages an SMTP server received (aiosmtpd handler)."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@dataclass(frozen=True)
class SMTPServer:
    """A plain (no TLS) SMTP server on loopback that wants ``user``/``password``."""

    port: int
    user: str
    password: str
    mailbox: Mailbox

    def apprise_url(self, password: str | None = None) -> str:
        """An Apprise ``mailto://`` URL for this server: ``mailto`` (not ``mailtos``)
        means plain SMTP (``mode=insecure``), no STARTTLS."""
        return (f"mailto://{self.user}:{password or self.password}@127.0.0.1:{self.port}"
                "?from=chainwatch@example.org&to=oncall@example.org&mode=insecure")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    user, password = "cwbot", "sm7p-Pa55w0rd"
    mailbox = Mailbox()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                     data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and data.login == user.encode()
              and data.password == password.encode())
        return AuthResult(success=ok)

    # Plain SMTP on loopback: AUTH allowed without TLS, as Apprise's ``mailto://`` sends.
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(),
                            authenticator=authenticate, auth_require_tls=False,
                            ready_timeout=10)
    controller.start()
    try:
        yield SMTPServer(controller.port, user, password, mailbox)
    finally:
        controller.stop()
