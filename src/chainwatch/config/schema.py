"""The edge schema: pydantic models (``extra="forbid"``) for every inventory section, and
the value grammars they share (durations, percentages, ports, secrets by reference)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)
from pydantic_core import PydanticCustomError

from chainwatch.alerts.config import Action
from chainwatch.model import RenewalPolicy
from chainwatch.model.behaviours import BEHAVIOURS
from chainwatch.model.names import StartTLS
from chainwatch.model.values import SIGNATURE_KINDS, TLS_VERSIONS

YamlPath = tuple[str | int, ...]

MAX_INVENTORY_BYTES = 8 * 1024 * 1024
_MAX_NODES = 500_000
"""Values one document may expand to (aliases included): bounds "billion laughs"."""


# -- parsing helpers shared by the edge models ---------------------------------------------

_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_DURATION_FULL = re.compile(r"(?:\d+[wdhms])+")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
ZONE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""Zone and queue names: safe as a Celery queue name on Redis and RabbitMQ."""
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_HOST_NAME = re.compile(rf"{_LABEL.pattern}(?:\.{_LABEL.pattern})*")
"""A name whose every dot-separated label is a :data:`_LABEL` (one match, not one per label)."""
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                   r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")
"""An IPv4 address in its canonical text (no leading zeros): what ``ipaddress`` would
give back for it, without its cost (most inventory addresses)."""


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


MAX_DURATION = dt.timedelta(days=36_500)
"""Longest duration accepted anywhere (a hundred years): every instant chainwatch adds a
duration to must stay a datetime (year 9999 is the end)."""


def parse_duration(value: object) -> dt.timedelta:
    """``90s``, ``30m``, ``1h``, ``100d``, ``2w`` or combinations like ``1h30m``.

    Raises ``ValueError`` with the message the inventory error shows.
    """
    if isinstance(value, dt.timedelta):
        return value
    text = value.replace(" ", "").lower() if isinstance(value, str) else None
    if text is None or not _DURATION_FULL.fullmatch(text):
        raise ValueError(f"must be a duration like 90s, 30m, 1h or 100d, got {_show(value)}")
    if len(text) > 40:
        raise ValueError(f"must be at most {MAX_DURATION.days} days, got {_show(value)}")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"must be longer than zero, got {_show(value)}")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"must be at most {MAX_DURATION.days} days, got {_show(value)}")
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
    except ValueError as exc:
        if "at most" in str(exc):
            raise
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


def _check_concurrency(value: int) -> int:
    if not 1 <= value <= 10_000:
        raise ValueError(f"must be 1-10000, got {value}")
    return value


def _check_zone_name(value: str) -> str:
    if not ZONE_NAME.fullmatch(value):
        raise ValueError(f"a zone name is letters, digits, '.', '_' and '-' (at most 64), "
                         f"got {value!r}")
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
Concurrency = Annotated[StrictInt, AfterValidator(_check_concurrency)]
ZoneName = Annotated[StrictStr, AfterValidator(_check_zone_name)]
EnvName = Annotated[Text, AfterValidator(_check_env)]
HttpUrl = Annotated[Text, AfterValidator(_check_http_url)]
StartTLSName = Annotated[StrictStr, AfterValidator(_one_of(StartTLS))]
BuildingName = Annotated[StrictStr, AfterValidator(_behaviour_name)]


def _exact_one_of(options: Sequence[str]) -> Callable[[str], str]:
    def check(value: str) -> str:
        for option in options:
            if value.strip().lower() == option.lower():
                return option
        raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")

    return check


TLSVersionName = Annotated[StrictStr, AfterValidator(_exact_one_of(TLS_VERSIONS))]
SignatureName = Annotated[StrictStr, AfterValidator(_exact_one_of(SIGNATURE_KINDS))]
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
            known = cls.__pydantic_fields__  # the class's fields (model_fields, unwrapped)
            for key in data:
                if key not in known:
                    raise PydanticCustomError(
                        "unknown_key", "unknown key {key}", {"key": key, "allowed": list(known)}
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


class _ClientHelloModel(_Edge):
    max_version: TLSVersionName | None = None
    signature: SignatureName | None = None


class _ProfileModel(_Edge):
    trust: list[Text]
    building: BuildingName = "modern"
    aia: StrictBool = False
    password_env: EnvName | None = None
    password_file: Text | None = None
    client_hello: _ClientHelloModel | None = None

    @model_validator(mode="after")
    def _one_password(self) -> _ProfileModel:
        if self.password_env is not None and self.password_file is not None:
            raise _field_error("password_file", "give the keystore password once: "
                                                "password_env is given already")
        return self


class _EndpointModel(_Edge):
    host: Text
    port: Port | None = None
    ip: Text | None = None
    sni: Text | None = None
    starttls: StartTLSName | None = None
    profiles: list[Text] | None = None
    tags: list[Text] = Field(default_factory=list)  # not a deep copy per endpoint
    owner: Text | None = None
    zone: ZoneName | None = None
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
    tags: list[Text] = Field(default_factory=list)  # not a deep copy per endpoint
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


class _FileChannelModel(_Edge):
    type: Literal["file"]
    path: Text


_ChannelModel = Annotated[
    _WebhookModel | _PagerDutyModel | _AppriseModel | _GitHubModel | _GitLabModel | _JiraModel
    | _FileChannelModel,
    Field(discriminator="type"),
]
_CHANNEL_TYPES = ("webhook", "pagerduty", "apprise", "github", "gitlab", "jira", "file")


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


class _ZoneModel(_Edge):
    queue: ZoneName | None = None
    concurrency: Concurrency | None = None


class _FetchModel(_Edge):
    allow_private: list[Text] = []


class _MetricsModel(_Edge):
    per_cert: StrictBool = False


class _InventoryModel(_Edge):
    defaults: _DefaultsModel = _DefaultsModel()
    fetch: _FetchModel = _FetchModel()
    profiles: dict[str, _ProfileModel] = {}
    renewals: list[_RenewalRuleModel] = []
    endpoints: list[_EndpointModel] = []
    files: list[_FileModel] = []
    zones: dict[str, _ZoneModel | None] = {}
    alerts: _AlertsModel | None = None
    metrics: _MetricsModel = _MetricsModel()

    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # ``endpoints:`` with nothing under it is an empty section, not an error.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k == "alerts"}
        return data
