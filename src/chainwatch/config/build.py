"""Step 3 of loading: edge models to domain values (defaults applied, profiles resolved,
paths made absolute, cross references checked), and the entry points."""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from chainwatch.alerts.config import (
    DEFAULT_BROKEN,
    DEFAULT_SHORT_LIVED,
    DEFAULT_STEPS,
    Action,
    AlertsConfig,
    AlertStep,
    AppriseChannel,
    BrokenRule,
    Channel,
    Deadman,
    FileChannel,
    GitHubChannel,
    GitLabChannel,
    JiraChannel,
    PagerDutyChannel,
    Route,
    Secret,
    ShortLivedPolicy,
    ShortLivedStep,
    WebhookChannel,
)
from chainwatch.config.errors import _validation_error
from chainwatch.config.schema import (
    _HOST_NAME,
    _IPV4,
    MAX_INVENTORY_BYTES,
    ZONE_NAME,
    YamlPath,
    _AlertsModel,
    _AppriseModel,
    _DefaultsModel,
    _EndpointModel,
    _FileChannelModel,
    _FileModel,
    _GitHubModel,
    _GitLabModel,
    _InventoryModel,
    _JiraModel,
    _PagerDutyModel,
    _ProfileModel,
    _RenewalRuleModel,
    _ShortLivedModel,
    _show,
    _WebhookModel,
    renewal_policy,
)
from chainwatch.config.values import (
    DEFAULT_ZONE,
    STARTTLS_PORTS,
    Defaults,
    Endpoint,
    FileSource,
    Inventory,
    MetricsSettings,
    Zone,
)
from chainwatch.config.yaml import _Document, _field_name, _read_yaml
from chainwatch.errors import BundleError, InputError, InventoryError, ProfileError
from chainwatch.model import ClientHello, Profile, RenewalPolicy, Store, Target
from chainwatch.model.behaviours import BEHAVIOURS
from chainwatch.model.bundle import read_source
from chainwatch.model.names import StartTLS, shown, to_ascii
from chainwatch.probe.fetchpolicy import IPNetwork, allow_networks
from chainwatch.stores import resolve_profile, resolve_store
from chainwatch.stores.presets import PRESETS

# -- step 3: edge models to domain values ---------------------------------------------------


_MAX_PASSWORD_BYTES = 4096
_NOT_IP = frozenset("ghijklmnopqrstuvwxyz_-")
"""Characters no IPv4 or IPv6 address text holds: a name with one is no address (most
inventory names), without the cost of ``ipaddress`` refusing it."""


def _is_ip(text: str) -> bool:
    if _IPV4.fullmatch(text):
        return True
    if ":" not in text and not _NOT_IP.isdisjoint(text.lower()):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _canonical_ip(text: str) -> str:
    """``str(ipaddress.ip_address(text))`` (``ValueError`` when ``text`` is no address),
    without ``ipaddress`` for a canonical IPv4 address, which is its own answer."""
    if _IPV4.fullmatch(text):
        return text
    return str(ipaddress.ip_address(text))


def _looks_like_spec(ref: str) -> bool:
    return ref in ("mozilla", "system") or ref in PRESETS or ":" in ref or "@" in ref


