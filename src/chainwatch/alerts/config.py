"""The ``alerts`` section as frozen values: channels (credentials held as :class:`Secret`
references), countdown steps, the broken rule, short-lived policy, dead-man switch, routes."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal, TypeAlias
from urllib.parse import urlsplit

from chainwatch.errors import BundleError, InputError
from chainwatch.model.bundle import read_source


class Action(StrEnum):
    """What an alert step does: open a ticket, notify a chat, page someone."""

    TICKET = "ticket"
    NOTIFY = "notify"
    PAGE = "page"


DELIVERY_TIMEOUT = 10.0
"""Seconds allowed for one whole delivery: every HTTP request it makes, from connecting
to the last byte of the last response (see :class:`chainwatch.alerts.channels.Http`)."""
MAX_SECRET_BYTES = 64 * 1024
"""The largest secret file read (a token, a routing key, a URL): more is not a secret
file, and a device such as ``/dev/zero`` or a FIFO is refused outright."""


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
            data = read_source(self.ref, limit=MAX_SECRET_BYTES, what="a secret file")
            text = data.decode("utf-8").strip()
        except BundleError as exc:
            raise InputError(f"secret file {self.ref}: {exc.reason}") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"secret file {self.ref}: not UTF-8 text ({exc.reason})") from None
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


@dataclass(frozen=True)
class FileChannel:
    """One JSON line per delivery appended to ``path`` (the webhook payload): for a
    log shipper, a cron job's mail, or watching the lab's escalation with ``tail -f``.
    No credentials."""

    name: str
    path: Path
    type: Literal["file"] = "file"


Channel: TypeAlias = (
    WebhookChannel | PagerDutyChannel | AppriseChannel | GitHubChannel | GitLabChannel | JiraChannel
    | FileChannel
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
