"""Issue trackers as alert channels: one issue per target and renewal cycle.

The issue is found again by the message's ``dedup_key`` (a marker in its text, or a
label derived from it), so later messages of the same cycle comment on it instead of
opening another, a retried create whose answer was lost finds the issue it made, and
``resolve`` closes it. Nothing about the issue is stored in chainwatch's database:
the tracker is the record.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import httpx

from chainwatch.alerts.channels._base import EVENT_TITLES, Http, Payload, body, target_label
from chainwatch.model.names import printable

LABEL = "chainwatch"
"""Every issue chainwatch opens carries this label; lookups are limited to it."""
MAX_PAGES = 10
"""Pages of issues searched for the marker (100 issues each)."""


@dataclass(frozen=True)
class Issue:
    """An issue as the tracker reports it: its id for later calls, and whether open."""

    ref: str
    open: bool


def marker(dedup_key: str) -> str:
    """The hidden line that ties an issue to its dedup key."""
    return f"<!-- chainwatch-dedup-key: {dedup_key} -->"


def issue_title(payload: Payload) -> str:
    if payload.get("event") == "test":
        return "[chainwatch] TEST issue: safe to ignore, closed right away"
    when = str(payload.get("breaks_at") or "")[:10]
    tail = f" (trust breaks {when})" if when else ""
    return printable(f"[chainwatch] TLS certificate of {target_label(payload)} needs "
                     f"attention{tail}")


def issue_body(payload: Payload) -> str:
    return f"{body(payload)}\n\n{marker(str(payload['dedup_key']))}"


def comment_text(payload: Payload) -> str:
    head = EVENT_TITLES.get(str(payload.get("event")), str(payload.get("event")))
    when = payload.get("sent_at") or ""
    return f"**{head}** ({when})\n\n{body(payload)}"


class IssueTracker(ABC):
    """The policy shared by GitHub, GitLab and Jira; subclasses speak the API."""

    name: str

    def __init__(self, *, timeout: float, transport: httpx.BaseTransport | None) -> None:
        self._timeout = timeout
        self._transport = transport

    @abstractmethod
    def http(self) -> Http: ...

    @abstractmethod
    def find(self, http: Http, dedup_key: str) -> Issue | None: ...

    @abstractmethod
    def create(self, http: Http, payload: Payload) -> Issue: ...

    @abstractmethod
    def comment(self, http: Http, issue: Issue, text: str) -> None: ...

    @abstractmethod
    def close(self, http: Http, issue: Issue, text: str) -> None:
        """Comment ``text`` and close (or transition to done)."""

    @abstractmethod
    def reopen(self, http: Http, issue: Issue) -> None: ...

    def send(self, payload: Payload) -> None:
        event = payload.get("event")
        with self.http() as http:
            if event == "test":
                self.close(http, self.create(http, payload), "Test finished: closing.")
                return
            issue = self.find(http, str(payload["dedup_key"]))
            if event == "resolve":
                if issue is not None and issue.open:
                    self.close(http, issue, comment_text(payload))
                return  # nothing was opened, or it is closed already
            if issue is None:
                self.create(http, payload)
                return
            if not issue.open:
                self.reopen(http, issue)
            self.comment(http, issue, comment_text(payload))
