"""Jira issues (REST API v2, Cloud and Data Center): one issue per target and renewal
cycle in ``project``, found by a label derived from the dedup key; ``resolve``
comments and moves the issue to a *done* status when a transition there exists."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import httpx

from chainwatch.alerts.channels._base import DEFAULT_TIMEOUT, DeliveryError, Http, Payload, body
from chainwatch.alerts.channels._issues import LABEL, Issue, IssueTracker, issue_title
from chainwatch.model.redaction import basic_auth


def dedup_label(dedup_key: str) -> str:
    """A Jira label (no spaces, bounded length) standing for one dedup key."""
    return f"{LABEL}-{hashlib.sha256(dedup_key.encode()).hexdigest()[:20]}"


def _jql_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class JiraIssues(IssueTracker):
    def __init__(
        self,
        name: str,
        url: str,
        project: str,
        token: str,
        *,
        user: str | None = None,
        issue_type: str = "Task",
        labels: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(timeout=timeout, transport=transport)
        self.name = name
        self.project = project
        self.issue_type = issue_type
        self.user = user
        self._token = token
        self.api = url.rstrip("/") + "/rest/api/2"
        self.labels = [LABEL, *(label for label in labels if label != LABEL)]

    def __repr__(self) -> str:
        return f"JiraIssues({self.name!r}, project={self.project!r})"

    def http(self) -> Http:
        if self.user is not None:  # Jira Cloud: e-mail + API token
            return Http(self.name, secrets=[basic_auth(self.user, self._token), self._token],
                        auth=(self.user, self._token),
                        timeout=self._timeout, transport=self._transport)
        return Http(self.name, secrets=[self._token],
                    headers={"Authorization": f"Bearer {self._token}"},
                    timeout=self._timeout, transport=self._transport)

    def find(self, http: Http, dedup_key: str) -> Issue | None:
        jql = (f"project = {_jql_string(self.project)} AND labels = "
               f"{_jql_string(dedup_label(dedup_key))} ORDER BY created DESC")
        params: dict[str, str | int] = {"jql": jql, "fields": "status", "maxResults": 5}
        # Jira Cloud searches at /search/jql; Data Center only has /search.
        response = http.request("GET", f"{self.api}/search/jql", params=params,
                                doing="search issues", ok=(404,))
        if response.status_code == 404:
            response = http.request("GET", f"{self.api}/search", params=params,
                                    doing="search issues")
        found: Any = http.json(response, "search issues")
        issues = found.get("issues") if isinstance(found, dict) else None
        if not isinstance(issues, list):
            raise http.fail(True, "search issues: unexpected response")
        if not issues:
            return None
        first = issues[0]
        category = (((first.get("fields") or {}).get("status") or {})
                    .get("statusCategory") or {}).get("key")
        return Issue(str(first["key"]), category != "done")

    def create(self, http: Http, payload: Payload) -> Issue:
        dedup_key = str(payload["dedup_key"])
        fields = {
            "project": {"key": self.project},
            "summary": issue_title(payload)[:250],
            "description": f"{body(payload)}\n\nchainwatch-dedup-key: {dedup_key}",
            "issuetype": {"name": self.issue_type},
            "labels": [*self.labels, dedup_label(dedup_key)],
        }
        response = http.request("POST", f"{self.api}/issue", json={"fields": fields},
                                doing="create issue")
        created = http.json(response, "create issue")
        if not isinstance(created, dict) or "key" not in created:
            raise DeliveryError(True, f"{self.name}: create issue: unexpected response")
        return Issue(str(created["key"]), True)

    def comment(self, http: Http, issue: Issue, text: str) -> None:
        http.request("POST", f"{self.api}/issue/{issue.ref}/comment",
                     json={"body": text.replace("**", "*")}, doing="comment on issue")

    def _transition(self, http: Http, issue: Issue, category: str) -> None:
        response = http.request("GET", f"{self.api}/issue/{issue.ref}/transitions",
                                doing="list transitions")
        found = http.json(response, "list transitions")
        transitions = found.get("transitions", []) if isinstance(found, dict) else []
        for t in transitions:
            to = ((t.get("to") or {}).get("statusCategory") or {}).get("key")
            if to == category:
                http.request("POST", f"{self.api}/issue/{issue.ref}/transitions",
                             json={"transition": {"id": str(t["id"])}},
                             doing="transition issue")
                return
        # No such transition in this workflow: the comment has said it all.

    def close(self, http: Http, issue: Issue, text: str) -> None:
        self.comment(http, issue, text)
        self._transition(http, issue, "done")

    def reopen(self, http: Http, issue: Issue) -> None:
        self._transition(http, issue, "new")
