"""One function per parser of untrusted bytes: ``harness(data)`` returns normally or
raises one of chainwatch's own errors (bad input, said clearly); anything else is a
crash, and so is a warning that escapes. The modules under test are imported in the one
block below (update it when they move); the harnesses use only their public entry
points, except the TLS and STARTTLS readers, which are driven below the connection layer.

- ``bundle``: PEM, DER and PKCS#12 bundles (``parse_bundle``);
- ``inventory``: inventory YAML text (``parse_inventory``, relative paths under a
  throwaway directory);
- ``revocation``: OCSP responses and CRLs about a fixed leaf (first byte: which);
  their verdicts never raise;
- ``ari``: an ACME server's directory and renewalInfo answers (split at the first NUL
  byte), served by httpx's in-memory transport; ``renewal_info`` never raises;
- ``probe``: what a server sends first, through a socket pair: the TLS handshake's
  record reader or one STARTTLS dialogue (first byte: which); a probe fails only with a
  ``ProbeError`` that is not an internal error nor a timeout (the peer has hung up).
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import functools
import ipaddress
import socket
import tempfile
import warnings
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

# -- the modules under test -----------------------------------------------------------------
from chainwatch import parse_bundle
from chainwatch.analysis.revocation import (
    crl_next_update,
    crl_status,
    ocsp_next_update,
    ocsp_status,
)
from chainwatch.config.inventory import parse_inventory
from chainwatch.errors import ChainwatchError, ProbeError
from chainwatch.model import Target
from chainwatch.probe import FailureReason
from chainwatch.probe.ari import renewal_info
from chainwatch.probe.handshake import Limits, _Handshake
from chainwatch.probe.http import FetchCache, Fetcher, FetchLimits
from chainwatch.probe.starttls import PROTOCOLS, Dialogue, Stream, upgrade

# -----------------------------------------------------------------------------------------

HERE = Path(__file__).parent
ISSUER, LEAF = parse_bundle((HERE / "certs.pem").read_bytes(), "certs.pem")
AT = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)  # inside the seeds' validity
_WORKDIR = tempfile.TemporaryDirectory(prefix="chainwatch-fuzz-")
atexit.register(_WORKDIR.cleanup)
INVENTORY = Path(_WORKDIR.name) / "inventory.yaml"
MAX_SERVER_BYTES = 64 * 1024  # what a socket pair's buffer takes at once

KNOWN_BUGS = True
"""Step around the crashes of ``crashes/`` (bugs outside the parsers fuzzed here,
reproduced by strict xfail tests) so that fuzzing goes past them; the replay of those
reproducers sets this to ``False``."""
_KNOWN: tuple[tuple[type[BaseException], str], ...] = ()
"""None now: the inventory crashes once here (a NUL, an overflowing duration, ``~nouser``)
are fixed, and their reproducers replay from ``corpus/inventory/``."""


def _known_bug(exc: BaseException) -> bool:
    """``exc`` is one of the known crashes: its type, raised through that function."""
    frames: list[str] = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return KNOWN_BUGS and any(isinstance(exc, kind) and where in frames
                              for kind, where in _KNOWN)


_loop: asyncio.AbstractEventLoop | None = None


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` on the harnesses' one event loop (a new loop per input is slow)."""
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
        atexit.register(_loop.close)
    _loop.run_until_complete(coroutine)


def bundle(data: bytes) -> None:
    try:
        parse_bundle(data, "fuzz.pem")
    except ChainwatchError as exc:
        _one_line(exc)


def _one_line(exc: ChainwatchError) -> None:
    """The error says what is wrong in one printable line, as every error must."""
    if not str(exc).isprintable():
        raise AssertionError(f"an error that is not one printable line: {exc}") from exc


def inventory(data: bytes) -> None:
    try:
        text = data.decode("utf-8")  # load_inventory says "not UTF-8" for the rest
    except UnicodeDecodeError:
        return
    try:
        parse_inventory(text, path=INVENTORY)
    except ChainwatchError:
        pass
    except Exception as exc:
        if not _known_bug(exc):
            raise


def revocation(data: bytes) -> None:
    if not data:
        return
    answer = data[1:]
    if data[0] % 2 == 0:
        verdict = ocsp_status(answer, LEAF, ISSUER, at=AT)
        ocsp_next_update(answer)
    else:
        verdict = crl_status(answer, LEAF, ISSUER, at=AT)
        crl_next_update(answer)
    if verdict.detail is not None and not verdict.detail.isprintable():
        raise AssertionError(f"a detail that is not one printable line: {verdict.detail!r}")


def ari(data: bytes) -> None:
    directory, _, info = data.partition(b"\x00")
    bodies = [directory, info]

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=bodies.pop(0) if bodies else b"")

    async def documentation(host: str, port: int) -> list[str]:
        return ["192.0.2.10"]  # nothing connects there: the in-memory transport answers

    async def ask() -> None:
        transport = httpx.MockTransport(answer)
        limits = FetchLimits(timeout=5, allow_private=(ipaddress.ip_network("192.0.2.0/24"),))
        async with Fetcher(limits, cache=FetchCache(), resolver=documentation,
                           transport=transport) as fetcher:
            info = await renewal_info("https://acme.fuzz.test/directory", LEAF,
                                      fetcher=fetcher)
        if info.note is not None and not info.note.isprintable():
            raise AssertionError(f"a note that is not one printable line: {info.note!r}")

    _run(ask())


def probe(data: bytes) -> None:
    if not data:
        return
    choices = (None, *PROTOCOLS)
    _run(_converse(choices[data[0] % len(choices)], data[1 : 1 + MAX_SERVER_BYTES]))


async def _converse(protocol: str | None, sent: bytes) -> None:
    """Everything the server says is in the socket before the client starts, then it
    hangs up: the client must end with a verdict, never wait for more."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(sent)
        theirs.shutdown(socket.SHUT_WR)
        ours.setblocking(False)
        limits = Limits(timeout=10.0, retries=0)
        target = Target(host="fuzz.test", port=443, ip="127.0.0.1")
        try:
            if protocol is None:
                attempt = _Handshake(target, limits)
                try:
                    attempt.start(ours)
                    await attempt.done
                finally:
                    attempt.abandon()
            else:
                stream = Stream(ours, budget=limits.max_banner_bytes)
                stream.start_phase(f"STARTTLS ({protocol})", limits.starttls,
                                   limits.max_banner_bytes)
                dialogue = Dialogue(server_name="fuzz.test", client_name="[127.0.0.1]")
                await upgrade(protocol, stream, dialogue)
        except ProbeError as exc:
            if exc.reason == FailureReason.TIMEOUT or "internal error" in str(exc):
                raise AssertionError(f"{protocol or 'tls'}: {exc}") from exc
            _one_line(exc)


def _quiet(harness: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """``harness``, failing when a warning escapes it: a library's warning about hostile
    input (cryptography's about odd names, say) is noise on a user's terminal, and an error
    under the test suite's ``filterwarnings = error``, where it changes the outcome."""

    @functools.wraps(harness)
    def checked(data: bytes) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            harness(data)
        if caught:
            w = caught[0]
            raise AssertionError(f"a warning escaped: {w.category.__name__}: {w.message} "
                                 f"({w.filename}:{w.lineno})")

    return checked


HARNESSES: dict[str, Callable[[bytes], None]] = {
    name: _quiet(harness)
    for name, harness in (
        ("bundle", bundle), ("inventory", inventory), ("revocation", revocation),
        ("ari", ari), ("probe", probe),
    )
}
