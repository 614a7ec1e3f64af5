"""Chat, mail and push through Apprise (any Apprise URL: ``slack://``, ``mailto://``,
``tgram://``, ``ntfy://``, ...). The URL carries credentials and is never shown.

Apprise reports failure as ``False`` and explains in its log; the explanation is kept
(redacted, truncated) as the error's reason. Every Apprise plugin has connect and read
timeouts of its own (``cto``/``rto`` URL parameters; 4 s, SMTP 15 s, by default), and
the whole notification is limited to ``timeout`` seconds."""

from __future__ import annotations

import logging
import threading

from chainwatch.alerts.channels._base import (
    MAX_ERROR_BODY,
    DeliveryError,
    Payload,
    body,
    redact,
    title,
)

_TYPES = {"page": "failure", "watchdog": "failure", "ticket": "warning", "notify": "warning",
          "resolve": "success", "test": "info"}
_LOCK = threading.Lock()  # Apprise logs to one global logger: one capture at a time


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # a malformed log call must not break delivery
            self.messages.append(record.msg if isinstance(record.msg, str) else "?")


class AppriseSender:
    """Sends ``title`` and ``body`` of a message to one Apprise URL."""

    def __init__(self, name: str, url: str, *, timeout: float = 60.0) -> None:
        self.name = name
        self._url = url
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"AppriseSender({self.name!r})"

    def send(self, payload: Payload) -> None:
        import apprise

        scheme = self._url.split("://", 1)[0] if "://" in self._url else "?"
        notifier = apprise.Apprise()
        logger = logging.getLogger("apprise")
        capture = _Capture()
        with _LOCK:
            logger.addHandler(capture)
            try:
                if not notifier.add(self._url):
                    raise DeliveryError(False, f"{self.name}: not a usable Apprise URL "
                                               f"(scheme {scheme!r})")
                ok = notifier.notify(
                    body=body(payload), title=title(payload),
                    notify_type=_TYPES.get(str(payload.get("event")), apprise.NotifyType.INFO),
                    timeout=self.timeout,
                )
            finally:
                logger.removeHandler(capture)
        if ok:
            return
        reason = redact(capture.messages[-1], [self._url]) if capture.messages else "failed"
        if len(reason) > MAX_ERROR_BODY:
            reason = reason[:MAX_ERROR_BODY] + "…"
        raise DeliveryError(True, f"{self.name}: {scheme}:// notification failed: {reason}")
