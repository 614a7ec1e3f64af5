"""``chainwatch check``'s work (probe one endpoint, judge, print), and the command's own
argument parser: a monitoring plugin runs ``check`` thousands of times per interval, and
Typer with the pydantic it coerces parameters with costs it more than half of its imports.

:func:`parse_check` reads the arguments Typer would accept for ``check``, in the forms a
plugin configuration uses (``--name VALUE`` or ``--name=VALUE``, options anywhere,
values that are plain digits for numbers). Anything else (``--help``, an unknown option,
a value Typer would coerce or refuse, a missing or extra argument) is left to the Typer
command of :mod:`chainwatch.cli.check`, which gives the same help and the same errors as
always. Both call :func:`check_endpoint`. Nothing here imports Typer.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any

from chainwatch.analysis.engine import DEFAULT_CRIT_DAYS, DEFAULT_WARN_DAYS
from chainwatch.cli.inputs import (
    Format,
    check_days,
    endpoint_arg,
    ip_arg,
    parse_when,
    resolve_profiles,
    starttls_arg,
)
from chainwatch.errors import InputError
from chainwatch.model.names import printable, to_ascii

if TYPE_CHECKING:
    from chainwatch.model import Report
    from chainwatch.probe import Observation
    from chainwatch.render.blocks import Block
    from chainwatch.service.netinputs import NetworkInputs

DEFAULT_TIMEOUT = 10.0

CHECK_OPTIONS: dict[str, tuple[str, str]] = {
    # option: (parameter of check_endpoint, kind); the Typer command's options, exactly
    # (tests/test_check_fast.py holds the two to each other)
    "--sni": ("sni", "str"),
    "--ip": ("ip", "str"),
    "--starttls": ("starttls", "str"),
    "--timeout": ("timeout", "float"),
    "--at": ("at", "str"),
    "--profile": ("profile", "list"),
    "--warn-days": ("warn_days", "int"),
    "--crit-days": ("crit_days", "int"),
    "--format": ("output", "format"),
    "--revocation": ("revocation", "flag"),
    "--aia": ("aia", "flag"),
    "--allow-private": ("allow_private", "list"),
}

_INT = re.compile(r"[0-9]{1,9}")
_FLOAT = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")


def parse_check(argv: list[str]) -> dict[str, Any] | None:
    """The keyword arguments of :func:`check_endpoint` for ``chainwatch check ARGV``, or
    ``None`` when the Typer command must read ``argv`` (help, errors, unusual forms).

    Only forms whose meaning is certain are read here: an option's value may not start
    with ``-``, a number must be plain digits (``30``, ``2.5``), ``--format`` exactly
    ``text`` or ``json``, a single-valued option given once, exactly one HOST[:PORT]
    that does not start with ``-``. For every ``argv`` read here, Typer gives the same
    values (tests/test_check_fast.py)."""
    values: dict[str, Any] = {}
    endpoints: list[str] = []
    rest = list(argv)
    while rest:
        word = rest.pop(0)
        if not word.startswith("-"):
            endpoints.append(word)
            continue
        name, eq, inline = word.partition("=")
        spec = CHECK_OPTIONS.get(name)
        if spec is None:
            return None  # --help, --, -, an unknown option: Typer's answer
        parameter, kind = spec
        if kind == "flag":
            if eq or parameter in values:
                return None
            values[parameter] = True
            continue
        if eq:
            value = inline
        elif rest:
            value = rest.pop(0)
        else:
            return None  # "requires an argument"
        if value.startswith("-"):
            return None
        if kind == "list":
            values.setdefault(parameter, []).append(value)
            continue
        if parameter in values:
            return None
        if kind == "int":
            if not _INT.fullmatch(value):
                return None
            values[parameter] = int(value)
        elif kind == "float":
            if not _FLOAT.fullmatch(value):
                return None
            values[parameter] = float(value)
        elif kind == "format":
            if value not in ("text", "json"):
                return None
            values[parameter] = Format(value)
        else:
            values[parameter] = value
    if len(endpoints) != 1:
        return None
    values["endpoint"] = endpoints[0]
    return values


def check_endpoint(
    endpoint: str,
    *,
    sni: str | None = None,
    ip: str | None = None,
    starttls: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    at: str | None = None,
    profile: list[str] | None = None,
    warn_days: int = DEFAULT_WARN_DAYS,
    crit_days: int = DEFAULT_CRIT_DAYS,
    output: Format = Format.text,
    revocation: bool = False,
    aia: bool = False,
    allow_private: list[str] | None = None,
) -> int:
    """Probe a live endpoint (every address behind it), check the chain each serves, print
    the worst report (text or JSON) and return its exit status."""
    from dataclasses import replace

    from chainwatch.model import Target
    from chainwatch.probe.handshake import Limits
    from chainwatch.probe.parallel import probe_all
    from chainwatch.service.observe import address_summary, report_for

    # The HTTP client (httpx) is imported only when something is fetched, Rich only for
    # text on a terminal: a monitoring plugin runs this command thousands of times per
    # interval.
    fetching = revocation or aia
    check_days(warn_days, crit_days)
    allowed: list[Any] = []
    if fetching or allow_private:
        from chainwatch.probe.fetchpolicy import allow_networks

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
    # A reader that closed the pipe early (``check ... | head -1``) still gets the verdict's
    # exit status: the monitor reads it, not the text.
    try:
        if output is Format.json:
            from chainwatch.render.codec import dumps, report_json

            doc = report_json(worst)
            if len(reports) > 1:
                doc["addresses"] = [address_summary(r) for r in reports]
            doc.update(_network_json(inputs[worst_n], revocation=revocation, aia=aia))
            sys.stdout.write(dumps(doc) + "\n")
            sys.stdout.flush()
        else:
            _print_text(_text_blocks(reports, observations, inputs, worst, warn_days,
                                     crit_days))
    except BrokenPipeError:
        from chainwatch.cli.app import quiet_broken_pipe

        quiet_broken_pipe()
    return worst.status.exit_code


def _text_blocks(reports: list[Report], observations: list[Observation],
                 inputs: list[NetworkInputs | None], worst: Report, warn_days: int,
                 crit_days: int) -> list[Block]:
    """``check``'s text: each address's report and handshake (after a summary line of
    the worst when there are several)."""
    from chainwatch.render.blocks import Line, report_blocks, summary_line

    lines: list[Block] = []
    if len(reports) > 1:
        lines.append(Line(summary_line(worst, warn_days, crit_days)))
    for n, (report, obs) in enumerate(zip(reports, observations, strict=True)):
        if len(reports) > 1:
            lines.append(Line(f"\n-- address {n + 1} of {len(reports)}: {obs.target.ip}",
                              markup=True, wrap=True))
        lines.extend(report_blocks(report, warn_days, crit_days))
        if obs.ok:
            staple = "stapled OCSP response" if obs.ocsp_staple else "no OCSP staple"
            lines.append(Line(f"{obs.tls_version}, {obs.cipher}, {staple}", markup=True,
                              wrap=True))
            lines.extend(Line(printable(line)) for line in _network_lines(inputs[n]))
    return lines


def _print_text(output: list[Block]) -> None:
    """``output`` on standard output: written as Rich would print it where that is not a
    terminal (a monitoring plugin's pipe; Rich is not even imported), else by Rich."""
    from chainwatch.render import plain

    columns = plain.width()
    text = None if columns is None else plain.render(output, columns)
    if text is not None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from rich.console import Console

    from chainwatch.render.text import print_blocks

    print_blocks(output, Console())


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
