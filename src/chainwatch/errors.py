"""The chainwatch exception tree and its mapping to exit statuses.

Exceptions signal *bad input or an unusable environment*; outcomes of analysis
(an untrusted chain, an expired leaf) are never exceptions, they are findings.

::

    ChainwatchError                 exit 3 (UNKNOWN) unless caught
    ├── InputError                  anything the user handed us is unusable
    │   ├── BundleError             a certificate bundle cannot be parsed (names the file)
    │   ├── ProfileError            a profile spec is malformed or names a missing store
    │   ├── StoreError              a trust store cannot be loaded or has no snapshot
    │   └── InventoryError          an inventory file is invalid (names file, line, field)
    ├── ProbeError                  an endpoint could not be probed (carries a reason code)
    └── StorageError                the database cannot be used (names it, says why)

Every message is one line that names the thing at fault (file, line, field, host).
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
    """The database cannot be opened or written (unreachable, full disk, locked, broken).
    The message names the database (no password) and gives the driver's reason in one
    line, never the SQL or its parameters (they may hold report data)."""
