"""ACME Renewal Information from a hostile or broken server, over real loopback HTTP:
``renewal_info`` never raises; it falls back to the default with a one-line note.
The answers are the fuzzing crashes of ``tests/fuzz/corpus/ari/``."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chainwatch.probe.ari import renewal_info

from .pki import PKI, at


class _Hostile(BaseHTTPRequestHandler):
    answers: dict[str, bytes] = {}  # noqa: RUF012 - set by the test: path -> body

    def do_GET(self) -> None:
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        body = self.answers.get(self.path.split("/")[1], b"").replace(b"{base}", base.encode())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.mark.parametrize(
    ("renewal_info_url", "answer", "why"),
    [
        # httpx refuses the URL when building the request: InvalidURL is no HTTPError
        ("https://acme.example:.test/ari", b"{}", "does not offer renewalInfo"),
        # a thousand nested arrays fit in the 64 KiB read cap: json.loads recursed out
        ("{base}/ari", b"[" * 1500, "Recursion"),
    ],
    ids=["invalid-url", "deep-json"],
)
def test_hostile_renewal_information_falls_back_with_a_note(
    server: ThreadingHTTPServer, renewal_info_url: str, answer: bytes, why: str
) -> None:
    leaf = PKI(now=at("2026-03-01")).root("ARI Root").leaf("ari.example.com")
    _Hostile.answers = {
        "directory": b'{"renewalInfo": "' + renewal_info_url.encode() + b'"}',
        "ari": answer,
    }
    directory = f"http://127.0.0.1:{server.server_address[1]}/directory"
    info = asyncio.run(renewal_info(directory, leaf.cert, timeout=10,
                                    allow_private=[ipaddress.ip_network("127.0.0.0/8")]))
    assert info.window is None
    assert info.note is not None and info.note.isprintable()
    assert why in info.note  # and the default renew_at applies (window None)
