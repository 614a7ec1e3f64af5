"""The local incident lab: ``chainwatch lab`` serves the certificate failures of real
outages (and badssl-style cases) on loopback, with an inventory to check them, so users
can try chainwatch and their alert routing without touching production.

- :mod:`chainwatch.testing.lab.scenarios`: the hierarchies and what each endpoint serves;
- :mod:`chainwatch.testing.lab.servers`: the loopback TLS / STARTTLS servers (shared with the
  test suite);
- :mod:`chainwatch.testing.lab.core`: :class:`Lab`, which runs them and writes the files.
"""

from chainwatch.testing.lab.core import (
    DEFAULT_DIR,
    DEFAULT_LISTEN,
    DEFAULT_PORT_BASE,
    Lab,
    LabEndpoint,
    LabError,
    run_foreground,
    serve_foreground,
)

__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_LISTEN",
    "DEFAULT_PORT_BASE",
    "Lab",
    "LabEndpoint",
    "LabError",
    "run_foreground",
    "serve_foreground",
]
