"""Probing: what endpoints and files actually serve. Raw facts only, never analysis.

A probe returns an :class:`Observation`: the DER bytes of the chain exactly as presented
(order included), TLS facts, and on failure a reason code. A failed probe is a value
(a stored row of history), not an exception.

The rooms of the package, each doing I/O only (none imports the analysis)::

    handshake   one address: connect, STARTTLS, the TLS handshake on a raw socket, retries
    targets     what is probed: a name's addresses (resolution, batch expansion)
    parallel    many addresses: bounded concurrency, shards in threads or child processes
    starttls    the protocol dialogues before the handshake
    http        bounded HTTP fetching (caIssuers, OCSP, CRL): limits, cache, URL checks
    ari         ACME Renewal Information

The fetch-verify-fetch loops that need the analysis (completing a chain via AIA,
checking revocation) live in :mod:`chainwatch.service.netinputs`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from chainwatch.model import ClientHello, Target


class FailureReason(StrEnum):
    """Why an endpoint could not be probed (the ``PROBE_FAILED`` message names it)."""

    RESOLVE = "resolve"  # the name has no address
    REFUSED = "refused"  # connection refused / reset before TLS
    UNREACHABLE = "unreachable"  # no route, network down
    TIMEOUT = "timeout"  # connect, STARTTLS or handshake took longer than allowed
    TLS_ALERT = "tls_alert"  # the server sent a TLS alert (message names it)
    NOT_TLS = "not_tls"  # the server answered, but not with TLS
    CLOSED = "closed"  # the server closed the connection mid-handshake
    TOO_LARGE = "too_large"  # the server sent more than the read limit
    STARTTLS_REFUSED = "starttls_refused"  # the protocol's upgrade was refused
    STARTTLS_UNSUPPORTED = "starttls_unsupported"  # the server does not offer STARTTLS
    NO_CERTIFICATE = "no_certificate"  # handshake completed without a certificate
    NO_WORKER = "no_worker"  # distributed mode: no live worker in the endpoint's zone
    OTHER = "other"


@dataclass(frozen=True)
class Observation:
    """What one probe of one address saw.

    Attributes:
        target: the endpoint, with ``ip`` set to the address actually connected to.
        observed_at: when the handshake completed (or failed), UTC.
        chain: DER of each certificate exactly as the server presented it, leaf first.
        tls_version: e.g. ``TLSv1.3``; ``None`` on failure.
        cipher: the negotiated cipher suite name.
        ocsp_staple: the stapled OCSP response (DER), if the server sent one.
        failure: ``None`` on success, else why not.
        message: one human line for the failure (names host, port and reason).
        elapsed: seconds from connect to result.
        client_hello: the ClientHello sent, when not the probe's default.
    """

    target: Target
    observed_at: dt.datetime
    chain: tuple[bytes, ...] = ()
    tls_version: str | None = None
    cipher: str | None = None
    ocsp_staple: bytes | None = None
    failure: FailureReason | None = None
    message: str | None = None
    elapsed: float = 0.0
    client_hello: ClientHello | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None
