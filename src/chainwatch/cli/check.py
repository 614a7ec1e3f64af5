"""``chainwatch check-bundle`` and ``chainwatch check``: one bundle, one live endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from chainwatch.analysis.engine import (
    DEFAULT_CRIT_DAYS,
    DEFAULT_WARN_DAYS,
    analyze,
    key_fingerprint,
)
from chainwatch.cli.common import (
    AtOpt,
    CritOpt,
    Format,
    FormatOpt,
    ProfileOpt,
    WarnOpt,
    check_days,
    endpoint_arg,
    ip_arg,
    parse_when,
    resolve_profiles,
    starttls_arg,
)
from chainwatch.errors import InputError
from chainwatch.model.bundle import load_bundle_file, load_private_key
from chainwatch.model.names import printable, to_ascii
from chainwatch.render.codec import dumps, report_json
from chainwatch.render.text import render_text

if TYPE_CHECKING:
    from chainwatch.service.netinputs import NetworkInputs


def check_bundle(
    bundle: Annotated[Path, typer.Argument(help="PEM (leaf first), DER or PKCS#12 file.")],
    host: Annotated[str | None, typer.Option("--host", help="Name the leaf must cover.")] = None,
    key: Annotated[
        Path | None, typer.Option("--key", help="Private key that must match the leaf.")
    ] = None,
    at: AtOpt = None,
    profile: ProfileOpt = None,
    warn_days: WarnOpt = DEFAULT_WARN_DAYS,
    crit_days: CritOpt = DEFAULT_CRIT_DAYS,
    output: FormatOpt = Format.text,
) -> None:
    """Check a certificate bundle against every client profile, before deploying it."""
    check_days(warn_days, crit_days)
    when = parse_when(at)
    profiles = resolve_profiles(profile)
    chain = load_bundle_file(bundle)
    key_spki = key_fingerprint(load_private_key(key)) if key is not None else None
    report = analyze(
        chain, profiles, at=when, host=host, warn_days=warn_days, crit_days=crit_days,
        key_spki=key_spki,
    )
    if output is Format.json:
        typer.echo(dumps(report_json(report)))
    else:
        render_text(report, Console(), warn_days, crit_days)
    raise typer.Exit(report.status.exit_code)


def check_endpoint(
    endpoint: Annotated[
        str,
        typer.Argument(metavar="HOST[:PORT]", help="Endpoint to probe; IPv6 as [ADDR]:PORT. "
                       "Default port 443, or the STARTTLS protocol's usual port."),
    ],
    sni: Annotated[
        str | None, typer.Option("--sni", help="Server name to send (default: HOST); also "
                                 "the name the leaf must cover.")
    ] = None,
    ip: Annotated[
        str | None, typer.Option("--ip", help="Probe only this address instead of every "
                                 "address HOST resolves to.")
    ] = None,
    starttls: Annotated[
        str | None, typer.Option("--starttls", help="Upgrade with STARTTLS first: smtp, imap, "
                                 "pop3, ftp, ldap, xmpp or postgres.")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds allowed for each of connect, STARTTLS "
                            "and handshake, and for each AIA or revocation fetch.")
    ] = 10.0,
    at: AtOpt = None,
    profile: ProfileOpt = None,
    warn_days: WarnOpt = DEFAULT_WARN_DAYS,
    crit_days: CritOpt = DEFAULT_CRIT_DAYS,
    output: FormatOpt = Format.text,
    revocation: Annotated[
        bool, typer.Option("--revocation", help="Check whether the leaf is revoked: its "
                           "stapled OCSP response, else its OCSP responder, else its CRL.")
    ] = False,
    aia: Annotated[
        bool, typer.Option("--aia", help="Modern profiles complete a chain that lacks an "
                           "intermediate by fetching it from the caIssuers URL, as browsers "
                           "do (legacy profiles model OpenSSL 1.0.x, which never fetches).")
    ] = False,
    allow_private: Annotated[
        list[str] | None, typer.Option("--allow-private", metavar="CIDR", help="Let OCSP, "
                                       "CRL and AIA fetches go to this non-public network "
                                       "(repeatable; by default only public addresses are "
                                       "fetched from).")
    ] = None,
) -> None:
    """Probe a live endpoint (every address behind it) and check the chain each serves."""
    from dataclasses import replace

    from chainwatch.model import Target
    from chainwatch.probe.handshake import Limits
    from chainwatch.probe.parallel import probe_all
    from chainwatch.service.observe import address_summary, report_for

    # The HTTP client (httpx) is imported only when something is fetched: a monitoring
    # plugin runs this command thousands of times per interval.
    fetching = revocation or aia
    check_days(warn_days, crit_days)
    allowed: list[Any] = []
    if fetching or allow_private:
        from chainwatch.probe.http import allow_networks

        try:
            allowed = list(allow_networks(allow_private or ()))
        except ValueError as exc:
            raise InputError(f"--allow-private: {exc}") from None
    when = parse_when(at)
    protocol = starttls_arg(starttls)
    host, port = endpoint_arg(endpoint, protocol)
    address = ip_arg(ip)
    if not timeout > 0:
        raise InputError(f"--timeout {timeout:g}: must be a positive number of seconds")
    profiles = resolve_profiles(profile)
    if aia:
        profiles = [replace(p, aia=True) if not p.legacy else p for p in profiles]
    if sni:
        try:
            sni = to_ascii(sni)
        except ValueError as exc:
            raise InputError(f"--sni: {exc}") from None
    target = Target(host=host, port=port, ip=address, sni=sni or None, starttls=protocol)
    observations = probe_all([target], limits=Limits(timeout=timeout))
    inputs: list[NetworkInputs | None] = [None] * len(observations)
    if fetching:
        from chainwatch.service.netinputs import fetch_inputs

        inputs = list(fetch_inputs([(o, profiles) for o in observations],
                                   revocation=revocation, timeout=timeout,
                                   allow_private=allowed))
    name = sni or host
    reports = [
        report_for(o, profiles, at=when, host=name, warn_days=warn_days, crit_days=crit_days,
                   revocation=None if i is None else i.revocation,
                   fetched=() if i is None else i.fetched)
        for o, i in zip(observations, inputs, strict=True)
    ]
    worst_n = max(range(len(reports)), key=lambda n: reports[n].status.rank)
    worst = reports[worst_n]
    if output is Format.json:
        doc = report_json(worst)
        if len(reports) > 1:
            doc["addresses"] = [address_summary(r) for r in reports]
        doc.update(_network_json(inputs[worst_n], revocation=revocation, aia=aia))
        typer.echo(dumps(doc))
    else:
        console = Console()
        if len(reports) > 1:
            from chainwatch.render.text import summary_line

            console.print(summary_line(worst, warn_days, crit_days), highlight=False,
                          soft_wrap=True, markup=False)
        for n, (report, obs) in enumerate(zip(reports, observations, strict=True)):
            if len(reports) > 1:
                console.print(f"\n-- address {n + 1} of {len(reports)}: {obs.target.ip}",
                              highlight=False)
            render_text(report, console, warn_days, crit_days)
            if obs.ok:
                staple = "stapled OCSP response" if obs.ocsp_staple else "no OCSP staple"
                console.print(f"{obs.tls_version}, {obs.cipher}, {staple}", highlight=False)
                for line in _network_lines(inputs[n]):
                    console.print(printable(line), highlight=False, soft_wrap=True,
                                  markup=False)
    raise typer.Exit(worst.status.exit_code)


def _network_json(inputs: NetworkInputs | None, *, revocation: bool, aia: bool
                  ) -> dict[str, Any]:
    """``check``'s additions to the report (schema 1 extended): ``revocation`` with
    ``--revocation``, ``aia_fetched`` (certificates fetched, never presented) with ``--aia``."""
    from chainwatch.model.times import iso_or_none as iso

    doc: dict[str, Any] = {}
    rev = None if inputs is None else inputs.revocation
    if revocation:
        doc["revocation"] = None if rev is None else {
            "status": rev.status.value,
            "source": None if rev.source is None else rev.source.value,
            "url": rev.url,
            "revoked_at": iso(rev.revoked_at),
            "reason": rev.reason,
            "detail": rev.detail,
        }
    if aia:
        doc["aia_fetched"] = [
            {"sha256": c.sha256, "subject": c.subject, "issuer": c.issuer,
             "not_after": iso(c.not_after)}
            for c in (() if inputs is None else inputs.fetched)
        ]
    return doc


def _network_lines(inputs: NetworkInputs | None) -> list[str]:
    """Text lines about what was fetched: each AIA fetch, and a good revocation answer
    (revoked and unknown ones are findings already)."""
    from chainwatch.analysis.revocation import RevocationStatus

    if inputs is None:
        return []
    lines = [f"AIA: {note}" for note in inputs.notes]
    rev = inputs.revocation
    if rev is not None and rev.status is RevocationStatus.GOOD:
        lines.append(f"revocation: good, according to {rev.where}")
    return lines
