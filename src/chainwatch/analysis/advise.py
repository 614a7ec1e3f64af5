"""Which chain to serve: the search behind ``chainwatch advise``.

Given the chain a server sends, the populations that must trust it and a pool of
candidate certificates (the anchors of those populations' stores, what the served
chain's caIssuers URLs give, files the operator has), find the chain to send instead
(the same leaf, then which certificates in which order) that keeps every required
population trusting the longest.

The objective, per chain: each required profile's ``breaks_at`` on it (``at`` itself
when the profile does not trust it now, as for the target's ``breaks_at`` in DESIGN.md),
sorted ascending and compared lexicographically (leximin): the first term is the
target's ``breaks_at``, which is maximised; among chains equal on it, the next
population to break decides, and so on, so a population that cannot be satisfied does
not flatten the rest. Ties then go to fewer bytes, then to a chain in issuing order
(no ``CHAIN_ORDER``), then to fewer changes from what is served.

Every chain is judged by the engine itself (:meth:`Analyzer.evaluate
<chainwatch.analysis.Analyzer.evaluate>`: the same path building, rules and forecast
as ``check-bundle``), memoised through the analyzer's tables, so chains that share a
prefix share signature checks and judgements. The served chain is always one of the
chains evaluated, so the advice is never worse than what is served.

The search is bounded:

* candidates: only certificates whose subject matches the issuer of a certificate on
  a path from the leaf (and whose key identifier matches when both carry one) and
  whose key verifies that certificate's signature;
* chains of at most :data:`MAX_DEPTH` certificates, leaf included;
* first every linear chain (each certificate issued by the next), shortest first; then
  :data:`ROUNDS` rounds that add one more issuer (an alternative cross-sign, appended
  or placed right after the certificate it issues) to the :data:`BEAM` best chains so
  far, for populations that need different issuers of one CA;
* at most ``max_chains`` chains evaluated in all (:data:`MAX_CHAINS`); reaching the cap
  is reported (``Search.exhausted``), never silent.

Pure: no clock, no files, no network; the pool is gathered by the service layer.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chainwatch.analysis.engine import (
    DEFAULT_CRIT_DAYS,
    DEFAULT_WARN_DAYS,
    Analyzer,
    default_analyzer,
)
from chainwatch.analysis.paths import could_issue
from chainwatch.model import Cert, NameKey, Profile, ProfileResult
from chainwatch.model.advice import (
    Advice,
    ChainChange,
    Change,
    PoolCert,
    ProfileAdvice,
    Search,
    chain_bytes,
)

MAX_DEPTH = 6
"""Most certificates in an advised chain, leaf included."""

MAX_CHAINS = 2000
"""Most candidate chains evaluated for one advice."""

BEAM = 4
"""Chains, best first, that each round of the second phase tries one more issuer on."""

ROUNDS = 2
"""Rounds of the second phase (each may add one certificate to a chain)."""

Chain = tuple[Cert, ...]


@dataclass(frozen=True)
class _Entry:
    """One evaluated chain."""

    chain: Chain
    results: tuple[ProfileResult, ...]
    values: tuple[dt.datetime, ...]
    bytes: int
    order: int


class _Search:
    def __init__(
        self,
        analyzer: Analyzer,
        profiles: Sequence[Profile],
        at: dt.datetime,
        served: Chain,
        offered: Sequence[Cert],
        limit: int,
        max_depth: int,
    ) -> None:
        self.analyzer = analyzer
        self.profiles = tuple(profiles)
        self.at = at
        self.served = served
        self.limit = limit
        self.max_depth = max_depth
        self.entries: dict[tuple[str, ...], _Entry] = {}
        self.exhausted = False
        self._by_subject: dict[NameKey, list[Cert]] = {}
        preference = {c.sha256: n for n, c in enumerate(served)}
        # Served certificates first (in served order), then the longest-lived.
        ordered = sorted(
            offered,
            key=lambda c: (preference.get(c.sha256, len(served)), -c.not_after.timestamp(),
                           c.sha256),
        )
        for cert in ordered:
            self._by_subject.setdefault(cert.subject_key, []).append(cert)
        self._issuers: dict[str, tuple[Cert, ...]] = {}
        self.relevant: set[str] = set()

    # -- the issuer graph ---------------------------------------------------------------

    def issuers(self, cert: Cert) -> tuple[Cert, ...]:
        """Pool certificates that issued ``cert``: name and key-identifier match first,
        then the signature (memoised by the analyzer)."""
        hit = self._issuers.get(cert.sha256)
        if hit is not None:
            return hit
        ident = (cert.subject_key, cert.spki)
        found = tuple(
            c for c in self._by_subject.get(cert.issuer_key, ())
            if c.sha256 != cert.sha256
            and (c.subject_key, c.spki) != ident  # a cross-sign of itself is no issuer
            and could_issue(c, cert)
            and self.analyzer.signed_by(cert, c)
        )
        self.relevant.update(c.sha256 for c in found)
        self._issuers[cert.sha256] = found
        return found

    # -- evaluation ----------------------------------------------------------------------

    def evaluate(self, chain: Chain) -> bool:
        """Judge ``chain`` for every profile (once); ``False`` when the cap is reached."""
        key = tuple(c.sha256 for c in chain)
        if key in self.entries:
            return True
        if len(self.entries) >= self.limit:
            self.exhausted = True
            return False
        results = tuple(self.analyzer.evaluate(chain, p, self.at) for p in self.profiles)
        values = tuple(
            r.breaks_at if r.trusted and r.breaks_at is not None else self.at for r in results
        )
        self.entries[key] = _Entry(chain, results, values, chain_bytes(chain),
                                   len(self.entries))
        return True

    def rank(self, entry: _Entry) -> tuple[object, ...]:
        """Bigger is better: leximin of breaks_at, fewer bytes, issuing order, fewer
        changes from the served chain (then kept certificates nearer their served
        places), found earlier."""
        return (
            tuple(sorted(entry.values)),
            -entry.bytes,
            _in_issuing_order(entry.chain, self.analyzer),
            *(-d for d in _distance(entry.chain, self.served)),
            -entry.order,
        )

    # -- the two phases --------------------------------------------------------------------

    def linear(self) -> None:
        """Every chain in which each certificate is issued by the next, shortest first."""
        leaf = self.served[0]
        queue: deque[tuple[Chain, frozenset[tuple[NameKey, bytes]]]] = deque(
            [((leaf,), frozenset({(leaf.subject_key, leaf.spki)}))]
        )
        while queue:
            chain, idents = queue.popleft()
            if not self.evaluate(chain):
                return
            top = chain[-1]
            if len(chain) >= self.max_depth or (len(chain) > 1 and top.self_signed):
                continue
            for issuer in self.issuers(top):
                ident = (issuer.subject_key, issuer.spki)
                if ident in idents:
                    continue  # a loop through one CA (subject and key)
                queue.append(((*chain, issuer), idents | {ident}))

    def widen(self) -> None:
        """Try one more issuer of a certificate already on the best chains: a second
        cross-sign for populations that trust another root."""
        for _ in range(ROUNDS):
            best = sorted(self.entries.values(), key=self.rank, reverse=True)[:BEAM]
            for entry in best:
                chain = entry.chain
                if len(chain) >= self.max_depth:
                    continue
                for pos, cert in enumerate(chain):
                    if pos > 0 and cert.self_signed:
                        continue
                    for issuer in self.issuers(cert):
                        if issuer in chain:
                            continue
                        if not self.evaluate((*chain, issuer)):
                            return
                        if pos + 1 < len(chain) and not self.evaluate(
                            (*chain[: pos + 1], issuer, *chain[pos + 1 :])
                        ):
                            return


def advise(
    served: Sequence[Cert],
    profiles: Sequence[Profile],
    pool: Sequence[PoolCert] = (),
    *,
    at: dt.datetime,
    host: str | None = None,
    warn_days: int = DEFAULT_WARN_DAYS,
    crit_days: int = DEFAULT_CRIT_DAYS,
    analyzer: Analyzer | None = None,
    max_chains: int = MAX_CHAINS,
    max_depth: int = MAX_DEPTH,
) -> Advice:
    """The chain to serve instead of ``served`` for every profile in ``profiles``.

    Args:
        served: the chain as served now, leaf first (its leaf stays the leaf).
        profiles: the required client populations (all of them are required).
        pool: candidate certificates with their sources; the served ones are
            candidates too, whether listed or not.
        at: the instant of evaluation.
        host / warn_days / crit_days: as for ``check-bundle``, for the two reports
            (they do not change which chain is best: the leaf stays the same).
        analyzer: the engine whose tables the evaluations go through (default: the
            default analyzer).
        max_chains / max_depth: the search's bounds.
    """
    if not served:
        raise ValueError("advise() needs the served chain (at least its leaf)")
    if not profiles:
        raise ValueError("advise() needs at least one profile")
    if max_chains < 1 or max_depth < 1:
        raise ValueError("advise(): max_chains and max_depth must be at least 1")
    engine = analyzer if analyzer is not None else default_analyzer()
    when = _utc(at)
    served = tuple(served)
    leaf = served[0]
    sources: dict[str, str] = {}
    offered: dict[str, Cert] = {}
    for cert in served[1:]:
        offered.setdefault(cert.sha256, cert)
        sources.setdefault(cert.sha256, "served")
    for item in pool:
        if item.cert.sha256 == leaf.sha256:
            continue
        offered.setdefault(item.cert.sha256, item.cert)
        sources.setdefault(item.cert.sha256, item.source)

    search = _Search(engine, profiles, when, served, list(offered.values()), max_chains,
                     max_depth)
    search.evaluate(served)  # first: what is served now is always a candidate
    search.linear()
    if not search.exhausted:
        search.widen()

    entries = list(search.entries.values())
    chosen = max(entries, key=search.rank)
    advised = chosen.chain
    served_report, advised_report = (
        engine.analyze(chain, profiles, at=when, host=host, warn_days=warn_days,
                       crit_days=crit_days)
        for chain in (served, advised)
    )

    per_profile = []
    for k, spec in enumerate(p.spec for p in profiles):
        best = max(entries, key=_alone(k))
        per_profile.append(ProfileAdvice(
            profile=spec,
            before=served_report.profiles[k],
            after=advised_report.profiles[k],
            best=best.results[k],
            best_chain=tuple(c.sha256 for c in best.chain),
        ))
    return Advice(
        at=when,
        served=served,
        advised=advised,
        served_report=served_report,
        advised_report=advised_report,
        changes=diff(served, advised, sources),
        profiles=tuple(per_profile),
        search=Search(
            pool=len(offered),
            candidates=len(search.relevant),
            chains=len(search.entries),
            limit=max_chains,
            max_depth=max_depth,
            exhausted=search.exhausted,
        ),
    )


def _alone(k: int) -> Callable[[_Entry], tuple[dt.datetime, bool, int, int, int]]:
    """The ranking of chains for profile ``k`` alone: its breaks_at, then fewer bytes.

    Among chains it trusts on none, the one that explains best: a path that reached an
    anchor and failed (expired, purpose...) before no path at all, then the chain that
    went furthest up (its dead end is nearest the anchors the profile lacks).
    """

    def key(e: _Entry) -> tuple[dt.datetime, bool, int, int, int]:
        r = e.results[k]
        if r.trusted:
            return (e.values[k], True, 0, -e.bytes, -e.order)
        return (e.values[k], bool(r.path), len(e.chain), -e.bytes, -e.order)

    return key


def diff(served: Chain, advised: Chain, sources: dict[str, str]) -> tuple[ChainChange, ...]:
    """The advised chain's certificates (kept, moved, added) in advised order, then the
    served ones it drops."""
    served_at: dict[str, int] = {}
    for n, c in enumerate(served):
        served_at.setdefault(c.sha256, n)
    advised_shas = {c.sha256 for c in advised}
    kept_served = [c.sha256 for c in served if c.sha256 in advised_shas]
    kept_served = list(dict.fromkeys(kept_served))
    kept_advised = [c.sha256 for c in advised if c.sha256 in served_at]
    out: list[ChainChange] = []
    for n, cert in enumerate(advised):
        if cert.sha256 in served_at:
            same = kept_served.index(cert.sha256) == kept_advised.index(cert.sha256)
            out.append(ChainChange(cert, Change.KEPT if same else Change.MOVED,
                                   served_at[cert.sha256], n, "served"))
        else:
            out.append(ChainChange(cert, Change.ADDED, None, n,
                                   sources.get(cert.sha256, "candidates")))
    seen: set[str] = set()
    for n, cert in enumerate(served):
        if cert.sha256 not in advised_shas and cert.sha256 not in seen:
            seen.add(cert.sha256)
            out.append(ChainChange(cert, Change.REMOVED, n, None, "served"))
    return tuple(out)


def _in_issuing_order(chain: Chain, analyzer: Analyzer) -> bool:
    """No ``CHAIN_ORDER`` finding: each certificate is followed by its issuer, or by
    nothing that issued it later in the chain (the rule of
    :func:`chainwatch.analysis.findings.chain_order`)."""
    for i in range(len(chain) - 1):
        cert, nxt = chain[i], chain[i + 1]
        if cert.self_issued:
            return True
        if could_issue(nxt, cert) and analyzer.signed_by(cert, nxt):
            continue
        if any(
            could_issue(chain[j], cert) and analyzer.signed_by(cert, chain[j])
            for j in range(i + 2, len(chain))
        ):
            return False
    return True


def _distance(chain: Chain, served: Chain) -> tuple[int, int]:
    """How far ``chain`` is from ``served``: certificates added or dropped, then how far
    the kept ones moved (the sum of their index shifts)."""
    mine = [c.sha256 for c in chain]
    theirs: dict[str, int] = {}
    for n, c in enumerate(served):
        theirs.setdefault(c.sha256, n)
    changes = len(set(mine) ^ set(theirs))
    shift = sum(abs(n - theirs[s]) for n, s in enumerate(mine) if s in theirs)
    return changes, shift


def _utc(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at.astimezone(dt.UTC).replace(microsecond=0)


__all__ = ["BEAM", "MAX_CHAINS", "MAX_DEPTH", "ROUNDS", "advise", "diff"]
