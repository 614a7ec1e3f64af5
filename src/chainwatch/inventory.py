"""The inventory: the YAML file that says what chainwatch watches and whom it tells.

``load_inventory(path) -> Inventory`` turns the file (DESIGN.md, Inventory and Alerts)
into frozen domain values in three steps, each of which fails with one
:class:`~chainwatch.errors.InventoryError` naming the file, the line and the field::

    inv.yaml:7: endpoints[2].port: must be 1-65535, got 70000

1. **YAML to data.** PyYAML composes the document into nodes, which carry their line;
   the nodes are turned into plain Python data while a map from each value's path
   (``("endpoints", 2, "port")``) to its line is kept. Duplicate keys, which YAML
   parsers silently collapse, are rejected here.
2. **Data to edge models.** pydantic models with ``extra="forbid"`` check types,
   ranges and grammar (durations like ``90s``/``30m``/``1h``/``100d``, ports, STARTTLS
   protocols, secrets given only by reference). A pydantic error location is mapped
   back to a line through the path map.
3. **Edge models to domain values.** Defaults are applied, profile names and specs
   are resolved to trust stores (a named profile combines the anchors of all the
   stores it lists), relative ``file:`` paths and file globs are resolved against the
   inventory's directory, and cross references are checked (step channels, duplicate
   endpoints).

The domain values (:class:`Inventory`, :class:`Endpoint`, :class:`FileSource`,
:class:`AlertsConfig`, ...) are frozen dataclasses; nothing in them does I/O when
built. Credentials are :class:`Secret` references whose ``repr`` never shows a value.
"""

from __future__ import annotations

import datetime as dt
import difflib
import glob
import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeAlias
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from chainwatch.analysis.behaviours import BEHAVIOURS
from chainwatch.errors import InputError, InventoryError, ProfileError
from chainwatch.model import Profile, RenewalPolicy, Store, Target
from chainwatch.stores import resolve_profile, resolve_store
from chainwatch.stores.presets import PRESETS

__all__ = [
    "DEFAULT_BROKEN",
    "DEFAULT_SHORT_LIVED",
    "DEFAULT_STEPS",
    "STARTTLS_PORTS",
    "Action",
    "AlertStep",
    "AlertsConfig",
    "AppriseChannel",
    "BrokenRule",
    "Channel",
    "Deadman",
    "Defaults",
    "Endpoint",
    "FileSource",
    "GitHubChannel",
    "GitLabChannel",
    "Inventory",
    "JiraChannel",
    "PagerDutyChannel",
    "Secret",
    "ShortLivedPolicy",
    "ShortLivedStep",
    "StartTLS",
    "WebhookChannel",
    "load_inventory",
    "parse_duration",
    "parse_inventory",
]

YamlPath = tuple[str | int, ...]

MAX_INVENTORY_BYTES = 8 * 1024 * 1024
_MAX_NODES = 500_000
"""Values one document may expand to (aliases included): bounds "billion laughs"."""


# -- domain values ------------------------------------------------------------------------


class StartTLS(StrEnum):
    """Protocols whose plaintext session is upgraded to TLS before the handshake."""

    SMTP = "smtp"
    IMAP = "imap"
    POP3 = "pop3"
    FTP = "ftp"
    LDAP = "ldap"
    XMPP = "xmpp"
    POSTGRES = "postgres"


STARTTLS_PORTS: Mapping[StartTLS, int] = MappingProxyType(
    {
        StartTLS.SMTP: 25,
        StartTLS.IMAP: 143,
        StartTLS.POP3: 110,
        StartTLS.FTP: 21,
        StartTLS.LDAP: 389,
        StartTLS.XMPP: 5222,
        StartTLS.POSTGRES: 5432,
    }
)
"""The port an endpoint gets when it names a STARTTLS protocol but no port."""


class Action(StrEnum):
    """What an alert step does: open a ticket, notify a chat, page someone."""

    TICKET = "ticket"
    NOTIFY = "notify"
    PAGE = "page"


