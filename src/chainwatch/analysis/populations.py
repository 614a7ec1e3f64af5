"""Each population judged on the chain its own handshake was served (pure).

A population whose profile states a ClientHello (``client_hello: {max_version: TLSv1.2,
signature: rsa}``) is served what a server sends that hello: a dual-certificate server
sends RSA-only clients its RSA chain. The probe makes one handshake per distinct hello
needed; :func:`analyze_served` judges every profile on its own handshake's chain and
merges the verdicts into one report:

- ``chain`` is the primary handshake's (the default hello's when a required profile uses
  it, else the first profile's hello);
- every profile result carries ``leaf``, the leaf it was judged on;
- findings of the other handshakes are kept, their messages saying which hello saw them
  (a finding about the chain alone is kept once when both chains have it);
- ``CHAIN_DIVERGES`` (info) names each handshake served a chain other than the primary's;
- a failed handshake makes its profiles untrusted (error ``other``, reason the probe's);
- ``breaks_at``, ``days_left`` and ``status`` are computed over all required profiles,
  as :meth:`Analyzer.analyze <chainwatch.analysis.Analyzer.analyze>` computes them;
- ``handshakes`` lists each hello, the chain it got and the profiles judged on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace

from chainwatch.analysis.engine import (
    DEFAULT_CRIT_DAYS,
    DEFAULT_WARN_DAYS,
    Analyzer,
    default_analyzer,
    status_of,
    target_breaks_at,
)
from chainwatch.analysis.revocation import Revocation
from chainwatch.model import (
    Cert,
    ClientHello,
    Finding,
    FindingCode,
    Handshake,
    PathError,
    Profile,
    ProfileResult,
    Report,
    Severity,
)

Served = Mapping[ClientHello | None, tuple[Cert, ...] | str]
"""What each handshake got: its chain (leaf first), or the one-line reason it failed.
The key ``None`` is the probe's default hello."""


def hellos_needed(profiles: Sequence[Profile]) -> tuple[ClientHello, ...]:
    """The distinct ClientHellos of ``profiles`` beyond the default, in profile order."""
    return tuple(dict.fromkeys(p.client_hello for p in profiles
                               if p.client_hello is not None))


def _describe(cert: Cert) -> str:
    algorithm, bits = cert.key_description
    return f"{cert.subject} ({algorithm} {bits}, sha256 {cert.sha256[:16]}...)"


def analyze_served(
    served: Served,
    profiles: Sequence[Profile],
    *,
    at: dt.datetime,
    host: str | None = None,
    warn_days: int = DEFAULT_WARN_DAYS,
    crit_days: int = DEFAULT_CRIT_DAYS,
    required: Sequence[str] | None = None,
    revocation: Revocation | None = None,
    fetched: Sequence[Cert] = (),
    analyzer: Analyzer | None = None,
) -> Report:
    """The report of one target probed once per ClientHello (see the module docstring).

    ``served`` must hold the default hello (``None``) with a chain, unless every profile
    states a hello; a profile whose hello is missing from ``served`` is judged on the
    default chain. ``revocation`` and ``fetched`` concern the primary chain and apply
    to its group only."""
    engine = analyzer or default_analyzer()
    need = set(required) if required is not None else {p.spec for p in profiles}

    def key(p: Profile) -> ClientHello | None:
        return p.client_hello if p.client_hello in served else None

    groups: dict[ClientHello | None, list[Profile]] = {}
    for p in profiles:
        groups.setdefault(key(p), []).append(p)
    keys = list(groups)
    ok_keys = [k for k in keys if not isinstance(served.get(k), str) and served.get(k)]
    if not ok_keys:
        raise ValueError("analyze_served needs at least one handshake that got a chain")
    required_keys = [k for k in ok_keys if any(p.spec in need for p in groups[k])]
    primary = None if None in ok_keys and (None in required_keys or not required_keys) \
        else (required_keys or ok_keys)[0]
    primary_chain = served[primary]
    assert not isinstance(primary_chain, str)

    results: dict[str, ProfileResult] = {}
    findings: list[Finding] = []
    seen: set[tuple[FindingCode, str | None, str | None]] = set()
    handshakes: list[Handshake] = []
    soon: list[tuple[dt.datetime | None, Finding]] = []  # each group's EXPIRES_SOON
    for k in [primary, *[k for k in keys if k != primary]]:
        group = groups[k]
        specs = tuple(p.spec for p in group)
        got = served[k]
        label = "default" if k is None else k.label
        if isinstance(got, str) or not got:
            reason = got if isinstance(got, str) else "no certificate was presented"
            for p in group:
                results[p.spec] = ProfileResult(
                    profile=p.spec, trusted=False, error=PathError.OTHER,
                    reason=f"the {label} handshake failed: {reason}", path=(),
                    breaks_at=None,
                )
                severity = Severity.CRITICAL if p.spec in need else Severity.WARNING
                findings.append(Finding(
                    FindingCode.UNTRUSTED, severity,
                    f"{p.spec}: the {label} handshake failed: {reason}", p.spec, None,
                ))
            handshakes.append(Handshake(k, (), specs, reason))
            continue
        chain = got
        report = engine.analyze(
            chain, group, at=at, host=host, warn_days=warn_days, crit_days=crit_days,
            required=[s for s in specs if s in need],
            revocation=revocation if k == primary else None,
            fetched=fetched if k == primary else (),
        )
        for r in report.profiles:
            results[r.profile] = replace(r, leaf=chain[0].sha256)
        for f in report.findings:
            if k != primary:
                f = replace(f, message=f"{f.message} (as served to {label} clients)")
            if f.code is FindingCode.EXPIRES_SOON:
                soon.append((report.breaks_at, f))  # kept below if it is the target's
                continue
            ident = (f.code, f.profile, f.cert)
            if f.profile is None and ident in seen:
                continue  # the same fact about a certificate both chains hold
            seen.add(ident)
            findings.append(f)
        handshakes.append(Handshake(k, tuple(c.sha256 for c in chain), specs))
        if k != primary and [c.sha256 for c in chain] != [c.sha256 for c in primary_chain]:
            findings.append(Finding(
                FindingCode.CHAIN_DIVERGES, Severity.INFO,
                f"{label} clients ({', '.join(specs)}) were served leaf {_describe(chain[0])}"
                f" in a chain of {len(chain)}; the "
                f"{'default' if primary is None else primary.label} handshake got "
                f"{_describe(primary_chain[0])} in a chain of {len(primary_chain)}",
                None, chain[0].sha256,
            ))

    ordered = tuple(results[p.spec] for p in profiles)
    needed = [r for r in ordered if r.profile in need]
    breaks, days = target_breaks_at(needed, at)
    # The target's countdown is the group's whose breaks_at is the earliest: its own.
    findings.extend([f for when, f in soon if when == breaks][:1])
    return Report(
        status=status_of(needed, findings, days, warn_days, crit_days),
        evaluated_at=at,
        host=host,
        breaks_at=breaks,
        days_left=days,
        chain=primary_chain,
        profiles=ordered,
        findings=tuple(findings),
        handshakes=tuple(handshakes),
    )


__all__ = ["Served", "analyze_served", "hellos_needed"]
