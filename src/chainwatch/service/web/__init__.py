"""The read side: dashboard, JSON API (``/api/v1``) and calendar feed over storage.

::

    sock = bind("127.0.0.1:8080", token=read_token(None))
    with WebServer(WebSettings(db=database, inventory=lambda: inv), sock) as web:
        print(web.url)
"""

from chainwatch.service.web.app import WebSettings, create_app
from chainwatch.service.web.server import (
    DEFAULT_LISTEN,
    FEED_TOKEN_ENV,
    TOKEN_ENV,
    WebServer,
    bind,
    parse_listen,
    read_token,
)

__all__ = [
    "DEFAULT_LISTEN",
    "FEED_TOKEN_ENV",
    "TOKEN_ENV",
    "WebServer",
    "WebSettings",
    "bind",
    "create_app",
    "parse_listen",
    "read_token",
]
