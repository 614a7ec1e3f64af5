"""Secrets out of every text chainwatch shows, logs or stores.

:func:`forms` lists what of one secret must never appear: the whole value in its plain,
URL-encoded and base64 forms; for a URL, its password, ``user:password`` (also base64, as
HTTP Basic authentication sends it), and the path segments and query values that look
like tokens. :class:`Redactor` replaces each with ``***``.

What is *not* redacted, on purpose: fragments shorter than :data:`MIN_SECRET`, plain
lower-case words (``services``, ``hooks``), host names and IP addresses. Redacting those
blanked unrelated text everywhere (``http://***:19800``, a channel named ``***500``)
while protecting nothing: a secret is the whole value or a token-like part of it.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

MIN_SECRET = 8
"""Shortest value redacted on its own: shorter strings are words, not tokens."""

MASK = "***"

_URL_QUERY = re.compile(r"\b([a-z][a-z0-9+.-]*://[^\s?#'\"<>]*)[?#][^\s'\"<>]*", re.IGNORECASE)
_HOSTLIKE = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+|\[?[0-9A-Fa-f:]+\]?")


def _tokenlike(part: str) -> bool:
    """A piece of a secret URL worth redacting on its own."""
    if len(part) < MIN_SECRET:
        return False
    if part.isalpha() and part.islower():
        return False  # a word of the path, not a token
    return not _HOSTLIKE.fullmatch(part)


def _b64(text: str) -> set[str]:
    raw = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return {raw, raw.rstrip("=")}


def forms(secret: str) -> set[str]:
    """Every form of ``secret`` that must be masked (see the module docstring)."""
    secret = secret.strip()
    if len(secret) < 4:  # never mask one or two letters everywhere; the caller's secret
        return set()     # is still not shown, it is not in any text chainwatch makes
    pieces = {secret}
    parts = urlsplit(secret) if "://" in secret else None
    if parts is not None and parts.scheme:
        if parts.password:
            pieces.add(parts.password)
            pieces.add(f"{parts.username or ''}:{parts.password}")
        if parts.username and _tokenlike(parts.username):
            pieces.add(parts.username)
        if parts.scheme.lower() not in ("http", "https"):
            # Apprise-style URLs carry tokens where a host would be (tgram://TOKEN/CHAT).
            pieces.update(p for p in re.split(r"[:@]", parts.netloc) if _tokenlike(p))
        pieces.update(p for p in parts.path.split("/") if _tokenlike(unquote(p)))
        pieces.update(v for _, v in parse_qsl(parts.query, keep_blank_values=True)
                      if _tokenlike(v))
    out: set[str] = set()
    for piece in pieces:
        out.update({piece, unquote(piece), quote(piece, safe=""), quote_plus(piece)})
        out.update(_b64(piece))
    return {p for p in out if len(p) >= 4}


def basic_auth(user: str, password: str) -> str:
    """The base64 ``user:password`` an HTTP Basic ``Authorization`` header carries."""
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class Redactor:
    """Masks a growing set of secrets in text (thread-safe: logging calls it from every
    thread). Also cuts the query string of any URL, where tokens usually travel."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._needles: tuple[str, ...] = ()
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if s)
            found: set[str] = set()
            for s in self._secrets:
                found.update(forms(s))
            self._needles = tuple(sorted(found, key=len, reverse=True))

    def replace(self, secrets: Iterable[str]) -> None:
        """Forget the old secrets (a reload changed them) and mask these."""
        with self._lock:
            self._secrets = set()
        self.add(*secrets)

    def __call__(self, text: str, *, one_line: bool = False) -> str:
        for needle in self._needles:
            if needle in text:
                text = text.replace(needle, MASK)
        text = _URL_QUERY.sub(r"\1?…", text)
        return " ".join(text.split()) if one_line else text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` on one line, without any form of ``secrets`` and URL query strings."""
    return Redactor(secrets)(text, one_line=True)