@dataclass(frozen=True, repr=False)
class Secret:
    """A credential, held by reference: an environment variable, a file, or (for the
    generic webhook's ``url`` only) the value itself.

    ``repr`` and ``str`` never show an inline value (a webhook URL shows its scheme
    and host only), so configurations can be logged. :meth:`reveal` reads the value
    when a channel actually needs it.

    Attributes:
        source: ``env``, ``file`` or ``inline``.
        ref: the variable name, the absolute file path, or the inline value.
    """

    source: Literal["env", "file", "inline"]
    ref: str

    @classmethod
    def env(cls, name: str) -> Secret:
        return cls("env", name)

    @classmethod
    def file(cls, path: str | Path) -> Secret:
        return cls("file", str(path))

    @classmethod
    def inline(cls, value: str) -> Secret:
        return cls("inline", value)

    def reveal(self, environ: Mapping[str, str] | None = None) -> str:
        """The secret's value. Raises ``InputError`` naming the variable or file when
        it is not there."""
        if self.source == "inline":
            return self.ref
        if self.source == "env":
            value = (os.environ if environ is None else environ).get(self.ref)
            if not value:
                raise InputError(f"environment variable {self.ref} is not set")
            return value
        try:
            text = Path(self.ref).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(f"secret file {self.ref}: {exc.strerror or exc}") from None
        if not text:
            raise InputError(f"secret file {self.ref} is empty")
        return text

    def __repr__(self) -> str:
        if self.source == "inline":
            parts = urlsplit(self.ref)
            shown = f"{parts.scheme}://{parts.hostname}/…" if parts.hostname else "…"
            return f"Secret(inline={shown!r})"
        return f"Secret({self.source}={self.ref!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class WebhookChannel:
    """Generic JSON POST (DESIGN.md, Alerts). ``url`` may be inline: it is the one
    secret allowed in the file, and it is redacted in ``repr``."""

    name: str
    url: Secret
    type: Literal["webhook"] = "webhook"


@dataclass(frozen=True)
class PagerDutyChannel:
    """PagerDuty Events API v2; ``api_url`` overrides the events endpoint."""

    name: str
    routing_key: Secret
    api_url: str | None = None
    type: Literal["pagerduty"] = "pagerduty"


@dataclass(frozen=True)
class AppriseChannel:
    """Any Apprise URL (chat, mail, ...). Apprise URLs carry credentials, so only by
    reference."""

    name: str
    url: Secret
    type: Literal["apprise"] = "apprise"


@dataclass(frozen=True)
class GitHubChannel:
    """Issues in ``repo`` (``owner/name``); ``api_url`` for GitHub Enterprise."""

    name: str
    repo: str
    token: Secret
    api_url: str | None = None
    labels: tuple[str, ...] = ()
    type: Literal["github"] = "github"


@dataclass(frozen=True)
class GitLabChannel:
    """Issues in ``project`` (numeric id or ``group/name``); ``url`` for self-hosted."""

    name: str
    project: str
    token: Secret
    url: str | None = None
    labels: tuple[str, ...] = ()
    type: Literal["gitlab"] = "gitlab"


@dataclass(frozen=True)
class JiraChannel:
    """Issues in Jira ``project`` at ``url``. With ``user`` the token is sent with basic
    authentication (Jira Cloud API tokens), without it as a bearer token (Data Center)."""

    name: str
    url: str
    project: str
    token: Secret
    user: str | None = None
    issue_type: str = "Task"
    labels: tuple[str, ...] = ()
    type: Literal["jira"] = "jira"


Channel: TypeAlias = (
    WebhookChannel | PagerDutyChannel | AppriseChannel | GitHubChannel | GitLabChannel | JiraChannel
)


@dataclass(frozen=True)
class AlertStep:
    """One rung of the countdown escalation.

    Attributes:
        days: the step is current while ``breaks_at - at`` is under this many days.
        action: what firing does.
        repeat: fire again after this interval while the step stays current; ``None``:
            once per renewal cycle.
        ackable: an acknowledgement silences it (``False``: pages regardless).
        channels: names of :attr:`AlertsConfig.channels`; empty means every channel.
    """

    days: int
    action: Action
    repeat: dt.timedelta | None = None
    ackable: bool = True
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class BrokenRule:
    """What happens when a target is broken now (untrusted, mismatch, probe failed)."""

    action: Action = Action.PAGE
    repeat: dt.timedelta | None = dt.timedelta(hours=1)
    ackable: bool = True
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShortLivedStep:
    """A step for short-lived certificates: fires on ``RENEWAL_OVERDUE`` (``overdue``)
    or when ``breaks_at - at`` is under ``remaining`` (a fraction, 0.1 for ``10%``) of
    the leaf's lifetime. Exactly one of the two is set."""

    action: Action
    overdue: bool = False
    remaining: float | None = None
    repeat: dt.timedelta | None = None
    ackable: bool = True
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShortLivedPolicy:
    """Replaces the day steps for certificates whose lifetime is <= ``max_lifetime``.
    ``steps``: the overdue step first, then by ``remaining``, largest first."""

    max_lifetime: dt.timedelta
    steps: tuple[ShortLivedStep, ...]


