"""``chainwatch check-bundle`` and ``chainwatch check``: one bundle, one live endpoint.

``check``'s work is :func:`chainwatch.cli.endpoint.check_endpoint`, which the command line
also calls without Typer for the arguments :func:`~chainwatch.cli.endpoint.parse_check`
reads: the Typer command here gives the help and the errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    parse_when,
    resolve_profiles,
)
from chainwatch.cli.endpoint import DEFAULT_TIMEOUT
from chainwatch.cli.endpoint import check_endpoint as run_check
from chainwatch.model.bundle import load_bundle_file, load_private_key
from chainwatch.render.codec import dumps, report_json
from chainwatch.render.text import render_text


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
    ] = DEFAULT_TIMEOUT,
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
    raise typer.Exit(run_check(
        endpoint, sni=sni, ip=ip, starttls=starttls, timeout=timeout, at=at, profile=profile,
        warn_days=warn_days, crit_days=crit_days, output=output, revocation=revocation,
        aia=aia, allow_private=allow_private))
