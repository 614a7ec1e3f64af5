"""The generic webhook: one JSON POST per delivery, the payload exactly as DESIGN.md
(Alerts) gives it. Any 2xx is success."""

from __future__ import annotations

import httpx

from chainwatch.alerts.channels._base import DEFAULT_TIMEOUT, Http, Payload


class WebhookSender:
    """POSTs the payload to ``url`` (a secret: errors show only its scheme and host)."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self._url = url
        self._timeout = timeout
        self._transport = transport

    def __repr__(self) -> str:
        return f"WebhookSender({self.name!r})"

    def send(self, payload: Payload) -> None:
        with Http(self.name, secrets=[self._url], timeout=self._timeout,
                  transport=self._transport) as http:
            http.request("POST", self._url, json=dict(payload), doing="POST webhook")
