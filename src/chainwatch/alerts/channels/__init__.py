"""Channels: where alert messages go.

A channel is anything with ``send(payload) -> None`` (:class:`Channel`); the payload
is the channel-neutral message of DESIGN.md's generic webhook. Each implementation
turns it into its receiver's API:

============  ==================================================================
webhook       one JSON POST of the payload as it is
pagerduty     Events API v2: trigger / resolve under the payload's dedup key
github        one issue per target and renewal cycle; comments; closed on resolve
gitlab        the same, GitLab API v4
jira          the same, Jira REST API v2 (transition to done on resolve)
apprise       chat, mail and push: title and body to any Apprise URL
file          one JSON line per delivery appended to a local file
============  ==================================================================

Errors::

    ChainwatchError
    └── DeliveryError        one message not delivered; ``retryable`` says whether
                             trying again later may help; the text is redacted

Secrets (webhook URLs, tokens, routing keys, Apprise URLs) are read from the
inventory's :class:`~chainwatch.alerts.config.Secret` references only by
:func:`build_channel`, just before sending, and never appear in errors.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from chainwatch.alerts.channels._base import (
    DEFAULT_TIMEOUT,
    Channel,
    DeliveryError,
    Http,
    Payload,
    redact,
    where,
)
from chainwatch.alerts.channels.apprise_notify import AppriseSender
from chainwatch.alerts.channels.file import FileSender
from chainwatch.alerts.channels.github import GitHubIssues
from chainwatch.alerts.channels.gitlab import GitLabIssues
from chainwatch.alerts.channels.jira import JiraIssues
from chainwatch.alerts.channels.pagerduty import PagerDutySender
from chainwatch.alerts.channels.webhook import WebhookSender
from chainwatch.alerts.config import (
    AppriseChannel,
    FileChannel,
    GitHubChannel,
    GitLabChannel,
    PagerDutyChannel,
    WebhookChannel,
)
from chainwatch.alerts.config import Channel as ChannelConfig
from chainwatch.errors import InputError

__all__ = [
    "DEFAULT_TIMEOUT",
    "AppriseSender",
    "Channel",
    "DeliveryError",
    "FileSender",
    "GitHubIssues",
    "GitLabIssues",
    "Http",
    "JiraIssues",
    "PagerDutySender",
    "Payload",
    "WebhookSender",
    "build_channel",
    "redact",
    "where",
]


def build_channel(
    config: ChannelConfig,
    *,
    environ: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Channel:
    """The sender for an inventory channel, with its secret read now. A secret that
    cannot be read (variable unset, file missing) raises a retryable DeliveryError:
    fixing the environment lets the pending messages through."""
    try:
        if isinstance(config, WebhookChannel):
            return WebhookSender(config.name, config.url.reveal(environ), timeout=timeout,
                                 transport=transport)
        if isinstance(config, PagerDutyChannel):
            return PagerDutySender(config.name, config.routing_key.reveal(environ),
                                   api_url=config.api_url, timeout=timeout, transport=transport)
        if isinstance(config, AppriseChannel):
            return AppriseSender(config.name, config.url.reveal(environ))
        if isinstance(config, FileChannel):
            return FileSender(config.name, config.path)
        if isinstance(config, GitHubChannel):
            return GitHubIssues(config.name, config.repo, config.token.reveal(environ),
                                api_url=config.api_url, labels=config.labels, timeout=timeout,
                                transport=transport)
        if isinstance(config, GitLabChannel):
            return GitLabIssues(config.name, config.project, config.token.reveal(environ),
                                url=config.url, labels=config.labels, timeout=timeout,
                                transport=transport)
        return JiraIssues(config.name, config.url, config.project, config.token.reveal(environ),
                          user=config.user, issue_type=config.issue_type, labels=config.labels,
                          timeout=timeout, transport=transport)
    except InputError as exc:
        raise DeliveryError(True, f"{config.name}: {exc}") from None
