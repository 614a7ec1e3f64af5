"""PagerDuty Events API v2: ``page`` (and any other alert) triggers, ``resolve``
resolves, both under the message's ``dedup_key`` so PagerDuty keeps one incident per
target and renewal cycle. ``test`` triggers an info-severity event and resolves it."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from chainwatch.alerts.channels._base import DEFAULT_TIMEOUT, DeliveryError, Http, Payload, title
from chainwatch.model.names import printable

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
MAX_DEDUP_KEY = 255
MAX_SUMMARY = 1024

_SEVERITY = {"page": "critical", "watchdog": "critical", "ticket": "warning",
             "notify": "warning", "test": "info"}


def pd_dedup_key(key: str) -> str:
    """The dedup key as PagerDuty accepts it (at most 255 characters)."""
    if len(key) <= MAX_DEDUP_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: MAX_DEDUP_KEY - 65]}~{digest}"


class PagerDutySender:
    """Sends Events API v2 events to ``api_url`` (default: PagerDuty's) with
    ``routing_key`` (a secret, never shown)."""

    def __init__(
        self,
        name: str,
        routing_key: str,
        *,
        api_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self._key = routing_key
        self.api_url = api_url or EVENTS_URL
        self._timeout = timeout
        self._transport = transport

    def __repr__(self) -> str:
        return f"PagerDutySender({self.name!r}, api_url={self.api_url!r})"

    def event(self, payload: Payload, action: str) -> dict[str, Any]:
        """The Events API v2 body for ``payload`` (``action``: trigger or resolve)."""
        body: dict[str, Any] = {
            "routing_key": self._key,
            "event_action": action,
            "dedup_key": pd_dedup_key(str(payload["dedup_key"])),
            "client": "chainwatch",
        }
        if action == "trigger":
            target = payload.get("target") or {}
            summary = printable(f"{title(payload)}: {payload.get('message', '')}")
            body["payload"] = {
                "summary": summary[:MAX_SUMMARY],
                "source": str(target.get("key") or "chainwatch"),
                "severity": _SEVERITY.get(str(payload.get("event")), "critical"),
                "timestamp": payload.get("sent_at"),
                "component": "tls-certificate",
                "group": "chainwatch",
                "class": str(payload.get("event")),
                "custom_details": {
                    k: payload.get(k)
                    for k in ("step", "breaks_at", "days_left", "status", "findings", "target")
                },
            }
        return body

    def send(self, payload: Payload) -> None:
        event = payload.get("event")
        actions = {"resolve": ["resolve"], "test": ["trigger", "resolve"]}.get(
            str(event), ["trigger"]
        )
        with Http(self.name, secrets=[self._key], timeout=self._timeout,
                  transport=self._transport) as http:
            for action in actions:
                response = http.request("POST", self.api_url, json=self.event(payload, action),
                                        doing=f"{action} event")
                answer = http.json(response, f"{action} event")
                if isinstance(answer, dict) and answer.get("status") not in (None, "success"):
                    raise DeliveryError(False, f"{self.name}: {action} event: PagerDuty said "
                                               f"{str(answer.get('message'))[:200]}")
