"""GitLab issues (REST API v4): one issue per target and renewal cycle in ``project``,
found by a hidden marker among the issues labelled ``chainwatch``."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

import httpx

from chainwatch.alerts.channels._base import DEFAULT_TIMEOUT, Http, Payload
from chainwatch.alerts.channels._issues import (
    LABEL,
    MAX_PAGES,
    Issue,
    IssueTracker,
    issue_body,
    issue_title,
    marker,
)

GITLAB_URL = "https://gitlab.com"


class GitLabIssues(IssueTracker):
    def __init__(
        self,
        name: str,
        project: str,
        token: str,
        *,
        url: str | None = None,
        labels: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(timeout=timeout, transport=transport)
        self.name = name
        self.project = project
        self._token = token
        root = (url or GITLAB_URL).rstrip("/")
        self.base = f"{root}/api/v4/projects/{quote(project, safe='')}/issues"
        self.labels = [LABEL, *(label for label in labels if label != LABEL)]

    def __repr__(self) -> str:
        return f"GitLabIssues({self.name!r}, project={self.project!r})"

    def http(self) -> Http:
        return Http(self.name, secrets=[self._token], headers={"PRIVATE-TOKEN": self._token},
                    timeout=self._timeout, transport=self._transport)

    def find(self, http: Http, dedup_key: str) -> Issue | None:
        mark = marker(dedup_key)
        for page in range(1, MAX_PAGES + 1):
            response = http.request(
                "GET", self.base, doing="list issues",
                params={"labels": LABEL, "order_by": "created_at", "sort": "desc",
                        "per_page": 100, "page": page},
            )
            issues = http.json(response, "list issues")
            if not isinstance(issues, list):
                raise http.fail(True, "list issues: unexpected response")
            for item in issues:
                if mark in (item.get("description") or ""):
                    return Issue(str(item["iid"]), item.get("state") == "opened")
            if len(issues) < 100:
                return None
        return None

    def create(self, http: Http, payload: Payload) -> Issue:
        response = http.request(
            "POST", self.base, doing="create issue",
            json={"title": issue_title(payload), "description": issue_body(payload),
                  "labels": ",".join(self.labels)},
        )
        created = http.json(response, "create issue")
        return Issue(str(created["iid"]), True)

    def comment(self, http: Http, issue: Issue, text: str) -> None:
        http.request("POST", f"{self.base}/{issue.ref}/notes", json={"body": text},
                     doing="comment on issue")

    def close(self, http: Http, issue: Issue, text: str) -> None:
        self.comment(http, issue, text)
        http.request("PUT", f"{self.base}/{issue.ref}", json={"state_event": "close"},
                     doing="close issue")

    def reopen(self, http: Http, issue: Issue) -> None:
        http.request("PUT", f"{self.base}/{issue.ref}", json={"state_event": "reopen"},
                     doing="reopen issue")
