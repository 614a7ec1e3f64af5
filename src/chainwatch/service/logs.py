"""One logging configuration for ``serve``, ``lab --serve`` and the other long-running
commands: structured lines (``key=value`` text, or one JSON object per line with
``--log-format json``), every configured secret masked by a filter on the handler, and
httpx's per-request INFO lines silenced (they carry every request URL, the secret paths
and ``?token=`` of webhook URLs included).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Iterable
from typing import TextIO

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from chainwatch.alerts.outbox import config_secrets
from chainwatch.config.values import Inventory
from chainwatch.model.names import printable
from chainwatch.model.redaction import Redactor
from chainwatch.model.times import iso

QUIET = ("httpx", "httpcore", "apprise", "hpack", "asyncio")
"""Loggers held at WARNING: their INFO/DEBUG lines echo URLs and headers."""


class RedactingFilter(logging.Filter):
    """Masks secrets in the final message (arguments merged) and in exception text."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self.redactor(message), None
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        return True


class TextFormatter(logging.Formatter):
    """One line per record: the message's non-printable characters are escapes
    (:func:`~chainwatch.model.names.printable`), so a line break in a name taken from a
    certificate or a server cannot forge a log line. A traceback follows on its own
    lines, each indented and escaped the same way."""

    def format(self, record: logging.LogRecord) -> str:
        when = iso(dt.datetime.fromtimestamp(record.created, dt.UTC))
        message = printable(record.getMessage())
        line = f"{when} level={record.levelname.lower()} logger={record.name} {message}"
        if record.exc_text:
            line += "".join(f"\n  {printable(text)}" for text in record.exc_text.splitlines())
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": iso(dt.datetime.fromtimestamp(record.created, dt.UTC)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, sort_keys=False)


def secrets_of(inventory: Inventory | None, db_url: str | None = None) -> list[str]:
    """The secrets a process holds: every readable alert credential and the database
    password."""
    out: list[str] = []
    if inventory is not None and inventory.alerts is not None:
        out.extend(config_secrets(inventory.alerts))
    if db_url:
        try:
            password = make_url(db_url).password
        except ArgumentError:
            password = None
        if password:
            out.append(str(password))
    return out


def configure(*, secrets: Iterable[str] = (), fmt: str = "text",
              level: int = logging.INFO, stream: TextIO | None = None) -> Redactor:
    """Install the one handler on the root logger; returns its :class:`Redactor`, to
    which a reload adds the new inventory's secrets."""
    redactor = Redactor(secrets)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RedactingFilter(redactor))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    return redactor