DEFAULT_STEPS: tuple[AlertStep, ...] = (
    AlertStep(days=30, action=Action.TICKET),
    AlertStep(days=14, action=Action.NOTIFY),
    AlertStep(days=7, action=Action.PAGE, repeat=dt.timedelta(hours=24)),
    AlertStep(days=2, action=Action.PAGE, repeat=dt.timedelta(hours=4), ackable=False),
)
DEFAULT_BROKEN = BrokenRule()
DEFAULT_SHORT_LIVED = ShortLivedPolicy(
    max_lifetime=dt.timedelta(days=100),
    steps=(
        ShortLivedStep(action=Action.NOTIFY, overdue=True),
        ShortLivedStep(action=Action.PAGE, remaining=0.10, repeat=dt.timedelta(hours=24)),
        ShortLivedStep(
            action=Action.PAGE, remaining=0.03, repeat=dt.timedelta(hours=4), ackable=False
        ),
    ),
)


@dataclass(frozen=True)
class Deadman:
    """A dead-man's switch: a Healthchecks-style ping URL requested after every completed
    scan, so that an outside service notices when the monitor itself stops. The URL
    identifies the check and is treated as a secret (inline allowed, redacted in repr).

    Attributes:
        url: the ping URL.
        method: ``get`` or ``post`` (a POST carries a one-line summary of the scan).
    """

    url: Secret
    method: Literal["get", "post"] = "get"


@dataclass(frozen=True)
class Route:
    """Routing by tag or owner: alerts of targets with any of ``tags`` (or owned by
    ``owner``) go to ``channels`` instead of the step's, for the ``actions`` listed (all
    when empty). The first matching route wins; unmatched targets use the step's channels."""

    channels: tuple[str, ...]
    tags: tuple[str, ...] = ()
    owner: str | None = None
    actions: tuple[Action, ...] = ()

    def matches(self, tags: Sequence[str], owner: str | None, action: str) -> bool:
        if self.actions and action not in {a.value for a in self.actions}:
            return False
        return bool(set(self.tags) & set(tags)) or (
            self.owner is not None and self.owner == owner
        )


@dataclass(frozen=True)
class AlertsConfig:
    """The ``alerts`` section.

    Attributes:
        channels: channel name -> channel, in file order.
        steps: countdown steps, largest ``days`` first (DESIGN.md defaults when omitted).
        broken: the rule for targets broken now.
        short_lived: the policy for short-lived certificates; ``None`` when the file
            says ``short_lived: null`` (the DESIGN.md default when omitted).
        deadman: the dead-man's switch pinged after each scan, if any.
        routes: per tag/owner channel routing, first match wins.
    """

    channels: Mapping[str, Channel]
    steps: tuple[AlertStep, ...] = DEFAULT_STEPS
    broken: BrokenRule = DEFAULT_BROKEN
    short_lived: ShortLivedPolicy | None = DEFAULT_SHORT_LIVED
    deadman: Deadman | None = None
    routes: tuple[Route, ...] = ()


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
    zone: str | None = None
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

    @property
    def target(self) -> Target:
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
        """The regular files the pattern matches now, sorted."""
        return tuple(
            sorted(Path(p) for p in glob.glob(self.pattern, recursive=True) if Path(p).is_file())
        )


@dataclass(frozen=True)
class Inventory:
    """A validated inventory.

    Attributes:
        path: the file, absolute.
        defaults: the ``defaults`` section, filled in.
        profiles: named profiles by name (each a :class:`Profile` whose ``spec`` is the name).
        endpoints / files: in file order.
        alerts: the ``alerts`` section, or ``None`` when the file has none.
    """

    path: Path
    defaults: Defaults
    profiles: Mapping[str, Profile] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )
    endpoints: tuple[Endpoint, ...] = ()
    files: tuple[FileSource, ...] = ()
    alerts: AlertsConfig | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent


