"""ACME Renewal Information (RFC 9773): the CA's suggested renewal window for a leaf.

For an endpoint whose inventory entry names its CA's ACME directory (``acme: URL``),
the monitor asks the CA when the served certificate should be renewed; the window
replaces the default "2/3 of the lifetime" expectation behind ``RENEWAL_OVERDUE``.
Fetching never raises: an unreachable or broken server yields ``window=None`` and a
note, and the default expectation applies.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from chainwatch.model import Cert

MAX_BYTES = 64 * 1024
DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class RenewalInfo:
    """The suggested window for one leaf, or why there is none."""

    window: tuple[dt.datetime, dt.datetime] | None
    note: str | None = None
    explanation_url: str | None = None


def cert_id(leaf: Cert) -> str | None:
    """RFC 9773 certificate identifier: base64url(AKI keyIdentifier) "." base64url(serial)."""
    if leaf.aki is None:
        return None
    serial = leaf.parsed.serial_number
    length = max(1, (serial.bit_length() + 8) // 8)  # DER INTEGER: keep a leading zero byte
    raw = serial.to_bytes(length, "big", signed=False)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    return f"{b64(leaf.aki)}.{b64(raw)}"


def _http_url(url: str) -> bool:
    return urlsplit(url).scheme in {"http", "https"}


async def _get_json(client: httpx.AsyncClient, url: str) -> object:
    async with client.stream("GET", url) as response:
        if response.status_code != 200:
            raise ValueError(f"HTTP {response.status_code}")
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_BYTES:
                raise ValueError(f"response larger than {MAX_BYTES} bytes")
    try:
        return json.loads(body)
    except RecursionError:  # arrays nested a thousand deep fit in MAX_BYTES
        raise ValueError("JSON nested too deeply") from None


def _instant(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError("window bounds must be RFC 3339 strings")
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


async def renewal_info(directory_url: str, leaf: Cert, *,
                       timeout: float = DEFAULT_TIMEOUT,
                       client: httpx.AsyncClient | None = None) -> RenewalInfo:
    """Ask the ACME server at ``directory_url`` for ``leaf``'s suggested renewal window."""
    ident = cert_id(leaf)
    if ident is None:
        return RenewalInfo(None, "the leaf has no authorityKeyIdentifier: no ARI lookup")
    if not _http_url(directory_url):
        return RenewalInfo(None, f"ACME directory {directory_url!r} is not an http(s) URL")
    own = client is None
    http = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
    try:
        directory = await _get_json(http, directory_url)
        base = directory.get("renewalInfo") if isinstance(directory, dict) else None
        if not isinstance(base, str) or not _http_url(base):
            return RenewalInfo(None, "the ACME server does not offer renewalInfo (RFC 9773)")
        info = await _get_json(http, f"{base.rstrip('/')}/{ident}")
        window = info.get("suggestedWindow") if isinstance(info, dict) else None
        if not isinstance(window, dict):
            return RenewalInfo(None, "the renewalInfo answer has no suggestedWindow")
        start, end = _instant(window.get("start")), _instant(window.get("end"))
        if end < start:
            return RenewalInfo(None, "the suggested window ends before it starts")
        url = info.get("explanationURL") if isinstance(info, dict) else None
        return RenewalInfo((start, end), None, url if isinstance(url, str) else None)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # a bad renewalInfo URL
        where = urlsplit(directory_url).netloc
        return RenewalInfo(None, f"ACME Renewal Information from {where} unavailable "
                                 f"({type(exc).__name__}: {str(exc)[:120]}); using the default")
    finally:
        if own:
            await http.aclose()
