"""``chainwatch advise``: which chain to serve so every required population trusts longest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization
from rich.console import Console

from chainwatch.analysis.advise import advise
from chainwatch.analysis.engine import DEFAULT_CRIT_DAYS, DEFAULT_WARN_DAYS
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
from chainwatch.model import Cert, Target
from chainwatch.model.bundle import load_bundle_file
from chainwatch.model.names import to_ascii
from chainwatch.render.advice import advice_json, render_advice
from chainwatch.render.codec import dumps, target_json

_BUNDLE_SUFFIXES = (".pem", ".crt", ".cer", ".der", ".p12", ".pfx", ".p7b")


def _is_bundle(arg: str) -> bool:
    """A path (an existing file, or something shaped like one), not ``HOST[:PORT]``."""
    return Path(arg).exists() or "/" in arg or arg.lower().endswith(_BUNDLE_SUFFIXES)


def advise_command(
    source: Annotated[
        str,
        typer.Argument(metavar="BUNDLE|HOST[:PORT]", help="The chain served now: a bundle "
                       "file (leaf first; PEM, DER or PKCS#12), or a live endpoint to probe."),
    ],
    profile: ProfileOpt = None,
    candidates: Annotated[
        Path | None, typer.Option("--candidates", metavar="DIR", help="More candidate "
                                  "certificates: every .pem/.crt/.cer/.der file in DIR "
                                  "(intermediates, cross-signs, a CA's new chain).")
    ] = None,
    aia: Annotated[
        bool, typer.Option("--aia", help="Also fetch the certificates named by the served "
                           "chain's caIssuers URLs (public addresses only, unless "
                           "--allow-private) as candidates.")
    ] = False,
    at: AtOpt = None,
    output: FormatOpt = Format.text,
    host: Annotated[
        str | None, typer.Option("--host", help="Name the leaf must cover (default for a "
                                 "live endpoint: its SNI name).")
    ] = None,
    sni: Annotated[
        str | None, typer.Option("--sni", help="Server name to send to a live endpoint "
                                 "(default: HOST).")
    ] = None,
    ip: Annotated[
        str | None, typer.Option("--ip", help="Probe only this address of a live endpoint.")
    ] = None,
    starttls: Annotated[
        str | None, typer.Option("--starttls", help="Upgrade with STARTTLS first: smtp, "
                                 "imap, pop3, ftp, ldap, xmpp or postgres.")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds allowed for the handshake and for "
                            "each AIA fetch.")
    ] = 10.0,
    allow_private: Annotated[
        list[str] | None, typer.Option("--allow-private", metavar="CIDR", help="Let AIA "
                                       "fetches go to this non-public network (repeatable).")
    ] = None,
    write: Annotated[
        Path | None, typer.Option("--write", metavar="FILE", help="Write the advised chain "
                                  "there as PEM, leaf first (the file to deploy).")
    ] = None,
    warn_days: WarnOpt = DEFAULT_WARN_DAYS,
    crit_days: CritOpt = DEFAULT_CRIT_DAYS,
) -> None:
    """Compute the chain to serve (which certificates, in which order) that keeps every
    required client population trusting the longest, as a diff against what is served.
    Exit status: that of check-bundle on the advised chain."""
    from chainwatch.probe.fetchpolicy import allow_networks
    from chainwatch.service.advise import gather_pool, served_chain

    check_days(warn_days, crit_days)
    try:
        allowed = allow_networks(allow_private or ())
    except ValueError as exc:
        raise InputError(f"--allow-private: {exc}") from None
    if not timeout > 0:
        raise InputError(f"--timeout {timeout:g}: must be a positive number of seconds")
    when = parse_when(at)
    profiles = resolve_profiles(profile)
    target: Target | None = None
    chain: tuple[Cert, ...]
    if _is_bundle(source):
        for flag, value in (("--sni", sni), ("--ip", ip), ("--starttls", starttls)):
            if value is not None:
                raise InputError(f"{flag}: only for a live endpoint, not the bundle {source}")
        chain = load_bundle_file(source)
        name = host
        subject = host or str(source)
    else:
        protocol = starttls_arg(starttls)
        endpoint_host, port = endpoint_arg(source, protocol)
        if sni:
            try:
                sni = to_ascii(sni)
            except ValueError as exc:
                raise InputError(f"--sni: {exc}") from None
        wanted = Target(host=endpoint_host, port=port, ip=ip_arg(ip), sni=sni or None,
                        starttls=protocol)
        target, chain = served_chain(wanted, timeout=timeout)
        name = host or sni or endpoint_host
        subject = f"{endpoint_host}:{port}"
    if candidates is not None:
        candidates = candidates.expanduser()
    pool = gather_pool(chain, profiles, candidates=candidates, aia=aia, timeout=timeout,
                       allow_private=allowed)
    advice = advise(chain, profiles, pool.certs, at=when, host=name, warn_days=warn_days,
                    crit_days=crit_days)
    notes = pool.notes if aia else None
    if write is not None:
        pem = b"".join(c.parsed.public_bytes(serialization.Encoding.PEM)
                       for c in advice.advised)
        try:
            write.expanduser().write_bytes(pem)
        except OSError as exc:
            raise InputError(f"--write {write}: {exc.strerror or exc}") from None
    if output is Format.json:
        doc = advice_json(advice, notes)
        if target is not None:
            doc["target"] = target_json(target)
        typer.echo(dumps(doc))
    else:
        render_advice(advice, Console(), subject, warn_days, crit_days, notes)
    raise typer.Exit(advice.advised_report.status.exit_code)
