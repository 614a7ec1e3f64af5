"""ACME Renewal Information (RFC 9773): the CA's suggested renewal window for a leaf.

For an endpoint whose inventory entry names its CA's ACME directory (``acme: URL``),
the monitor asks the CA when the served certificate should be renewed; the window
replaces the default "2/3 of the lifetime" expectation behind ``RENEWAL_OVERDUE``.

Fetching never raises, whatever the server does: an unreachable, slow or hostile server
(a directory trickled a byte at a time, JSON nested a million deep, a compression bomb,
a window ending in the year 9999) yields ``window=None`` and a note, and the default
expectation applies. Both requests go through :class:`~chainwatch.probe.http.Fetcher`
(public destinations only, unless allowed; bounded size, decoded size included) and share
one deadline, ``timeout`` for the whole lookup.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chainwatch.model import Cert
from chainwatch.probe.fetchpolicy import FetchKind, FetchLimits, IPNetwork

if TYPE_CHECKING:
    from chainwatch.probe.http import Fetcher

MAX_BYTES = 64 * 1024
DEFAULT_TIMEOUT = 5.0
PLAUSIBLE_SLACK = dt.timedelta(days=366)
"""How far outside the leaf's validity a suggested window may reach and still be taken."""


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


class _Unavailable(Exception):
    """The lookup gave no usable answer (the message says why)."""


async def _get_json(fetcher: Fetcher, url: str) -> object:
    got = await fetcher.get(url, FetchKind.JSON)
    if not got.ok or got.body is None:
        raise _Unavailable(got.message)
    return json.loads(got.body)


def _instant(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError("window bounds must be RFC 3339 strings")
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _implausible(start: dt.datetime, end: dt.datetime, leaf: Cert) -> str | None:
    """Why a window cannot be this leaf's renewal window, or ``None``. Besides nonsense,
    this keeps every instant the monitor derives from it (the window's end plus grace)
    within what a datetime can hold."""
    if end < start:
        return "the suggested window ends before it starts"
    try:
        early, late = leaf.not_before - PLAUSIBLE_SLACK, leaf.not_after + PLAUSIBLE_SLACK
        _ = late + 2 * leaf.lifetime  # the latest instant derived from the window's end
    except OverflowError:
        return "the certificate's validity leaves no room for a renewal window"
    if start < early or end > late:
        return (f"the suggested window {start:%Y-%m-%d} .. {end:%Y-%m-%d} lies far outside "
                f"the certificate's validity ({leaf.not_before:%Y-%m-%d} .. "
                f"{leaf.not_after:%Y-%m-%d})")
    return None


async def _lookup(fetcher: Fetcher, directory_url: str, ident: str, leaf: Cert) -> RenewalInfo:
    from chainwatch.probe.http import url_problem

    directory = await _get_json(fetcher, directory_url)
    base = directory.get("renewalInfo") if isinstance(directory, dict) else None
    if not isinstance(base, str) or url_problem(base) is not None:
        return RenewalInfo(None, "the ACME server does not offer renewalInfo (RFC 9773)")
    info = await _get_json(fetcher, f"{base.rstrip('/')}/{ident}")
    window = info.get("suggestedWindow") if isinstance(info, dict) else None
    if not isinstance(window, dict):
        return RenewalInfo(None, "the renewalInfo answer has no suggestedWindow")
    start, end = _instant(window.get("start")), _instant(window.get("end"))
    problem = _implausible(start, end, leaf)
    if problem is not None:
        return RenewalInfo(None, f"{problem}; using the default")
    url = info.get("explanationURL") if isinstance(info, dict) else None
    return RenewalInfo((start, end), None, url if isinstance(url, str) else None)


async def renewal_info(directory_url: str, leaf: Cert, *,
                       timeout: float = DEFAULT_TIMEOUT,
                       fetcher: Fetcher | None = None,
                       allow_private: Sequence[IPNetwork] = ()) -> RenewalInfo:
    """Ask the ACME server at ``directory_url`` for ``leaf``'s suggested renewal window.

    ``timeout`` bounds the whole lookup (the directory and the renewalInfo answer).
    ``fetcher``: the one to use (its limits then apply, ``allow_private`` included);
    without one, a fetcher of its own with ``allow_private`` and no shared cache.
    Never raises: any failure is a note, and ``window=None``.
    """
    # The HTTP client is imported by the scans that look a window up, not by every scan.
    import httpx

    from chainwatch.probe.http import FetchCache, Fetcher, url_problem

    ident = cert_id(leaf)
    if ident is None:
        return RenewalInfo(None, "the leaf has no authorityKeyIdentifier: no ARI lookup")
    if url_problem(directory_url) is not None:
        return RenewalInfo(None, f"ACME directory {directory_url!r} is not an http(s) URL")
    where = httpx.URL(directory_url).netloc.decode("ascii", "replace")
    try:
        async with asyncio.timeout(timeout):
            if fetcher is not None:
                return await _lookup(fetcher, directory_url, ident, leaf)
            limits = FetchLimits(timeout=timeout, json_bytes=MAX_BYTES,
                                 allow_private=tuple(allow_private))
            async with Fetcher(limits, cache=FetchCache()) as own:
                return await _lookup(own, directory_url, ident, leaf)
    except TimeoutError:
        why = f"no answer within {timeout:g}s"
    except _Unavailable as exc:
        why = str(exc)
    except Exception as exc:  # whatever the answer did to the parser: never the scan's end
        why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
    return RenewalInfo(None, f"ACME Renewal Information from {where} unavailable "
                             f"({why}); using the default")
