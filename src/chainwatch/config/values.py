"""The inventory's domain values: :class:`Inventory`, :class:`Defaults`, :class:`Endpoint`,
:class:`FileSource`. Frozen; nothing in them does I/O when built."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from chainwatch.alerts.config import AlertsConfig
from chainwatch.model import Profile, RenewalPolicy, Target
from chainwatch.model.names import StartTLS
from chainwatch.model.names import is_ip as _is_ip
from chainwatch.probe.fetchpolicy import IPNetwork

STARTTLS_PORTS: Mapping[StartTLS, int] = MappingProxyType({s: s.default_port for s in StartTLS})
"""The port an endpoint gets when it names a STARTTLS protocol but no port."""


@dataclass(frozen=True)
class Defaults:
    """The ``defaults`` section with every value filled in."""

    profiles: tuple[Profile, ...] = field(repr=False)
    warn_days: int = 30
    crit_days: int = 7
    interval: dt.timedelta = dt.timedelta(hours=1)
    timeout: dt.timedelta = dt.timedelta(seconds=10)
    renewal: RenewalPolicy = field(default_factory=RenewalPolicy)
    retention: dt.timedelta | None = None
    revocation: bool = False


@dataclass(frozen=True)
class Endpoint:
    """One endpoint to probe, with the defaults applied.

    Attributes:
        host: lower-case host name or IP literal (IDNs in their ASCII form).
        port: TCP port (443, or the STARTTLS protocol's port).
        ip: connect to this address only; ``None``: every address ``host`` resolves to.
        sni: server name sent, when it differs from ``host``; see :attr:`server_name`.
        starttls: upgrade protocol, or ``None`` for TLS from the first byte.
        profiles: client populations that must trust the endpoint.
        tags / owner / zone: free labels; ``zone`` picks the vantage queue.
        interval / timeout: how often to probe, and the limit on one probe.
        warn_days / crit_days: thresholds on ``days_left``.
        renewal: when its certificates are expected to be renewed (``RENEWAL_OVERDUE``).
        acme: the ACME directory URL of its CA, for ACME Renewal Information (RFC 9773).
        line: where the endpoint is in the inventory.
    """

    host: str
    port: int
    profiles: tuple[Profile, ...] = field(repr=False)
    ip: str | None = None
    sni: str | None = None
    starttls: StartTLS | None = None
    tags: tuple[str, ...] = ()
    owner: str | None = None
    zone: str = "default"
    interval: dt.timedelta = dt.timedelta(hours=1)
    timeout: dt.timedelta = dt.timedelta(seconds=10)
    warn_days: int = 30
    crit_days: int = 7
    renewal: RenewalPolicy = field(default_factory=RenewalPolicy)
    acme: str | None = None
    revocation: bool = False
    line: int | None = field(default=None, compare=False)

    @property
    def server_name(self) -> str | None:
        """The SNI to send: ``sni``, else ``host`` unless it is an IP literal."""
        if self.sni is not None:
            return self.sni
        return None if _is_ip(self.host) else self.host

    @cached_property
    def target(self) -> Target:
        """What the probe is given (built once: a scan asks for it at every step)."""
        return Target(
            host=self.host,
            port=self.port,
            ip=self.ip,
            sni=self.sni,
            starttls=None if self.starttls is None else self.starttls.value,
        )


@dataclass(frozen=True)
class FileSource:
    """Certificate files to watch.

    Attributes:
        pattern: an absolute glob (``**`` allowed); relative patterns in the file are
            resolved against the inventory's directory.
        profiles / warn_days / crit_days / tags / owner: as for endpoints.
        host: a name the leaf must cover, if any.
        line: where the entry is in the inventory.
    """

    pattern: str
    profiles: tuple[Profile, ...] = field(repr=False)
    host: str | None = None
    tags: tuple[str, ...] = ()
    owner: str | None = None
    warn_days: int = 30
    crit_days: int = 7
    line: int | None = field(default=None, compare=False)

    def paths(self) -> tuple[Path, ...]:
        """What the pattern matches now, sorted: every match that is not a directory
        (a FIFO or device is returned too, for the reader to refuse by name).

        ``**`` never descends through a symbolic link to a directory, so a link loop
        (``up -> ..``) cannot multiply the matches; symbolic links to files are matched.
        """
        return tuple(sorted(p for p in _glob(self.pattern) if not p.is_dir()))


_MAGIC = frozenset("*?[")


def _glob(pattern: str) -> Iterator[Path]:
    """Matches of an absolute pattern, by :meth:`pathlib.Path.glob`, which does not
    follow symbolic links while expanding ``**`` (:func:`glob.glob` does, into loops)."""
    parts = Path(pattern).parts
    fixed = 0
    while fixed < len(parts) and not _MAGIC & set(parts[fixed]):
        fixed += 1
    base = Path(*parts[:fixed]) if fixed else Path(".")
    if fixed == len(parts):
        if base.exists() or base.is_symlink():
            yield base
        return
    rest = parts[fixed:]
    if rest[-1] == "**":  # glob.glob's "everything below"; pathlib's would list directories
        rest = (*rest, "*")
    try:
        yield from base.glob(str(Path(*rest)))
    except OSError:
        return


DEFAULT_ZONE = "default"
"""The zone of an endpoint that names none."""
DEFAULT_ZONE_CONCURRENCY = 64
"""Probes in flight per batch in a zone that does not say (``zones.NAME.concurrency``)."""
QUEUE_PREFIX = "chainwatch."


@dataclass(frozen=True)
class Zone:
    """A vantage zone of distributed mode (the ``zones`` section; see README, Deployment).

    Attributes:
        name: what endpoints name in ``zone:``.
        queue: the broker queue its batches go to (default ``chainwatch.NAME``).
        concurrency: probes in flight in one batch on a worker of the zone.
    """

    name: str
    queue: str
    concurrency: int = DEFAULT_ZONE_CONCURRENCY

    @classmethod
    def named(cls, name: str) -> Zone:
        return cls(name=name, queue=QUEUE_PREFIX + name)


@dataclass(frozen=True)
class MetricsSettings:
    """The ``metrics`` section: what ``/metrics`` adds to its default series.

    Attributes:
        per_cert: one ``chainwatch_cert_not_after_timestamp_seconds`` series per served
            certificate position (off by default: it multiplies the series count).
    """

    per_cert: bool = False


@dataclass(frozen=True)
class Inventory:
    """A validated inventory.

    Attributes:
        path: the file, absolute.
        defaults: the ``defaults`` section, filled in.
        profiles: named profiles by name (each a :class:`Profile` whose ``spec`` is the name).
        endpoints / files: in file order.
        alerts: the ``alerts`` section, or ``None`` when the file has none.
        allow_private: ``fetch.allow_private``: non-public networks that URLs taken from
            certificates and ACME answers may be fetched from (none by default).
        metrics: the ``metrics`` section.
        zones: the ``zones`` section by name (a zone used but not listed has the defaults).
        document: the file's data without its ``alerts`` section: what a distributed batch
            carries to a worker (which holds no channel secrets), with only its endpoints.
    """

    path: Path
    defaults: Defaults
    profiles: Mapping[str, Profile] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )
    endpoints: tuple[Endpoint, ...] = ()
    files: tuple[FileSource, ...] = ()
    alerts: AlertsConfig | None = None
    allow_private: tuple[IPNetwork, ...] = ()
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    zones: Mapping[str, Zone] = field(default_factory=lambda: MappingProxyType({}))
    document: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}),
                                        repr=False, compare=False)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def zone(self, name: str) -> Zone:
        """The zone called ``name``: as configured, else with the defaults."""
        return self.zones.get(name) or Zone.named(name)

    def used_zones(self) -> tuple[Zone, ...]:
        """Every zone that some endpoint is in, or that the ``zones`` section lists."""
        names = dict.fromkeys([*self.zones, *(e.zone for e in self.endpoints)])
        return tuple(self.zone(n) for n in names)


def by_timeout(endpoints: Iterable[Endpoint]) -> dict[float, list[Target]]:
    """The endpoints' targets grouped by probe timeout (seconds), in inventory order: the
    groups a sweep probes, one :func:`~chainwatch.probe.parallel.probe_all` each."""
    groups: dict[float, list[Target]] = {}
    for e in endpoints:
        groups.setdefault(e.timeout.total_seconds(), []).append(e.target)
    return groups

