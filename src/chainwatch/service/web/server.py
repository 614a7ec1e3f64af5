"""Running the read side: parse ``--listen``, bind, serve uvicorn in a thread.

The socket is bound in the caller's thread before anything else starts, so a busy port
is a one-line :class:`~chainwatch.errors.InputError` (exit 3), not a traceback. uvicorn
runs in a daemon thread with its own event loop and installs no signal handlers: the
scheduler keeps the main thread, its signals and its loop; a failing request handler
answers 500 and the server goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import threading
from pathlib import Path

import uvicorn

from chainwatch.errors import InputError
from chainwatch.service.web.app import WebSettings, create_app

DEFAULT_LISTEN = "127.0.0.1:8080"
TOKEN_ENV = "CHAINWATCH_WEB_TOKEN"
FEED_TOKEN_ENV = "CHAINWATCH_FEED_TOKEN"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``) into its parts; raises :class:`InputError`."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise InputError(f"--listen {text[:80]!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(token_file: Path | None) -> str | None:
    """The write token: ``--token-file`` (first line), else ``$CHAINWATCH_WEB_TOKEN``."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--token-file {token_file}: cannot read it ({exc})") from None
        if not token or len(token[0].strip()) < 8:
            raise InputError(f"--token-file {token_file}: needs a token of 8 or more "
                             "characters on its first line")
        return token[0].strip()
    value = os.environ.get(TOKEN_ENV, "").strip()
    if value and len(value) < 8:
        raise InputError(f"{TOKEN_ENV}: needs 8 or more characters")
    return value or None


def bind(listen: str, *, token: str | None) -> socket.socket:
    host, port = parse_listen(listen)
    if not is_loopback(host) and token is None:
        raise InputError(f"--listen {listen}: serving on a non-loopback address needs a "
                         f"token configuration (${TOKEN_ENV} or --token-file)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InputError(f"--listen {listen}: cannot resolve {host} ({exc})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise InputError(f"--listen {listen}: cannot listen there ({exc.strerror or exc})"
                         ) from None
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without signal handlers: the process's owner (the scheduler) has them."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


class WebServer:
    """The read side served from a bound socket in a background thread."""

    def __init__(self, settings: WebSettings, sock: socket.socket) -> None:
        self.sock = sock
        config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=2)
        self.server = _Server(config)
        self.thread = threading.Thread(target=self._run, name="chainwatch-web", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> WebServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
