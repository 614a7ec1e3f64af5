"""The chainwatch exception tree and its mapping to exit statuses.

Exceptions signal *bad input or an unusable environment*; outcomes of analysis
(an untrusted chain, an expired leaf) are never exceptions, they are findings.

::

    ChainwatchError                 exit 3 (UNKNOWN) unless caught
    ├── InputError                  anything the user handed us is unusable
    │   ├── BundleError             a certificate bundle cannot be parsed (names the file)
    │   ├── ProfileError            a profile spec is malformed or names a missing store
    │   ├── StoreError              a trust store cannot be loaded or has no snapshot
    │   ├── InventoryError          an inventory file is invalid (names file, line, field)
    │   ├── AlertError              an alerts command names an unknown target/channel/step
    │   └── LabError                the lab cannot start (address in use, not loopback)
    ├── ProbeError                  an endpoint could not be probed (carries a reason code)
    ├── StorageError                the database cannot be opened or used (names the URL,
    │                               password redacted)
    └── DeliveryError               one alert message was not delivered (``retryable``)

Every message is one line that names the thing at fault (file, line, field, host, URL).
The ``chainwatch`` command prints it as ``chainwatch: error: MESSAGE`` and exits 3; any
other exception is an internal error (one line too; ``CHAINWATCH_DEBUG=1`` adds the
traceback for a bug report).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_WARNING = 1
EXIT_CRITICAL = 2
EXIT_UNKNOWN = 3


class ChainwatchError(Exception):
    """Base of every error chainwatch raises on purpose."""

    exit_status: int = EXIT_UNKNOWN


class InputError(ChainwatchError):
    """Something the user handed us (a file, a spec, a flag) is unusable."""


class BundleError(InputError):
    """A certificate bundle or key file cannot be parsed.

    ``source`` names the file (or ``<stdin>``/``<bytes>``) so the message can say where.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class ProfileError(InputError):
    """A client-profile spec is malformed or refers to something that does not exist."""


class StoreError(InputError):
    """A trust store cannot be loaded (missing file, no snapshot for a date, empty store)."""


class InventoryError(InputError):
    """An inventory file is invalid; the message names file, line and field."""

    def __init__(self, path: str, line: int | None, field: str | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.reason = reason
        where = path if line is None else f"{path}:{line}"
        what = f" {field}:" if field else ""
        super().__init__(f"{where}:{what} {reason}")


class ProbeError(ChainwatchError):
    """An endpoint could not be probed. ``reason`` is a short machine code
    (``refused``, ``timeout``, ``tls_alert``, ``not_tls``, ``starttls_refused``, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class StorageError(ChainwatchError):
    """The database cannot be opened or used. ``url`` is shown with its password
    redacted; ``reason`` says what failed and, where it can, what to do."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"database {url}: {reason}")


class DeliveryError(ChainwatchError):
    """A message could not be delivered.

    ``retryable`` says whether sending the same message later may succeed (timeouts,
    refused connections, HTTP 408/425/429/5xx) or not (the receiver rejected it:
    other 4xx, an invalid URL). The message is one line with no secrets in it: no
    URL query strings, tokens, routing keys or passwords, and at most
    :data:`~chainwatch.alerts.channels._base.MAX_ERROR_BODY` characters of a response
    body. ``retry_after`` is the receiver's ``Retry-After``, in seconds, when it sent one.
    """

    def __init__(self, retryable: bool, message: str, *, retry_after: float | None = None) -> None:
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message)


class AlertError(InputError):
    """An alert operation cannot be done as asked (nothing to acknowledge, unknown
    channel, ...). The message says what to do instead."""


class LabError(InputError):
    """The lab cannot start (an address that is not loopback, a port in use...)."""