class _Builder:
    """Applies defaults, resolves profiles and paths, checks cross references."""

    def __init__(self, doc: _Document, source: str, base_dir: Path) -> None:
        self.doc = doc
        self.source = source
        self.base_dir = base_dir
        self.named: dict[str, Profile] = {}
        self._specs: dict[str, Profile] = {}
        self.renewal_rules: list[_RenewalRuleModel] = []

    def fail(self, path: YamlPath, reason: str) -> InventoryError:
        return InventoryError(self.source, self.doc.line(path), _field_name(path) or None, reason)

    # profiles ---------------------------------------------------------------------------

    def named_profile(self, name: str, model: _ProfileModel) -> Profile:
        path: YamlPath = ("profiles", name)
        if _looks_like_spec(name):
            raise self.fail(path, f"profile name {name!r} looks like a profile spec; "
                                  "choose a name without ':' or '@' that is not a built-in")
        if not model.trust:
            raise self.fail((*path, "trust"), "needs at least one trust store")
        password = self.store_password(model, path)
        stores: list[Store] = []
        for i, spec in enumerate(model.trust):
            where = (*path, "trust", i)
            if spec.startswith("legacy:"):
                raise self.fail(where, "trust lists stores; say building: legacy instead of "
                                       "the legacy: prefix")
            try:
                stores.append(resolve_store(spec, base_dir=self.base_dir, password=password))
            except InputError as exc:
                raise self.fail(where, str(exc)) from None
        anchors = tuple(dict.fromkeys(a for store in stores for a in store.anchors))
        source = "; ".join(f"{s.name} ({s.source})" if s.source else s.name for s in stores)
        return Profile(
            spec=name,
            store=Store(name=name, anchors=anchors, source=source),
            building=BEHAVIOURS[model.building],
            aia=model.aia,
            client_hello=self.client_hello(model, path),
        )

    def client_hello(self, model: _ProfileModel, path: YamlPath) -> ClientHello | None:
        hello = model.client_hello
        if hello is None:
            return None
        if hello.max_version is None and hello.signature is None:
            raise self.fail((*path, "client_hello"),
                            "give max_version and/or signature (or omit client_hello)")
        return ClientHello(max_version=hello.max_version, signature=hello.signature)

    def store_password(self, model: _ProfileModel, path: YamlPath) -> str | None:
        """The keystore password of a named profile (``password_env``/``password_file``),
        or ``None`` for the stores' defaults. Never shown in an error."""
        if model.password_env is not None:
            value = os.environ.get(model.password_env)
            if not value:
                raise self.fail((*path, "password_env"),
                                f"environment variable {model.password_env} is not set")
            return value
        if model.password_file is not None:
            where = (*path, "password_file")
            file = self.path_of(model.password_file, where)
            try:
                data = read_source(file, limit=_MAX_PASSWORD_BYTES)
            except BundleError as exc:
                raise self.fail(where, f"{file}: {exc.reason}") from None
            try:
                text = data.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise self.fail(where, f"{file}: not UTF-8 text") from None
            if not text:
                raise self.fail(where, f"{file} is empty")
            return text
        return None

    def profile(self, ref: str, path: YamlPath) -> Profile:
        if ref in self.named:
            return self.named[ref]
        if ref in self._specs:
            return self._specs[ref]
        try:
            profile = resolve_profile(ref, base_dir=self.base_dir)
        except ProfileError as exc:
            if _looks_like_spec(ref):
                raise self.fail(path, str(exc)) from None
            names = ", ".join(self.named) or "none defined"
            raise self.fail(
                path,
                f"unknown profile {ref!r}: not a name under profiles ({names}) nor a spec "
                "(mozilla, mozilla@YYYY-MM-DD, system, file:PATH, jks:PATH, pkcs12:PATH, "
                "dir:PATH, BEHAVIOUR:STORE, a preset)",
            ) from None
        except InputError as exc:
            raise self.fail(path, str(exc)) from None
        self._specs[ref] = profile
        return profile

    def profiles(
        self, refs: Sequence[str] | None, path: YamlPath, fallback: tuple[Profile, ...]
    ) -> tuple[Profile, ...]:
        if refs is None:
            return fallback
        if not refs:
            raise self.fail(path, "needs at least one profile (omit it for the defaults)")
        chosen = [self.profile(ref, (*path, i)) for i, ref in enumerate(refs)]
        return tuple({p.spec: p for p in chosen}.values())

    # thresholds ---------------------------------------------------------------------------

    def thresholds(
        self, warn: int | None, crit: int | None, path: YamlPath, defaults: Defaults
    ) -> tuple[int, int]:
        warn_days = defaults.warn_days if warn is None else warn
        crit_days = defaults.crit_days if crit is None else crit
        if crit_days > warn_days:
            where = (*path, "crit_days" if crit is not None else "warn_days")
            raise self.fail(
                where, f"crit_days ({crit_days}) must not exceed warn_days ({warn_days})"
            )
        return warn_days, crit_days

    def defaults(self, model: _DefaultsModel) -> Defaults:
        base = Defaults(profiles=())
        profiles = self.profiles(model.profiles, ("defaults", "profiles"), ())
        if not profiles:
            profiles = (self.profile("mozilla", ("defaults",)),)
        warn, crit = self.thresholds(model.warn_days, model.crit_days, ("defaults",), base)
        return Defaults(
            profiles=profiles,
            warn_days=warn,
            crit_days=crit,
            interval=model.interval or base.interval,
            timeout=model.timeout or base.timeout,
            renewal=renewal_policy(model.renew_at, model.grace, base.renewal),
            retention=model.retention,
            revocation=model.revocation,
        )

    # endpoints ----------------------------------------------------------------------------

    def host_and_port(self, raw: str, path: YamlPath) -> tuple[str, int | None]:
        text = raw.strip().lower().rstrip(".")
        if "://" in text or "/" in text:
            raise self.fail(path, f"expected a host name (optionally host:port), not {raw!r}")
        port: str | None = None
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise self.fail(path, f"expected [IPv6]:port, got {raw!r}")
            port = rest[1:] if rest else None
            if not _is_ip(host):
                raise self.fail(path, f"{host!r} is not an IPv6 address")
        elif text.count(":") == 1:
            host, port = text.split(":")
        else:
            host = text
        number: int | None = None
        if port is not None:
            if not port.isdigit() or not 1 <= int(port) <= 65535:
                raise self.fail(path, f"the port after ':' must be 1-65535, got {port!r}")
            number = int(port)
        return self.hostname(host, path), number

    def hostname(self, text: str, path: YamlPath) -> str:
        if _is_ip(text):
            return _canonical_ip(text)
        try:
            ascii_name = to_ascii(text)
        except ValueError as exc:
            raise self.fail(path, str(exc)) from None
        if len(ascii_name) > 253 or not _HOST_NAME.fullmatch(ascii_name):
            raise self.fail(path, f"{shown(text)} is not a valid host name")
        return ascii_name

    def tag_renewal(self, tags: Sequence[str], base: RenewalPolicy) -> RenewalPolicy:
        """``base`` with the first ``renewals`` rule matching one of ``tags`` applied."""
        for rule in self.renewal_rules:
            if set(rule.tags) & set(tags):
                return renewal_policy(rule.renew_at, rule.grace, base)
        return base

    def endpoint(self, i: int, model: _EndpointModel, defaults: Defaults) -> Endpoint:
        path: YamlPath = ("endpoints", i)
        host, embedded_port = self.host_and_port(model.host, (*path, "host"))
        if embedded_port is not None and model.port is not None and model.port != embedded_port:
            raise self.fail((*path, "port"),
                            f"{model.port} conflicts with the port in host ({embedded_port})")
        starttls = None if model.starttls is None else StartTLS(model.starttls)
        port = model.port or embedded_port
        if port is None:
            port = 443 if starttls is None else STARTTLS_PORTS[starttls]
        ip = None
        if model.ip is not None:
            try:
                ip = _canonical_ip(model.ip)
            except ValueError:
                raise self.fail((*path, "ip"), f"must be an IP address, got {model.ip!r}") from None
        sni = None
        if model.sni is not None:
            sni = self.hostname(model.sni.lower().rstrip("."), (*path, "sni"))
            if _is_ip(sni):
                raise self.fail((*path, "sni"), "SNI carries host names, not IP addresses")
            sni = None if sni == host else sni
        warn, crit = self.thresholds(model.warn_days, model.crit_days, path, defaults)
        return Endpoint(
            host=host,
            port=port,
            ip=ip,
            sni=sni,
            starttls=starttls,
            profiles=self.profiles(model.profiles, (*path, "profiles"), defaults.profiles),
            tags=tuple(dict.fromkeys(model.tags)),
            owner=model.owner,
            zone=model.zone or DEFAULT_ZONE,
            interval=model.interval or defaults.interval,
            timeout=model.timeout or defaults.timeout,
            warn_days=warn,
            crit_days=crit,
            renewal=renewal_policy(model.renew_at, model.grace,
                                   self.tag_renewal(model.tags, defaults.renewal)),
            acme=model.acme,
            revocation=defaults.revocation if model.revocation is None else model.revocation,
            line=self.doc.line(path),
        )

    def file_source(self, i: int, model: _FileModel, defaults: Defaults) -> FileSource:
        path: YamlPath = ("files", i)
        pattern = self.path_of(model.path, (*path, "path"))
        warn, crit = self.thresholds(model.warn_days, model.crit_days, path, defaults)
        host = None
        if model.host is not None:
            host = self.hostname(model.host.lower().rstrip("."), (*path, "host"))
        return FileSource(
            pattern=str(pattern),
            profiles=self.profiles(model.profiles, (*path, "profiles"), defaults.profiles),
            host=host,
            tags=tuple(dict.fromkeys(model.tags)),
            owner=model.owner,
            warn_days=warn,
            crit_days=crit,
            line=self.doc.line(path),
        )

    def path_of(self, text: str, path: YamlPath) -> Path:
        """``text`` as an absolute path: ``~`` expanded, relative to the inventory."""
        try:
            p = Path(text).expanduser()
        except RuntimeError as exc:  # ~name of a user this machine does not have
            raise self.fail(path, f"cannot expand {shown(text)}: {exc}") from None
        return p if p.is_absolute() else self.base_dir / p

    # alerts -------------------------------------------------------------------------------

    def secret(self, model: BaseModel, stem: str, where: YamlPath = ()) -> Secret:
        env = getattr(model, f"{stem}_env", None)
        if env is not None:
            return Secret.env(env)
        file = getattr(model, f"{stem}_file", None)
        if file is not None:
            field = (*where, f"{stem}_file")
            path = self.path_of(file, field)
            try:
                mode = path.stat().st_mode
            except OSError:
                mode = None  # missing or unreadable now: named when a delivery needs it
            if mode is not None and not stat.S_ISREG(mode):
                kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
                raise self.fail(field, f"{path}: {kind}; a secret file must be a "
                                       "regular file")
            return Secret.file(path)
        return Secret.inline(getattr(model, stem))

    def channel(self, name: str, model: BaseModel) -> Channel:
        where: YamlPath = ("alerts", "channels", name)
        if isinstance(model, _WebhookModel):
            return WebhookChannel(name=name, url=self.secret(model, "url", where))
        if isinstance(model, _PagerDutyModel):
            return PagerDutyChannel(
                name=name, routing_key=self.secret(model, "routing_key", where),
                api_url=model.api_url,
            )
        if isinstance(model, _AppriseModel):
            return AppriseChannel(name=name, url=self.secret(model, "url", where))
        if isinstance(model, _FileChannelModel):
            return FileChannel(name=name, path=self.path_of(model.path, (*where, "path")))
        if isinstance(model, _GitHubModel):
            return GitHubChannel(name=name, repo=model.repo,
                                 token=self.secret(model, "token", where),
                                 api_url=model.api_url, labels=tuple(model.labels))
        if isinstance(model, _GitLabModel):
            return GitLabChannel(name=name, project=model.project,
                                 token=self.secret(model, "token", where), url=model.url,
                                 labels=tuple(model.labels))
        assert isinstance(model, _JiraModel)
        return JiraChannel(name=name, url=model.url, project=model.project,
                           token=self.secret(model, "token", where), user=model.user,
                           issue_type=model.issue_type, labels=tuple(model.labels))

    def channel_refs(
        self, names: Sequence[str] | None, path: YamlPath, known: Mapping[str, Channel]
    ) -> tuple[str, ...]:
        if names is None:
            return ()
        if not names:
            raise self.fail(path, "needs at least one channel (omit it for every channel)")
        for j, name in enumerate(names):
            if name not in known:
                defined = ", ".join(known) or "none defined"
                raise self.fail((*path, j),
                                f"unknown channel {name!r} (alerts.channels: {defined})")
        return tuple(dict.fromkeys(names))

    def alerts(self, model: _AlertsModel) -> AlertsConfig:
        base: YamlPath = ("alerts",)
        channels = {name: self.channel(name, m) for name, m in model.channels.items()}
        steps = DEFAULT_STEPS
        if model.steps is not None:
            seen: dict[int, int] = {}
            built: list[AlertStep] = []
            for i, s in enumerate(model.steps):
                path = (*base, "steps", i)
                if s.days in seen:
                    raise self.fail((*path, "days"),
                                    f"steps[{seen[s.days]}] already has days: {s.days}")
                seen[s.days] = i
                built.append(AlertStep(
                    days=s.days, action=Action(s.action), repeat=s.repeat, ackable=s.ackable,
                    channels=self.channel_refs(s.channels, (*path, "channels"), channels),
                ))
            steps = tuple(sorted(built, key=lambda step: -step.days))
        broken = DEFAULT_BROKEN
        if model.broken is not None:
            b = model.broken
            broken = BrokenRule(
                action=Action(b.action), repeat=b.repeat, ackable=b.ackable,
                channels=self.channel_refs(b.channels, (*base, "broken", "channels"), channels),
            )
        short: ShortLivedPolicy | None = DEFAULT_SHORT_LIVED
        if "short_lived" in model.model_fields_set:
            short = None if model.short_lived is None else self.short_lived(
                model.short_lived, channels
            )
        deadman = None
        if model.deadman is not None:
            deadman = Deadman(url=self.secret(model.deadman, "url", ("alerts", "deadman")),
                              method=model.deadman.method)
        routes = []
        for i, r in enumerate(model.routes):
            path = (*base, "routes", i)
            if not r.tags and r.owner is None:
                raise self.fail(path, "a route needs tags or an owner to match")
            routes.append(Route(
                channels=self.channel_refs(r.channels, (*path, "channels"), channels),
                tags=tuple(r.tags), owner=r.owner,
                actions=tuple(Action(a) for a in r.actions),
            ))
        return AlertsConfig(
            channels=MappingProxyType(channels), steps=steps, broken=broken, short_lived=short,
            deadman=deadman, routes=tuple(routes),
        )

    def short_lived(
        self, model: _ShortLivedModel, channels: Mapping[str, Channel]
    ) -> ShortLivedPolicy:
        base: YamlPath = ("alerts", "short_lived")
        if model.steps is None:
            return ShortLivedPolicy(model.max_lifetime, DEFAULT_SHORT_LIVED.steps)
        seen: dict[object, int] = {}
        built: list[ShortLivedStep] = []
        for i, s in enumerate(model.steps):
            path = (*base, "steps", i)
            key: object = "overdue" if s.overdue else s.remaining
            if key in seen:
                what = "overdue" if s.overdue else "remaining"
                raise self.fail((*path, what), f"steps[{seen[key]}] already has this trigger")
            seen[key] = i
            built.append(ShortLivedStep(
                action=Action(s.action), overdue=bool(s.overdue), remaining=s.remaining,
                repeat=s.repeat, ackable=s.ackable,
                channels=self.channel_refs(s.channels, (*path, "channels"), channels),
            ))
        ordered = sorted(built, key=lambda st: (not st.overdue, -(st.remaining or 0.0)))
        return ShortLivedPolicy(model.max_lifetime, tuple(ordered))

    # the whole file -----------------------------------------------------------------------

    def inventory(self, path: Path, model: _InventoryModel) -> Inventory:
        for name, pm in model.profiles.items():
            self.named[name] = self.named_profile(name, pm)
        defaults = self.defaults(model.defaults)
        self.renewal_rules = list(model.renewals)
        endpoints: list[Endpoint] = []
        seen: dict[Target, int] = {}
        for i, em in enumerate(model.endpoints):
            ep = self.endpoint(i, em, defaults)
            target = ep.target
            if target in seen:
                j = seen[target]
                raise self.fail(
                    ("endpoints", i),
                    f"duplicate endpoint {ep.host}:{ep.port}: same host, port, ip, sni and "
                    f"starttls as endpoints[{j}] (line {self.doc.line(('endpoints', j))})",
                )
            seen[target] = i
            endpoints.append(ep)
        files = tuple(self.file_source(i, fm, defaults) for i, fm in enumerate(model.files))
        allowed: list[IPNetwork] = []
        for i, spec in enumerate(model.fetch.allow_private):
            try:
                allowed.extend(allow_networks([spec]))
            except ValueError as exc:
                raise self.fail(("fetch", "allow_private", i), str(exc)) from None
        zones = self.zones(model, endpoints)
        document = {k: v for k, v in (self.doc.data or {}).items() if k != "alerts"}
        return Inventory(
            path=path,
            defaults=defaults,
            profiles=MappingProxyType(dict(self.named)),
            endpoints=tuple(endpoints),
            files=files,
            alerts=None if model.alerts is None else self.alerts(model.alerts),
            allow_private=tuple(allowed),
            metrics=MetricsSettings(per_cert=model.metrics.per_cert),
            zones=MappingProxyType(zones),
            document=MappingProxyType(document),
        )

    def zones(self, model: _InventoryModel, endpoints: Sequence[Endpoint]) -> dict[str, Zone]:
        """The ``zones`` section; when it is given, every endpoint's zone must be in it
        (a misspelt zone would otherwise be a queue no worker ever reads)."""
        out: dict[str, Zone] = {}
        queues: dict[str, str] = {}
        for name, zm in model.zones.items():
            where: YamlPath = ("zones", name)
            if not ZONE_NAME.fullmatch(name):
                raise self.fail(where, f"a zone name is letters, digits, '.', '_' and '-' "
                                       f"(at most 64), got {name!r}")
            zone = Zone.named(name)
            if zm is not None:
                zone = Zone(name=name, queue=zm.queue or zone.queue,
                            concurrency=zm.concurrency or zone.concurrency)
            if zone.queue in queues:
                raise self.fail((*where, "queue"), f"queue {zone.queue!r} is zone "
                                                   f"{queues[zone.queue]!r}'s already")
            queues[zone.queue] = name
            out[name] = zone
        if out:
            for i, ep in enumerate(endpoints):
                if ep.zone not in out:
                    raise self.fail(("endpoints", i, "zone") if model.endpoints[i].zone
                                    else ("endpoints", i),
                                    f"zone {ep.zone!r} is not in zones "
                                    f"({', '.join(out)})")
        return out


