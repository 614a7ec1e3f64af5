"""Named client populations: short names for profile specs, with their justification.

Only populations whose trust store and path building can be stated from a public,
checkable source are listed; each says what it assumes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    spec: str
    description: str


_PRESETS = (
    Preset(
        "openssl-1.0",
        "legacy:system",
        "OpenSSL 1.0.x clients (curl, Python, Ruby, PHP linked against it) on this machine's "
        "CA file: untrusted-first path building without backtracking.",
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}
