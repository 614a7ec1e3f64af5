"""Loopback HTTP receivers that misbehave on purpose, for the delivery chaos tests.

Each :class:`Misbehaving` receiver is a raw-socket server in threads (one request per
connection, answered with ``Connection: close``) whose ``mode`` the test switches at
any time:

=================  ===================================================================
``ok``             reads the request, answers 200 at once (the request is *processed*)
``500``            reads the request, answers HTTP 500 (never processed)
``hang``           reads the request and never answers, until the client gives up
``trickle``        processes the request, then sends the 200 answer one byte at a time
``trickle-head``   the same, with the status line and headers a byte at a time too
``reset``          reads a few bytes of the request, then resets the connection (RST)
``flood``          processes the request, then answers 200 with a JSON body of
                   :data:`FLOOD_BYTES` sent as fast as the client reads (``sent`` counts)
``gzip-bomb``      the same, the body a small gzip member that inflates to
                   :data:`BOMB_BYTES`
=================  ===================================================================

What each saw is recorded as events, so tests assert on order, never on time:
``arrived`` (every request read whole), ``processed`` (payloads acted on),
``gave_up`` (a held connection was closed by the client), and ``held`` / the shared
:class:`Holds` counter (connections held right now, and the most ever held at once).
Every wait and loop is bounded (:data:`HOLD_LIMIT`).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

HOLD_LIMIT = 120.0
"""Seconds a receiver holds or trickles at most (a client that never gives up)."""
TRICKLE_EVERY = 0.1
"""Seconds between trickled bytes."""
MAX_REQUEST = 1 << 20
FLOOD_BYTES = 512 << 20
"""What a flooding receiver answers: far more than any client should read."""
BOMB_BYTES = 256 << 20
"""What a gzip bomb inflates to."""


class Holds:
    """Connections held right now across receivers, and the most held at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self._lock:
            self.now -= 1


class Misbehaving:
    """One receiver on 127.0.0.1 (see the module docstring)."""

    def __init__(self, mode: str = "ok", *, holds: Holds | None = None) -> None:
        self.mode = mode
        self.holds = holds or Holds()
        self._lock = threading.Lock()
        self.connections = 0
        self.arrived: list[dict[str, Any]] = []
        self.processed: list[dict[str, Any]] = []
        self.held = 0
        self.sent = 0  # body bytes a flooding receiver got onto the wire
        self.holding = threading.Event()  # set once a connection is being held
        self.gave_up = threading.Event()  # a held connection was ended by the client
        self.on_processed: Callable[[dict[str, Any]], None] | None = None
        """Called in the server thread with each payload processed, before the answer."""
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Misbehaving:
        self._accepter.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._accepter.join(timeout=5)
        self._sock.close()
        for thread in list(self._threads):
            thread.join(timeout=5)

    def payloads(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.processed)

    # -- server -----------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        mode = self.mode
        try:
            conn.settimeout(10)
            if mode == "reset":
                conn.recv(8)  # a few bytes of the request line, no more
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # closing with linger 0 sends RST
            payload = self._read_request(conn)
            if payload is None:
                return
            with self._lock:
                self.arrived.append(payload)
            if mode == "500":
                self._answer(conn, 500, b"receiver down")
            elif mode == "hang":
                self._hold(conn)
            elif mode in ("ok", "trickle", "trickle-head", "flood", "gzip-bomb"):
                with self._lock:
                    self.processed.append(payload)
                if self.on_processed is not None:
                    self.on_processed(payload)
                if mode == "ok":
                    self._answer(conn, 200, b'{"ok": true}')
                elif mode == "flood":
                    self._flood(conn)
                elif mode == "gzip-bomb":
                    self._bomb(conn)
                else:
                    self._trickle(conn, whole=mode == "trickle-head")
        except OSError:
            pass
        finally:
            conn.close()

    def _read_request(self, conn: socket.socket) -> dict[str, Any] | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk or len(data) > MAX_REQUEST:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = min(int(value.strip()), MAX_REQUEST)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
        try:
            parsed = json.loads(body[:length] or b"null")
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
        return {"body": body[:length].decode(errors="replace")}

    @staticmethod
    def _answer(conn: socket.socket, status: int, body: bytes) -> None:
        reason = {200: "OK", 500: "Internal Server Error"}[status]
        conn.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)

    def _enter(self) -> None:
        with self._lock:
            self.held += 1
        self.holds.enter()
        self.holding.set()

    def _leave(self) -> None:
        self.holds.leave()
        with self._lock:
            self.held -= 1

    def _hold(self, conn: socket.socket) -> None:
        """Answer nothing; return when the client closes (or after HOLD_LIMIT)."""
        self._enter()
        try:
            conn.settimeout(0.1)
            deadline = time.monotonic() + HOLD_LIMIT
            while time.monotonic() < deadline and not self._stop.is_set():
                try:
                    if conn.recv(1024) == b"":
                        self.gave_up.set()
                        return
                except TimeoutError:
                    continue
                except OSError:
                    self.gave_up.set()
                    return
        finally:
            self._leave()

    def _trickle(self, conn: socket.socket, *, whole: bool) -> None:
        """A 200 answer sent a byte every TRICKLE_EVERY seconds (the head at once unless
        ``whole``), for at most HOLD_LIMIT seconds; stops when the client goes away."""
        body = b"x" * int(HOLD_LIMIT / TRICKLE_EVERY)
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}"
                "\r\nConnection: close\r\n\r\n").encode()
        data = head + body
        self._enter()
        try:
            if not whole:
                conn.sendall(head)
                data = body
            deadline = time.monotonic() + HOLD_LIMIT
            for byte in data:
                if time.monotonic() > deadline or self._stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    self.gave_up.set()
                    return
                if self._client_gone(conn):
                    self.gave_up.set()
                    return
                time.sleep(TRICKLE_EVERY)
        finally:
            self._leave()

    def _flood(self, conn: socket.socket) -> None:
        """200 with FLOOD_BYTES of JSON-ish body, sent until done or the client leaves."""
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {FLOOD_BYTES}\r\nConnection: close\r\n\r\n".encode())
        block = b'{"a": "' + b"x" * (65536 - 7)
        deadline = time.monotonic() + HOLD_LIMIT
        while self.sent < FLOOD_BYTES and time.monotonic() < deadline:
            try:
                conn.sendall(block)
            except OSError:
                self.gave_up.set()
                return
            with self._lock:
                self.sent += len(block)

    def _bomb(self, conn: socket.socket) -> None:
        """200 with a gzip body of a few hundred KiB that inflates to BOMB_BYTES."""
        body = _bomb_body()
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode())
        try:
            conn.sendall(body)
        except OSError:
            self.gave_up.set()
            return
        with self._lock:
            self.sent += len(body)

    @staticmethod
    def _client_gone(conn: socket.socket) -> bool:
        """Whether the client has closed its side (a send may still succeed then)."""
        conn.setblocking(False)
        try:
            return conn.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            conn.setblocking(True)
            conn.settimeout(10)


_BOMB: list[bytes] = []


def _bomb_body() -> bytes:
    """BOMB_BYTES of JSON-ish text, gzip-compressed (made once, ~260 KiB)."""
    if not _BOMB:
        z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        block = b" " * (1 << 20)
        out = [z.compress(b'{"a": "')] + [z.compress(block) for _ in range(BOMB_BYTES >> 20)]
        _BOMB.append(b"".join(out) + z.flush())
    return _BOMB[0]
