"""What every channel shares: the protocol, the one error type, redaction, HTTP calls
with one deadline per delivery, and the human text of a message."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from chainwatch.alerts.config import DELIVERY_TIMEOUT
from chainwatch.errors import DeliveryError as DeliveryError  # re-exported for the channels
from chainwatch.model.names import printable
from chainwatch.model.redaction import MIN_SECRET, forms
from chainwatch.model.redaction import redact as redact
from chainwatch.model.times import iso
from chainwatch.probe.fetchpolicy import DECODABLE, BoundedDecoder, DecodedTooLarge

Payload = Mapping[str, Any]
"""The channel-neutral message: DESIGN.md's webhook payload (``schema``, ``event``,
``dedup_key``, ``target``, ``breaks_at``, ``days_left``, ``status``, ``findings``,
``message``, ``sent_at``; chainwatch adds ``step``)."""

DEFAULT_TIMEOUT = DELIVERY_TIMEOUT
"""Seconds allowed for one whole delivery: every HTTP request it makes, from connecting
to the last byte of the last response (see :class:`Http`)."""
MAX_RESPONSE_BYTES = 1 << 20
"""Bytes of a receiver's response body read, after decompression: a JSON answer of an
issue tracker fits many times over. The rest is not read (the connection is closed), so
a receiver answering gigabytes, or a small gzip bomb, costs at most this much memory."""
MAX_ERROR_BODY = 200
"""Characters of a receiver's response body quoted in an error."""
USER_AGENT = "chainwatch"
MIN_FRAGMENT = MIN_SECRET
"""Shortest part of a secret URL redacted on its own (see :mod:`chainwatch.model.redaction`)."""


class Channel(Protocol):
    """Somewhere alerts go. ``send`` delivers one message or raises DeliveryError."""

    name: str

    def send(self, payload: Payload) -> None: ...


# -- redaction ------------------------------------------------------------------------------


def secret_fragments(value: str) -> tuple[str, ...]:
    """The forms of a secret that are masked (:func:`chainwatch.model.redaction.forms`),
    longest first."""
    return tuple(sorted(forms(value), key=len, reverse=True))


def where(url: str) -> str:
    """``scheme://host[:port]`` of a URL: enough to say which receiver failed, and never
    a token in a path or query."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


# -- HTTP -----------------------------------------------------------------------------------


def _error_detail(response: httpx.Response) -> str:
    """What of an error response is worth keeping: the ``message``/``error`` field of a
    JSON answer (GitHub's "Bad credentials"), at most :data:`MAX_ERROR_BODY` characters.
    Never the raw body: a receiver may echo the request's headers in it, the
    ``Authorization`` header included."""
    try:
        data = json.loads(response.content[:16_384])
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    for key in ("message", "error", "errorMessages", "detail"):
        value = data.get(key)
        if isinstance(value, list):
            value = "; ".join(str(v) for v in value[:3])
        if isinstance(value, str) and value.strip():
            text = " ".join(value.split())
            return ": " + (text[:MAX_ERROR_BODY] + "…" if len(text) > MAX_ERROR_BODY else text)
    return ""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    return None


def status_retryable(status: int) -> bool:
    return status in (408, 425, 429) or status >= 500


TRUNCATED = "chainwatch.truncated"
"""Response extension set when the body was cut at :data:`MAX_RESPONSE_BYTES`."""


def _capped(response: httpx.Response) -> httpx.Response:
    """``response`` (opened with ``stream=True``) with at most :data:`MAX_RESPONSE_BYTES`
    of its body read, raw and decoded (``gzip``/``deflate`` are undone as the bytes
    arrive, each step bounded, so a compression bomb stops at the cap too): a new, closed
    response holding those bytes, whose ``extensions`` carry :data:`TRUNCATED` when
    there was more. The caller closes the streamed one, which drops the connection with
    the rest unread. An encoding chainwatch does not decode, or a body that does not
    decode, reads as empty."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    decoder = BoundedDecoder(encoding if encoding in DECODABLE else "identity",
                             MAX_RESPONSE_BYTES)
    truncated = False
    received = 0
    try:
        if encoding in DECODABLE:
            for chunk in response.iter_raw():
                received += len(chunk)
                decoder.feed(chunk)
                if received > MAX_RESPONSE_BYTES:
                    raise DecodedTooLarge
        data = bytes(decoder.out)
    except DecodedTooLarge:
        truncated = True
        data = bytes(decoder.out[:MAX_RESPONSE_BYTES])
    except (zlib.error, ValueError):
        data = b""
    headers = [(k, v) for k, v in response.headers.multi_items()
               if k.lower() not in ("content-encoding", "content-length",
                                    "transfer-encoding")]
    return httpx.Response(
        response.status_code, headers=headers, content=data, request=response.request,
        extensions={**response.extensions, TRUNCATED: truncated},
    )


_TRACKED = ("connection.connect_tcp.complete", "connection.start_tls.complete")
"""httpx ``trace`` events whose return value is a new network stream (plain, then TLS)."""


