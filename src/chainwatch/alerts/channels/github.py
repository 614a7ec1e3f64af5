"""GitHub issues (REST API): one issue per target and renewal cycle in ``repo``, found
by a hidden marker among the issues labelled ``chainwatch``."""

from __future__ import annotations

from collections.abc import Sequence

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

API_URL = "https://api.github.com"


class GitHubIssues(IssueTracker):
    def __init__(
        self,
        name: str,
        repo: str,
        token: str,
        *,
        api_url: str | None = None,
        labels: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(timeout=timeout, transport=transport)
        self.name = name
        self.repo = repo
        self._token = token
        self.base = (api_url or API_URL).rstrip("/") + f"/repos/{repo}/issues"
        self.labels = [LABEL, *(label for label in labels if label != LABEL)]

    def __repr__(self) -> str:
        return f"GitHubIssues({self.name!r}, repo={self.repo!r})"

    def http(self) -> Http:
        return Http(
            self.name,
            secrets=[self._token],
            headers={
                "Authorization": f"Bearer {self._token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
            timeout=self._timeout,
            transport=self._transport,
        )

    def find(self, http: Http, dedup_key: str) -> Issue | None:
        mark = marker(dedup_key)
        for page in range(1, MAX_PAGES + 1):
            response = http.request(
                "GET", self.base, doing="list issues",
                params={"labels": LABEL, "state": "all", "sort": "created",
                        "direction": "desc", "per_page": 100, "page": page},
            )
            issues = http.json(response, "list issues")
            if not isinstance(issues, list):
                raise http.fail(True, "list issues: unexpected response")
            for item in issues:
                if "pull_request" in item:
                    continue
                if mark in (item.get("body") or ""):
                    return Issue(str(item["number"]), item.get("state") == "open")
            if len(issues) < 100:
                return None
        return None

    def create(self, http: Http, payload: Payload) -> Issue:
        response = http.request(
            "POST", self.base, doing="create issue",
            json={"title": issue_title(payload), "body": issue_body(payload),
                  "labels": self.labels},
        )
        created = http.json(response, "create issue")
        return Issue(str(created["number"]), True)

    def comment(self, http: Http, issue: Issue, text: str) -> None:
        http.request("POST", f"{self.base}/{issue.ref}/comments", json={"body": text},
                     doing="comment on issue")

    def close(self, http: Http, issue: Issue, text: str) -> None:
        self.comment(http, issue, text)
        http.request("PATCH", f"{self.base}/{issue.ref}",
                     json={"state": "closed", "state_reason": "completed"},
                     doing="close issue")

    def reopen(self, http: Http, issue: Issue) -> None:
        http.request("PATCH", f"{self.base}/{issue.ref}", json={"state": "open"},
                     doing="reopen issue")
