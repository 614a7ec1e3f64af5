"""The web app on a real uvicorn on a loopback port, and an HTTP client for it."""

from __future__ import annotations

import time

import httpx

from chainwatch.service.web import WebServer, WebSettings, bind


def start_web(settings: WebSettings) -> tuple[WebServer, httpx.Client]:
    """A started server for ``settings`` (its token, if any) and a client that has had
    an answer from it; the caller closes the client and stops the server."""
    server = WebServer(settings, bind("127.0.0.1:0", token=settings.token)).start()
    client = httpx.Client(base_url=server.url.rstrip("/"), timeout=30)
    for _ in range(100):  # bounded: the thread is up within a moment
        try:
            client.get("/static/style.css")
            break
        except httpx.TransportError:
            time.sleep(0.05)
    return server, client
