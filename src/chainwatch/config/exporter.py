"""The exporter's config file (``chainwatch exporter --config FILE``), DESIGN.md "Read side"::

    profiles:                      # named profiles, exactly as in the inventory
      old-devices: {trust: ["mozilla@2016-06-01"], building: legacy}
    modules:                       # ?module=NAME; every key optional
      default: {profiles: [mozilla, legacy:mozilla]}
      smtp:    {profiles: [mozilla], starttls: smtp, timeout: 5s}
      devices: {profiles: [old-devices], sni: devices.example.net, warn_days: 60}
    allow: [10.0.0.0/8, 192.0.2.10]   # optional: the only addresses it may probe
    concurrency: 16                # probes in flight at once (default 16)

Errors name the file, line and field (:class:`~chainwatch.errors.InventoryError`, exit 3),
like the inventory's. Without a file the exporter has one module, ``default``: the
``mozilla`` profile, a 10 s timeout.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated

from pydantic import AfterValidator, Field, StrictInt, ValidationError

from chainwatch.config.build import _Builder, read_mapping
from chainwatch.config.errors import _validation_error
from chainwatch.config.schema import (
    MAX_INVENTORY_BYTES,
    Days,
    Duration,
    StartTLSName,
    Text,
    YamlPath,
    _Edge,
    _ProfileModel,
)
from chainwatch.errors import InventoryError
from chainwatch.model import Profile
from chainwatch.model.names import StartTLS
from chainwatch.probe.fetchpolicy import IPNetwork, allow_networks
from chainwatch.stores import resolve_profile

DEFAULT_MODULE = "default"
DEFAULT_TIMEOUT = dt.timedelta(seconds=10)
DEFAULT_CONCURRENCY = 16
MAX_CONCURRENCY = 1024


@dataclass(frozen=True)
class Module:
    """How ``/probe?module=NAME`` probes and judges a target.

    Attributes:
        name: the module's name.
        profiles: the client populations to judge for (default ``mozilla``).
        starttls: upgrade protocol, or ``None``.
        sni: server name to send (and to check the leaf against) instead of the host.
        timeout: the limit on each phase of a probe (the scrape timeout caps it further).
        warn_days / crit_days: thresholds on ``days_left`` (``chainwatch_target_status``).
    """

    name: str
    profiles: tuple[Profile, ...] = field(repr=False)
    starttls: StartTLS | None = None
    sni: str | None = None
    timeout: dt.timedelta = DEFAULT_TIMEOUT
    warn_days: int = 30
    crit_days: int = 7


@dataclass(frozen=True)
class ExporterConfig:
    """A validated exporter config.

    Attributes:
        path: the file (``None``: built-in defaults).
        modules: by name.
        allow: the networks targets may resolve to; ``None``: any address, as
            blackbox_exporter does.
        concurrency: probes in flight at once; further scrapes wait (within their
            scrape timeout).
    """

    path: Path | None
    modules: Mapping[str, Module]
    allow: tuple[IPNetwork, ...] | None = None
    concurrency: int = DEFAULT_CONCURRENCY


def _check_concurrency(value: int) -> int:
    if not 1 <= value <= MAX_CONCURRENCY:
        raise ValueError(f"must be 1-{MAX_CONCURRENCY}, got {value}")
    return value


class _ModuleModel(_Edge):
    profiles: list[Text] | None = None
    starttls: StartTLSName | None = None
    sni: Text | None = None
    timeout: Duration | None = None
    warn_days: Days | None = None
    crit_days: Days | None = None


class _ExporterModel(_Edge):
    profiles: dict[str, _ProfileModel] = Field(default_factory=dict)
    modules: dict[str, _ModuleModel] = Field(default_factory=dict)
    allow: list[Text] | None = None
    concurrency: Annotated[StrictInt, AfterValidator(_check_concurrency)] = DEFAULT_CONCURRENCY


def default_config() -> ExporterConfig:
    """The config without a file: one ``default`` module (``mozilla``, 10 s)."""
    module = Module(DEFAULT_MODULE, profiles=(resolve_profile("mozilla"),))
    return ExporterConfig(path=None, modules=MappingProxyType({DEFAULT_MODULE: module}))


def parse_exporter_config(text: str, *, path: Path, source: str | None = None) -> ExporterConfig:
    """Validate exporter config ``text`` read from ``path``; raises :class:`InventoryError`."""
    source = str(path) if source is None else source
    path = path.resolve()
    doc = read_mapping(text, source, _ExporterModel.model_fields)
    try:
        model = _ExporterModel.model_validate(
            {k: v for k, v in doc.data.items() if v is not None})
    except ValidationError as exc:
        raise _validation_error(exc, doc, source) from None
    builder = _Builder(doc, source, path.parent)
    for name, pm in model.profiles.items():
        builder.named[name] = builder.named_profile(name, pm)
    mozilla = (builder.profile("mozilla", ("modules",)),)
    modules: dict[str, Module] = {}
    for name, mm in model.modules.items():
        where: YamlPath = ("modules", name)
        sni = None
        if mm.sni is not None:
            sni = builder.hostname(mm.sni.lower().rstrip("."), (*where, "sni"))
        warn = 30 if mm.warn_days is None else mm.warn_days
        crit = 7 if mm.crit_days is None else mm.crit_days
        if crit > warn:
            raise builder.fail((*where, "crit_days" if mm.crit_days is not None else "warn_days"),
                               f"crit_days ({crit}) must not exceed warn_days ({warn})")
        modules[name] = Module(
            name=name,
            profiles=builder.profiles(mm.profiles, (*where, "profiles"), mozilla),
            starttls=None if mm.starttls is None else StartTLS(mm.starttls),
            sni=sni,
            timeout=mm.timeout or DEFAULT_TIMEOUT,
            warn_days=warn,
            crit_days=crit,
        )
    if not modules:
        modules[DEFAULT_MODULE] = Module(DEFAULT_MODULE, profiles=mozilla)
    allow = None
    if model.allow is not None:
        nets: list[IPNetwork] = []
        for i, spec in enumerate(model.allow):
            try:
                nets.extend(allow_networks([spec]))
            except ValueError as exc:
                raise builder.fail(("allow", i), str(exc)) from None
        allow = tuple(nets)
    return ExporterConfig(path=path, modules=MappingProxyType(modules), allow=allow,
                          concurrency=model.concurrency)


def load_exporter_config(path: str | os.PathLike[str] | None) -> ExporterConfig:
    """Read and validate the exporter config at ``path`` (``None``: the defaults)."""
    if path is None:
        return default_config()
    source = os.fspath(path)
    file = Path(source).expanduser()
    try:
        if file.stat().st_size > MAX_INVENTORY_BYTES:
            raise InventoryError(source, None, None, f"larger than {MAX_INVENTORY_BYTES} bytes")
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(source, None, None, "no such file") from None
    except IsADirectoryError:
        raise InventoryError(source, None, None, "is a directory, not a config file") from None
    except UnicodeDecodeError as exc:
        raise InventoryError(source, None, None, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise InventoryError(source, None, None, exc.strerror or str(exc)) from None
    return parse_exporter_config(text, path=file, source=source)