def _shutdown(sock: socket.socket) -> None:
    """Shut a socket down under a thread blocked on it: its ``recv``/``send`` returns at
    once (end of stream, broken pipe). The plain socket call, also for a TLS socket:
    ``SSLSocket.shutdown`` would drop its TLS state under the reading thread."""
    with contextlib.suppress(OSError, ValueError):  # closed already, or never connected
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Http:
    """HTTP calls for one channel delivery: no redirects followed, errors mapped to
    :class:`DeliveryError` with ``secrets`` redacted, and ONE deadline, ``timeout``
    seconds from the moment the ``Http`` is made, for everything sent through it.

    httpx's own timeouts are per phase and restart on every read: a receiver that
    trickles its answer a byte at a time (or a header a byte at a time) would hold a
    delivery for as long as it likes. Here each request gets httpx timeouts of at most
    the time left, and a timer shuts down, at the deadline, every connection this
    ``Http`` opened (found through httpx's ``trace`` extension), which wakes the blocked
    read or write at once. A request cut off that way is a retryable "timed out" error.
    Name resolution is the one step no timer can interrupt (the system resolver's own
    timeouts apply); webhook hosts are usually resolved in milliseconds.
    """

    def __init__(
        self,
        channel: str,
        *,
        secrets: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.channel = channel
        self.secrets = tuple(secrets)
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._client = httpx.Client(
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity",
                     **(headers or {})},
            auth=auth,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )

    @property
    def expired(self) -> bool:
        """Whether the deadline cut a request off."""
        with self._lock:
            return self._expired

    def _trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event not in _TRACKED:
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._sockets.append(sock)
            late = self._expired
        if late:  # connected just as the deadline passed
            _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Http:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fail(
        self, retryable: bool, what: str, *, retry_after: float | None = None
    ) -> DeliveryError:
        return DeliveryError(retryable, redact(f"{self.channel}: {what}", self.secrets),
                             retry_after=retry_after)

    def request(
        self,
        method: str,
        url: str,
        *,
        doing: str,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        content: str | None = None,
        ok: Sequence[int] = (),
    ) -> httpx.Response:
        """Send one request; any status outside 2xx (and ``ok``) raises DeliveryError.
        ``doing`` names the operation in errors (``create issue``). The request must be
        over by the deadline (see :class:`Http`), or it fails as timed out."""
        timed_out = self.fail(True, f"{doing}: {where(url)} timed out after "
                                    f"{self.timeout:g}s")
        left = self.deadline - time.monotonic()
        if left <= 0 or self.expired:
            raise timed_out
        timer = threading.Timer(left, self._expire)
        timer.daemon = True
        timer.start()
        try:
            request = self._client.build_request(
                method, url, json=json, params=params, content=content,
                timeout=httpx.Timeout(left), extensions={"trace": self._trace})
            response = self._client.send(request, stream=True)
            try:
                response = _capped(response)
            finally:
                response.close()
        except httpx.TimeoutException:
            raise timed_out from None
        except httpx.InvalidURL:
            raise self.fail(False, f"{doing}: invalid URL") from None
        except httpx.UnsupportedProtocol:
            raise self.fail(False, f"{doing}: unsupported URL scheme "
                                   f"{urlsplit(url).scheme!r}") from None
        except Exception as exc:
            if self.expired:  # the deadline shut the connection down under the request
                raise timed_out from None
            if not isinstance(exc, httpx.HTTPError):
                raise
            reason = str(exc) or type(exc).__name__
            raise self.fail(True, f"{doing}: {where(url)}: {reason}") from None
        finally:
            timer.cancel()
        status = response.status_code
        if 200 <= status < 300 or status in ok:
            return response
        detail = _error_detail(response)
        raise self.fail(
            status_retryable(status),
            f"{doing}: {where(url)} answered HTTP {status} "
            f"{response.reason_phrase[:60]}{detail}",
            retry_after=_retry_after(response),
        )

    def json(self, response: httpx.Response, doing: str) -> Any:
        if response.extensions.get(TRUNCATED):
            raise self.fail(True, f"{doing}: the response is larger than "
                                  f"{MAX_RESPONSE_BYTES} bytes")
        try:
            return response.json()
        except ValueError:
            raise self.fail(True, f"{doing}: the response is not JSON") from None


# -- text -----------------------------------------------------------------------------------

EVENT_TITLES = {
    "ticket": "Certificate needs renewal",
    "notify": "Certificate expiring",
    "page": "CERTIFICATE ALERT",
    "resolve": "Resolved",
    "watchdog": "chainwatch watchdog",
    "test": "TEST message",
}


def target_label(payload: Payload) -> str:
    target = payload.get("target") or {}
    return str(target.get("key") or target.get("host") or "?")


def title(payload: Payload) -> str:
    """A one-line title: ``[chainwatch] CERTIFICATE ALERT: app.example.com:443``."""
    event = str(payload.get("event", ""))
    head = EVENT_TITLES.get(event, event)
    if event in ("watchdog", "test"):
        return f"[chainwatch] {head}"
    return printable(f"[chainwatch] {head}: {target_label(payload)}")


def details(payload: Payload) -> list[str]:
    """The facts of a message, one per line (for chats, mails and issue bodies); each
    line's non-printable characters escaped, so a name from a certificate cannot add
    lines."""
    lines = [str(payload.get("message", ""))]
    if payload.get("event") == "test":
        lines.append("This is a test sent by `chainwatch alerts test`; nothing is wrong.")
    if payload.get("breaks_at"):
        lines.append(f"Trust breaks at: {payload['breaks_at']} "
                     f"({payload.get('days_left')} days left)")
    if payload.get("status"):
        lines.append(f"Status: {payload['status']}")
    findings = [str(f.get("code", f)) if isinstance(f, Mapping) else str(f)
                for f in payload.get("findings") or ()]
    if findings:
        lines.append(f"Findings: {', '.join(findings)}")
    lines.append(f"Dedup key: {payload.get('dedup_key')}")
    return [printable(line) for line in lines]


def body(payload: Payload) -> str:
    return "\n".join(details(payload))


def now_z() -> str:
    return iso(dt.datetime.now(dt.UTC))