# -- parsing helpers shared by the edge models ---------------------------------------------

_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_DURATION_FULL = re.compile(r"(?:\d+[wdhms])+")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def _show(value: object) -> str:
    """A value as an error message shows it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return repr(value) if isinstance(value, str) else str(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def parse_duration(value: object) -> dt.timedelta:
    """``90s``, ``30m``, ``1h``, ``100d``, ``2w`` or combinations like ``1h30m``.

    Raises ``ValueError`` with the message the inventory error shows.
    """
    if isinstance(value, dt.timedelta):
        return value
    text = value.replace(" ", "").lower() if isinstance(value, str) else None
    if text is None or not _DURATION_FULL.fullmatch(text):
        raise ValueError(f"must be a duration like 90s, 30m, 1h or 100d, got {_show(value)}")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"must be longer than zero, got {_show(value)}")
    return dt.timedelta(seconds=seconds)


def _parse_percent(value: object) -> float:
    match = _PERCENT.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"must be a percentage like 10%, got {_show(value)}")
    pct = float(match.group(1))
    if not 0 < pct <= 100:
        raise ValueError(f"must be more than 0% and at most 100%, got {value}")
    return pct / 100


def _parse_renew_at(value: object) -> float | dt.timedelta:
    """``renew_at``: a percentage of the lifetime (``66%``) or a duration before expiry
    (``30d``)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        return _parse_percent(value)
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError(
            f"must be a percentage of the lifetime (66%) or a duration before expiry (30d), "
            f"got {_show(value)}"
        ) from None


def renewal_policy(renew_at: float | dt.timedelta | None, grace: float | None,
                   base: RenewalPolicy) -> RenewalPolicy:
    """``base`` with the ``renew_at``/``grace`` given in the inventory applied."""
    policy = base
    if isinstance(renew_at, dt.timedelta):
        policy = replace(policy, before=renew_at)
    elif renew_at is not None:
        policy = replace(policy, fraction=renew_at, before=None)
    if grace is not None:
        policy = replace(policy, grace=grace)
    return policy


def _check_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be 1-65535, got {value}")
    return value


def _check_days(value: int) -> int:
    if value < 0:
        raise ValueError(f"must be 0 or more, got {value}")
    return value


