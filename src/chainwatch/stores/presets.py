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
        "OpenSSL 1.0.x clients (curl, Python, Ruby, PHP, Node.js <= 8 built against it) "
        "using this machine's CA file: untrusted-first path building, no backtracking.",
    ),
    Preset(
        "nodejs-8",
        "legacy:mozilla@2017-05-30",
        "Node.js 8.x: links OpenSSL 1.0.2 (legacy building) and carries its own copy of "
        "Mozilla's list; modelled as the list at 8.0.0's release (2017-05-30). Later 8.x "
        "releases refreshed the list, so this is the oldest 8.x population.",
    ),
    Preset(
        "nodejs-10",
        "mozilla@2018-04-24",
        "Node.js 10.x: OpenSSL 1.1.x (modern building) with its own copy of Mozilla's list, "
        "modelled as the list at 10.0.0's release (2018-04-24); it ignores the OS store "
        "unless started with --use-openssl-ca.",
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}
