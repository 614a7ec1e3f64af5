"""The file channel: each delivery appended to a file as one JSON line (the generic
webhook payload), written with a single ``write`` on a file opened for appending so
that concurrent writers and a reader with ``tail -f`` see whole lines."""

from __future__ import annotations

import json
import os
from pathlib import Path

from chainwatch.alerts.channels._base import DeliveryError, Payload


class FileSender:
    """Appends to ``path`` (created with mode 0600, its missing directories with 0700)."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path

    def __repr__(self) -> str:
        return f"FileSender({self.name!r}, {str(self.path)!r})"

    def send(self, payload: Payload) -> None:
        line = (json.dumps(dict(payload), sort_keys=True) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise DeliveryError(True, f"{self.name}: cannot open {self.path}: "
                                f"{exc.strerror or exc}") from None
        try:
            os.write(fd, line)
            os.fsync(fd)
        except OSError as exc:
            raise DeliveryError(True, f"{self.name}: cannot write {self.path}: "
                                f"{exc.strerror or exc}") from None
        finally:
            os.close(fd)