def _check_text(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _check_env(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"must be an environment variable name, got {value!r}")
    return value


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value


def _behaviour_name(value: str) -> str:
    if value.strip().lower() not in BEHAVIOURS:
        raise ValueError(f"must be one of {', '.join(BEHAVIOURS)}, got {value!r}")
    return value.strip().lower()


def _one_of(choices: type[StrEnum]) -> Callable[[str], str]:
    def check(value: str) -> str:
        options = [c.value for c in choices]
        if value.strip().lower() not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return value.strip().lower()

    return check


Duration = Annotated[dt.timedelta, BeforeValidator(parse_duration)]
Percent = Annotated[float, BeforeValidator(_parse_percent)]
RenewAt = Annotated[float | dt.timedelta, BeforeValidator(_parse_renew_at)]
Port = Annotated[StrictInt, AfterValidator(_check_port)]
Days = Annotated[StrictInt, AfterValidator(_check_days)]
Text = Annotated[StrictStr, AfterValidator(_check_text)]
EnvName = Annotated[Text, AfterValidator(_check_env)]
HttpUrl = Annotated[Text, AfterValidator(_check_http_url)]
StartTLSName = Annotated[StrictStr, AfterValidator(_one_of(StartTLS))]
BuildingName = Annotated[StrictStr, AfterValidator(_behaviour_name)]
ActionName = Annotated[StrictStr, AfterValidator(_one_of(Action))]


# -- edge models (pydantic, extra="forbid") ------------------------------------------------


class _Edge(BaseModel):
    """Base of the edge models: unknown keys are errors that name the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """Expand a short form (``- www.example.com``) before validation."""
        return data

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        data = cls._shorthand(data)
        if isinstance(data, dict):
            allowed = list(cls.model_fields)
            for key in data:
                if key not in allowed:
                    raise PydanticCustomError(
                        "unknown_key", "unknown key {key}", {"key": key, "allowed": allowed}
                    )
        return data


def _field_error(name: str, reason: str) -> PydanticCustomError:
    """An error a model validator found in one of its fields (the message names it)."""
    return PydanticCustomError("field_error", "{reason}", {"field": name, "reason": reason})


def _exactly_one(model: BaseModel, names: Sequence[str], what: str) -> None:
    given = [n for n in names if getattr(model, n) is not None]
    options = ", ".join(names)
    if len(given) > 1:
        raise _field_error(given[1], f"give {what} once: {given[0]} is given already")
    if not given:
        raise ValueError(f"{what} is required: give one of {options}")


class _DefaultsModel(_Edge):
    profiles: list[Text] | None = None
    warn_days: Days | None = None
    crit_days: Days | None = None
    interval: Duration | None = None
    timeout: Duration | None = None
    renew_at: RenewAt | None = None
    grace: Percent | None = None
    retention: Duration | None = None
    revocation: StrictBool = False


class _ProfileModel(_Edge):
    trust: list[Text]
    building: BuildingName = "modern"
    aia: StrictBool = False


class _EndpointModel(_Edge):
    host: Text
    port: Port | None = None
    ip: Text | None = None
    sni: Text | None = None
    starttls: StartTLSName | None = None
    profiles: list[Text] | None = None
    tags: list[Text] = []
    owner: Text | None = None
    zone: Text | None = None
    interval: Duration | None = None
    timeout: Duration | None = None
    warn_days: Days | None = None
    crit_days: Days | None = None
    renew_at: RenewAt | None = None
    grace: Percent | None = None
    acme: HttpUrl | None = None
    revocation: StrictBool | None = None

    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"host": data} if isinstance(data, str) else data


class _FileModel(_Edge):
    path: Text
    profiles: list[Text] | None = None
    host: Text | None = None
    tags: list[Text] = []
    owner: Text | None = None
    warn_days: Days | None = None
    crit_days: Days | None = None

    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data


class _WebhookModel(_Edge):
    type: Literal["webhook"]
    url: HttpUrl | None = None
    url_env: EnvName | None = None
    url_file: Text | None = None

    @model_validator(mode="after")
    def _secret(self) -> _WebhookModel:
        _exactly_one(self, ("url", "url_env", "url_file"), "the webhook URL")
        return self


class _PagerDutyModel(_Edge):
    type: Literal["pagerduty"]
    routing_key_env: EnvName | None = None
    routing_key_file: Text | None = None
    api_url: HttpUrl | None = None

    @model_validator(mode="after")
    def _secret(self) -> _PagerDutyModel:
        _exactly_one(self, ("routing_key_env", "routing_key_file"), "the routing key")
        return self


class _AppriseModel(_Edge):
    type: Literal["apprise"]
    url: StrictStr | None = None
    url_env: EnvName | None = None
    url_file: Text | None = None

    @model_validator(mode="after")
    def _secret(self) -> _AppriseModel:
        if self.url is not None:
            raise _field_error(
                "url", "Apprise URLs carry credentials: give url_env or url_file instead"
            )
        _exactly_one(self, ("url_env", "url_file"), "the Apprise URL")
        return self


class _TokenModel(_Edge):
    token_env: EnvName | None = None
    token_file: Text | None = None
    labels: list[Text] = []

    @model_validator(mode="after")
    def _secret(self) -> _TokenModel:
        _exactly_one(self, ("token_env", "token_file"), "the token")
        return self


class _GitHubModel(_TokenModel):
    type: Literal["github"]
    repo: Text
    api_url: HttpUrl | None = None

    @model_validator(mode="after")
    def _repo(self) -> _GitHubModel:
        if not _REPO.fullmatch(self.repo):
            raise _field_error("repo", f"must be owner/name, got {self.repo!r}")
        return self


class _GitLabModel(_TokenModel):
    type: Literal["gitlab"]
    project: Annotated[Text, BeforeValidator(lambda v: str(v) if type(v) is int else v)]
    url: HttpUrl | None = None


class _JiraModel(_TokenModel):
    type: Literal["jira"]
    url: HttpUrl
    project: Text
    user: Text | None = None
    issue_type: Text = "Task"


_ChannelModel = Annotated[
    _WebhookModel | _PagerDutyModel | _AppriseModel | _GitHubModel | _GitLabModel | _JiraModel,
    Field(discriminator="type"),
]
_CHANNEL_TYPES = ("webhook", "pagerduty", "apprise", "github", "gitlab", "jira")


class _StepModel(_Edge):
    days: Days
    action: ActionName
    repeat: Duration | None = None
    ackable: StrictBool = True
    channels: list[Text] | None = None


class _BrokenModel(_Edge):
    action: ActionName = "page"
    repeat: Duration | None = dt.timedelta(hours=1)
    ackable: StrictBool = True
    channels: list[Text] | None = None


class _ShortStepModel(_Edge):
    overdue: StrictBool | None = None
    remaining: Percent | None = None
    action: ActionName
    repeat: Duration | None = None
    ackable: StrictBool = True
    channels: list[Text] | None = None

    @model_validator(mode="after")
    def _trigger(self) -> _ShortStepModel:
        if self.overdue is False:
            raise _field_error("overdue", "false never fires; say true or remove the step")
        _exactly_one(self, ("overdue", "remaining"), "the trigger")
        return self


class _ShortLivedModel(_Edge):
    max_lifetime: Duration = dt.timedelta(days=100)
    steps: list[_ShortStepModel] | None = None


class _DeadmanModel(_Edge):
    url: HttpUrl | None = None
    url_env: EnvName | None = None
    url_file: Text | None = None
    method: Literal["get", "post"] = "get"

    @model_validator(mode="after")
    def _secret(self) -> _DeadmanModel:
        _exactly_one(self, ("url", "url_env", "url_file"), "the ping URL")
        return self


class _RouteModel(_Edge):
    tags: list[Text] = []
    owner: Text | None = None
    channels: list[Text]
    actions: list[ActionName] = []


class _AlertsModel(_Edge):
    routes: list[_RouteModel] = []
    channels: dict[str, _ChannelModel] = {}
    steps: list[_StepModel] | None = None
    broken: _BrokenModel | None = None
    short_lived: _ShortLivedModel | None = None
    deadman: _DeadmanModel | None = None


class _RenewalRuleModel(_Edge):
    tags: list[Text]
    renew_at: RenewAt | None = None
    grace: Percent | None = None


class _InventoryModel(_Edge):
    defaults: _DefaultsModel = _DefaultsModel()
    profiles: dict[str, _ProfileModel] = {}
    renewals: list[_RenewalRuleModel] = []
    endpoints: list[_EndpointModel] = []
    files: list[_FileModel] = []
    alerts: _AlertsModel | None = None

    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # ``endpoints:`` with nothing under it is an empty section, not an error.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k == "alerts"}
        return data


# -- step 1: YAML to data with a line for every path ----------------------------------------


@dataclass
class _Document:
    data: Any
    lines: dict[YamlPath, int]

    def line(self, path: YamlPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor in the file."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return None


def _field_name(path: YamlPath) -> str:
    out = ""
    for seg in path:
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else str(seg))
    return out


def _read_yaml(text: str, source: str) -> _Document:
    loader = yaml.SafeLoader(text)
    lines: dict[YamlPath, int] = {}
    budget = [_MAX_NODES]

    def convert(node: yaml.Node, path: YamlPath, stack: tuple[int, ...]) -> Any:
        lines.setdefault(path, node.start_mark.line + 1)
        budget[0] -= 1
        if budget[0] < 0:
            raise InventoryError(source, node.start_mark.line + 1, None,
                                 f"document expands to more than {_MAX_NODES} values")
        if id(node) in stack:
            raise InventoryError(source, node.start_mark.line + 1, _field_name(path) or None,
                                 "an alias refers to the value that contains it")
        stack = (*stack, id(node))
        if isinstance(node, yaml.MappingNode):
            own: dict[str, int] = {}
            for key_node, _ in node.value:
                key_line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    raise InventoryError(source, key_line, _field_name(path) or None,
                                         "mapping keys must be plain names")
                key = str(key_node.value)
                if key in own and key_node.tag != "tag:yaml.org,2002:merge":
                    raise InventoryError(source, key_line, _field_name((*path, key)),
                                         f"duplicate key (first given on line {own[key]})")
                own.setdefault(key, key_line)
            # Resolve ``<<: *anchor`` merge keys: merged pairs come first, so the
            # mapping's own keys override them, as YAML says.
            loader.flatten_mapping(node)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = convert(value_node, (*path, key), stack)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [convert(item, (*path, i), stack) for i, item in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    try:
        root = loader.get_single_node()
        data = None if root is None else convert(root, (), ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot parse"
        if exc.problem and exc.context and exc.context_mark is not None and (
            mark is None or exc.context_mark.line != mark.line
        ):
            problem += f" ({exc.context} on line {exc.context_mark.line + 1})"
        raise InventoryError(
            source, None if mark is None else mark.line + 1, None, f"invalid YAML: {problem}"
        ) from None
    except yaml.YAMLError as exc:
        raise InventoryError(source, None, None, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return _Document(data, lines)


# -- step 2: pydantic errors to one InventoryError ------------------------------------------


def _error_path(loc: tuple[int | str, ...], doc: _Document) -> YamlPath:
    """A pydantic location as a path in the YAML, without union tags."""
    path: YamlPath = ()
    for seg in loc:
        if seg in _CHANNEL_TYPES and (*path, seg) not in doc.lines:
            continue
        path = (*path, seg)
    return path


_SHORT_FORMS = {"endpoints": "a host name", "files": "a path"}


def _reason(err: ErrorDetails, path: YamlPath) -> tuple[YamlPath, str]:
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    value = err.get("input")
    if kind == "unknown_key":
        key = str(ctx["key"])
        allowed: list[str] = ctx["allowed"]
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return (*path, key), f"unknown key{hint} (allowed: {', '.join(allowed)})"
    if kind == "field_error":
        return (*path, str(ctx["field"])), str(ctx["reason"])
    if kind == "model_type" and len(path) == 2 and path[0] in _SHORT_FORMS:
        return path, f"expected {_SHORT_FORMS[str(path[0])]} or a mapping, got {_show(value)}"
    if kind == "extra_forbidden":
        return path, "unknown key"
    if kind == "missing":
        return path, "is required"
    if kind == "union_tag_not_found":
        return (*path, "type"), f"is required: one of {', '.join(_CHANNEL_TYPES)}"
    if kind == "union_tag_invalid":
        return (*path, "type"), (
            f"must be one of {', '.join(_CHANNEL_TYPES)}, got {_show(ctx.get('tag'))}"
        )
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return path, str(ctx["error"])
    expected = {
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "an integer",
        "string_type": "a string",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "list_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
        "float_type": "a number",
        "float_parsing": "a number",
    }.get(kind)
    if expected is not None:
        return path, f"expected {expected}, got {_show(value)}"
    if kind == "literal_error":
        return path, f"must be {ctx.get('expected')}, got {_show(value)}"
    return path, err["msg"]


def _validation_error(exc: ValidationError, doc: _Document, source: str) -> InventoryError:
    found: list[tuple[int, int, YamlPath, str]] = []
    for n, err in enumerate(exc.errors()):
        path, reason = _reason(err, _error_path(err["loc"], doc))
        found.append((doc.line(path) or 0, n, path, reason))
    line, _, path, reason = min(found)
    if len(found) > 1:
        more = len(found) - 1
        reason += f" (and {more} more problem{'s' if more > 1 else ''})"
    return InventoryError(source, line or None, _field_name(path) or None, reason)


# -- step 3: edge models to domain values ---------------------------------------------------


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


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
        stores: list[Store] = []
        for i, spec in enumerate(model.trust):
            where = (*path, "trust", i)
            if spec.startswith("legacy:"):
                raise self.fail(where, "trust lists stores; say building: legacy instead of "
                                       "the legacy: prefix")
            try:
                stores.append(resolve_store(spec, base_dir=self.base_dir))
            except InputError as exc:
                raise self.fail(where, str(exc)) from None
        anchors = tuple(dict.fromkeys(a for store in stores for a in store.anchors))
        source = "; ".join(f"{s.name} ({s.source})" if s.source else s.name for s in stores)
        return Profile(
            spec=name,
            store=Store(name=name, anchors=anchors, source=source),
            building=BEHAVIOURS[model.building],
            aia=model.aia,
        )

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
                "(mozilla, mozilla@YYYY-MM-DD, system, file:PATH, legacy:STORE, a preset)",
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
            return str(ipaddress.ip_address(text))
        try:
            ascii_name = text.encode("idna").decode("ascii")
        except UnicodeError:
            raise self.fail(path, f"{text!r} is not a valid host name") from None
        labels = ascii_name.split(".")
        if len(ascii_name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
            raise self.fail(path, f"{text!r} is not a valid host name")
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
                ip = str(ipaddress.ip_address(model.ip))
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
            zone=model.zone,
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
        pattern = Path(model.path).expanduser()
        if not pattern.is_absolute():
            pattern = self.base_dir / pattern
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

    # alerts -------------------------------------------------------------------------------

    def secret(self, model: BaseModel, stem: str) -> Secret:
        env = getattr(model, f"{stem}_env", None)
        if env is not None:
            return Secret.env(env)
        file = getattr(model, f"{stem}_file", None)
        if file is not None:
            p = Path(file).expanduser()
            return Secret.file(p if p.is_absolute() else self.base_dir / p)
        return Secret.inline(getattr(model, stem))

    def channel(self, name: str, model: BaseModel) -> Channel:
        if isinstance(model, _WebhookModel):
            return WebhookChannel(name=name, url=self.secret(model, "url"))
        if isinstance(model, _PagerDutyModel):
            return PagerDutyChannel(
                name=name, routing_key=self.secret(model, "routing_key"), api_url=model.api_url
            )
        if isinstance(model, _AppriseModel):
            return AppriseChannel(name=name, url=self.secret(model, "url"))
        if isinstance(model, _GitHubModel):
            return GitHubChannel(name=name, repo=model.repo, token=self.secret(model, "token"),
                                 api_url=model.api_url, labels=tuple(model.labels))
        if isinstance(model, _GitLabModel):
            return GitLabChannel(name=name, project=model.project,
                                 token=self.secret(model, "token"), url=model.url,
                                 labels=tuple(model.labels))
        assert isinstance(model, _JiraModel)
        return JiraChannel(name=name, url=model.url, project=model.project,
                           token=self.secret(model, "token"), user=model.user,
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
            deadman = Deadman(url=self.secret(model.deadman, "url"), method=model.deadman.method)
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
            if ep.target in seen:
                j = seen[ep.target]
                raise self.fail(
                    ("endpoints", i),
                    f"duplicate endpoint {ep.host}:{ep.port}: same host, port, ip, sni and "
                    f"starttls as endpoints[{j}] (line {self.doc.line(('endpoints', j))})",
                )
            seen[ep.target] = i
            endpoints.append(ep)
        files = tuple(self.file_source(i, fm, defaults) for i, fm in enumerate(model.files))
        return Inventory(
            path=path,
            defaults=defaults,
            profiles=MappingProxyType(dict(self.named)),
            endpoints=tuple(endpoints),
            files=files,
            alerts=None if model.alerts is None else self.alerts(model.alerts),
        )


# -- entry points ---------------------------------------------------------------------------


def parse_inventory(text: str, *, path: Path, source: str | None = None) -> Inventory:
    """Validate inventory ``text`` read from ``path`` (whose directory anchors relative
    paths); ``source`` names it in errors (default: ``path``). Raises
    :class:`InventoryError`."""
    source = str(path) if source is None else source
    path = path.resolve()
    doc = _read_yaml(text, source)
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise InventoryError(source, doc.line(()), None,
                             f"expected a mapping ({', '.join(_InventoryModel.model_fields)}),"
                             f" got {_show(doc.data)}")
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
        if file.stat().st_size > MAX_INVENTORY_BYTES:
            raise InventoryError(source, None, None,
                                 f"larger than {MAX_INVENTORY_BYTES} bytes")
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(source, None, None, "no such file") from None
    except IsADirectoryError:
        raise InventoryError(source, None, None, "is a directory, not an inventory") from None
    except UnicodeDecodeError as exc:
        raise InventoryError(source, None, None, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise InventoryError(source, None, None, exc.strerror or str(exc)) from None
    return parse_inventory(text, path=file, source=source)