# -- entry points ---------------------------------------------------------------------------


def read_mapping(text: str, source: str, fields: Iterable[str]) -> _Document:
    """The YAML document of a configuration file whose top level is a mapping of
    ``fields`` (an empty file is an empty mapping); raises :class:`InventoryError`."""
    doc = _read_yaml(text, source)
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise InventoryError(source, doc.line(()), None,
                             f"expected a mapping ({', '.join(fields)}), got {_show(doc.data)}")
    return doc


def parse_inventory(text: str, *, path: Path, source: str | None = None) -> Inventory:
    """Validate inventory ``text`` read from ``path`` (whose directory anchors relative
    paths); ``source`` names it in errors (default: ``path``). Raises
    :class:`InventoryError`."""
    source = str(path) if source is None else source
    path = path.resolve()
    doc = read_mapping(text, source, _InventoryModel.model_fields)
    try:
        model = _InventoryModel.model_validate(doc.data)
    except ValidationError as exc:
        raise _validation_error(exc, doc, source) from None
    return _Builder(doc, source, path.parent).inventory(path, model)


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """Read and validate the inventory at ``path``. Raises :class:`InventoryError`
    (exit status 3) naming the file, line and field of the first problem."""
    source = os.fspath(path)
    file = Path(source).expanduser()
    try:
        data = read_source(file, limit=MAX_INVENTORY_BYTES, what="an inventory")
        text = data.decode("utf-8")
    except BundleError as exc:
        raise InventoryError(source, None, None, exc.reason) from None
    except UnicodeDecodeError as exc:
        raise InventoryError(source, None, None, f"not UTF-8 text ({exc.reason})") from None
    return parse_inventory(text, path=file, source=source)


def batch_document(inventory: Inventory, endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    """What a distributed batch carries to a worker: the inventory's data without its
    ``alerts`` section (channel secrets stay with the scheduler) and without its
    ``files`` (read by the scheduler), with only ``endpoints`` of its ``endpoints`` list.
    :func:`parse_inventory` of it (as JSON) gives the worker the same endpoint values."""
    wanted = {e.target for e in endpoints}
    raw = list(inventory.document.get("endpoints") or [])
    if len(raw) != len(inventory.endpoints):  # pragma: no cover - built together
        raise ValueError("the inventory's document does not match its endpoints")
    chosen = [r for r, e in zip(raw, inventory.endpoints, strict=True) if e.target in wanted]
    doc = {k: v for k, v in inventory.document.items()
           if k not in {"alerts", "files", "endpoints", "zones"}}
    doc["endpoints"] = chosen
    return doc
