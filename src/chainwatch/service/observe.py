"""From what a probe saw to a report: ``report_for(observation, profiles, ...) -> Report``.

Pure (no clock, no network): the shared step of ``chainwatch check`` and the monitor.
A failed probe, an empty chain, or a certificate that cannot be parsed all yield the
DESIGN.md "could not be probed" report: ``status: unknown``, empty chain and profiles,
and one ``PROBE_FAILED`` finding whose message says why.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from chainwatch.analysis.engine import (
    DEFAULT_CRIT_DAYS,
    DEFAULT_WARN_DAYS,
    analyze,
    probe_failed_report,
)
from chainwatch.analysis.populations import analyze_served
from chainwatch.analysis.revocation import Revocation
from chainwatch.model import Cert, ClientHello, Profile, Report
from chainwatch.model.times import iso_or_none as iso
from chainwatch.probe import Observation
from chainwatch.probe.handshake import where


def parse_chain(observation: Observation) -> tuple[Cert, ...] | str:
    """The observed chain as certificates, or a one-line reason why it cannot be read."""
    if not observation.chain:
        return f"{where(observation.target)}: no_certificate: no certificate was presented"
    certs: list[Cert] = []
    for index, der in enumerate(observation.chain):
        try:
            certs.append(Cert.from_der(der))
        except Exception as exc:  # ValueError and friends: any unreadable DER is this outcome
            what = "leaf" if index == 0 else f"chain certificate #{index}"
            reason = " ".join(str(exc).split()) or type(exc).__name__
            return (
                f"{where(observation.target)}: the served {what} could not be parsed "
                f"({len(der)} bytes: {reason[:160]})"
            )
    return tuple(certs)


def report_for(
    observation: Observation,
    profiles: Sequence[Profile],
    *,
    at: dt.datetime,
    host: str | None = None,
    warn_days: int = DEFAULT_WARN_DAYS,
    crit_days: int = DEFAULT_CRIT_DAYS,
    required: Sequence[str] | None = None,
    revocation: Revocation | None = None,
    fetched: Sequence[Cert] = (),
    served: Sequence[Observation] = (),
) -> Report:
    """The report of one observation, with ``target`` set to the observed address.

    Args:
        observation: what the probe saw (failed or not).
        profiles: the client populations to judge for.
        at: the instant of evaluation (not necessarily when the probe ran).
        host: the name the leaf must cover (usually the target's SNI, else its host);
            ``None`` skips the hostname check, as for a certificate file.
        warn_days / crit_days: thresholds on ``days_left``.
        required: profile specs whose trust is required (default: all).
        revocation: the leaf's revocation status, when it was checked (``REVOKED``,
            ``REVOCATION_UNKNOWN``); ``None``: not checked.
        fetched: certificates fetched via AIA for profiles with ``aia`` set.
            Both come from :func:`chainwatch.service.netinputs.gather_inputs`.
        served: the handshakes of the same address made with the profiles' own
            ClientHellos (``Observation.client_hello`` set); each profile with a hello
            is then judged on the chain its handshake got
            (:func:`chainwatch.analysis.populations.analyze_served`).
    """
    target = observation.target
    if not observation.ok:
        message = observation.message or (
            f"{where(target)}: {observation.failure}: the endpoint could not be probed"
        )
        return probe_failed_report(target, message, at, host=host)
    chain = parse_chain(observation)
    if isinstance(chain, str):
        return probe_failed_report(target, chain, at, host=host)
    if served:
        chains: dict[ClientHello | None, tuple[Cert, ...] | str] = {None: chain}
        for extra in served:
            if extra.client_hello is None:
                continue
            if not extra.ok:
                chains[extra.client_hello] = extra.message or str(extra.failure)
            else:
                chains[extra.client_hello] = parse_chain(extra)
        return analyze_served(
            chains, profiles, at=at, host=host, warn_days=warn_days, crit_days=crit_days,
            required=required, revocation=revocation, fetched=fetched,
        ).with_target(target)
    report = analyze(
        chain, profiles, at=at, host=host, warn_days=warn_days, crit_days=crit_days,
        required=required, revocation=revocation, fetched=fetched,
    )
    return report.with_target(target)


def address_summary(report: Report) -> dict[str, Any]:
    """What one probed address got, for the ``addresses`` list of a multi-address report:
    ``ip``, ``status``, ``leaf_sha256`` (null when nothing was served) and ``breaks_at``."""
    target = report.target
    return {
        "ip": None if target is None else target.ip,
        "status": report.status.value,
        "leaf_sha256": report.chain[0].sha256 if report.chain else None,
        "breaks_at": iso(report.breaks_at),
    }


__all__ = ["address_summary", "parse_chain", "report_for"]
